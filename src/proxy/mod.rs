//! The stateful proxy core (RFC 3261 sections 16 and 17), sans-IO.
//!
//! The core takes parsed messages, send failures and the time as inputs and
//! hands back what to send ([`Core::poll_transmit`]) and when to be called
//! again ([`Core::next_deadline`]). It never touches a socket or reads the
//! clock, so tests drive it with plain values and a simulated clock.
//!
//! # A request's path, one file per phase
//!
//! 1. Receive and validate (`receive.rs`): a retransmission or an ACK goes
//!    to its transaction; a stranger's request is answered 403 without
//!    one; the overload limits and the drain apply before anything is
//!    held; the scheme, Max-Forwards and loops are checked
//!    (`check_request`).
//! 2. Route: a new request (no To tag, no Route set beyond the router) is
//!    decided by the [`Router`] and then refused without a transaction or
//!    opened as a call (`new_request.rs`); a request within a dialog
//!    follows its Route set (`in_dialog.rs`); a CANCEL cancels its call
//!    (`cancel.rs`).
//! 3. Forward (`forward.rs`): a call tries its targets one at a time, each
//!    in a client transaction of its own, with the request edited for the
//!    hop; too large for UDP, it goes over TCP.
//! 4. Failover (`failover.rs`): a failure, a timeout, a transport error,
//!    the ring timer or the no-answer timer move the call to its next
//!    target; with none left, the best response goes upstream.
//! 5. Responses (`responses.rs`): a response from the next hop is matched
//!    to its client transaction and relayed upstream through the server
//!    transaction.
//!
//! Between the first two, an INVITE whose location is given by reference
//! waits in `location.rs` while the driver fetches it: the core asks for
//! the fetch ([`Core::poll_fetch`]) and takes the document back
//! ([`Core::handle_fetched`]).
//!
//! A request within a dialog whose Route host leaves its transport to
//! NAPTR records waits in `naptr.rs` while the driver looks them up
//! ([`Core::poll_naptr`], [`Core::handle_naptr`]).
//!
//! The router's own answers, from a server transaction or without one,
//! are in `answer.rs`.
//!
//! What the phases share:
//! - `txn.rs`: the transaction table; each machine's pump (transmits,
//!   events, deadline, removal).
//! - `call.rs`: the call table and the events a call record is made of.
//! - `branch.rs`: branches, the To tags of stateless answers and the loop
//!   hash, whose bytes must not change.
//! - `probes.rs`: OPTIONS probes to the trunks, their health as gauges;
//!   the targets of a down trunk are tried last.
//! - `route.rs` (the routing phase's interface and the static router),
//!   `overload.rs` (admission), `allow.rs` (who may send), `health.rs`
//!   (trunk states), `events.rs` (call events), `wheel.rs` (the timers).
//!   Sources and transmits, the core's words with the driver, are in
//!   [`crate::wire`].
//!
//! This file holds the configuration, the [`Core`] and everything the
//! driver calls: its inputs, its outputs and the state it reports.

pub mod allow;
mod answer;
mod branch;
mod call;
mod cancel;
pub mod events;
mod failover;
mod forward;
pub mod health;
mod in_dialog;
mod location;
mod naptr;
mod new_request;
pub mod overload;
mod probes;
mod receive;
mod responses;
pub mod route;
#[cfg(test)]
mod tests;
mod txn;
mod wheel;

use core::net::{IpAddr, SocketAddr};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipnet::IpNet;

use crate::config::{Config, TransportName, TrunkKind};
use crate::metrics as m;
use crate::sip::{build, text, Message, Method, Uri};
use crate::transaction::{TimerConfig, TransactionKey};
use branch::loop_hash;
use call::Call;
use forward::WireText;
use in_dialog::{Dialog, DIALOG_SWEEP};
use probes::{publish_health, trunk_kind};
use txn::{server_key, Txn};
use wheel::Wheel;

