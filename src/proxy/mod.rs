//! The stateful proxy core (RFC 3261 sections 16 and 17), sans-IO.
//!
//! The core takes parsed messages, send failures and the time as inputs and
//! hands back what to send ([`Core::poll_transmit`]) and when to be called
//! again ([`Core::next_deadline`]). It never touches a socket or reads the
//! clock, so tests drive it with plain values and a simulated clock.
//!
//! The phases of a request, each in one place:
//! 1. match: a retransmission or an ACK goes to its transaction
//!    ([`Core::on_request`]);
//! 2. validate: source (a stranger's request is answered 403 without a
//!    transaction), Max-Forwards, loops, scheme ([`Core::check_request`]);
//! 3. route: in-dialog requests follow their Route set, initial ones ask
//!    the [`Router`] for an ordered list of targets;
//! 4. forward: one client transaction per target ([`Core::try_next`]);
//! 5. on failure: a failover code, a timeout, a transport error or the
//!    no-answer timer move the call to the next target
//!    ([`Core::on_client_invite_event`]);
//! 6. respond: the best response goes upstream through the server
//!    transaction.

pub mod allow;
mod answer;
mod branch;
mod call;
mod cancel;
pub mod events;
pub mod health;
mod in_dialog;
mod new_request;
pub mod overload;
mod receive;
pub mod route;
#[cfg(test)]
mod tests;
mod txn;
mod wheel;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipnet::IpNet;
use smallvec::SmallVec;
use tracing::{debug, info, warn};

use crate::config::{Config, TransportName, TrunkKind};
use crate::metrics as m;
use crate::sip::edit::Editor;
use crate::sip::{build, text, HeaderName, Message, Method, Uri};
use crate::transaction::{ClientInviteEvent, ClientNonInviteEvent, TimerConfig, TransactionKey};
use answer::OPTIONS_ANSWER;
use branch::{branch_prefix, loop_hash, push_hex, stateless_branch, Branch, STATELESS_TAG};
use call::{started, Call};
use in_dialog::{Dialog, DIALOG_SWEEP, DIALOG_TTL};
use txn::{parse_sent, server_key, Txn};
use wheel::Wheel;

pub use events::{CallEvent, CallKey};
pub use health::{HealthConfig, ProbeResult, TrunkHealth, TrunkState};
pub use overload::{Load, OverloadLimits};
pub use route::{
    Augment, Decision, LocationRecord, RouteContext, RouteDetails, RouteTarget, Router,
    StaticRouter,
};
pub use wire::{ConnId, Dest, Proto, Source, Target, Transmit};

/// A trunk as the core sees it.
#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    pub kind: TrunkKind,
    /// Where requests to it go (outbound kinds).
    pub target: Option<Target>,
    pub proto: Proto,
    pub tcp_fallback: bool,
    /// Inbound trunks: the networks it sends from.
    pub sources: Vec<IpNet>,
}

/// What the core needs from the configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Host and port written into Via and Record-Route.
    pub host: String,
    pub port: u16,
    /// Other host names of the router (`sip.aliases`), lower case.
    pub aliases: Vec<String>,
    /// Every local address the router listens on (to recognize itself in
    /// Request-URIs and Route headers).
    pub local: Vec<SocketAddr>,
    pub timers: TimerConfig,
    pub no_answer: Duration,
    /// How long a target may ring before the next one is tried (zero: no
    /// limit).
    pub ring_timeout: Duration,
    pub failover_codes: Vec<u16>,
    /// Who may send (`sip.allow`, trunks' sources and addresses).
    pub allowed: Arc<allow::AllowList>,
    pub trunks: Vec<Trunk>,
    pub udp_max_request: usize,
    /// Makes this instance's branches unique.
    pub seed: u64,
    pub health: HealthConfig,
    pub overload: OverloadLimits,
    /// `sip.stranger_replies_per_s`.
    pub stranger_replies_per_s: u32,
    /// `sip.answers_per_source_per_s`.
    pub answers_per_source_per_s: u32,
}

