//! Phase 2, route, for a request within a dialog, or any other whose Route
//! set goes beyond the router: it follows its Route headers (loose routing,
//! RFC 3261 section 16.4), in a transaction of its own; the ACK of a 2xx
//! goes on without one. A dialog the router answered is remembered for
//! requests that come back addressed to the router with no route set.

use core::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;
use tracing::info;

use super::answer::OPTIONS_ANSWER;
use super::branch::{stateless_branch, Branch, STATELESS_TAG};
use super::call::Call;
use super::naptr::{naptr_host, Parked};
use super::txn::Txn;
use super::{lossy, uri_target, Augment, CallEvent, Core, Dest, Id, Proto, Source, Transmit};
use crate::metrics as m;
use crate::sip::edit::Editor;
use crate::sip::{text, HeaderName, Message, Method, Span, Uri};
use crate::transaction::TransactionKey;

/// The next hop of a request along its Route set.
enum Hop {
    Ready(Bytes, Dest, Branch),
    /// The next hop's transport is for its host's NAPTR records to say,
    /// and they have not yet been read.
    Wait(String),
    /// None: no Route value or Request-URI to follow, and no dialog.
    Nowhere,
}

/// The two ends of an answered call.
pub(super) struct Dialog {
    pub(super) caller: SocketAddr,
    pub(super) caller_dest: Dest,
    pub(super) callee: Dest,
    /// Forgotten after this without a BYE.
    pub(super) expires: Instant,
}

/// How often forgotten dialogs are swept (one timer for all of them).
pub(super) const DIALOG_SWEEP: Duration = Duration::from_secs(60);

/// How long a dialog is remembered without a BYE.
pub(super) const DIALOG_TTL: Duration = Duration::from_secs(4 * 3600);

impl Core {
    /// A request within a dialog, or one whose Route set goes beyond the
    /// router: it follows its Route headers, in a transaction.
    pub(super) fn on_routed_request(
        &mut self,
        now: Instant,
        key: TransactionKey,
        msg: Message,
        source: Source,
        loop_hash: u64,
    ) {
        let id = self.new_server(now, key, &msg, source, loop_hash);
        if let Some((code, reason)) = self.check_request(&msg, loop_hash) {
            self.stats.rejected += 1;
            metrics::counter!(m::REQUESTS_REJECTED, "status" => code.to_string()).increment(1);
            info!(call_id = %lossy(msg.call_id()), code, reason, peer = %source.peer, "request refused");
            self.respond(now, id, &msg, code, reason, &[]);
            return;
        }
        // Requests within a dialog are held to the whole grammar.
        if let Some(fault) = msg.fault() {
            let reason = fault.reason();
            self.stats.rejected += 1;
            metrics::counter!(m::REQUESTS_REJECTED, "status" => "400").increment(1);
            info!(call_id = %lossy(msg.call_id()), code = 400, reason = %reason, peer = %source.peer, "request refused");
            self.respond(now, id, &msg, 400, &reason, &[]);
            return;
        }
        if msg.method() == Method::Invite {
            self.respond(now, id, &msg, 100, "Trying", &[]);
        }
        if msg.method() == Method::Options && self.is_for_us(&msg) {
            self.respond(now, id, &msg, 200, "OK", OPTIONS_ANSWER);
            return;
        }
        self.forward_by_route(now, id, msg, source, loop_hash);
    }

