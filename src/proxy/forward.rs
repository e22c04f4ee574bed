//! Phase 3: forward. A call goes to its targets one at a time, each in a
//! client transaction of its own (`try_next`); the request for one hop is
//! the caller's with the router's edits (RFC 3261 section 16.6). A request
//! too large for a UDP trunk goes over TCP, and over UDP again when the
//! trunk refuses TCP.

use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;
use tracing::{info, warn};

use super::branch::Branch;
use super::probes::publish_health;
use super::txn::Txn;
use super::{
    lossy, Augment, Core, CoreConfig, Dest, Id, Proto, RouteTarget, Source, Target, TimerRef, Trunk,
};
use crate::metrics as m;
use crate::sip::edit::Editor;
use crate::sip::{HeaderName, Message};

/// The Via prefixes (up to the branch value) and the Record-Route values.
///
/// When the caller's leg and the trunk's use the same transport, one
/// Record-Route serves both and names no transport (UDP by default, TCP for
/// a large request; the router listens on both), or names TLS and the TLS
/// listener's port when both legs are over TLS. When they differ, the
/// router adds two (RFC 5658): the top one, which the trunk's side reaches,
/// names the trunk's transport, and the one below, which the caller's side
/// reaches, names the caller's. Each side then sends in-dialog requests
/// over its own transport, and the router sends them on over the other's.
pub(super) struct WireText {
    via_udp: Vec<u8>,
    via_tcp: Vec<u8>,
    via_tls: Vec<u8>,
    record_route: Vec<u8>,
    record_route_tcp: Vec<u8>,
    record_route_tls: Vec<u8>,
}

impl WireText {
    pub(super) fn new(cfg: &CoreConfig) -> WireText {
        let via = |p: Proto, port: u16| {
            format!("SIP/2.0/{} {}:{port};branch=", p.as_str(), cfg.host).into_bytes()
        };
        // A leg over TLS reaches the router on its TLS listener.
        let tls_port = cfg.tls_port.unwrap_or(cfg.port);
        WireText {
            via_udp: via(Proto::Udp, cfg.port),
            via_tcp: via(Proto::Tcp, cfg.port),
            via_tls: via(Proto::Tls, tls_port),
            record_route: format!("<sip:{}:{};lr>", cfg.host, cfg.port).into_bytes(),
            record_route_tcp: format!("<sip:{}:{};transport=tcp;lr>", cfg.host, cfg.port)
                .into_bytes(),
            record_route_tls: format!("<sip:{}:{tls_port};transport=tls;lr>", cfg.host)
                .into_bytes(),
        }
    }

    /// The Record-Route value a leg over `proto` reaches the router by.
    fn record_route(&self, proto: Proto) -> &[u8] {
        match proto {
            Proto::Udp => &self.record_route,
            Proto::Tcp => &self.record_route_tcp,
            Proto::Tls => &self.record_route_tls,
        }
    }

    /// The value of the Via the router adds.
    pub(super) fn via(&self, proto: Proto, branch: &[u8]) -> SmallVec<[u8; 128]> {
        let prefix = match proto {
            Proto::Udp => &self.via_udp,
            Proto::Tcp => &self.via_tcp,
            Proto::Tls => &self.via_tls,
        };
        let mut v = SmallVec::with_capacity(prefix.len() + branch.len());
        v.extend_from_slice(prefix);
        v.extend_from_slice(branch);
        v
    }
}

/// A request built for one hop.
pub(super) struct Forward {
    pub(super) bytes: Bytes,
    pub(super) dest: Dest,
    pub(super) branch: Branch,
    /// The trunk's index, when the request goes over TCP only because of
    /// its size (the trunk is a UDP trunk).
    pub(super) size_switch: Option<usize>,
}

/// How long a trunk that refused TCP for a large request gets its
/// requests over UDP before TCP is tried again.
const TCP_REFUSED_FOR: Duration = Duration::from_secs(600);