pub use crate::wire::{ConnId, Dest, Proto, Source, Target, Transmit};
pub use events::{CallEvent, CallKey};
pub use health::{HealthConfig, ProbeResult, TrunkHealth, TrunkState};
pub use location::{FetchConfig, LocationFetch};
pub use overload::{Load, OverloadLimits};
pub use route::{
    Augment, Decision, LocationRecord, LostAnswer, LostCaches, LostFailure, LostQuery, LostRefresh,
    RouteContext, RouteDetails, RouteTarget, Router, StaticRouter,
};

/// A trunk as the core sees it.
#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    pub kind: TrunkKind,
    /// Where requests to it go (outbound kinds).
    pub target: Option<Target>,
    pub proto: Proto,
    /// The host whose NAPTR records choose `proto` (RFC 3263 section
    /// 4.1): the trunk gives no transport and its URI names a host
    /// without a port. Lower case.
    pub naptr_host: Option<String>,
    pub tcp_fallback: bool,
    /// Inbound trunks: the networks it sends from.
    pub sources: Vec<IpNet>,
    /// Inbound trunks identified by their TLS client certificate
    /// (`tls_names`): never by address alone, and their sources let no one
    /// in without the certificate.
    pub by_certificate: bool,
}

/// What the core needs from the configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Host and port written into Via and Record-Route.
    pub host: String,
    pub port: u16,
    /// The port of the router's TLS listener, written into the Via and
    /// Record-Route of a leg over TLS (none: no TLS listener, and such
    /// values carry `port`).
    pub tls_port: Option<u16>,
    /// The router's host names: `sip.aliases`, and the advertised host when
    /// it is a name.
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
    /// Locations by reference: how long a fetch may take, how many run.
    pub fetch: FetchConfig,
    /// How long a request within a dialog waits for the transport of a
    /// Route host new to the router (twice `sip.name_timeout_ms`).
    pub naptr_wait: Duration,
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
                let uri = t.uri.as_deref().and_then(|u| Uri::parse(u.as_bytes()).ok());
                let target = uri.as_ref().map(uri_target);
                let in_uri = uri.as_ref().and_then(uri_transport);
                let given = match (in_uri, t.transport) {
                    (Some(Proto::Tls), _) => Some(Proto::Tls),
                    (_, Some(TransportName::Udp)) => Some(Proto::Udp),
                    (_, Some(TransportName::Tcp)) => Some(Proto::Tcp),
                    (_, Some(TransportName::Tls)) => Some(Proto::Tls),
                    (in_uri, None) => in_uri,
                };
                let naptr_host = match (&target, given) {
                    (Some(Target::Host(h, 0)), None) => Some(h.to_ascii_lowercase()),
                    _ => None,
                };
                Trunk {
                    name: t.name.clone(),
                    kind: t.kind,
                    target,
                    proto: given.unwrap_or(Proto::Udp),
                    naptr_host,
                    tcp_fallback: t.tcp_fallback,
                    sources: t.sources.clone(),
                    by_certificate: !t.tls_names.is_empty(),
                }
            })
            .collect();
        let aliases = (c.sip.aliases.iter().cloned())
            .chain(host.parse::<IpAddr>().is_err().then(|| host.clone()))
            .collect();
        let tls_port = c
            .listeners()
            .ok()
            .and_then(|ls| ls.into_iter().find(|l| l.transport == TransportName::Tls))
            .map(|l| l.addr.port())
            .filter(|p| *p != 0);
        CoreConfig {
            host,
            port,
            tls_port,
            aliases,
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
            fetch: FetchConfig::from_config(&c.emergency),
            naptr_wait: c.sip.name_settings().timeout * 2,
        }
    }

    /// The TLS listener's port as bound (a `tls:` listener on port 0 gets
    /// one only when bound).
    pub fn with_tls_port(mut self, port: Option<u16>) -> CoreConfig {
        if port.is_some() {
            self.tls_port = port;
        }
        self
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

/// The transport a URI asks for: TLS for `sips:`, else its `transport`
/// parameter (`udp`, `tcp`, `tls`), if any.
fn uri_transport(uri: &Uri<'_>) -> Option<Proto> {
    if uri_wants_tls(uri) {
        return Some(Proto::Tls);
    }
    match uri.param("transport").flatten() {
        Some(t) if t.eq_ignore_ascii_case(b"udp") => Some(Proto::Udp),
        Some(t) if t.eq_ignore_ascii_case(b"tcp") => Some(Proto::Tcp),
        _ => None,
    }
}

/// `sips:`, or `;transport=tls`.
fn uri_wants_tls(uri: &Uri<'_>) -> bool {
    uri.scheme == crate::sip::uri::Scheme::Sips
        || uri
            .param("transport")
            .flatten()
            .is_some_and(|t| t.eq_ignore_ascii_case(b"tls"))
}

/// The address a URI names: an IP literal as is, port 5060 when none is
/// given (5061 for TLS); a name for the transport layer to resolve, with
/// port 0 when none is given, so that its SRV records say (RFC 3263).
fn uri_target(uri: &Uri<'_>) -> Target {
    let host = String::from_utf8_lossy(uri.host);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => {
            let port = uri
                .port
                .unwrap_or(if uri_wants_tls(uri) { 5061 } else { 5060 });
            Target::Addr(SocketAddr::new(ip, port))
        }
        Err(_) => Target::Host(host.into_owned(), uri.port.unwrap_or(0)),
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
    /// The driver has not reported this location fetch in time.
    Fetch(Id),
    /// The driver has not reported a Route host's transport in time.
    NaptrWait(Id),
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
    router: Box<dyn Router>,
    /// Decisions made so far: with the seed, what makes each unique.
    decisions: u64,
    txns: IdMap<Txn>,
    server_index: KeyMap<TransactionKey, Id>,
    client_index: KeyMap<TransactionKey, Id>,
    calls: IdMap<Call>,
    timers: Wheel<TimerRef>,
    out: VecDeque<Transmit>,
    next_id: Id,
    stats: CoreStats,
    branch_counter: std::cell::Cell<u64>,
    /// Answered calls by Call-ID, for in-dialog requests that arrive
    /// addressed to the router with no route set (clients that ignore
    /// Record-Route).
    dialogs: KeyMap<Bytes, Dialog>,
    /// Calls in progress by Call-ID (how many: a re-INVITE is a call too).
    live_calls: KeyMap<Bytes, u32>,
    /// TLS connections whose client certificate named an inbound trunk
    /// (`tls_names`), as the transport layer reported them.
    identified: HashMap<ConnId, Arc<str>>,
    /// How many targets each next hop given by name has, as its last
    /// lookup said (its SRV targets' addresses, RFC 3263): each is a
    /// failover step of its own.
    hop_targets: HashMap<(String, u16), usize>,
    /// The transports NAPTR records chose, by host, for the trunks and
    /// Route values that leave it to them (kept across reloads), and the
    /// requests waiting for one.
    naptr: naptr::Transports,
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
    /// How many of those requests may still be answered.
    stranger_budget: allow::ReplyBudget,
    /// Answers to allowed sources for requests routed nowhere.
    answer_budgets: allow::SourceBudgets,
    /// Refusals of allowed sources' requests, for throttled log lines.
    refusals: crate::logbuf::Throttle,
    events: VecDeque<CallEvent>,
    /// Text every forwarded request carries, written once per configuration.
    wire: WireText,
    metrics: CoreMetrics,
    /// INVITEs waiting for their location, and the fetches to ask for.
    fetches: location::Fetches,
    /// The answer to the LoST query of the INVITE being routed, from
    /// [`Core::handle_fetched`] to its decision.
    lost_answer: Option<Result<Bytes, LostFailure>>,
    /// A moment of the monotonic clock and the wall-clock time then, given
    /// by the driver ([`Core::set_wall_clock`]).
    wall: Option<(Instant, time::OffsetDateTime)>,
}

/// Tables keyed by the core's own ids, which never come from the network:
/// foldhash with a fixed seed, so that the same inputs give the same
/// table order in every run.
type IdMap<V> = HashMap<Id, V, foldhash::fast::FixedState>;

/// Tables keyed by what the network sends (branches, Call-IDs): foldhash
/// with a seed drawn at start-up, so keys cannot be chosen to collide, at
/// a fraction of the default hasher's cost per byte.
type KeyMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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
    // ----- lifecycle -----

    pub fn new(cfg: CoreConfig, router: Box<dyn Router>) -> Core {
        let health = vec![None; cfg.trunks.len()];
        Core {
            identified: HashMap::new(),
            hop_targets: HashMap::new(),
            health,
            probes: IdMap::default(),
            probe_seq: 0,
            draining: false,
            health_changed: false,
            admission: overload::Admission::new(cfg.overload),
            sources: overload::Sources::default(),
            strangers: crate::logbuf::Throttle::new(crate::logbuf::TELL_EVERY),
            stripped_vias: crate::logbuf::Throttle::new(crate::logbuf::TELL_EVERY),
            stranger_budget: allow::ReplyBudget::new(cfg.stranger_replies_per_s),
            answer_budgets: allow::SourceBudgets::new(cfg.answers_per_source_per_s, cfg.seed),
            refusals: crate::logbuf::Throttle::new(crate::logbuf::TELL_EVERY),
            events: VecDeque::new(),
            wire: WireText::new(&cfg),
            metrics: CoreMetrics::default(),
            cfg,
            router,
            decisions: 0,
            txns: IdMap::default(),
            server_index: KeyMap::default(),
            client_index: KeyMap::default(),
            calls: IdMap::default(),
            timers: Wheel::unanchored(),
            out: VecDeque::new(),
            next_id: 1,
            stats: CoreStats::default(),
            branch_counter: std::cell::Cell::new(0),
            dialogs: KeyMap::default(),
            live_calls: KeyMap::default(),
            fetches: location::Fetches::default(),
            naptr: naptr::Transports::default(),
            lost_answer: None,
            wall: None,
        }
    }

    /// Anchors wall-clock time: `wall` is the time at `at`. Later wall
    /// times are `wall + (now - at)`, so the core still never reads a
    /// clock. LoST mappings expire by wall-clock time.
    pub fn set_wall_clock(&mut self, at: Instant, wall: time::OffsetDateTime) {
        self.wall = Some((at, wall));
    }

    /// The wall-clock time at `now`, when anchored.
    pub(crate) fn wall_at(&self, now: Instant) -> Option<time::OffsetDateTime> {
        self.wall
            .map(|(at, wall)| wall + now.saturating_duration_since(at))
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
        router: Box<dyn Router>,
    ) -> Box<dyn Router> {
        self.timers.anchor(now);
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
        self.apply_naptr();
        let mut replaced = std::mem::replace(&mut self.router, router);
        // The LoST mappings outlive the reload, for the ECRFs still asked.
        self.router.keep_lost_caches(replaced.take_lost_caches());
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

    /// Starts the clock-driven work: trunk probes, spread over the first
    /// interval so they do not all leave at once.
    pub fn start(&mut self, now: Instant) {
        self.timers.anchor(now);
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

    /// A new inventory snapshot for the routing phase: calls routed from
    /// now on use it, calls in progress keep the targets they were given.
    /// Gives back the snapshot it replaced, if the routing phase had one.
    pub fn set_inventory(
        &mut self,
        inventory: crate::inventory::SharedInventory,
    ) -> Option<crate::inventory::SharedInventory> {
        self.router.set_inventory(inventory)
    }

    /// Refuses new calls from now on (shutdown).
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    // ----- inputs -----

    /// A parsed message from the network.
    pub fn handle_message(&mut self, now: Instant, msg: Message, source: Source) {
        self.timers.anchor(now);
        if msg.is_request() {
            self.on_request(now, msg, source);
        } else {
            self.on_response(now, msg, source);
        }
    }

    /// The transport layer could not send a message carrying `token`.
    pub fn handle_send_failure(&mut self, now: Instant, token: u64) {
        self.timers.anchor(now);
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
        self.timers.anchor(now);
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
                TimerRef::Fetch(id) => self.on_fetch_timeout(now, id),
                TimerRef::NaptrWait(id) => self.on_naptr_timeout(now, id),
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

    /// `100 Trying` to an INVITE that waits for its location, and to each
    /// retransmission of it meanwhile: the caller stops retransmitting and
    /// its own failover timer sees the router alive. No state is kept; the
    /// server transaction the INVITE opens later sends its own 100 as well,
    /// which is harmless.
    fn trying(&mut self, msg: &Message, source: &Source) {
        self.send_back(
            source,
            build::response(msg, Some(source.peer), 100, "Trying", None, &[], None),
        );
    }

    // ----- outputs -----

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// What the core reports about recorded calls, oldest first.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ----- state, for the driver, the status page and tests -----

    /// Who may send: the transport layer refuses anyone else's
    /// connections.
    pub fn allowed(&self) -> Arc<allow::AllowList> {
        self.cfg.allowed.clone()
    }

    /// Whether requests from `source` are taken at all (`sip.allow`, a
    /// trunk's `sources`, a trunk's own address, a TLS connection whose
    /// certificate names an inbound trunk).
    fn source_allowed(&self, source: &Source) -> bool {
        self.cfg.allowed.contains(source.peer.ip())
            || source
                .conn
                .is_some_and(|c| self.identified.contains_key(&c))
    }

    /// The transport layer checked the client certificate of TLS
    /// connection `conn`: it names inbound trunk `trunk`. Requests on it
    /// are that trunk's, wherever it comes from.
    pub fn conn_identified(&mut self, conn: ConnId, trunk: Arc<str>) {
        self.identified.insert(conn, trunk);
    }

    /// A lookup of the next hop `host:port` gave `targets` targets (0: it
    /// failed, and the last answer stays).
    pub fn next_hops_resolved(&mut self, host: &str, port: u16, targets: usize) {
        if targets > 0 {
            // As many names as the transport layer keeps, 4,096 (they
            // come from the configuration and allowed peers' Route
            // headers); past that, the counts start again.
            if self.hop_targets.len() >= 4096 {
                self.hop_targets.clear();
            }
            self.hop_targets
                .insert((host.to_ascii_lowercase(), port), targets);
        }
    }

    /// How many targets a trunk's next hop has: those of its name's
    /// lookup, else one.
    pub(super) fn hop_count(&self, target: Option<&Target>) -> usize {
        match target {
            Some(Target::Host(h, p)) => self
                .hop_targets
                .get(&(h.to_ascii_lowercase(), *p))
                .copied()
                .unwrap_or(1)
                .max(1),
            _ => 1,
        }
    }

    /// A TCP or TLS connection closed.
    pub fn conn_closed(&mut self, conn: ConnId) {
        self.identified.remove(&conn);
    }
}

/// The inbound trunk a request came from: the trunk its TLS connection's
/// certificate names, else the one whose sources hold its address.
fn inbound_trunk<'a>(
    cfg: &'a CoreConfig,
    identified: &HashMap<ConnId, Arc<str>>,
    source: &Source,
) -> Option<&'a Trunk> {
    let by_cert = source
        .conn
        .and_then(|c| identified.get(&c))
        .and_then(|name| {
            cfg.trunks
                .iter()
                .find(|t| t.kind == TrunkKind::Inbound && *t.name == **name)
        });
    by_cert.or_else(|| new_request::inbound_trunk(cfg, source))
}

impl Core {
    /// How full the core is, by its open transactions (noting a change in
    /// the log and the metrics).
    pub fn load(&mut self) -> Load {
        self.admission.update(self.txns.len())
    }

    /// Calls that have not had their final response yet, those waiting
    /// for their location included.
    pub fn calls_in_progress(&self) -> usize {
        self.calls.values().filter(|c| !c.finished).count() + self.fetches.len()
    }

    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// Live transactions and calls, for tests and gauges.
    pub fn open(&self) -> (usize, usize) {
        (self.txns.len(), self.calls.len())
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

    /// Whether a trunk's health changed (a probe came back or went
    /// unanswered, a trunk refused TCP) since the last call.
    pub fn take_health_changed(&mut self) -> bool {
        std::mem::take(&mut self.health_changed)
    }

    fn id(&mut self) -> Id {
        self.next_id += 1;
        self.next_id
    }
}

/// A value off the wire, for a log line or a record: control characters
/// escaped (see [`text::Printable`]); `-` when absent.
fn lossy(v: Option<&[u8]>) -> text::Printable<'_> {
    text::Printable(v.unwrap_or(b"-"))
}
