//! Phase 4: failover. What a target's answer, its silence or a transport
//! error does to its call: a provisional response goes upstream, a 2xx
//! answers the call, a failure, a timeout, the ring timer or the no-answer
//! timer move the call to its next target; with none left, the best
//! response goes upstream.

use std::time::Instant;

use bytes::Bytes;
use tracing::{info, warn};

use super::in_dialog::{Dialog, DIALOG_TTL};
use super::txn::{parse_sent, Response, Txn};
use super::{lossy, Core, Dest, Id, TimerRef};
use crate::metrics as m;
use crate::sip::build;
use crate::transaction::ClientInviteEvent;

impl Core {
    pub(super) fn on_client_invite_event(
        &mut self,
        now: Instant,
        id: Id,
        ev: ClientInviteEvent,
        response: Option<Response<'_>>,
    ) {
        let Some(Txn::ClientInvite {
            call,
            abandoned,
            trunk,
            ..
        }) = self.txns.get(&id)
        else {
            return;
        };
        let (call_id, abandoned, trunk) = (*call, *abandoned, trunk.clone());
        let _span = self.call_span(call_id).entered();
        let current = self.calls.get(&call_id).and_then(|c| c.current) == Some(id);
        match ev {
            ClientInviteEvent::Provisional { status } => {
                if let Some(Txn::ClientInvite { provisional, .. }) = self.txns.get_mut(&id) {
                    if !*provisional && !self.cfg.ring_timeout.is_zero() {
                        let at = now + self.cfg.ring_timeout;
                        self.timers.push(
                            at,
                            TimerRef::RingTimeout {
                                call: call_id,
                                client: id,
                            },
                        );
                    }
                    *provisional = true;
                }
                let cancelled = self.calls.get(&call_id).is_none_or(|c| c.cancelled);
                if abandoned || cancelled || !current {
                    self.send_cancel(now, id);
                } else if status > 100 {
                    if let Some((status, bytes)) = response.and_then(Response::upstream_bytes) {
                        self.relay_upstream(now, call_id, status, bytes);
                    }
                }
            }
            ClientInviteEvent::Success { status } => {
                self.release_request(id);
                // Every 2xx goes upstream, even from a target given up on:
                // the caller acknowledges each and hangs up the extra ones.
                let upstream = response
                    .and_then(Response::upstream_bytes)
                    .or_else(|| self.rebuilt_upstream(call_id, response));
                if let Some((_, bytes)) = upstream {
                    if let Some(call) = self.calls.get_mut(&call_id) {
                        if !call.answered {
                            call.answered = true;
                            if let Some(Txn::ClientInvite { dest, .. }) = self.txns.get(&id) {
                                self.dialogs.insert(
                                    call.call_id.clone(),
                                    Dialog {
                                        caller: call.source.peer,
                                        caller_dest: Dest::reply_to(&call.source),
                                        callee: dest.clone(),
                                        expires: now + DIALOG_TTL,
                                    },
                                );
                            }
                            self.stats.calls_answered += 1;
                            self.metrics.call_ended("answered");
                            info!(call_id = %lossy(Some(&call.call_id[..])), trunk = %trunk, status, setup_ms = now.duration_since(call.started).as_millis() as u64, emergency = call.emergency, "answered");
                            let label = self.txn_label(id);
                            self.attempt(now, call_id, &trunk, label, "answered", Some(status));
                        }
                    }
                    self.relay_upstream(now, call_id, status, bytes);
                }
            }
            ClientInviteEvent::Failure { status } => {
                let invite = match self.txns.get(&id) {
                    Some(Txn::ClientInvite { request, .. }) => parse_sent(request),
                    _ => None,
                };
                if let (Some(resp), Some(invite)) = (response.map(|r| r.msg), invite) {
                    let ack = build::ack_for(&invite, resp);
                    if let Some(Txn::ClientInvite { m, .. }) = self.txns.get_mut(&id) {
                        let _ = m.send_ack(ack);
                    }
                }
                self.release_request(id);
                if abandoned || !current {
                    return;
                }
                let bytes = response.and_then(Response::upstream_bytes).map(|(_, b)| b);
                self.target_failed(now, call_id, id, &trunk, status, bytes);
            }
            ClientInviteEvent::Timeout => {
                if current && !abandoned {
                    self.target_failed(now, call_id, id, &trunk, 408, None);
                }
            }
            ClientInviteEvent::TransportError => {
                if current && !abandoned {
                    self.target_failed(now, call_id, id, &trunk, 503, None);
                }
            }
        }
    }