    /// In-dialog requests, and requests carrying a route set: the next hop
    /// is the next Route value, else the Request-URI.
    pub(super) fn forward_by_route(
        &mut self,
        now: Instant,
        server: Id,
        msg: Message,
        source: Source,
        loop_hash: u64,
    ) {
        let hop = match self.build_route_hop(&msg, &source, loop_hash, true) {
            Hop::Wait(host) => {
                let parked = Parked::Request {
                    server,
                    msg,
                    source,
                    loop_hash,
                };
                return self.park_for_naptr(now, host, parked);
            }
            Hop::Ready(bytes, dest, branch) => Some((bytes, dest, branch)),
            Hop::Nowhere => None,
        };
        if msg.method() == Method::Bye {
            if let Some(cid) = msg.call_id() {
                self.dialogs.remove(cid);
                self.events.push_back(CallEvent::Ended {
                    call_id: String::from_utf8_lossy(cid).into_owned(),
                    at: now,
                });
            }
        }
        let Some((bytes, dest, branch)) = hop else {
            info!(
                call_id = %lossy(msg.call_id()),
                method = %String::from_utf8_lossy(msg.method_bytes()),
                request_uri = %String::from_utf8_lossy(msg.request_uri_bytes()),
                routes = msg.list(HeaderName::Route).count(),
                "no next hop for an in-dialog request"
            );
            self.respond(now, server, &msg, 404, "No Next Hop", &[]);
            return;
        };
        if msg.method() == Method::Invite {
            // A re-INVITE: one target, no failover.
            let call = self.id();
            self.insert_call(
                call,
                Call::new(
                    server,
                    msg.clone(),
                    loop_hash,
                    source,
                    Vec::new(),
                    Augment::default(),
                    false,
                    now,
                ),
            );
            if let Some(Txn::ServerInvite { call: c, .. }) = self.txns.get_mut(&server) {
                *c = Some(call);
            }
            let id = self.new_client_invite(
                now,
                call,
                dest,
                bytes,
                &branch,
                String::new(),
                String::new(),
            );
            if let Some(c) = self.calls.get_mut(&call) {
                c.current = Some(id);
            }
            self.pump(now, id);
        } else {
            self.new_client_non_invite(now, Some(server), dest, bytes, msg.method_bytes(), &branch);
        }
    }

    /// The request for the next hop along the Route set (loose routing;
    /// a strict-routing previous hop is undone first, RFC 3261 16.4).
    /// `stateful`: a branch of its own; else the branch is the same for
    /// every retransmission.
    fn build_route_hop(
        &mut self,
        msg: &Message,
        source: &Source,
        loop_hash: u64,
        stateful: bool,
    ) -> Hop {
        let mut e = Editor::new(msg);
        self.stamp_received(msg, source, &mut e);
        let routes = route_values(msg);
        let mut remaining: &[(Span, &[u8])] = &routes;
        let mut request_uri: Option<&[u8]> = None;
        let ruri_is_us = msg
            .request_uri()
            .is_some_and(|u| u.user.is_none() && self.is_us(&u));
        if ruri_is_us && !routes.is_empty() {
            // Strict routing upstream: the real Request-URI is the last Route.
            let Some(&(span, last)) = routes.last() else {
                return Hop::Nowhere;
            };
            e.set_request_uri(Bytes::copy_from_slice(last));
            e.replace_span(span, Bytes::new());
            request_uri = Some(last);
            remaining = &routes[..routes.len() - 1];
        }
        // Our own Route values at the top: one, or the pair of a dialog
        // whose legs use different transports. The second of a pair is the
        // one the far leg reaches us by: its transport is the far leg's.
        let mut far_leg = None;
        let ours = remaining
            .iter()
            .take(2)
            .map_while(|&(_, r)| Uri::parse(r).ok().filter(|u| self.is_us(u)))
            .map(|u| uri_proto(&u))
            .collect::<SmallVec<[Proto; 2]>>();
        if !ours.is_empty() {
            e.remove_top_routes(ours.len());
            remaining = &remaining[ours.len()..];
            if ours.len() == 2 {
                far_leg = Some(ours[1]);
            }
        }
        let next_uri: &[u8] = match remaining.first() {
            Some(&(_, u)) => u,
            None => request_uri.unwrap_or_else(|| msg.request_uri_bytes()),
        };
        let Ok(uri) = Uri::parse(next_uri) else {
            return Hop::Nowhere;
        };
        let (proto, target) = if uri.is_sip() && !self.is_us(&uri) {
            let target = uri_target(&uri);
            let proto = match (uri.param("transport").flatten(), far_leg) {
                (None, Some(p)) => p,
                // RFC 3263 section 4.1: a host alone, and its NAPTR
                // records say.
                _ => match naptr_host(&uri, &target) {
                    Some(host) => match self.naptr.get(&host) {
                        Some(p) => p,
                        None if self.naptr.has_room() => return Hop::Wait(host),
                        None => Proto::Udp,
                    },
                    None => uri_proto(&uri),
                },
            };
            (proto, target)
        } else {
            // Addressed to us with nothing beyond: the other end of the
            // dialog this request belongs to.
            let Some(d) = msg.call_id().and_then(|c| self.dialogs.get(c)) else {
                return Hop::Nowhere;
            };
            let dest = if d.caller == source.peer {
                d.callee.clone()
            } else {
                d.caller_dest.clone()
            };
            (dest.proto, dest.target)
        };
        e.set_max_forwards(msg.max_forwards().map_or(70, |m| m.saturating_sub(1)));
        let branch = if stateful {
            self.new_branch(loop_hash)
        } else {
            stateless_branch(msg, loop_hash)
        };
        e.prepend_via(&self.wire.via(proto, &branch));
        Hop::Ready(
            e.build(),
            Dest {
                proto,
                target,
                conn: None,
            },
            branch,
        )
    }

