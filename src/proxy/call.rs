//! The table of calls (one proxied INVITE and the targets it walks) and
//! what is reported about each: the events a call record is made of, the
//! setup time, the log span.

use std::time::Instant;

use bytes::Bytes;

use super::txn::Txn;
use super::{Augment, CallEvent, CallKey, Core, Id, RouteDetails, RouteTarget, Source};
use crate::sip::{HeaderName, Message};

/// A call: one proxied INVITE and the targets it walks.
pub(super) struct Call {
    pub(super) server: Id,
    /// The caller's INVITE, until the call's final response has gone
    /// upstream: the server transaction outlives it by 64*T1 after a 2xx,
    /// and nothing after the answer needs the request again.
    pub(super) request: Option<Box<Message>>,
    /// For log lines after the request is freed.
    pub(super) call_id: Bytes,
    /// The request's loop-detection hash, computed once.
    pub(super) loop_hash: u64,
    pub(super) source: Source,
    pub(super) targets: Vec<RouteTarget>,
    pub(super) augment: Augment,
    pub(super) next: usize,
    /// The target tried last, and which of its name's targets (RFC 3263
    /// SRV targets) it went to: the next of them comes before the next
    /// target.
    pub(super) attempt: Option<(usize, usize)>,
    pub(super) current: Option<Id>,
    /// The best final response so far (status, bytes for upstream).
    pub(super) best: Option<(u16, Bytes)>,
    pub(super) cancelled: bool,
    pub(super) answered: bool,
    /// A final response has gone upstream.
    pub(super) finished: bool,
    pub(super) emergency: bool,
    pub(super) started: Instant,
    /// Every log line about the call carries its Call-ID, route and reason.
    pub(super) span: tracing::Span,
    /// The caller's Vias, kept once a target's 2xx came back without them
    /// (its retransmissions need them after the request is freed).
    pub(super) upstream_vias: Option<Bytes>,
}

impl Call {
    /// A call not yet sent anywhere.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        server: Id,
        request: Message,
        loop_hash: u64,
        source: Source,
        targets: Vec<RouteTarget>,
        augment: Augment,
        emergency: bool,
        now: Instant,
    ) -> Call {
        Call {
            server,
            call_id: Bytes::copy_from_slice(request.call_id().unwrap_or_default()),
            request: Some(Box::new(request)),
            loop_hash,
            source,
            targets,
            augment,
            next: 0,
            attempt: None,
            current: None,
            best: None,
            cancelled: false,
            answered: false,
            finished: false,
            emergency,
            started: now,
            span: tracing::Span::none(),
            upstream_vias: None,
        }
    }

    /// Whether call events are reported for it (emergency and test calls).
    fn recorded(&self) -> bool {
        self.emergency
    }
}

impl Core {
    /// A new call, known by its Call-ID until its transaction ends.
    pub(super) fn insert_call(&mut self, id: Id, call: Call) {
        *self.live_calls.entry(call.call_id.clone()).or_default() += 1;
        self.calls.insert(id, call);
    }

    /// Whether a request within a dialog belongs to a call the router
    /// relays: one in progress, or one answered and not yet ended.
    pub(super) fn knows_call(&self, msg: &Message) -> bool {
        msg.call_id()
            .is_some_and(|c| self.live_calls.contains_key(c) || self.dialogs.contains_key(c))
    }

    /// The call's final response goes upstream now: the setup time is
    /// measured and the call reported, once.
    pub(super) fn mark_finished(&mut self, now: Instant, call_id: Id, status: u16) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.finished {
            return;
        }
        call.finished = true;
        call.request = None;
        call.best = None;
        self.metrics
            .setup(now.saturating_duration_since(call.started).as_secs_f64());
        if call.recorded() {
            let outcome = match status {
                200..=299 => "answered",
                487 if call.cancelled => "cancelled",
                _ if call.cancelled => "cancelled",
                _ => "failed",
            };
            self.events.push_back(CallEvent::Finished {
                call: call_id,
                at: now,
                status,
                outcome,
            });
        }
    }

    /// Reports one target's outcome for a recorded call.
    pub(super) fn attempt(
        &mut self,
        now: Instant,
        call_id: Id,
        trunk: &str,
        label: String,
        outcome: &'static str,
        status: Option<u16>,
    ) {
        if self.calls.get(&call_id).is_some_and(Call::recorded) {
            self.events.push_back(CallEvent::Attempt {
                call: call_id,
                at: now,
                trunk: trunk.to_string(),
                label,
                outcome,
                status,
            });
        }
    }

    /// The call's span, entered for the handlers of its events.
    pub(super) fn call_span(&self, call_id: Id) -> tracing::Span {
        self.calls
            .get(&call_id)
            .map_or_else(tracing::Span::none, |c| c.span.clone())
    }

    /// The label (PSAP id, queue) of the target a client transaction serves.
    pub(super) fn txn_label(&self, id: Id) -> String {
        match self.txns.get(&id) {
            Some(Txn::ClientInvite { label, .. }) => label.clone(),
            _ => String::new(),
        }
    }
}

/// The event that opens an emergency or test call's record.
#[allow(clippy::too_many_arguments)]
pub(super) fn started(
    call: CallKey,
    at: Instant,
    req: Option<&Message>,
    source: Source,
    route: &'static str,
    reason: &'static str,
    details: Option<Box<RouteDetails>>,
    warnings: Vec<String>,
) -> CallEvent {
    let text = |h: HeaderName| {
        req.and_then(|r| r.get(h))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    CallEvent::Started {
        call,
        at,
        call_id: text(HeaderName::CallId).unwrap_or_default(),
        source,
        from: text(HeaderName::From).unwrap_or_default(),
        pai: text(HeaderName::PAssertedIdentity),
        user_agent: text(HeaderName::UserAgent),
        request_uri: req
            .map(|r| String::from_utf8_lossy(r.request_uri_bytes()).into_owned())
            .unwrap_or_default(),
        route,
        reason,
        details,
        refused: false,
        warnings: warnings.into_boxed_slice(),
    }
}