impl CoreConfig {
    pub fn from_config(c: &Config, local: Vec<SocketAddr>, seed: u64) -> CoreConfig {
        let first = local
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        let (host, port) = match &c.sip.advertise {
            Some(a) => split_host_port(a).unwrap_or((first.ip().to_string(), first.port())),
            None => (host_text(first.ip()), first.port()),
        };
        let trunks: Vec<Trunk> = c
            .trunks
            .iter()
            .map(|t| {
                let target = t.uri.as_deref().and_then(|u| {
                    let uri = Uri::parse(u.as_bytes()).ok()?;
                    Some(uri_target(&uri))
                });
                Trunk {
                    name: t.name.clone(),
                    kind: t.kind,
                    target,
                    proto: match t.transport {
                        TransportName::Udp => Proto::Udp,
                        TransportName::Tcp => Proto::Tcp,
                    },
                    tcp_fallback: t.tcp_fallback,
                    sources: t.sources.clone(),
                }
            })
            .collect();
        CoreConfig {
            host,
            port,
            aliases: c
                .sip
                .aliases
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            local,
            timers: TimerConfig::new(
                Duration::from_millis(c.sip.timers.t1_ms),
                Duration::from_millis(c.sip.timers.t2_ms),
                Duration::from_millis(c.sip.timers.t4_ms),
            ),
            no_answer: c.sip.timers.no_answer(),
            ring_timeout: Duration::from_millis(c.sip.timers.ring_timeout_ms),
            failover_codes: c.routing.failover_codes.clone(),
            allowed: Arc::new(allow::AllowList::new(&c.sip.allow, &trunks)),
            trunks,
            udp_max_request: c.sip.udp_max_request,
            seed,
            health: HealthConfig {
                interval: Duration::from_secs(c.health.interval_s),
                timeout: Duration::from_millis(c.health.timeout_ms),
                down_after: c.health.down_after.max(1),
                up_after: c.health.up_after.max(1),
            },
            overload: OverloadLimits::new(&c.sip.overload),
            stranger_replies_per_s: c.sip.stranger_replies_per_s,
            answers_per_source_per_s: c.sip.answers_per_source_per_s,
        }
    }

    fn trunk_index(&self, name: &str) -> Option<usize> {
        self.trunks.iter().position(|t| t.name == name)
    }
}

fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    Some((h.to_string(), p.parse().ok()?))
}

/// The address a URI names: an IP literal as is, a name for the transport
/// layer to resolve. Port 5060 when none is given.
fn uri_target(uri: &Uri<'_>) -> Target {
    let host = String::from_utf8_lossy(uri.host);
    let port = uri.port.unwrap_or(5060);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Target::Addr(SocketAddr::new(ip, port)),
        Err(_) => Target::Host(host.into_owned(), port),
    }
}

type Id = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerRef {
    Txn(Id),
    NoAnswer {
        call: Id,
        client: Id,
    },
    /// The target has rung too long without a final response.
    RingTimeout {
        call: Id,
        client: Id,
    },
    CancelGuard(Id),
    /// Forget the dialogs that have expired.
    DialogSweep,
    /// Time to probe this trunk (index in the config).
    Probe(usize),
    /// A probe's answer is due.
    ProbeTimeout(Id),
}

/// Counters the core keeps for tests and the status page.
#[derive(Debug, Default, Clone, Copy)]
pub struct CoreStats {
    pub calls_answered: u64,
    pub calls_failed: u64,
    pub calls_cancelled: u64,
    pub failovers: u64,
    pub rejected: u64,
}

