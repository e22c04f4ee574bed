//! Phase 2, route, for a new request (no To tag, no Route set beyond the
//! router): the [`Router`](super::Router) decides, and the core refuses the
//! request without a transaction or opens one and, for an INVITE, a call
//! that walks the targets decided.

use std::time::Instant;

use tracing::{info, warn};

use super::answer::OPTIONS_ANSWER;
use super::call::{started, Call};
use super::txn::Txn;
use super::{lossy, Core, Decision, LostAnswer, RouteContext, Source, Trunk};
use crate::config::TrunkKind;
use crate::metrics as m;
use crate::sip::{text, HeaderName, Message, Method};
use crate::transaction::TransactionKey;

impl Core {
    /// A new request (no To tag, no Route set beyond the router): checked,
    /// decided by the routing phase, then refused or answered statelessly,
    /// or routed in a new server transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_new_request(
        &mut self,
        now: Instant,
        key: TransactionKey,
        msg: Message,
        source: Source,
        loop_hash: u64,
        decided: Option<Decision>,
        mut warnings: Vec<String>,
        dereferenced: Option<&[u8]>,
    ) {
        let method = msg.method();
        if let Some((code, reason)) = self.check_request(&msg, loop_hash) {
            // Not held to the budget: such a request may be an emergency
            // call, and its carrier must learn at once to try elsewhere.
            self.stats.rejected += 1;
            metrics::counter!(m::REQUESTS_REJECTED, "status" => code.to_string()).increment(1);
            info!(call_id = %lossy(msg.call_id()), code, reason, peer = %source.peer, "request refused");
            return self.answer_statelessly(&msg, source, code, reason, &[]);
        }
        if method == Method::Options && self.is_for_us(&msg) {
            return self.refuse(now, &msg, source, 200, "OK", OPTIONS_ANSWER);
        }
        let decision = decided.unwrap_or_else(|| self.decide(now, &msg, &source, dereferenced));
        // A fault in what the router passes on: an emergency call is routed
        // all the same, anything else is refused.
        if let Some(fault) = msg.fault() {
            if !matches!(
                decision,
                Decision::Route {
                    emergency: true,
                    ..
                }
            ) {
                let reason = fault.reason();
                return self.refuse(now, &msg, source, 400, &reason, &[]);
            }
            warn!(call_id = %lossy(msg.call_id()), fault = %fault.reason(), peer = %source.peer, "emergency call with a malformed header: routed anyway");
            metrics::counter!(m::EMERGENCY_FAULTS_FORGIVEN, "kind" => fault.kind()).increment(1);
            warnings.push(format!("malformed header passed on: {}", fault.reason()));
        }
        let (targets, augment, emergency, route, reason, details) = match decision {
            Decision::Reject { status, reason } => {
                return self.refuse(now, &msg, source, status, reason, &[]);
            }
            Decision::Route {
                targets,
                augment,
                emergency,
                route,
                reason,
                details,
            } => (targets, augment, emergency, route, reason, details),
        };
        // Only calls (INVITE) and texts (MESSAGE, RFC 8876) to an emergency
        // number go to the emergency trunks. The router answers anything
        // else itself: a scanner or a misconfigured phone must neither load
        // a PSAP nor learn its trunks.
        if emergency && !matches!(method, Method::Invite | Method::Message) {
            let (code, reason, extra): (u16, &str, &[(&str, &[u8])]) = match method {
                Method::Options => (200, "OK", OPTIONS_ANSWER),
                Method::Bye | Method::Info | Method::Update | Method::Prack => {
                    (481, "Call/Transaction Does Not Exist", &[])
                }
                _ => (405, "Method Not Allowed", &OPTIONS_ANSWER[..1]),
            };
            return self.refuse(now, &msg, source, code, reason, extra);
        }
        if let Some(unsupported) = self.unsupported_option_tags(&msg) {
            if !emergency {
                let extra = [("Unsupported", unsupported.as_bytes())];
                return self.refuse(now, &msg, source, 420, "Bad Extension", &extra);
            }
            warn!(call_id = %lossy(msg.call_id()), tags = %text::Printable(unsupported.as_bytes()), "emergency call with unsupported Proxy-Require tags: routed anyway");
            warnings.push(format!(
                "unsupported Proxy-Require: {}",
                text::Printable(unsupported.as_bytes())
            ));
        }
        // The router's own additions never make a request too large
        // for the next hop to take: past that, the registered
        // address travels in the record only, not in the INVITE.
        let mut augment = augment;
        let added = augment.body_part.as_ref().map_or(0, |(h, b)| {
            b.len() + h.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>() + 128
        });
        if added > 0 && msg.as_bytes().len() + added + ADDITIONS_MARGIN > MAX_FORWARDED {
            augment.body_part = None;
            // ... and the Geolocation value that would have pointed at it.
            augment
                .headers_first
                .retain(|(name, _)| *name != HeaderName::Geolocation);
            metrics::counter!(m::ADDITIONS_SKIPPED).increment(1);
            warn!(call_id = %lossy(msg.call_id()), size = msg.as_bytes().len(), added, "request too large to add the registered address to: forwarded without it");
            warnings.push(format!(
                "registered address not added: the request ({} bytes) would pass {MAX_FORWARDED} bytes",
                msg.as_bytes().len()
            ));
        }
        let id = self.new_server(now, key, &msg, source, loop_hash);
        if method == Method::Invite {
            self.respond(now, id, &msg, 100, "Trying", &[]);
        }
        info!(call_id = %lossy(msg.call_id()), route, reason, targets = targets.len(), "routing");
        let targets = self.order_by_health(targets, msg.call_id());
        if method == Method::Invite {
            let call = self.id();
            self.insert_call(
                call,
                Call::new(id, msg, loop_hash, source, targets, augment, emergency, now),
            );
            if let Some(Txn::ServerInvite { call: c, .. }) = self.txns.get_mut(&id) {
                *c = Some(call);
            }
            if let Some(c) = self.calls.get_mut(&call) {
                c.span = tracing::info_span!("call", call_id = %lossy(Some(&c.call_id[..])), route, reason);
            }
            if emergency {
                let (country, loc_source) = details
                    .as_ref()
                    .map(|d| (d.country.as_deref().unwrap_or_default(), d.location_source))
                    .unwrap_or_default();
                self.metrics
                    .emergency_call(country, route, reason, loc_source);
                let req = self.calls[&call].request.as_deref();
                let ev = started(call, now, req, source, route, reason, details, warnings);
                self.events.push_back(ev);
            }
            self.try_next(now, call);
        } else {
            // Non-INVITE requests go to the first target, without failover.
            let target = targets.first().and_then(|t| {
                let ti = self.cfg.trunk_index(&t.trunk)?;
                Some((t, &self.cfg.trunks[ti], ti))
            });
            match target {
                Some((t, trunk, ti)) => {
                    let fwd = self.build_forward(
                        &msg,
                        loop_hash,
                        &source,
                        Some(t),
                        (trunk, Some(ti)),
                        &augment,
                        false,
                        emergency,
                        now,
                    );
                    let client = self.new_client_non_invite(
                        now,
                        Some(id),
                        fwd.dest,
                        fwd.bytes,
                        msg.method_bytes(),
                        &fwd.branch,
                    );
                    self.set_size_switch(client, fwd.size_switch);
                }
                None => self.respond(now, id, &msg, 503, "No Route", &[]),
            }
        }
    }

    /// The routing phase for an initial request, with the location
    /// document fetched by reference for it, if any.
    pub(super) fn decide(
        &mut self,
        now: Instant,
        msg: &Message,
        source: &Source,
        dereferenced: Option<&[u8]>,
    ) -> Decision {
        self.decisions += 1;
        let lost = self.lost_answer.take();
        let ctx = RouteContext {
            source,
            inbound_trunk: super::inbound_trunk(&self.cfg, &self.identified, source)
                .map(|t| t.name.as_str()),
            dereferenced,
            lost: lost.as_ref().map(|a| match a {
                Ok(body) => LostAnswer::Body(body),
                Err(why) => LostAnswer::Failed(*why),
            }),
            wall: self.wall_at(now),
            unique: u128::from(self.cfg.seed) << 64 | u128::from(self.decisions),
        };
        let d = self.router.route(msg, &ctx);
        self.send_lost_refreshes(now);
        d
    }

    fn unsupported_option_tags(&self, msg: &Message) -> Option<String> {
        let tags: Vec<String> = msg
            .list(HeaderName::ProxyRequire)
            .filter(|t| !t.eq_ignore_ascii_case(b"geolocation") && !t.is_empty())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect();
        (!tags.is_empty()).then(|| tags.join(", "))
    }
}

/// The inbound trunk whose sources hold the request's source address.
pub(super) fn inbound_trunk<'a>(cfg: &'a super::CoreConfig, source: &Source) -> Option<&'a Trunk> {
    let ip = source.peer.ip();
    cfg.trunks.iter().find(|t| {
        t.kind == TrunkKind::Inbound
            && !t.by_certificate
            && t.sources.iter().any(|n| n.contains(&ip))
    })
}

/// The largest request the router forwards with additions of its own: what
/// one UDP datagram can carry (65,507 bytes over IPv4), and under the
/// 65,536 bytes that SIP stacks (this one included) take at most.
const MAX_FORWARDED: usize = 65_000;

/// Room kept for the router's Via, Record-Route, Call-Info entries and a
/// Max-Forwards rewrite.
const ADDITIONS_MARGIN: usize = 1_024;