    /// The current target failed with `status` (`bytes`: its response for
    /// upstream, when it sent one).
    fn target_failed(
        &mut self,
        now: Instant,
        call_id: Id,
        client: Id,
        trunk: &str,
        status: u16,
        bytes: Option<Bytes>,
    ) {
        // An emergency call moves on after every final non-2xx a target
        // sends (a PSAP that checks the Request-URI answers 404, one whose
        // call takers are all busy 486): only the caller's CANCEL ends it
        // early. Other calls fail over on the configured codes only.
        let emergency = self.calls.get(&call_id).is_some_and(|c| c.emergency);
        let failover = emergency || self.cfg.failover_codes.contains(&status) || bytes.is_none();
        let cancelled = self.calls.get(&call_id).is_some_and(|c| c.cancelled);
        let outcome = match (&bytes, status) {
            _ if cancelled => "cancelled",
            (None, 408) => "timeout",
            (None, _) => "unreachable",
            _ => "failed",
        };
        let label = self.txn_label(client);
        self.attempt(
            now,
            call_id,
            trunk,
            label,
            outcome,
            bytes.as_ref().map(|_| status),
        );
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.current = None;
        if let Some(b) = bytes {
            // An emergency call answers the caller with what its last
            // target said; other calls with the best answer of all.
            let better = call.emergency
                || call
                    .best
                    .as_ref()
                    .is_none_or(|(s, _)| rank(status) < rank(*s));
            if better {
                call.best = Some((status, b));
            }
        }
        if call.cancelled {
            // The caller gave up: the 487 (or whatever came) goes upstream.
            match call.best.clone() {
                Some((s, b)) => self.relay_upstream(now, call_id, s, b),
                None => self.finish_with_own(now, call_id, 487, "Request Terminated"),
            }
            return;
        }
        if failover {
            let cause = match outcome {
                "timeout" => "timeout",
                "unreachable" => "unreachable",
                _ if status >= 500 => "server-error",
                _ => "failure-code",
            };
            self.stats.failovers += 1;
            metrics::counter!(m::FAILOVERS, "trunk" => trunk.to_string(), "cause" => cause)
                .increment(1);
            info!(call_id = %lossy(Some(&call.call_id[..])), trunk = %trunk, status, cause, "target failed; trying the next one");
            self.try_next(now, call_id);
        } else {
            let (s, b) = call.best.clone().unwrap_or((status, Bytes::new()));
            info!(call_id = %lossy(Some(&call.call_id[..])), trunk = %trunk, status, "final response from target");
            self.stats.calls_failed += 1;
            self.metrics.call_ended("failed");
            self.relay_upstream(now, call_id, s, b);
        }
    }

    /// A target that rings and rings: cancelled, and the call moves on.
    pub(super) fn on_ring_timeout(&mut self, now: Instant, call_id: Id, client: Id) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if call.current != Some(client) || call.finished || call.cancelled {
            return;
        }
        let _span = self.call_span(call_id).entered();
        let Some(Txn::ClientInvite { trunk, .. }) = self.txns.get(&client) else {
            return;
        };
        let trunk = trunk.clone();
        if let Some(Txn::ClientInvite { abandoned, .. }) = self.txns.get_mut(&client) {
            *abandoned = true;
        }
        self.send_cancel(now, client);
        let label = self.txn_label(client);
        self.attempt(now, call_id, &trunk, label, "ring-timeout", None);
        self.stats.failovers += 1;
        metrics::counter!(m::FAILOVERS, "trunk" => trunk.clone(), "cause" => "ring-timeout")
            .increment(1);
        info!(trunk = %trunk, after_ms = self.cfg.ring_timeout.as_millis() as u64, "rang without an answer; cancelled, trying the next target");
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.current = None;
        }
        self.try_next(now, call_id);
    }

    pub(super) fn on_no_answer(&mut self, now: Instant, call_id: Id, client: Id) {
        let _span = self.call_span(call_id).entered();
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if call.current != Some(client) || call.finished || call.cancelled {
            return;
        }
        let Some(Txn::ClientInvite {
            provisional, trunk, ..
        }) = self.txns.get(&client)
        else {
            return;
        };
        if *provisional {
            return;
        }
        let trunk = trunk.clone();
        if let Some(Txn::ClientInvite { abandoned, .. }) = self.txns.get_mut(&client) {
            *abandoned = true;
        }
        let label = self.txn_label(client);
        self.attempt(now, call_id, &trunk, label, "no-answer", None);
        self.stats.failovers += 1;
        metrics::counter!(m::FAILOVERS, "trunk" => trunk.clone(), "cause" => "no-answer")
            .increment(1);
        info!(call_id = %lossy(Some(&self.calls[&call_id].call_id[..])), trunk = %trunk, after_ms = self.cfg.no_answer.as_millis() as u64, "no provisional response; trying the next target");
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.current = None;
        }
        self.try_next(now, call_id);
    }

    /// No target left: the best response goes upstream (a 503 becomes 500,
    /// RFC 3261 section 16.7), or 408 when no target answered at all.
    pub(super) fn finish_failed(&mut self, now: Instant, call_id: Id) {
        let _span = self.call_span(call_id).entered();
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        self.stats.calls_failed += 1;
        self.metrics.call_ended("failed");
        warn!(call_id = %lossy(Some(&call.call_id[..])), tried = call.next, "every target failed");
        match call.best.clone() {
            Some((503, _)) => self.finish_with_own(now, call_id, 500, "All Targets Failed"),
            Some((s, b)) => self.relay_upstream(now, call_id, s, b),
            None if call.targets.is_empty() => self.finish_with_own(now, call_id, 503, "No Route"),
            None => self.finish_with_own(now, call_id, 408, "No Target Answered"),
        }
    }

    /// A final response the router writes itself for a call.
    pub(super) fn finish_with_own(&mut self, now: Instant, call_id: Id, code: u16, reason: &str) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if call.finished {
            return;
        }
        if code == 487 {
            self.stats.calls_cancelled += 1;
            self.metrics.call_ended("cancelled");
        }
        let (server, req) = (call.server, call.request.clone());
        self.mark_finished(now, call_id, code);
        if let Some(req) = req {
            self.respond(now, server, &req, code, reason, &[]);
        }
    }
}

/// Orders final responses for "best response" (RFC 3261 section 16.7):
/// 6xx first, then 2xx-4xx by class, 5xx last.
fn rank(status: u16) -> u16 {
    match status {
        600..=699 => 0,
        500..=599 => 900 + status,
        s => s,
    }
}
