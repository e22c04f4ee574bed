//! The SIP loop: the one task that owns the proxy core. It reads UDP
//! itself (a datagram reaches the core with no hand-off to wake it, and
//! the answers leave in the same turn), takes what the TCP, name lookup
//! and fetch tasks queue, fires the core's timers, and after each turn
//! sends what the core wrote, starts what it asked for and hands its call
//! events on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::control::{Built, Control, Reloads};
use super::fetch::Fetcher;
use super::guard::{guarded, handle_message};
use super::services::Services;
use super::{Options, TimedRouter};
use crate::config::Config;
use crate::metrics as m;
use crate::proxy::{Core, Proto, Transmit};
use crate::sip::Limits;
use crate::transport::names::{NameCache, Next};
use crate::transport::rfc3263::Dns;
use crate::transport::tls::{TlsContext, TlsSetup};
use crate::transport::{tcp, udp, Inbound};

/// How many datagrams are read from one socket before the loop looks at
/// its other inputs.
const BATCH: usize = 256;

/// The loop's own clock-driven work (health page, gauges).
const TICK: Duration = Duration::from_secs(1);

/// The core's timers wake the loop on a grid of this step: one wake-up
/// serves every timer due within it, instead of one per millisecond when
/// thousands of transactions linger. A timer fires at most this late (the
/// shortest SIP timer, T1, is 500 ms); timers that come due while the
/// loop is awake for messages are served then, on time.
const TIMER_GRID: Duration = Duration::from_millis(10);

/// How long the last answers of a drain get to leave over TCP.
const LAST_WRITES: Duration = Duration::from_secs(1);

/// The loop's state: the core and everything it talks to.
pub(super) struct SipLoop {
    core: Core,
    udps: Vec<udp::UdpEndpoint>,
    /// A receive buffer per UDP socket.
    bufs: Vec<Vec<u8>>,
    limits: Limits,
    pool: tcp::TcpPool,
    /// The TLS connections, once anything uses TLS, with their setup.
    tls: Option<(tcp::TcpPool, Arc<TlsContext>)>,
    tcp_cfg: crate::config::TcpConfig,
    tls_gauge: metrics::Gauge,
    /// The TCP and TLS listeners' accept loops.
    tasks: tokio::task::JoinSet<()>,
    /// What the I/O tasks hand to the loop.
    tx: mpsc::Sender<Inbound>,
    rx: mpsc::Receiver<Inbound>,
    names: NameCache,
    dns: Dns,
    fetcher: Fetcher,
    counters: m::MessageCounters,
    tcp_gauge: metrics::Gauge,
    transactions_gauge: metrics::Gauge,
    services: Services,
    reloads: Reloads,
    /// New inventory snapshots, with a database.
    inventory: Option<tokio::sync::watch::Receiver<crate::inventory::SharedInventory>>,
    opts: Arc<Options>,
    /// The router's own addresses, for the configurations reloads build.
    locals: Arc<[SocketAddr]>,
    seed: u64,
    drain_timeout: Duration,
    /// When the trunk hosts' NAPTR records are next looked up again.
    naptr_due: Instant,
}