impl Core {
    /// Sends the call to its next target, or answers upstream when none is
    /// left.
    pub(super) fn try_next(&mut self, now: Instant, call_id: Id) {
        let _span = self.call_span(call_id).entered();
        loop {
            let Some(call) = self.calls.get(&call_id) else {
                return;
            };
            if call.cancelled || call.finished {
                return;
            }
            // The next target of the name tried last, if it has one (RFC
            // 3263: each SRV target is a failover step of its own).
            let more = call.attempt.and_then(|(t, alt)| {
                let trunk = self
                    .cfg
                    .trunk_index(&call.targets.get(t)?.trunk)
                    .map(|i| &self.cfg.trunks[i])?;
                (alt + 1 < self.hop_count(trunk.target.as_ref())).then_some((t, alt + 1))
            });
            let Some(call) = self.calls.get_mut(&call_id) else {
                return;
            };
            let (t, alt) = match more {
                Some(next) => next,
                None if call.next >= call.targets.len() => {
                    self.finish_failed(now, call_id);
                    return;
                }
                None => {
                    call.next += 1;
                    (call.next - 1, 0)
                }
            };
            call.attempt = Some((t, alt));
            let call = &self.calls[&call_id];
            let target = &call.targets[t];
            let Some(ti) = self.cfg.trunk_index(&target.trunk) else {
                warn!(trunk = %target.trunk, "route names an unknown trunk; skipped");
                continue;
            };
            let trunk = &self.cfg.trunks[ti];
            if trunk.target.is_none() {
                continue;
            }
            let Some(request) = call.request.as_deref() else {
                return;
            };
            let mut fwd = self.build_forward(
                request,
                call.loop_hash,
                &call.source,
                Some(target),
                (trunk, Some(ti)),
                &call.augment,
                true,
                call.emergency,
                now,
            );
            if let (Target::Host(h, p), true) = (&fwd.dest.target, alt > 0) {
                fwd.dest.target = Target::HostAlt(h.clone(), *p, alt);
            }
            let proto = fwd.dest.proto;
            let (trunk_name, label) = (trunk.name.clone(), target.label.clone());
            let id = self.new_client_invite(
                now,
                call_id,
                fwd.dest,
                fwd.bytes,
                &fwd.branch,
                trunk_name,
                label,
            );
            self.set_size_switch(id, fwd.size_switch);
            let Some(call) = self.calls.get_mut(&call_id) else {
                return;
            };
            call.current = Some(id);
            self.timers.push(
                now + self.cfg.no_answer,
                TimerRef::NoAnswer {
                    call: call_id,
                    client: id,
                },
            );
            let call = &self.calls[&call_id];
            let target = &call.targets[t];
            self.metrics.hop(ti, &target.trunk);
            info!(call_id = %lossy(Some(&call.call_id[..])), trunk = %target.trunk, target = %target.label, transport = proto.as_str(), hop = alt, "forwarding");
            self.pump(now, id);
            return;
        }
    }