/// The proxy core.
pub struct Core {
    cfg: CoreConfig,
    router: Arc<dyn Router>,
    txns: IdMap<Txn>,
    server_index: KeyMap<TransactionKey, Id>,
    client_index: KeyMap<TransactionKey, Id>,
    calls: IdMap<Call>,
    timers: Wheel<TimerRef>,
    out: VecDeque<Transmit>,
    next_id: Id,
    /// The response being handled, for the event handlers.
    response: Option<Message>,
    stats: CoreStats,
    branch_counter: std::cell::Cell<u64>,
    /// Answered calls by Call-ID, for in-dialog requests that arrive
    /// addressed to the router with no route set (clients that ignore
    /// Record-Route).
    dialogs: KeyMap<Bytes, Dialog>,
    /// Calls in progress by Call-ID (how many: a re-INVITE is a call too).
    live_calls: KeyMap<Bytes, u32>,
    /// Health of each outbound trunk, by its index in `cfg.trunks`.
    health: Vec<Option<TrunkHealth>>,
    /// Probes in flight: client transaction id to (trunk index, sent at).
    probes: IdMap<(usize, Instant)>,
    probe_seq: u64,
    /// Shutting down: new calls are refused with 503 so the carrier tries
    /// another router; calls in progress finish.
    draining: bool,
    /// A trunk's health changed since the driver last asked.
    health_changed: bool,
    /// Refuses new calls when the transactions open reach the limits.
    admission: overload::Admission,
    /// Server transactions open by source address, to share the reserve.
    sources: overload::Sources,
    /// When to log requests refused for their source.
    strangers: crate::logbuf::Throttle,
    /// When to log responses dropped for want of the caller's Via.
    stripped_vias: crate::logbuf::Throttle,
    /// The response being handled lacks the Vias below the router's.
    response_unrelayable: bool,
    /// How many of those requests may still be answered.
    stranger_budget: allow::ReplyBudget,
    /// Answers to allowed sources for requests routed nowhere.
    answer_budgets: allow::SourceBudgets,
    /// Refusals of allowed sources' requests, for throttled log lines.
    refusals: crate::logbuf::Throttle,
    events: VecDeque<CallEvent>,
    /// The fetched location document of the request being routed.
    dereferenced: Option<Bytes>,
    /// Text every forwarded request carries, written once per configuration.
    wire: WireText,
    metrics: CoreMetrics,
}

/// The core's own ids are sequential and never come from the network: one
/// multiplication spreads them over a hash table (the default hasher is
/// made for keys an attacker chooses, and costs more).
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<Id, V, BuildHasherDefault<IdHasher>>;

/// Tables keyed by what the network sends (branches, Call-IDs): foldhash
/// with a seed drawn at start-up, so keys cannot be chosen to collide, at
/// a fraction of the default hasher's cost per byte.
type KeyMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The Via prefixes (up to the branch value) and the Record-Route values.
///
/// When the caller's leg and the trunk's use the same transport, one
/// Record-Route serves both and names no transport (UDP by default, TCP for
/// a large request; the router listens on both). When they differ, the
/// router adds two (RFC 5658): the top one, which the trunk's side reaches,
/// names the trunk's transport, and the one below, which the caller's side
/// reaches, names the caller's. Each side then sends in-dialog requests
/// over its own transport, and the router sends them on over the other's.
struct WireText {
    via_udp: Vec<u8>,
    via_tcp: Vec<u8>,
    record_route: Vec<u8>,
    record_route_tcp: Vec<u8>,
}

impl WireText {
    fn new(cfg: &CoreConfig) -> WireText {
        let via = |p: Proto| {
            format!("SIP/2.0/{} {}:{};branch=", p.as_str(), cfg.host, cfg.port).into_bytes()
        };
        WireText {
            via_udp: via(Proto::Udp),
            via_tcp: via(Proto::Tcp),
            record_route: format!("<sip:{}:{};lr>", cfg.host, cfg.port).into_bytes(),
            record_route_tcp: format!("<sip:{}:{};transport=tcp;lr>", cfg.host, cfg.port)
                .into_bytes(),
        }
    }

    /// The Record-Route value a leg over `proto` reaches the router by.
    fn record_route(&self, proto: Proto) -> &[u8] {
        match proto {
            Proto::Udp => &self.record_route,
            Proto::Tcp => &self.record_route_tcp,
        }
    }

    /// The value of the Via the router adds.
    fn via(&self, proto: Proto, branch: &[u8]) -> SmallVec<[u8; 128]> {
        let prefix = match proto {
            Proto::Udp => &self.via_udp,
            Proto::Tcp => &self.via_tcp,
        };
        let mut v = SmallVec::with_capacity(prefix.len() + branch.len());
        v.extend_from_slice(prefix);
        v.extend_from_slice(branch);
        v
    }
}

