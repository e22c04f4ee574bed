//! Trunk health as the core keeps it: an OPTIONS probe to each outbound
//! trunk every interval, its answer or silence recorded
//! ([`TrunkHealth`](super::TrunkHealth)), the state exported as gauges, and
//! the targets of a down trunk tried last.

use std::time::Instant;

use bytes::Bytes;
use tracing::{info, warn};

use super::{
    host_text, lossy, Core, Dest, Id, ProbeResult, RouteTarget, Target, TimerRef, TrunkHealth,
    TrunkState,
};
use crate::config::TrunkKind;
use crate::metrics as m;

impl Core {
    /// Puts targets whose trunk is down behind the others, keeping the
    /// order within each group: a down trunk is still tried, last.
    pub(super) fn order_by_health(
        &self,
        targets: Vec<RouteTarget>,
        call_id: Option<&[u8]>,
    ) -> Vec<RouteTarget> {
        if !targets.iter().any(|t| self.trunk_is_down(&t.trunk)) {
            return targets;
        }
        let (up, down): (Vec<_>, Vec<_>) = targets
            .into_iter()
            .partition(|t| !self.trunk_is_down(&t.trunk));
        info!(call_id = %lossy(call_id), skipped = %down.iter().map(|t| t.trunk.as_str()).collect::<Vec<_>>().join(","), "trunks down: tried last");
        up.into_iter().chain(down).collect()
    }

    fn trunk_is_down(&self, name: &str) -> bool {
        self.cfg
            .trunks
            .iter()
            .position(|t| t.name == name)
            .and_then(|i| self.health[i].as_ref())
            .is_some_and(TrunkHealth::is_down)
    }

    pub(super) fn send_probe(&mut self, now: Instant, i: usize) {
        let Some(trunk) = self.cfg.trunks.get(i) else {
            return;
        };
        let Some(target) = trunk.target.clone() else {
            return;
        };
        self.probe_seq += 1;
        let n = self.probe_seq;
        let host = &self.cfg.host;
        let port = match trunk.proto {
            crate::wire::Proto::Tls => self.cfg.tls_port.unwrap_or(self.cfg.port),
            _ => self.cfg.port,
        };
        let uri = match &target {
            Target::Addr(a) => format!("sip:{}:{}", host_text(a.ip()), a.port()),
            Target::Host(h, 0) | Target::HostAlt(h, 0, _) => format!("sip:{h}"),
            Target::Host(h, p) | Target::HostAlt(h, p, _) => format!("sip:{h}:{p}"),
        };
        let proto = trunk.proto;
        let branch = format!("z9hG4bKsosprobe{:x}.{n:x}", self.cfg.seed & 0xffff_ffff);
        let req = format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/{} {host}:{port};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:sosrouter@{host}:{port}>;tag=probe{n:x}\r\nTo: <{uri}>\r\nCall-ID: probe-{n:x}-{:x}@{host}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n",
            proto.as_str(),
            self.cfg.seed & 0xffff_ffff,
        );
        let dest = Dest {
            proto,
            target,
            conn: None,
        };
        let id = self.new_client_non_invite(
            now,
            None,
            dest,
            Bytes::from(req),
            b"OPTIONS",
            branch.as_bytes(),
        );
        self.probes.insert(id, (i, now));
        self.timers
            .push(now + self.cfg.health.timeout, TimerRef::ProbeTimeout(id));
        self.timers
            .push(now + self.cfg.health.interval, TimerRef::Probe(i));
    }

    pub(super) fn probe_result(&mut self, now: Instant, probe: Id, result: ProbeResult) {
        let Some((i, _)) = self.probes.remove(&probe) else {
            return;
        };
        let cfg = self.cfg.health;
        let Some(h) = self.health.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if let Some(t) = h.record(now, result, &cfg) {
            let level_down = t.to == TrunkState::Down;
            if level_down {
                warn!(trunk = %t.trunk, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "trunk state changed");
            } else {
                info!(trunk = %t.trunk, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "trunk state changed");
            }
            metrics::counter!(m::TRUNK_TRANSITIONS, "trunk" => t.trunk.clone(), "to" => t.to.as_str()).increment(1);
        }
        publish_health(h, now);
        self.health_changed = true;
    }
}

pub(super) fn trunk_kind(k: TrunkKind) -> &'static str {
    match k {
        TrunkKind::Inbound => "inbound",
        TrunkKind::Psap => "psap",
        TrunkKind::Screening => "screening",
        TrunkKind::Test => "test",
        TrunkKind::LastResort => "last-resort",
        TrunkKind::Outbound => "outbound",
    }
}

/// Exports one trunk's health as gauges.
pub(super) fn publish_health(h: &TrunkHealth, now: Instant) {
    let (trunk, kind) = (h.trunk.clone(), h.kind.clone());
    let refused = h.tcp_refused_until.is_some_and(|u| u > now);
    metrics::gauge!(m::TRUNK_TCP_REFUSED, "trunk" => trunk.clone()).set(if refused {
        1.0
    } else {
        0.0
    });
    metrics::gauge!(m::TRUNK_UP, "trunk" => trunk.clone(), "kind" => kind.clone())
        .set(if h.state == TrunkState::Up { 1.0 } else { 0.0 });
    for st in [TrunkState::Up, TrunkState::Down, TrunkState::Probing] {
        metrics::gauge!(m::TRUNK_STATE, "trunk" => trunk.clone(), "kind" => kind.clone(), "state" => st.as_str())
            .set(if h.state == st { 1.0 } else { 0.0 });
    }
    if let Some(ms) = h.last_latency_ms {
        metrics::gauge!(m::TRUNK_PROBE_LATENCY, "trunk" => trunk).set(ms / 1000.0);
    }
}