    /// Builds the request for one hop (RFC 3261 section 16.6).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build_forward(
        &self,
        req: &Message,
        loop_hash: u64,
        source: &Source,
        target: Option<&RouteTarget>,
        (trunk, trunk_index): (&Trunk, Option<usize>),
        augment: &Augment,
        record_route: bool,
        emergency: bool,
        now: Instant,
    ) -> Forward {
        let mut e = Editor::new(req);
        self.stamp_received(req, source, &mut e);
        if emergency {
            // The emergency decision alone picks the next hop: the router's
            // own Route entries and any preloaded one go.
            e.remove_header(HeaderName::Route);
        } else if req
            .name_addrs(HeaderName::Route)
            .next()
            .flatten()
            .and_then(|r| r.uri())
            .is_some_and(|u| self.is_us(&u))
        {
            e.remove_top_route();
        }
        if let Some(route) = target.and_then(|t| t.route.as_deref()) {
            e.add_header_first(HeaderName::Route, format!("<{route};lr>").as_bytes());
        }
        e.set_max_forwards(req.max_forwards().map_or(70, |m| m.saturating_sub(1)));
        if record_route {
            // The trunk's transport as configured: a large INVITE sent over
            // TCP to a UDP trunk leaves the dialog on UDP.
            if source.proto == trunk.proto && source.proto != Proto::Tls {
                e.add_record_route(&self.wire.record_route);
            } else if source.proto == trunk.proto {
                // Both legs over TLS: one entry, which names TLS and the
                // TLS listener's port.
                e.add_record_route(self.wire.record_route(Proto::Tls));
            } else {
                e.add_record_route(self.wire.record_route(trunk.proto));
                e.add_record_route(self.wire.record_route(source.proto));
            }
        }
        for (name, value) in &augment.headers {
            e.add_header(name.as_str(), value);
        }
        for (name, value) in &augment.headers_first {
            e.add_header_first(*name, value);
        }
        if let Some((headers, content)) = &augment.body_part {
            let hs: SmallVec<[(&str, &str); 4]> = headers
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            e.add_body_part(&hs, content);
        }
        let branch = self.new_branch(loop_hash);
        let via = self.wire.via(trunk.proto, &branch);
        e.prepend_via(&via);
        let mut bytes = e.build();
        // RFC 3261 section 18.1.1: a request larger than the path can take
        // in one datagram goes over TCP, unless the trunk is known to refuse
        // TCP (then UDP it is, whatever the size). The size is the real one:
        // the Via's transport is the only thing that changes.
        let mut proto = trunk.proto;
        let mut size_switch = None;
        if proto == Proto::Udp
            && trunk.tcp_fallback
            && bytes.len() > self.cfg.udp_max_request
            && !self.tcp_refused(trunk_index, now)
        {
            proto = Proto::Tcp;
            bytes = with_top_via_transport(bytes, Proto::Tcp);
            size_switch = trunk_index;
        }
        Forward {
            bytes,
            dest: Dest {
                proto,
                target: trunk.target.clone().unwrap_or(Target::Addr(source.peer)),
                conn: None,
            },
            branch,
            size_switch,
        }
    }

    /// Whether the trunk at `index` is remembered to refuse TCP.
    pub(super) fn tcp_refused(&self, index: Option<usize>, now: Instant) -> bool {
        index
            .and_then(|i| self.health.get(i))
            .and_then(Option::as_ref)
            .and_then(|h| h.tcp_refused_until)
            .is_some_and(|u| u > now)
    }

    /// A request switched to TCP for its size could not be sent: the trunk
    /// may well speak UDP only (RFC 3261 section 18.1.1). It goes over UDP
    /// at once, in the same client transaction, and the trunk is
    /// remembered to refuse TCP for a while. Whether that was the case.
    pub(super) fn fall_back_to_udp(&mut self, now: Instant, id: Id) -> bool {
        let trunk = match self.txns.get_mut(&id) {
            Some(Txn::ClientInvite {
                m,
                dest,
                request,
                size_switch: Some(ti),
                ..
            }) if dest.proto == Proto::Tcp => {
                let udp = with_top_via_transport(request.clone(), Proto::Udp);
                if !m.fall_back_to_udp(now, udp.clone()) {
                    return false;
                }
                dest.proto = Proto::Udp;
                *request = udp;
                *ti
            }
            Some(Txn::ClientNonInvite {
                m,
                dest,
                size_switch: Some(ti),
                ..
            }) if dest.proto == Proto::Tcp => {
                let udp = with_top_via_transport(m.request().clone(), Proto::Udp);
                if !m.fall_back_to_udp(now, udp) {
                    return false;
                }
                dest.proto = Proto::Udp;
                *ti
            }
            _ => return false,
        };
        let name = self
            .cfg
            .trunks
            .get(trunk)
            .map(|t| t.name.clone())
            .unwrap_or_default();
        metrics::counter!(m::TRUNK_UDP_FALLBACKS, "trunk" => name.clone()).increment(1);
        if let Some(h) = self.health.get_mut(trunk).and_then(Option::as_mut) {
            let known = h.tcp_refused_until.is_some_and(|u| u > now);
            h.tcp_refused_until = Some(now + TCP_REFUSED_FOR);
            if !known {
                warn!(trunk = %name, for_s = TCP_REFUSED_FOR.as_secs(), "trunk refused TCP for a large request: sent over UDP, and its requests go over UDP for a while");
            }
            publish_health(h, now);
        }
        self.health_changed = true;
        true
    }

    /// Notes that a client transaction's request goes over TCP only for its
    /// size, to the trunk at index `trunk`.
    pub(super) fn set_size_switch(&mut self, id: Id, trunk: Option<usize>) {
        if let Some(
            Txn::ClientInvite { size_switch, .. } | Txn::ClientNonInvite { size_switch, .. },
        ) = self.txns.get_mut(&id)
        {
            *size_switch = trunk;
        }
    }

    /// RFC 3261 section 18.2.1 and RFC 3581: note where the request really
    /// came from in its top Via.
    pub(super) fn stamp_received(&self, req: &Message, source: &Source, e: &mut Editor<'_>) {
        if let Some((span, value)) = crate::sip::edit::received_via(req, source.peer) {
            e.replace_span(span, value);
        }
    }
}

/// A request the router built, with the transport of its top Via (the
/// router's own, above every other: `Editor::prepend_via` puts it there)
/// set to `to`. UDP and TCP are the same length, so only those three bytes
/// change, in place when nobody else holds the buffer (a request just
/// built), else in a copy (one a transaction kept).
fn with_top_via_transport(bytes: Bytes, to: Proto) -> Bytes {
    const VIA: &[u8] = b"\nVia: SIP/2.0/";
    let Some(at) = memchr::memmem::find(&bytes, VIA).map(|i| i + VIA.len()) else {
        return bytes;
    };
    let mut out = bytes
        .try_into_mut()
        .unwrap_or_else(|shared| bytes::BytesMut::from(&shared[..]));
    if let Some(name) = out.get_mut(at..at + 3) {
        name.copy_from_slice(match to {
            Proto::Udp => b"UDP",
            Proto::Tcp => b"TCP",
            Proto::Tls => b"TLS",
        });
    }
    out.freeze()
}
