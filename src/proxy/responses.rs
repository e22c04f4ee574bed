//! Phase 5: responses. A response from the next hop is matched to its
//! client transaction, whose events decide what becomes of it
//! (`failover.rs` for an INVITE); what goes upstream leaves with the
//! router's Via removed, through the caller's server transaction.

use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::txn::{Response, Txn};
use super::{lossy, Core, Id, ProbeResult, Source};
use crate::metrics as m;
use crate::sip::edit::Editor;
use crate::sip::{HeaderName, Message};
use crate::transaction::{ClientNonInviteEvent, TransactionKey};

impl Core {
    pub(super) fn on_response(&mut self, now: Instant, msg: Message, source: Source) {
        let Some(status) = msg.status() else { return };
        let Some(branch) = msg.top_via().and_then(|v| v.branch()) else {
            return;
        };
        let Some(cseq) = msg.cseq() else { return };
        let key = TransactionKey::client(branch, cseq.method);
        let Some(&id) = self.client_index.get(&key) else {
            debug!(status, call_id = %lossy(msg.call_id()), "response matches no transaction; dropped");
            return;
        };
        // A response to a request the router relayed goes upstream with its
        // own Via removed: the peer must have copied the Vias below it
        // (RFC 3261 section 8.2.6.2). Without them it would reach the
        // caller with no Via at all, which no caller can match. The client
        // transaction still takes it (a non-2xx is acknowledged, a failure
        // fails over or is answered by the router itself); only the copy
        // for upstream is withheld.
        let relayed = match self.txns.get(&id) {
            Some(Txn::ClientInvite { .. }) => true,
            Some(Txn::ClientNonInvite { server, .. }) => server.is_some(),
            _ => false,
        };
        let mut unrelayable = false;
        if relayed && msg.list(HeaderName::Via).nth(1).is_none() {
            metrics::counter!(m::PARSE_ERRORS, "transport" => source.proto.lower(), "kind" => "via-missing-upstream").increment(1);
            if let Some(dropped) = self.stripped_vias.hit(now) {
                warn!(dropped, status, call_id = %lossy(msg.call_id()), peer = %source.peer, "response carries only the router's Via, not the caller's: a 2xx goes upstream with the caller's Vias put back, any other is not relayed (count since the last such line; the latest named)");
            }
            unrelayable = true;
        }
        let response = Response::new(&msg, unrelayable);
        match self.txns.get_mut(&id) {
            Some(Txn::ClientInvite { m, .. }) => {
                let _ = m.on_response(now, status);
            }
            Some(Txn::ClientNonInvite { m, .. }) => {
                let _ = m.on_response(now, status);
            }
            _ => {}
        }
        self.pump_with(now, id, Some(response));
    }

    /// A 2xx that came back with only the router's Via (a trunk that does
    /// not copy the Vias it received): the caller's Vias are put back from
    /// its request, so that the answer reaches the caller instead of
    /// leaving it retransmitting while the PSAP thinks the call is up.
    pub(super) fn rebuilt_upstream(
        &mut self,
        call_id: Id,
        response: Option<Response<'_>>,
    ) -> Option<(u16, Bytes)> {
        let r = response?.msg;
        let call = self.calls.get_mut(&call_id)?;
        let vias = match &call.upstream_vias {
            Some(v) => v.clone(),
            None => {
                let req = call.request.as_deref()?;
                let v = Bytes::from(crate::sip::edit::upstream_vias(req, call.source.peer));
                call.upstream_vias = Some(v.clone());
                v
            }
        };
        let via = r.header(HeaderName::Via)?;
        let mut e = Editor::new(r);
        e.set_header_value(via, vias);
        info!(call_id = %lossy(r.call_id()), "2xx without the caller's Via: relayed with the Vias of the caller's request");
        Some((r.status()?, e.build()))
    }

    pub(super) fn relay_upstream(&mut self, now: Instant, call_id: Id, status: u16, bytes: Bytes) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if status >= 300 && call.finished {
            return;
        }
        let (server, source) = (call.server, call.source);
        if status >= 200 {
            self.mark_finished(now, call_id, status);
        }
        let refused = match self.txns.get_mut(&server) {
            Some(Txn::ServerInvite { m, .. }) => {
                m.send_response(now, status, bytes.clone()).is_err()
            }
            _ => true,
        };
        if refused && (200..300).contains(&status) {
            // A 2xx after the caller's transaction ended (a CANCEL raced
            // the answer): it still goes upstream, so the caller can
            // acknowledge it and hang up (RFC 6026).
            self.send_back(&source, bytes);
        } else if refused {
            debug!(
                status,
                "response not allowed in the server transaction's state; dropped"
            );
        }
        self.pump(now, server);
    }

    pub(super) fn on_client_non_invite_event(
        &mut self,
        now: Instant,
        id: Id,
        ev: ClientNonInviteEvent,
        response: Option<Response<'_>>,
    ) {
        if let Some(&(_, sent)) = self.probes.get(&id) {
            let result = match ev {
                ClientNonInviteEvent::Provisional { .. } => return,
                ClientNonInviteEvent::Final { status } => ProbeResult::Answered {
                    status,
                    latency: now.saturating_duration_since(sent),
                },
                ClientNonInviteEvent::Timeout => ProbeResult::TimedOut,
                ClientNonInviteEvent::TransportError => ProbeResult::SendFailed,
            };
            self.probe_result(now, id, result);
            return;
        }
        let Some(Txn::ClientNonInvite { server, .. }) = self.txns.get(&id) else {
            return;
        };
        let Some(server) = *server else { return };
        let upstream = || response.and_then(Response::upstream_bytes);
        let (status, bytes) = match ev {
            ClientNonInviteEvent::Provisional { status } if status > 100 => match upstream() {
                Some(r) => r,
                None => return,
            },
            ClientNonInviteEvent::Provisional { .. } => return,
            ClientNonInviteEvent::Final { .. } => match upstream() {
                Some(r) => r,
                None => return,
            },
            ClientNonInviteEvent::Timeout | ClientNonInviteEvent::TransportError => {
                let request = match self.txns.get_mut(&server) {
                    Some(Txn::ServerNonInvite { request, .. }) => request.take(),
                    _ => None,
                };
                if let Some(request) = request {
                    self.respond(now, server, &request, 408, "Request Timeout", &[]);
                }
                return;
            }
        };
        if let Some(Txn::ServerNonInvite { m, request, .. }) = self.txns.get_mut(&server) {
            if status >= 200 {
                *request = None;
            }
            let _ = m.send_response(now, status, bytes);
        }
        self.pump(now, server);
    }
}
