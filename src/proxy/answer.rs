//! The router's own answers: from a server transaction (`respond`), or
//! without one for a request it routes nowhere, refuses for overload or
//! takes from a stranger, sent back where the request came from.

use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::branch::{push_hex, Branch};
use super::call::started;
use super::txn::Txn;
use super::{lossy, overload, CallEvent, Core, Decision, Dest, Id, Source, Transmit};
use crate::metrics as m;
use crate::sip::{build, text, Message};

/// The headers of the router's own `200` to OPTIONS (the first, `Allow`,
/// also goes with a `405`).
pub(super) const OPTIONS_ANSWER: &[(&str, &[u8])] = &[
    (
        "Allow",
        b"INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK, MESSAGE",
    ),
    (
        "Accept",
        b"application/sdp, application/pidf+xml, multipart/mixed",
    ),
    ("Supported", b"geolocation"),
];

impl Core {
    /// The router's answer to a new request it routes nowhere and that is no
    /// emergency call: a refusal (403, 400, 405, 420, 481) or its own 200
    /// to OPTIONS,
    /// sent without a transaction. A retransmission gets the same answer
    /// (the To tag is derived from the request), and the ACK of a refused
    /// INVITE is absorbed by that tag. Each source gets at most
    /// `sip.answers_per_source_per_s` such answers a second; past that the
    /// request is dropped unanswered, as a flood deserves.
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        msg: &Message,
        source: Source,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        if code >= 300 {
            self.stats.rejected += 1;
            metrics::counter!(m::REQUESTS_REJECTED, "status" => code.to_string()).increment(1);
            if let Some(refused) = self.refusals.hit(now) {
                info!(refused, call_id = %lossy(msg.call_id()), code, reason, method = %lossy(Some(msg.method_bytes())), peer = %source.peer, "request refused (count since the last such line; the latest named)");
            } else {
                debug!(call_id = %lossy(msg.call_id()), code, reason, peer = %source.peer, "request refused");
            }
        }
        if self.answer_budgets.take(source.peer.ip(), now) {
            self.answer_statelessly(msg, source, code, reason, extra);
        } else {
            metrics::counter!(m::ANSWERS_WITHHELD).increment(1);
        }
    }

    /// Answers a new request `503` for want of room, so that the carrier
    /// sends it to its other router. No transaction is kept: the To tag is
    /// derived from the request, the same for each retransmission, and
    /// marks the ACK that follows as one to absorb. An emergency or test
    /// call refused still gets its call record, outcome `refused`.
    pub(super) fn refuse_for_overload(
        &mut self,
        now: Instant,
        msg: &Message,
        source: Source,
        (class, why): (overload::Class, overload::Refusal),
        decision: Option<Decision>,
    ) {
        let warn_due = self.admission.refused(now, class, why);
        if let Some(Decision::Route {
            emergency: true,
            route,
            reason,
            details,
            ..
        }) = decision
        {
            let call = self.id();
            let mut ev = started(
                call,
                now,
                Some(msg),
                source,
                route,
                reason,
                details,
                Vec::new(),
            );
            if let CallEvent::Started { refused, .. } = &mut ev {
                *refused = true;
            }
            self.events.push_back(ev);
            self.events.push_back(CallEvent::Finished {
                call,
                at: now,
                status: 503,
                outcome: "refused",
            });
        }
        self.stats.rejected += 1;
        metrics::counter!(m::REQUESTS_REJECTED, "status" => "503").increment(1);
        let held = self.sources.held(source.peer.ip());
        if let Some(refused) = warn_due {
            warn!(
                emergency_calls_refused = refused,
                call_id = %lossy(msg.call_id()),
                peer = %source.peer,
                reason = why.as_str(),
                held_by_peer = held,
                open_transactions = self.txns.len(),
                "overload: emergency calls refused with 503 so the carrier tries another router (count since the last such line; the latest named)"
            );
        } else {
            debug!(call_id = %lossy(msg.call_id()), peer = %source.peer, class = class.as_str(), reason = why.as_str(), held_by_peer = held, "overload: request refused");
        }
        let retry = self.admission.limits().retry_after;
        let mut digits = [0u8; 20];
        let extra: &[(&str, &[u8])] = if retry == 0 {
            &[]
        } else {
            &[(
                "Retry-After",
                text::write_decimal(retry.into(), &mut digits),
            )]
        };
        self.answer_statelessly(msg, source, 503, "Overloaded", extra);
    }

    /// Answers a request from a source not allowed `403`, statelessly.
    pub(super) fn refuse_stranger(&mut self, now: Instant, msg: &Message, source: Source) {
        self.stats.rejected += 1;
        metrics::counter!(m::REQUESTS_REJECTED, "status" => "403").increment(1);
        const REASON: &str = "Source Not Allowed";
        if let Some(refused) = self.strangers.hit(now) {
            info!(refused, call_id = %lossy(msg.call_id()), code = 403, reason = REASON, peer = %source.peer, "request refused (count since the last such line; the latest named)");
        } else {
            debug!(call_id = %lossy(msg.call_id()), code = 403, reason = REASON, peer = %source.peer, "request refused");
        }
        if self.stranger_budget.take(now) {
            self.answer_statelessly(msg, source, 403, REASON, &[]);
        } else {
            metrics::counter!(m::STRANGERS_UNANSWERED).increment(1);
        }
    }

    /// Sends `bytes` back to where `source`'s message came from, outside
    /// any transaction.
    pub(super) fn send_back(&mut self, source: &Source, bytes: Bytes) {
        self.out.push_back(Transmit {
            dest: Dest::reply_to(source),
            bytes,
            token: None,
        });
    }

    /// A final response sent without a transaction: a retransmission of the
    /// request gets the same answer, To tag included.
    pub(super) fn answer_statelessly(
        &mut self,
        msg: &Message,
        source: Source,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        let tag = self.stateless_tag(msg);
        // Hex digits after an ASCII prefix, so always UTF-8.
        let tag = std::str::from_utf8(&tag).unwrap_or_default();
        let bytes = build::response(msg, Some(source.peer), code, reason, Some(tag), extra, None);
        self.send_back(&source, bytes);
    }

    pub(super) fn respond(
        &mut self,
        now: Instant,
        server: Id,
        req: &Message,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        let (tag, peer) = match self.txns.get(&server) {
            Some(
                Txn::ServerInvite { to_tag, source, .. }
                | Txn::ServerNonInvite { to_tag, source, .. },
            ) => {
                let mut tag = Branch::new();
                push_hex(&mut tag, *to_tag, 16);
                (tag, source.peer)
            }
            _ => return,
        };
        // Hex digits only, so always UTF-8.
        let tag = std::str::from_utf8(&tag).unwrap_or_default();
        let bytes = build::response(req, Some(peer), code, reason, Some(tag), extra, None);
        match self.txns.get_mut(&server) {
            Some(Txn::ServerInvite { m, .. }) => {
                let _ = m.send_response(now, code, bytes);
            }
            Some(Txn::ServerNonInvite { m, .. }) => {
                let _ = m.send_response(now, code, bytes);
            }
            _ => {}
        }
        self.pump(now, server);
    }
}