/// Handles of the counters the core bumps for every call, taken on first
/// use instead of looked up by name and labels each time.
/// Route, reason and location source of an emergency call.
type EmergencyLabels = (&'static str, &'static str, &'static str);

#[derive(Default)]
struct CoreMetrics {
    /// `HOPS` by trunk index in the configuration.
    hops: Vec<Option<metrics::Counter>>,
    answered: Option<metrics::Counter>,
    failed: Option<metrics::Counter>,
    cancelled: Option<metrics::Counter>,
    setup: Option<metrics::Histogram>,
    /// `EMERGENCY_CALLS` by route, reason and location source, then by
    /// country (a handful of each).
    emergency: KeyMap<EmergencyLabels, Vec<(Box<str>, metrics::Counter)>>,
}

impl CoreMetrics {
    fn hop(&mut self, trunk: usize, name: &str) {
        if self.hops.len() <= trunk {
            self.hops.resize(trunk + 1, None);
        }
        self.hops[trunk]
            .get_or_insert_with(|| metrics::counter!(m::HOPS, "trunk" => name.to_string()))
            .increment(1);
    }

    fn call_ended(&mut self, outcome: &'static str) {
        let slot = match outcome {
            "answered" => &mut self.answered,
            "cancelled" => &mut self.cancelled,
            _ => &mut self.failed,
        };
        slot.get_or_insert_with(|| metrics::counter!(m::CALLS, "outcome" => outcome))
            .increment(1);
    }

    fn emergency_call(
        &mut self,
        country: &str,
        route: &'static str,
        reason: &'static str,
        location_source: &'static str,
    ) {
        let by_country = self
            .emergency
            .entry((route, reason, location_source))
            .or_default();
        match by_country.iter().find(|(c, _)| &**c == country) {
            Some((_, counter)) => counter.increment(1),
            None => {
                let counter = metrics::counter!(m::EMERGENCY_CALLS, "country" => country.to_string(), "route" => route, "reason" => reason, "location_source" => location_source);
                counter.increment(1);
                by_country.push((country.into(), counter));
            }
        }
    }

    fn setup(&mut self, seconds: f64) {
        self.setup
            .get_or_insert_with(|| metrics::histogram!(m::CALL_SETUP))
            .record(seconds);
    }
}

impl Core {
    pub fn new(cfg: CoreConfig, router: Arc<dyn Router>) -> Core {
        let health = vec![None; cfg.trunks.len()];
        Core {
            health,
            probes: IdMap::default(),
            probe_seq: 0,
            draining: false,
            health_changed: false,
            admission: overload::Admission::new(cfg.overload),
            sources: overload::Sources::default(),
            strangers: crate::logbuf::Throttle::new(crate::logbuf::TELL_EVERY),
            stripped_vias: crate::logbuf::Throttle::new(crate::logbuf::TELL_EVERY),
            response_unrelayable: false,
            stranger_budget: allow::ReplyBudget::new(cfg.stranger_replies_per_s),
            answer_budgets: allow::SourceBudgets::new(cfg.answers_per_source_per_s, cfg.seed),
            refusals: crate::logbuf::Throttle::new(crate::logbuf::TELL_EVERY),
            events: VecDeque::new(),
            dereferenced: None,
            wire: WireText::new(&cfg),
            metrics: CoreMetrics::default(),
            cfg,
            router,
            txns: IdMap::default(),
            server_index: KeyMap::default(),
            client_index: KeyMap::default(),
            calls: IdMap::default(),
            timers: Wheel::new(Instant::now()),
            out: VecDeque::new(),
            next_id: 1,
            response: None,
            stats: CoreStats::default(),
            branch_counter: std::cell::Cell::new(0),
            dialogs: KeyMap::default(),
            live_calls: KeyMap::default(),
        }
    }

    /// Applies a new configuration and routing phase. Calls in progress
    /// keep the targets they were given; trunks keep their health when
    /// their name stays; new trunks start probing.
    /// Gives back the router it replaced, for the caller to drop where
    /// freeing it costs the driver nothing.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        cfg: CoreConfig,
        router: Arc<dyn Router>,
    ) -> Arc<dyn Router> {
        let old: HashMap<String, TrunkHealth> = self
            .health
            .drain(..)
            .flatten()
            .map(|h| (h.trunk.clone(), h))
            .collect();
        self.wire = WireText::new(&cfg);
        self.admission.set_limits(cfg.overload);
        self.stranger_budget.set_rate(cfg.stranger_replies_per_s);
        self.answer_budgets.set_rate(cfg.answers_per_source_per_s);
        // Trunk indices change with the configuration.
        self.metrics.hops.clear();
        self.cfg = cfg;
        let replaced = std::mem::replace(&mut self.router, router);
        self.health = vec![None; self.cfg.trunks.len()];
        // Probe timers of the old layout are dropped with their indices.
        self.timers.retain(|r| !matches!(r, TimerRef::Probe(_)));
        self.probes.clear();
        let mut fresh = Vec::new();
        for (i, t) in self.cfg.trunks.iter().enumerate() {
            if t.kind == TrunkKind::Inbound || t.target.is_none() {
                continue;
            }
            match old.get(&t.name) {
                Some(h) => self.health[i] = Some(h.clone()),
                None => fresh.push(i),
            }
        }
        let probing = !self.cfg.health.interval.is_zero();
        let probed: Vec<usize> = (0..self.cfg.trunks.len())
            .filter(|&i| self.health[i].is_some() || fresh.contains(&i))
            .collect();
        for (k, i) in probed.into_iter().enumerate() {
            if self.health[i].is_none() {
                let t = &self.cfg.trunks[i];
                self.health[i] = Some(TrunkHealth::new(&t.name, trunk_kind(t.kind), now, probing));
            }
            if probing {
                let at = now + Duration::from_millis(100 * k as u64);
                self.timers.push(at, TimerRef::Probe(i));
            }
        }
        replaced
    }

    /// Refuses new calls from now on (shutdown).
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// How full the core is, by its open transactions (noting a change in
    /// the log and the metrics).
    pub fn load(&mut self) -> Load {
        self.admission.update(self.txns.len())
    }

    /// Calls that have not had their final response yet.
    pub fn calls_in_progress(&self) -> usize {
        self.calls.values().filter(|c| !c.finished).count()
    }

    /// Starts the clock-driven work: trunk probes, spread over the first
    /// interval so they do not all leave at once.
    pub fn start(&mut self, now: Instant) {
        self.timers.push(now + DIALOG_SWEEP, TimerRef::DialogSweep);
        let probing = !self.cfg.health.interval.is_zero();
        let outbound: Vec<usize> = (0..self.cfg.trunks.len())
            .filter(|&i| {
                self.cfg.trunks[i].kind != TrunkKind::Inbound && self.cfg.trunks[i].target.is_some()
            })
            .collect();
        let n = outbound.len().max(1) as u32;
        for (k, &i) in outbound.iter().enumerate() {
            let t = &self.cfg.trunks[i];
            let h = TrunkHealth::new(&t.name, trunk_kind(t.kind), now, probing);
            publish_health(&h, now);
            self.health[i] = Some(h);
            if probing {
                let at = now + self.cfg.health.interval / n * k as u32;
                self.timers.push(at, TimerRef::Probe(i));
            }
        }
    }

    /// Every outbound trunk's health, with the age of its state.
    pub fn trunk_health(&self, now: Instant) -> Vec<TrunkHealth> {
        self.health
            .iter()
            .flatten()
            .map(|h| {
                let mut h = h.clone();
                h.since_s = now.saturating_duration_since(h.since).as_secs_f64();
                h.tcp_refused = h.tcp_refused_until.is_some_and(|u| u > now);
                h
            })
            .collect()
    }

    /// Puts targets whose trunk is down behind the others, keeping the
    /// order within each group: a down trunk is still tried, last.
    fn order_by_health(
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

    fn send_probe(&mut self, now: Instant, i: usize) {
        let Some(trunk) = self.cfg.trunks.get(i) else {
            return;
        };
        let Some(target) = trunk.target.clone() else {
            return;
        };
        self.probe_seq += 1;
        let n = self.probe_seq;
        let (host, port) = (&self.cfg.host, self.cfg.port);
        let uri = match &target {
            Target::Addr(a) => format!("sip:{}:{}", host_text(a.ip()), a.port()),
            Target::Host(h, p) => format!("sip:{h}:{p}"),
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

    fn probe_result(&mut self, now: Instant, probe: Id, result: ProbeResult) {
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

    /// Whether a trunk's health changed (a probe came back or went
    /// unanswered, a trunk refused TCP) since the last call.
    pub fn take_health_changed(&mut self) -> bool {
        std::mem::take(&mut self.health_changed)
    }

    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// Live transactions and calls, for tests and gauges.
    pub fn open(&self) -> (usize, usize) {
        (self.txns.len(), self.calls.len())
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    fn id(&mut self) -> Id {
        self.next_id += 1;
        self.next_id
    }

    // ----- inputs -----

    /// A parsed message from the network.
    pub fn handle_message(&mut self, now: Instant, msg: Message, source: Source) {
        self.handle_message_with(now, msg, source, None);
    }

    /// A request with a location document fetched by reference for it.
    pub fn handle_message_with(
        &mut self,
        now: Instant,
        msg: Message,
        source: Source,
        dereferenced: Option<Bytes>,
    ) {
        if msg.is_request() {
            self.dereferenced = dereferenced;
            self.on_request(now, msg, source);
            self.dereferenced = None;
        } else {
            self.on_response(now, msg, source);
        }
    }

    /// The transport layer could not send a message carrying `token`.
    pub fn handle_send_failure(&mut self, now: Instant, token: u64) {
        if self.fall_back_to_udp(now, token) {
            self.pump(now, token);
            return;
        }
        if let Some(t) = self.txns.get_mut(&token) {
            t.on_transport_error();
            self.pump(now, token);
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, r)) = self.timers.pop_due(now) {
            match r {
                TimerRef::Txn(id) => {
                    let Some(t) = self.txns.get_mut(&id) else {
                        continue;
                    };
                    if *t.armed() == Some(at) {
                        *t.armed() = None;
                    }
                    match t.next_deadline() {
                        Some(d) if d <= now => {
                            t.handle_timeout(now);
                            self.pump(now, id);
                        }
                        // Not due yet: the entry for its deadline now.
                        Some(d) => self.arm(id, d),
                        None => {}
                    }
                }
                TimerRef::NoAnswer { call, client } => self.on_no_answer(now, call, client),
                TimerRef::RingTimeout { call, client } => self.on_ring_timeout(now, call, client),
                TimerRef::Probe(i) => self.send_probe(now, i),
                TimerRef::ProbeTimeout(id) => self.probe_result(now, id, ProbeResult::TimedOut),
                TimerRef::DialogSweep => {
                    self.dialogs.retain(|_, d| d.expires > now);
                    self.timers.push(now + DIALOG_SWEEP, TimerRef::DialogSweep);
                }
                TimerRef::CancelGuard(call) => {
                    let pending = self.calls.get(&call).is_some_and(|c| !c.finished);
                    if pending {
                        self.finish_with_own(now, call, 487, "Request Terminated");
                    }
                }
            }
        }
    }

    // ----- requests -----

    /// Whether requests from `source` are taken at all (`sip.allow`, a
    /// trunk's `sources`, a trunk's own address).
    pub fn source_allowed(&self, source: &Source) -> bool {
        self.cfg.allowed.contains(source.peer.ip())
    }

    // ----- forwarding -----

    /// Sends the call to its next target, or answers upstream when none is
    /// left.
    fn try_next(&mut self, now: Instant, call_id: Id) {
        let _span = self.call_span(call_id).entered();
        loop {
            let Some(call) = self.calls.get_mut(&call_id) else {
                return;
            };
            if call.cancelled || call.finished {
                return;
            }
            if call.next >= call.targets.len() {
                self.finish_failed(now, call_id);
                return;
            }
            let t = call.next;
            call.next += 1;
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
            let fwd = self.build_forward(
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
            info!(call_id = %lossy(Some(&call.call_id[..])), trunk = %target.trunk, target = %target.label, transport = proto.as_str(), "forwarding");
            self.pump(now, id);
            return;
        }
    }

    /// Builds the request for one hop (RFC 3261 section 16.6).
    #[allow(clippy::too_many_arguments)]
    fn build_forward(
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
            if source.proto == trunk.proto {
                e.add_record_route(&self.wire.record_route);
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
            bytes = with_via_transport(bytes, &via, Proto::Tcp);
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
    fn tcp_refused(&self, index: Option<usize>, now: Instant) -> bool {
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
    fn fall_back_to_udp(&mut self, now: Instant, id: Id) -> bool {
        let trunk = match self.txns.get_mut(&id) {
            Some(Txn::ClientInvite {
                m,
                dest,
                request,
                size_switch: Some(ti),
                ..
            }) if dest.proto == Proto::Tcp => {
                let udp = with_via_udp(request.clone());
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
                let udp = with_via_udp(m.request().clone());
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
    fn set_size_switch(&mut self, id: Id, trunk: Option<usize>) {
        if let Some(
            Txn::ClientInvite { size_switch, .. } | Txn::ClientNonInvite { size_switch, .. },
        ) = self.txns.get_mut(&id)
        {
            *size_switch = trunk;
        }
    }

    /// RFC 3261 section 18.2.1 and RFC 3581: note where the request really
    /// came from in its top Via.
    fn stamp_received(&self, req: &Message, source: &Source, e: &mut Editor<'_>) {
        if let Some((span, value)) = crate::sip::edit::received_via(req, source.peer) {
            e.replace_span(span, value);
        }
    }

    // ----- responses -----

    fn on_response(&mut self, now: Instant, msg: Message, source: Source) {
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
        if relayed && msg.list(HeaderName::Via).nth(1).is_none() {
            metrics::counter!(m::PARSE_ERRORS, "transport" => source.proto.lower(), "kind" => "via-missing-upstream").increment(1);
            if let Some(dropped) = self.stripped_vias.hit(now) {
                warn!(dropped, status, call_id = %lossy(msg.call_id()), peer = %source.peer, "response carries only the router's Via, not the caller's: a 2xx goes upstream with the caller's Vias put back, any other is not relayed (count since the last such line; the latest named)");
            }
            self.response_unrelayable = true;
        }
        self.response = Some(msg);
        match self.txns.get_mut(&id) {
            Some(Txn::ClientInvite { m, .. }) => {
                let _ = m.on_response(now, status);
            }
            Some(Txn::ClientNonInvite { m, .. }) => {
                let _ = m.on_response(now, status);
            }
            _ => {}
        }
        self.pump(now, id);
        self.response = None;
        self.response_unrelayable = false;
    }

    /// A 2xx that came back with only the router's Via (a trunk that does
    /// not copy the Vias it received): the caller's Vias are put back from
    /// its request, so that the answer reaches the caller instead of
    /// leaving it retransmitting while the PSAP thinks the call is up.
    fn rebuilt_upstream(&mut self, call_id: Id) -> Option<(u16, Bytes)> {
        let r = self.response.as_ref()?;
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

    /// The response being handled, with our Via removed, for upstream.
    fn upstream_bytes(&self) -> Option<(u16, Bytes)> {
        if self.response_unrelayable {
            return None;
        }
        let r = self.response.as_ref()?;
        let mut e = Editor::new(r);
        e.remove_top_via();
        Some((r.status()?, e.build()))
    }

    fn on_client_invite_event(&mut self, now: Instant, id: Id, ev: ClientInviteEvent) {
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
                    if let Some((status, bytes)) = self.upstream_bytes() {
                        self.relay_upstream(now, call_id, status, bytes);
                    }
                }
            }
            ClientInviteEvent::Success { status } => {
                self.release_request(id);
                // Every 2xx goes upstream, even from a target given up on:
                // the caller acknowledges each and hangs up the extra ones.
                let upstream = self
                    .upstream_bytes()
                    .or_else(|| self.rebuilt_upstream(call_id));
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
                if let (Some(resp), Some(invite)) = (self.response.as_ref(), invite) {
                    let ack = build::ack_for(&invite, resp);
                    if let Some(Txn::ClientInvite { m, .. }) = self.txns.get_mut(&id) {
                        let _ = m.send_ack(ack);
                    }
                }
                self.release_request(id);
                if abandoned || !current {
                    return;
                }
                let bytes = self.upstream_bytes().map(|(_, b)| b);
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
    fn on_ring_timeout(&mut self, now: Instant, call_id: Id, client: Id) {
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

    fn on_no_answer(&mut self, now: Instant, call_id: Id, client: Id) {
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
    fn finish_failed(&mut self, now: Instant, call_id: Id) {
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
    fn finish_with_own(&mut self, now: Instant, call_id: Id, code: u16, reason: &str) {
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

    /// What the core reports about recorded calls, oldest first.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    fn relay_upstream(&mut self, now: Instant, call_id: Id, status: u16, bytes: Bytes) {
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

    fn on_client_non_invite_event(&mut self, now: Instant, id: Id, ev: ClientNonInviteEvent) {
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
        let (status, bytes) = match ev {
            ClientNonInviteEvent::Provisional { status } if status > 100 => {
                match self.upstream_bytes() {
                    Some(r) => r,
                    None => return,
                }
            }
            ClientNonInviteEvent::Provisional { .. } => return,
            ClientNonInviteEvent::Final { .. } => match self.upstream_bytes() {
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

    // ----- server transactions and responses of our own -----

    /// The answer the receive path built for a request that does not parse
    /// (400, 505 or 513): sent to an allowed source, and to a stranger
    /// within the same budget as its 403.
    pub fn answer_unparsed(&mut self, now: Instant, bytes: Bytes, source: &Source) {
        if self.source_allowed(source) || self.stranger_budget.take(now) {
            self.send_back(source, bytes);
        } else {
            metrics::counter!(m::STRANGERS_UNANSWERED).increment(1);
        }
    }

    /// Answers `500 Server Internal Error` to a request whose handling hit
    /// a bug (the driver caught the panic), from its server transaction:
    /// the transaction the request opened if there is one, else a new one,
    /// so that a retransmission of the request gets the 500 again when the
    /// first is lost. A call the request had started is finished with it.
    /// The carrier then sends the call to its other router.
    pub fn answer_internal_error(&mut self, now: Instant, req: &Message, source: Source) {
        if !req.is_request() || req.method() == Method::Ack {
            return;
        }
        let key = server_key(req, None);
        let id = match self.server_index.get(&key) {
            Some(&id) if self.txns.contains_key(&id) => id,
            _ if self.source_allowed(&source) => {
                self.new_server(now, key, req, source, loop_hash(req))
            }
            _ => return self.refuse_stranger(now, req, source),
        };
        if let Some(Txn::ServerInvite {
            call: Some(call), ..
        }) = self.txns.get(&id)
        {
            let call = *call;
            if self.calls.contains_key(&call) {
                self.stats.calls_failed += 1;
                self.metrics.call_ended("failed");
                return self.finish_with_own(now, call, 500, "Server Internal Error");
            }
        }
        self.respond(now, id, req, 500, "Server Internal Error", &[]);
    }

    /// `100 Trying` to an INVITE that waits outside the core (its location
    /// being fetched by reference), and to each retransmission of it
    /// meanwhile: the caller stops retransmitting and its own failover timer
    /// sees the router alive. No state is kept; the server transaction the
    /// INVITE opens later sends its own 100 as well, which is harmless.
    pub fn trying(&mut self, msg: &Message, source: &Source) {
        self.send_back(
            source,
            build::response(msg, Some(source.peer), 100, "Trying", None, &[], None),
        );
    }

    // ----- the pump: outputs, events, deadlines, clean-up -----
}

/// How long a trunk that refused TCP for a large request gets its
/// requests over UDP before TCP is tried again.
const TCP_REFUSED_FOR: Duration = Duration::from_secs(600);

/// A request built for one hop.
struct Forward {
    bytes: Bytes,
    dest: Dest,
    branch: Branch,
    /// The trunk's index, when the request goes over TCP only because of
    /// its size (the trunk is a UDP trunk).
    size_switch: Option<usize>,
}

/// `bytes` with the transport of the Via value `via` (the router's own,
/// which names UDP) set to `to`: the two are the same length, so only
/// those three bytes change.
fn with_via_transport(bytes: Bytes, via: &[u8], to: Proto) -> Bytes {
    let Some(at) = memchr::memmem::find(&bytes, via) else {
        return bytes;
    };
    let mut out = bytes::BytesMut::from(&bytes[..]);
    let name = match to {
        Proto::Udp => b"UDP",
        Proto::Tcp => b"TCP",
    };
    out[at + b"SIP/2.0/".len()..at + b"SIP/2.0/UDP".len()].copy_from_slice(name);
    out.freeze()
}

/// A request the router sent over TCP, with its top Via (the router's own)
/// naming UDP instead.
fn with_via_udp(bytes: Bytes) -> Bytes {
    let Some(at) = memchr::memmem::find(&bytes, b"\nVia: SIP/2.0/TCP ") else {
        return bytes;
    };
    let mut out = bytes::BytesMut::from(&bytes[..]);
    let from = at + b"\nVia: SIP/2.0/".len();
    out[from..from + 3].copy_from_slice(b"UDP");
    out.freeze()
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

/// A value off the wire, for a log line or a record: control characters
/// escaped (see [`text::Printable`]); `-` when absent.
fn lossy(v: Option<&[u8]>) -> text::Printable<'_> {
    text::Printable(v.unwrap_or(b"-"))
}

fn trunk_kind(k: TrunkKind) -> &'static str {
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
fn publish_health(h: &TrunkHealth, now: Instant) {
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
