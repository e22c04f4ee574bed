//! Phase 2 for the caller's CANCEL: answered at once, and the call's
//! current target cancelled in turn (once it has sent a provisional
//! response, RFC 3261 section 9.1), or the call ended with 487 when nothing
//! rang yet.

use std::time::Instant;

use smallvec::SmallVec;
use tracing::{info, warn};

use super::txn::{parse_sent, server_key, Txn};
use super::{lossy, Core, Id, Source, TimerRef};
use crate::sip::{build, Message};

impl Core {
    pub(super) fn on_cancel(&mut self, now: Instant, msg: Message, source: Source, loop_hash: u64) {
        let key = server_key(&msg, None);
        let id = self.new_server(now, key, &msg, source, loop_hash);
        let invite_key = server_key(&msg, Some(b"INVITE"));
        let invite = self.server_index.get(&invite_key).copied();
        let call = invite.and_then(|i| match self.txns.get(&i) {
            Some(Txn::ServerInvite { call, .. }) => *call,
            _ => None,
        });
        if invite.is_none() {
            self.respond(now, id, &msg, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        }
        self.respond(now, id, &msg, 200, "OK", &[]);
        let Some(call_id) = call else { return };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.finished || call.cancelled {
            return;
        }
        call.cancelled = true;
        info!(call_id = %lossy(msg.call_id()), "cancelled by the caller");
        let current = call.current;
        let guard = now + self.cfg.timers.t1 * 64;
        self.timers.push(guard, TimerRef::CancelGuard(call_id));
        let mut answered_upstream_now = true;
        if let Some(client) = current {
            if let Some(Txn::ClientInvite { provisional, .. }) = self.txns.get(&client) {
                if *provisional {
                    // The target will answer the INVITE with 487, which goes
                    // upstream like any final response.
                    self.send_cancel(now, client);
                    answered_upstream_now = false;
                } else if let Some(Txn::ClientInvite { abandoned, .. }) = self.txns.get_mut(&client)
                {
                    // Nothing came back yet: a CANCEL may not be sent before a
                    // provisional response; it goes when one arrives.
                    *abandoned = true;
                }
            }
        }
        if answered_upstream_now {
            self.finish_with_own(now, call_id, 487, "Request Terminated");
        }
    }

    pub(super) fn send_cancel(&mut self, now: Instant, client: Id) {
        let Some(Txn::ClientInvite {
            request,
            dest,
            cancel_sent,
            ..
        }) = self.txns.get_mut(&client)
        else {
            return;
        };
        // A final response has come (its request freed): nothing to cancel.
        if *cancel_sent || request.is_empty() {
            return;
        }
        *cancel_sent = true;
        let Some(invite) = parse_sent(request) else {
            warn!("the INVITE as sent does not parse; no CANCEL");
            return;
        };
        let bytes = build::cancel_for(&invite);
        let branch: SmallVec<[u8; 64]> = invite
            .top_via()
            .and_then(|v| v.branch())
            .map(SmallVec::from_slice)
            .unwrap_or_default();
        let dest = dest.clone();
        self.new_client_non_invite(now, None, dest, bytes, b"CANCEL", &branch);
    }
}
