//! Phase 1: receive and validate.
//!
//! A retransmission or an ACK goes to its transaction; a stranger's request
//! is answered 403 without one; the overload limits and the drain apply
//! before anything is held. Then a new request goes to the routing phase
//! (`new_request.rs`) and any other follows its Route set (`in_dialog.rs`).
//! Both apply `check_request` (RFC 3261 section 16.3) and the tests here
//! of whether a URI names the router.

use core::net::IpAddr;
use std::time::Instant;

use tracing::{info, warn};

use super::branch::{branch_prefix, loop_hash};
use super::txn::{server_key, Txn};
use super::{lossy, overload, Core, Decision, Load, OverloadLimits, Source};
use crate::metrics as m;
use crate::sip::{HeaderName, Message, Method, Scheme, Uri};
use crate::transaction::TransactionKey;

impl Core {
    /// A request from the network.
    pub(super) fn on_request(&mut self, now: Instant, msg: Message, source: Source) {
        let key = server_key(&msg, None);
        if let Some(&id) = self.server_index.get(&key) {
            match self.txns.get_mut(&id) {
                Some(Txn::ServerInvite { m, .. }) if msg.method() == Method::Ack => m.on_ack(now),
                Some(Txn::ServerInvite { m, .. }) => m.on_request(),
                Some(Txn::ServerNonInvite { m, .. }) => m.on_request(),
                _ => {}
            }
            self.pump(now, id);
            return;
        }
        // A source not allowed holds nothing: its requests are answered 403
        // without a transaction, so that a stranger's flood can neither fill
        // the transaction table (and push the router into refusing
        // emergency calls) nor cancel a call; its ACKs are dropped.
        if !self.source_allowed(&source) {
            if msg.method() != Method::Ack {
                self.refuse_stranger(now, &msg, source);
            }
            return;
        }
        // An INVITE whose location is to be fetched first waits in the
        // location phase, and so do its retransmissions and its CANCEL.
        let Some((msg, source)) = self.take_for_location(now, msg, source, &key) else {
            return;
        };
        self.on_located(now, key, msg, source, None);
    }

    /// A request from an allowed source, past the location phase;
    /// `dereferenced`: the location document fetched by reference for it,
    /// if any.
    pub(super) fn on_located(
        &mut self,
        now: Instant,
        key: TransactionKey,
        msg: Message,
        source: Source,
        dereferenced: Option<&[u8]>,
    ) {
        let method = msg.method();
        // Requests that pass the overload limits (CANCEL, requests within a
        // dialog or routed on by their Route headers) stop at the ceiling,
        // so that memory stays bounded even when those are the flood. New
        // requests are refused below, long before it.
        if method != Method::Ack
            && self.txns.len() >= self.cfg.overload.ceiling
            && (method == Method::Cancel
                || msg.to().and_then(|t| t.tag()).is_some()
                || self.routes_beyond_us(&msg) > 0)
        {
            let why = (overload::Class::InDialog, overload::Refusal::Ceiling);
            self.refuse_for_overload(now, &msg, source, why, None);
            return;
        }
        let loop_hash = loop_hash(&msg);
        match method {
            Method::Ack => return self.forward_ack(now, msg, source, loop_hash),
            Method::Cancel => return self.on_cancel(now, msg, source, loop_hash),
            _ => {}
        }
        let initial = msg.to().and_then(|t| t.tag()).is_none();
        // In-dialog requests and requests with a route set beyond us follow
        // their Route headers.
        let mut more_routes = self.routes_beyond_us(&msg) > 0;
        let mut decided = None;
        let mut warnings = Vec::new();
        // The emergency decision alone chooses where a new emergency call
        // goes: a Route set preloaded by the sender would let anyone allowed
        // to send relay 911 calls anywhere through the router. It is
        // removed when the call is forwarded.
        if initial && more_routes && matches!(method, Method::Invite | Method::Message) {
            let d = self.decide(now, &msg, &source, dereferenced);
            if matches!(
                d,
                Decision::Route {
                    emergency: true,
                    ..
                }
            ) {
                more_routes = false;
                metrics::counter!(m::EMERGENCY_ROUTES_REMOVED).increment(1);
                warn!(call_id = %lossy(msg.call_id()), peer = %source.peer, routes = %lossy(msg.get(HeaderName::Route)), "emergency call with a preloaded Route: removed, the emergency decision picks the next hop");
                warnings.push(format!(
                    "preloaded Route removed: {}",
                    lossy(msg.get(HeaderName::Route))
                ));
            }
            decided = Some(d);
        }
        // Past the overload limits, a new request is refused before it
        // holds any state: without a transaction, its retransmissions get
        // the same answer and the ACK is absorbed by its To tag.
        if initial && !more_routes {
            let load = self.admission.update(self.txns.len());
            if load != Load::Normal {
                let class = if method == Method::Invite {
                    let d = decided
                        .take()
                        .unwrap_or_else(|| self.decide(now, &msg, &source, dereferenced));
                    let class = admission_class(&d);
                    decided = Some(d);
                    class
                } else {
                    Some(overload::Class::Other)
                };
                let over_share = || self.sources.over_share(source.peer.ip());
                if let Some((class, why)) = class.and_then(|c| {
                    OverloadLimits::admit(load, c, c == overload::Class::Emergency && over_share())
                        .map(|why| (c, why))
                }) {
                    self.refuse_for_overload(now, &msg, source, (class, why), decided.take());
                    return;
                }
            }
        } else if self.admission.update(self.txns.len()) != Load::Normal && !self.knows_call(&msg) {
            // Past the shedding point, a request within a dialog or routed on
            // by its Route set passes only when it belongs to a call the
            // router relays: nothing but emergency calls and their dialogs
            // may hold the room kept for them.
            let why = (overload::Class::InDialog, overload::Refusal::Reserved);
            self.refuse_for_overload(now, &msg, source, why, None);
            return;
        }
        // Shutting down: a new call is refused without a transaction, which
        // would only hold up the drain.
        if self.draining && initial && method == Method::Invite {
            info!(call_id = %lossy(msg.call_id()), "shutting down: call refused so the carrier tries another router");
            self.answer_statelessly(&msg, source, 503, "Shutting Down", &[("Retry-After", b"0")]);
            return;
        }
        // A new request the routing phase decides: every refusal is
        // answered without a transaction, so that a flood of what the
        // router refuses holds no state; only what it routes opens one.
        if initial && !more_routes {
            return self.on_new_request(
                now,
                key,
                msg,
                source,
                loop_hash,
                decided,
                warnings,
                dereferenced,
            );
        }
        self.on_routed_request(now, key, msg, source, loop_hash);
    }