impl SipLoop {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: &Config,
        core: Core,
        udps: Vec<udp::UdpEndpoint>,
        streams: super::listen::Streams,
        services: Services,
        opts: Arc<Options>,
        locals: Arc<[SocketAddr]>,
        seed: u64,
    ) -> SipLoop {
        let limits = Limits::default();
        let (tx, rx) = mpsc::channel::<Inbound>(65536);
        let tcp_cfg = crate::config::TcpConfig {
            max_connections: services.sip_tcp_connections,
            ..config.sip.tcp.clone()
        };
        let pool = tcp::TcpPool::new(tx.clone(), limits, tcp_cfg.clone());
        pool.set_allowed(core.allowed());
        let mut tasks = tokio::task::JoinSet::new();
        for l in streams.tcp {
            tasks.spawn(pool.clone().listen(l));
        }
        let tls = streams.tls_setup.map(|setup| {
            setup.publish_expiry_now();
            let ctx = TlsContext::new(setup);
            let tls_pool = tcp::TcpPool::new_tls(&pool, tcp_cfg.clone(), ctx.clone());
            tls_pool.set_allowed(core.allowed());
            (tls_pool, ctx)
        });
        if let Some((tls_pool, _)) = &tls {
            for l in streams.tls {
                tasks.spawn(tls_pool.clone().listen(l));
            }
        }
        let mut reloads = Reloads::new();
        reloads.tls_port = streams.tls_port;
        let bufs = udps.iter().map(|_| udp::receive_buffer(&limits)).collect();
        SipLoop {
            core,
            bufs,
            udps,
            limits,
            pool,
            tls,
            tcp_cfg,
            tls_gauge: metrics::gauge!(m::TLS_CONNECTIONS),
            tasks,
            fetcher: Fetcher::new(config, tx.clone()),
            tx,
            rx,
            names: NameCache::new(config.sip.name_settings()),
            dns: Dns::new(&config.sip.dns_settings()),
            counters: m::MessageCounters::default(),
            tcp_gauge: metrics::gauge!(m::TCP_CONNECTIONS),
            transactions_gauge: metrics::gauge!(m::TRANSACTIONS),
            services,
            reloads,
            inventory: opts.hub.as_ref().map(|h| h.subscribe()),
            opts,
            locals,
            seed,
            drain_timeout: Duration::from_secs(config.sip.drain_timeout_s),
            naptr_due: Instant::now(),
        }
    }

    /// Looks up, before the first call, the transport of each trunk host
    /// whose NAPTR records choose it, all at once within twice the name
    /// timeout: with DNS down the router starts that much later, on UDP
    /// for those trunks.
    async fn naptr_first(&mut self) {
        let hosts = self.core.naptr_hosts();
        if hosts.is_empty() {
            return;
        }
        let bound = self.names.settings().timeout * 2;
        let tls = self.tls.is_some();
        let lookups = hosts.iter().map(|h| {
            let dns = self.dns.clone();
            async move {
                tokio::time::timeout(bound, dns.transport_of(h, tls))
                    .await
                    .ok()
                    .flatten()
            }
        });
        let found = futures_util::future::join_all(lookups).await;
        for (host, proto) in hosts.into_iter().zip(found) {
            self.naptr_found(host, proto);
        }
        self.naptr_due = Instant::now() + self.names.settings().refresh;
    }

    /// Starts the NAPTR lookups of the hosts the core knows off the loop
    /// (`all`, or only those not yet known, after a reload).
    fn naptr_again(&mut self, all: bool) {
        for host in self.core.naptr_hosts() {
            if !all && self.core.naptr_known(&host) {
                continue;
            }
            self.naptr_lookup(host);
        }
    }

    /// Looks up which transport `host`'s NAPTR records choose, off the
    /// loop; the answer comes back as [`Inbound::NaptrTransport`].
    fn naptr_lookup(&self, host: String) {
        let bound = self.names.settings().timeout * 2;
        let tls = self.tls.is_some();
        let (dns, tx) = (self.dns.clone(), self.tx.clone());
        tokio::spawn(async move {
            let proto = tokio::time::timeout(bound, dns.transport_of(&host, tls))
                .await
                .ok()
                .flatten();
            let _ = tx.send(Inbound::NaptrTransport { host, proto }).await;
        });
    }

    fn naptr_found(&mut self, host: String, proto: Option<crate::wire::Proto>) {
        let trunk = self.core.naptr_for_trunk(&host);
        let kind = if trunk { "trunk" } else { "Route" };
        let known = self.core.naptr_known(&host);
        if self.core.handle_naptr(Instant::now(), &host, proto) {
            if let Some(proto) = proto {
                if trunk {
                    tracing::info!(%host, transport = proto.as_str(), "the trunk host's NAPTR records chose its transport");
                } else {
                    tracing::info!(%host, transport = proto.as_str(), "a Route host's NAPTR records chose its transport");
                }
                self.names.transport_changed(&host, proto);
            }
        }
        if proto.is_none() && !known {
            tracing::info!(%host, kind, "no NAPTR or SRV records choose a transport for this next hop: UDP");
        }
    }

    /// Runs until told to shut down and the drain is over; gives the
    /// services back to be stopped.
    pub(super) async fn run(mut self, mut control: mpsc::Receiver<Control>) -> Services {
        self.naptr_first().await;
        self.take_inventory();
        self.services
            .shared
            .set_trunks(self.core.trunk_health(Instant::now()));
        // One timer for the core's deadlines and the once-a-second tick,
        // moved only when the next deadline changes.
        let origin = tokio::time::Instant::now();
        let mut next_tick = origin + TICK;
        let mut armed = next_tick;
        let sleep = tokio::time::sleep_until(armed);
        tokio::pin!(sleep);
        let mut drain_until: Option<tokio::time::Instant> = None;
        // Log lines below warning gather while the loop runs and are
        // written out together, at most one timer step after the first of
        // them.
        crate::logbuf::hold(true);
        let _release = LogRelease;
        let mut log_flush_at: Option<tokio::time::Instant> = None;
        loop {
            if let Some(at) = log_flush_at {
                if tokio::time::Instant::now() >= at {
                    crate::logbuf::flush();
                    log_flush_at = None;
                }
            }
            if log_flush_at.is_none() && crate::logbuf::pending() {
                log_flush_at = Some(tokio::time::Instant::now() + TIMER_GRID);
            }
            let due = self
                .core
                .next_deadline()
                .map(|d| on_grid(origin, tokio::time::Instant::from_std(d)))
                .map_or(next_tick, |d| d.min(next_tick));
            let due = log_flush_at.map_or(due, |at| due.min(at));
            if due != armed {
                sleep.as_mut().reset(due);
                armed = due;
            }
            tokio::select! {
                biased;
                Some(word) = control.recv() => match word {
                    Control::Shutdown if drain_until.is_none() => {
                        let n = self.core.calls_in_progress();
                        tracing::info!(calls_in_progress = n, timeout_s = self.drain_timeout.as_secs(), "shutting down: refusing new calls, letting calls in progress finish");
                        self.services.shared.draining.store(true, std::sync::atomic::Ordering::Relaxed);
                        self.core.set_draining(true);
                        drain_until = Some(tokio::time::Instant::now() + self.drain_timeout);
                    }
                    Control::Shutdown => {}
                    Control::Reload(reply) => {
                        self.reloads.ask(reply, &self.opts, &self.locals, self.seed);
                    }
                },
                Some(()) = changed(&mut self.inventory) => self.take_inventory(),
                Some(built) = self.reloads.done_rx.recv() => {
                    let r = self.apply_reload(built);
                    self.reloads.finished(r, &self.opts, &self.locals, self.seed);
                }
                first = std::future::poll_fn(|cx| udp::poll_any_readable(&self.udps, cx)) => {
                    let now = Instant::now();
                    self.read_datagrams(now, first);
                    // A steady stream of datagrams must not hold back the
                    // rest.
                    self.drain_inbound(now);
                    if self.core.next_deadline().is_some_and(|d| d <= now) {
                        self.core.handle_timeout(now);
                    }
                }
                inbound = self.rx.recv() => {
                    let Some(first) = inbound else { break };
                    let now = Instant::now();
                    self.handle(now, first);
                    // Take what else is queued before sending, in one batch.
                    self.drain_inbound(now);
                    if self.core.next_deadline().is_some_and(|d| d <= now) {
                        self.core.handle_timeout(now);
                    }
                }
                () = &mut sleep => {
                    let now = Instant::now();
                    if tokio::time::Instant::from_std(now) >= next_tick {
                        next_tick = tokio::time::Instant::from_std(now) + TICK;
                        self.tick(now);
                    }
                    self.core.handle_timeout(now);
                }
            }
            self.flush();
            // A probe answered or missed, a trunk found to refuse TCP:
            // /readyz says so now, not at the next tick.
            if self.core.take_health_changed() {
                self.services
                    .shared
                    .set_trunks(self.core.trunk_health(Instant::now()));
            }
            if let Some(until) = drain_until {
                let left = self.core.calls_in_progress();
                if left == 0 || tokio::time::Instant::now() >= until {
                    if left > 0 {
                        tracing::warn!(
                            calls_in_progress = left,
                            "drain deadline reached with calls in progress"
                        );
                    }
                    break;
                }
            }
        }
        // The last answers leave before the sockets close.
        match &self.tls {
            Some((tls, _)) => {
                tokio::join!(self.pool.close(LAST_WRITES), tls.close(LAST_WRITES));
            }
            None => self.pool.close(LAST_WRITES).await,
        }
        self.tasks.abort_all();
        self.drain_events();
        self.services
    }

    /// Hands the database's current inventory snapshot to the core.
    fn take_inventory(&mut self) {
        if let Some(rx) = &mut self.inventory {
            let inventory = rx.borrow_and_update().clone();
            metrics::gauge!(m::INVENTORY_NUMBERS).set(inventory.len() as f64);
            // Freeing a carrier's inventory takes a while: not here.
            if let Some(old) = self.core.set_inventory(inventory) {
                tokio::task::spawn_blocking(move || drop(old));
            }
        }
    }

    /// Up to a batch from each socket, the first one ready first.
    fn read_datagrams(&mut self, now: Instant, first: usize) {
        let n = self.udps.len();
        for k in 0..n {
            let i = (first + k) % n;
            for _ in 0..BATCH {
                match udp::try_receive(
                    &self.udps[i],
                    &mut self.bufs[i],
                    &self.limits,
                    &mut self.counters,
                ) {
                    Ok(Some(udp::Received::Message(msg, source))) => {
                        handle_message(&mut self.core, now, msg, source)
                    }
                    Ok(Some(udp::Received::Unparsed(answer, source))) => {
                        self.core.answer_unparsed(now, answer, &source)
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// The once-a-second work: the health page and the gauges.
    fn tick(&mut self, now: Instant) {
        let shared = &self.services.shared;
        shared.set_trunks(self.core.trunk_health(now));
        let (txns, _) = self.core.open();
        self.transactions_gauge.set(txns as f64);
        // Overload eases as transactions end, with no request needed to
        // notice it.
        let load = self.core.load();
        shared
            .overload
            .store(load.level(), std::sync::atomic::Ordering::Relaxed);
        self.tcp_gauge.set(self.pool.open() as f64);
        if let Some((tls, ctx)) = &self.tls {
            self.tls_gauge.set(tls.open() as f64);
            ctx.current().publish_expiry_now();
        }
        if now >= self.naptr_due {
            self.naptr_due = now + self.names.settings().refresh.max(Duration::from_secs(1));
            self.naptr_again(true);
        }
    }

    fn handle(&mut self, now: Instant, inbound: Inbound) {
        match inbound {
            Inbound::Message(msg, source) => handle_message(&mut self.core, now, *msg, source),
            Inbound::Fetched { id, document } => guarded(
                &mut self.core,
                |core| core.handle_fetched(now, id, document),
                |core| {
                    tracing::error!(
                        "internal error while routing a call with its fetched location: answered 500, the router goes on"
                    );
                    core.abandon_fetch(now, id);
                },
            ),
            Inbound::LostFailed { id, why } => guarded(
                &mut self.core,
                |core| core.handle_lost_failed(now, id, why),
                |core| {
                    tracing::error!(
                        "internal error while routing a call after its LoST query failed: answered 500, the router goes on"
                    );
                    core.abandon_fetch(now, id);
                },
            ),
            Inbound::SendFailed { token } => self.core.handle_send_failure(now, token),
            Inbound::Resolved { host, port, found } => {
                let result = if found.is_some() { "ok" } else { "failed" };
                let (addrs, ttl) = found.map(|f| (f.addrs, f.ttl)).unzip();
                let a = self
                    .names
                    .answer_all(&host, port, addrs, ttl.flatten(), now);
                metrics::counter!(m::NAME_LOOKUPS, "result" => result).increment(1);
                self.core.next_hops_resolved(&host, port, a.targets);
                if a.first {
                    tracing::info!(%host, port, addr = ?a.addr, targets = a.targets, "next hop resolved");
                }
                if a.kept_stale {
                    tracing::warn!(%host, port, addr = ?a.addr, "could not resolve a next hop: its last address stays in use");
                } else if a.addr.is_none() {
                    tracing::warn!(%host, port, failed = a.failed.len(), "could not resolve a next hop");
                } else if a.moved {
                    tracing::info!(%host, port, addr = ?a.addr, "a next hop's address changed");
                }
                for token in a.failed.into_iter().filter_map(|t| t.token) {
                    self.core.handle_send_failure(now, token);
                }
            }
            Inbound::NaptrTransport { host, proto } => self.naptr_found(host, proto),
            Inbound::ConnOpened(_) => self.tcp_gauge.set(self.pool.open() as f64),
            Inbound::ConnClosed(id) => {
                self.core.conn_closed(id);
                self.tcp_gauge.set(self.pool.open() as f64);
            }
            Inbound::Identified { conn, trunk } => self.core.conn_identified(conn, trunk),
        }
    }

    /// Takes what the I/O tasks have queued, up to a batch, without
    /// waiting.
    fn drain_inbound(&mut self, now: Instant) {
        for _ in 0..BATCH {
            match self.rx.try_recv() {
                Ok(more) => self.handle(now, more),
                Err(_) => break,
            }
        }
    }

    /// Carries out what the core asked for in this turn: fetches started
    /// (a refused one is answered at once), messages sent, names looked
    /// up; then its call events are handed on.
    fn flush(&mut self) {
        let now = Instant::now();
        while let Some(fetch) = self.core.poll_fetch() {
            self.fetcher.start(fetch, &mut self.core, now);
        }
        while let Some(host) = self.core.poll_naptr() {
            self.naptr_lookup(host);
        }
        // What waited for a host name goes first, in the order it came.
        for (addr, t) in self.names.take_ready() {
            self.send_to(addr, t);
        }
        while let Some(t) = self.core.poll_transmit() {
            match self.names.route(t, now) {
                Next::Send(addr, t) => self.send_to(addr, t),
                Next::Queued => {}
                Next::Full(t) => {
                    tracing::warn!(target = ?t.dest.target, "next hop's name: too many names, or too many messages waiting for its address");
                    fail(t.token, t.dest.proto.lower(), &self.tx);
                }
            }
        }
        start_lookups(&mut self.names, &self.dns, &self.udps, &self.tx);
        self.drain_events();
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.core.poll_event() {
            self.services.on_event(ev);
        }
    }

    fn send_to(&mut self, addr: SocketAddr, t: Transmit) {
        let Transmit { dest, bytes, token } = t;
        self.counters.sent(dest.proto);
        match dest.proto {
            Proto::Udp => {
                if let Err(e) = udp::send(&self.udps, addr, bytes) {
                    tracing::debug!(%addr, error = %e, "udp send failed");
                    fail(token, "udp", &self.tx);
                }
            }
            Proto::Tcp => self.pool.send(addr, dest.conn, bytes, token),
            Proto::Tls => match &self.tls {
                Some((tls, _)) => {
                    let host = dest.target.host();
                    tls.send_named(addr, host, dest.conn, bytes, token);
                }
                None => fail(token, "tls", &self.tx),
            },
        }
    }

    /// Reloads the configuration file (SIGHUP or `POST /v1/reload`): applied
    /// whole, or refused whole with the running one kept. `built` comes from
    /// [`Reloads`], which reads and builds off the driver.
    fn apply_reload(&mut self, built: Built) -> Result<(), String> {
        match built {
            Ok((cfg, core_cfg, router, tls)) => {
                self.pool.set_allowed(core_cfg.allowed.clone());
                self.set_tls(tls, &core_cfg);
                let old = self.core.reconfigure(
                    Instant::now(),
                    core_cfg,
                    Box::new(TimedRouter::new(router)),
                );
                // Freeing the old routing data takes milliseconds: not here.
                tokio::task::spawn_blocking(move || drop(old));
                // Built with the snapshot of its time: the one published since
                // comes in now.
                self.take_inventory();
                self.fetcher = Fetcher::new(&cfg, self.tx.clone());
                self.services
                    .webhooks
                    .store(Arc::new(crate::notify::from_config(&cfg)));
                self.drain_timeout = Duration::from_secs(cfg.sip.drain_timeout_s);
                self.names.set_settings(cfg.sip.name_settings());
                self.dns = Dns::new(&cfg.sip.dns_settings());
                self.naptr_again(false);
                if let Some(api) = &self.services.api {
                    api.reconfigure(&cfg);
                }
                metrics::counter!(m::CONFIG_RELOADS, "outcome" => "applied").increment(1);
                tracing::info!("configuration reloaded; calls in progress keep their routes");
                Ok(())
            }
            Err(e) => {
                let e = format!("{e:#}");
                metrics::counter!(m::CONFIG_RELOADS, "outcome" => "refused").increment(1);
                tracing::error!(error = %e, "new configuration refused; the running one stays");
                Err(e)
            }
        }
    }
}

impl SipLoop {
    /// The TLS setup of a reload: handshakes from now on use it; open
    /// connections keep what they were made with.
    fn set_tls(&mut self, setup: Option<TlsSetup>, core_cfg: &crate::proxy::CoreConfig) {
        let Some(setup) = setup else {
            return;
        };
        setup.publish_expiry_now();
        self.services.http_tls.store(setup.http_server());
        match &self.tls {
            Some((pool, ctx)) => {
                ctx.replace(setup);
                pool.set_allowed(core_cfg.allowed.clone());
            }
            None => {
                let ctx = TlsContext::new(setup);
                let pool = tcp::TcpPool::new_tls(&self.pool, self.tcp_cfg.clone(), ctx.clone());
                pool.set_allowed(core_cfg.allowed.clone());
                self.tls = Some((pool, ctx));
            }
        }
        tracing::info!("tls certificates reloaded: new handshakes use them, open connections stay");
    }
}

/// Completes when a new inventory snapshot is published; `None` when
/// there is no database (the branch then waits no more).
async fn changed(
    inventory: &mut Option<tokio::sync::watch::Receiver<crate::inventory::SharedInventory>>,
) -> Option<()> {
    inventory.as_mut()?.changed().await.ok()
}

/// Lets go of the log buffer (writing out what it gathered) however the
/// loop ends.
struct LogRelease;

impl Drop for LogRelease {
    fn drop(&mut self) {
        crate::logbuf::hold(false);
    }
}

/// `at` rounded up to the timer grid that starts at `origin`.
fn on_grid(origin: tokio::time::Instant, at: tokio::time::Instant) -> tokio::time::Instant {
    let step = TIMER_GRID.as_nanos();
    let since = at.saturating_duration_since(origin).as_nanos();
    let slots = since.div_ceil(step);
    let nanos = u64::try_from(slots * step).unwrap_or(u64::MAX);
    origin + Duration::from_nanos(nanos)
}

/// Looks up each name the cache asks for off the driver task (RFC 3263,
/// [`Dns::resolve`]); the answer comes back as [`Inbound::Resolved`].
/// Addresses of a family the router has a UDP socket for come first. Each
/// lookup as a whole is bounded by the name timeout, twice over for the
/// NAPTR, SRV and address steps of a name without a port.
fn start_lookups(
    names: &mut NameCache,
    dns: &Dns,
    udps: &[udp::UdpEndpoint],
    tx: &mpsc::Sender<Inbound>,
) {
    let timeout = names.settings().timeout;
    for (host, port) in names.take_lookups() {
        let proto = names.proto_of(&host, port);
        let v4 = udps.iter().any(|u| u.local.is_ipv4());
        let v6 = udps.iter().any(|u| u.local.is_ipv6());
        let (tx, dns) = (tx.clone(), dns.clone());
        let bound = if port == 0 { timeout * 4 } else { timeout * 2 };
        tokio::spawn(async move {
            let found = tokio::time::timeout(bound, dns.resolve(&host, port, proto, v4, v6))
                .await
                .ok()
                .flatten();
            let _ = tx.send(Inbound::Resolved { host, port, found }).await;
        });
    }
}

fn fail(token: Option<u64>, transport: &'static str, tx: &mpsc::Sender<Inbound>) {
    metrics::counter!(m::SEND_FAILURES, "transport" => transport).increment(1);
    if let Some(token) = token {
        let _ = tx.try_send(Inbound::SendFailed { token });
    }
}