    /// The ACK for a 2xx travels end to end: forwarded without a
    /// transaction, along its Route set.
    pub(super) fn forward_ack(
        &mut self,
        now: Instant,
        msg: Message,
        source: Source,
        loop_hash: u64,
    ) {
        if !self.source_allowed(&source) || msg.max_forwards() == Some(0) {
            return;
        }
        // The ACK of a response the router sent without a transaction ends
        // here.
        let to_tag = msg.to().and_then(|t| t.tag()).unwrap_or_default();
        if to_tag.starts_with(STATELESS_TAG) && to_tag == &self.stateless_tag(&msg)[..] {
            return;
        }
        self.ack_by_route(now, msg, source, loop_hash);
    }

    /// Sends an ACK on along its Route set (or parks it until its next
    /// hop's transport is known).
    pub(super) fn ack_by_route(
        &mut self,
        now: Instant,
        msg: Message,
        source: Source,
        loop_hash: u64,
    ) {
        match self.build_route_hop(&msg, &source, loop_hash, false) {
            Hop::Ready(bytes, dest, _) => self.out.push_back(Transmit {
                dest,
                bytes,
                token: None,
            }),
            Hop::Wait(host) => {
                let parked = Parked::Ack {
                    msg,
                    source,
                    loop_hash,
                };
                self.park_for_naptr(now, host, parked);
            }
            Hop::Nowhere => {}
        }
    }
}

/// The span of the first element of a list header.
/// Every Route value: its span when it is alone on its line (so it can be
/// removed), and its URI.
fn route_values(msg: &Message) -> SmallVec<[(Span, &[u8]); 4]> {
    let mut out = SmallVec::new();
    for h in msg.all(HeaderName::Route) {
        let value = msg.value(h);
        let mut items = text::split_commas(value).peekable();
        let mut first = true;
        while let Some(item) = items.next() {
            // A header line holding a single value: removable as a whole.
            let alone = first && items.peek().is_none();
            first = false;
            let Some(na) = crate::sip::NameAddr::parse(item) else {
                continue;
            };
            let span = if alone { h.line } else { Span::default() };
            out.push((span, na.uri_text));
        }
    }
    out
}

fn uri_proto(uri: &Uri<'_>) -> Proto {
    if super::uri_wants_tls(uri) {
        return Proto::Tls;
    }
    match uri.param("transport").flatten() {
        Some(t) if t.eq_ignore_ascii_case(b"tcp") => Proto::Tcp,
        _ => Proto::Udp,
    }
}