    /// RFC 3261 section 16.3 and the router's own checks. `None`: go on.
    pub(super) fn check_request(
        &self,
        msg: &Message,
        loop_hash: u64,
    ) -> Option<(u16, &'static str)> {
        let uri = msg.request_uri()?;
        if matches!(uri.scheme, Scheme::Other) {
            return Some((416, "Unsupported URI Scheme"));
        }
        if msg.max_forwards() == Some(0)
            && !(msg.method() == Method::Options && self.is_for_us(msg))
        {
            return Some((483, "Too Many Hops"));
        }
        if self.is_loop(msg, loop_hash) {
            return Some((482, "Loop Detected"));
        }
        None
    }

    /// Whether a URI names this router.
    pub(super) fn is_us(&self, uri: &Uri<'_>) -> bool {
        if !uri.is_sip() {
            return false;
        }
        let port = uri.port.unwrap_or(5060);
        let host = uri.host;
        if host.eq_ignore_ascii_case(self.cfg.host.as_bytes())
            && (port == self.cfg.port || Some(port) == self.cfg.tls_port)
        {
            return true;
        }
        // A name of the router's: with no port (a health check by FQDN, or
        // DNS would pick the port), or with one the router listens on.
        let named = |name: &String| {
            host.eq_ignore_ascii_case(name.as_bytes())
                && (uri.port.is_none()
                    || port == self.cfg.port
                    || self.cfg.local.iter().any(|a| a.port() == port))
        };
        self.cfg.aliases.iter().any(named) || self.is_our_address(host, Some(port))
    }

    /// A request addressed to the router itself: one of its addresses or
    /// names, with or without a user part (a carrier's health check may
    /// send `OPTIONS sip:ping@router.example.net`).
    /// An address of the router's with no port counts too (a health check
    /// to `sip:192.0.2.5` reached it, whatever port it listens on); in a
    /// Route header it does not, since a peer on the same host may be
    /// meant.
    pub(super) fn is_for_us(&self, msg: &Message) -> bool {
        msg.request_uri().is_some_and(|u| {
            self.is_us(&u) || (u.is_sip() && u.port.is_none() && self.is_our_address(u.host, None))
        })
    }

    /// Whether `host` is an IP address the router listens on, at `port`
    /// (`None`: at any of its ports).
    fn is_our_address(&self, host: &[u8], port: Option<u16>) -> bool {
        let bare = String::from_utf8_lossy(host);
        let bare = bare.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok_and(|ip| {
            self.cfg.local.iter().any(|a| {
                port.is_none_or(|p| a.port() == p)
                    && (a.ip() == ip || (a.ip().is_unspecified() && ip.is_loopback()))
            })
        })
    }

    /// How many Route values remain after removing ours at the top.
    fn routes_beyond_us(&self, msg: &Message) -> usize {
        let mut routes = msg.name_addrs(HeaderName::Route).flatten().peekable();
        let mut n = 0;
        // Ours: one value, or the pair of a dialog across transports.
        for _ in 0..2 {
            if routes
                .peek()
                .and_then(|r| r.uri())
                .is_some_and(|u| self.is_us(&u))
            {
                routes.next();
            }
        }
        for _ in routes {
            n += 1;
        }
        n
    }

    /// Loop detection (RFC 3261 section 16.3 item 4): one of our own Via
    /// values carries the branch prefix this very request would get.
    fn is_loop(&self, msg: &Message, loop_hash: u64) -> bool {
        let prefix = branch_prefix(loop_hash);
        msg.vias().flatten().any(|v| {
            v.branch().is_some_and(|b| b.starts_with(&prefix))
                && v.host.eq_ignore_ascii_case(self.cfg.host.as_bytes())
                && v.port.unwrap_or(5060) == self.cfg.port
        })
    }
}

/// How a routing decision is admitted under overload; `None` for a
/// request the router refuses anyway (it gets its own answer).
fn admission_class(d: &Decision) -> Option<overload::Class> {
    match d {
        Decision::Reject { .. } => None,
        Decision::Route {
            emergency: true,
            route: "test",
            ..
        } => Some(overload::Class::Test),
        Decision::Route {
            emergency: true, ..
        } => Some(overload::Class::Emergency),
        Decision::Route { .. } => Some(overload::Class::Other),
    }
}
