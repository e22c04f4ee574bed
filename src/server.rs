//! The router process: binds the listeners, spawns the I/O tasks and drives
//! the proxy core on one task, until the shutdown future completes.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::admin;
use crate::cdr::store::{Recorder, RecorderConfig};
use crate::config::{Config, DatabaseConfig, TransportName};
use crate::metrics as m;
use crate::proxy::{Core, CoreConfig, Proto, Router, Transmit};
use crate::sip::Limits;
use crate::store::records::DbRecords;
use crate::store::{Actor, Hub, Store};
use crate::transport::names::{NameCache, Next};
use crate::transport::{tcp, udp, Inbound};

/// The sockets a running router bound (ports are real even when the config
/// said 0).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// Binds every listener. A TCP listener on port 0 takes the port its UDP
/// twin got, so that one port serves both, as SIP expects.
pub async fn bind(
    config: &Config,
) -> anyhow::Result<(Vec<udp::UdpEndpoint>, Vec<tokio::net::TcpListener>, Bound)> {
    let mut udps = Vec::new();
    let mut tcps = Vec::new();
    let mut bound = Bound::default();
    let listeners = config.listeners()?;
    for l in listeners
        .iter()
        .filter(|l| l.transport == TransportName::Udp)
    {
        let ep = udp::bind(l.addr, config.sip.socket_buffer)
            .with_context(|| format!("binding udp {}", l.addr))?;
        bound.udp.push(ep.local);
        udps.push(ep);
    }
    for l in listeners
        .iter()
        .filter(|l| l.transport == TransportName::Tcp)
    {
        let mut addr = l.addr;
        if addr.port() == 0 {
            if let Some(twin) = bound.udp.iter().find(|u| u.ip() == addr.ip()) {
                addr.set_port(twin.port());
            }
        }
        let listener = match tcp::bind(addr) {
            Ok(t) => t,
            Err(_) if l.addr.port() == 0 => tcp::bind(l.addr)?,
            Err(e) => return Err(e).with_context(|| format!("binding tcp {addr}")),
        };
        bound.tcp.push(listener.local_addr()?);
        tcps.push(listener);
    }
    Ok((udps, tcps, bound))
}

/// Builds the routing phase from a configuration (at start and on reload).
pub type RouterFactory = Arc<dyn Fn(&Config) -> anyhow::Result<Arc<dyn Router>> + Send + Sync>;

/// How to run: the config file (for reloads) and how to build the router.
pub struct Options {
    pub config_path: Option<PathBuf>,
    pub make_router: RouterFactory,
    /// Install the global Prometheus recorder (once per process).
    pub install_metrics: bool,
    /// With a database: where the inventory snapshot is published (the
    /// router factory attaches the routers it builds to it). `None` makes
    /// one that no router follows.
    pub hub: Option<Arc<Hub>>,
    /// An inventory file to import into an empty database (the
    /// `--inventory` option; else `emergency.inventory`).
    pub inventory: Option<PathBuf>,
}

/// Times the routing phase for the histogram, at the I/O edge so the core
/// itself never reads the clock.
struct TimedRouter(Arc<dyn Router>);

impl Router for TimedRouter {
    fn route(
        &self,
        req: &crate::sip::Message,
        ctx: &crate::proxy::RouteContext<'_>,
    ) -> crate::proxy::Decision {
        let start = Instant::now();
        let d = self.0.route(req, ctx);
        metrics::histogram!(m::ROUTING_DECISION).record(start.elapsed().as_secs_f64());
        d
    }
}

/// Runs the router until `shutdown` completes, then drains: new calls are
/// refused, calls in progress get up to `sip.drain_timeout_s` to finish.
pub async fn run(
    config: Config,
    opts: Options,
    shutdown: impl Future<Output = ()>,
    on_bound: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    let opts = Arc::new(opts);
    let limits = Limits::default();
    let (udps, tcps, bound) = bind(&config).await?;
    let database = DatabaseConfig::effective(&config);
    let store = match &database {
        Some(db) => Some(open_store(&config, db, &opts).await?),
        None => None,
    };
    let api = match (&config.admin, &store) {
        (Some(a), Some(s)) => Some(admin::api::Api::new(s.clone(), a)),
        _ => None,
    };
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    if let Some(api) = &api {
        api.set_reload(reload_tx.clone());
    }
    // Kept so the reload channel stays open even without an API.
    let _reload_tx = reload_tx;
    let recorder = match (&store, &database) {
        (Some(s), Some(db)) => Some(Recorder::start(
            Arc::new(DbRecords(s.clone())),
            RecorderConfig {
                events: 65536,
                queue: db.record_queue,
                batch: db.record_batch,
                open_call_max: Duration::from_secs(db.open_call_max_s),
            },
        )),
        _ => None,
    };
    let shared = Arc::new(admin::Shared::default());
    let (http_stop_tx, http_stop) = tokio::sync::watch::channel(false);
    let stop_signal = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let mut bound = bound;
    // The HTTP listeners' caps fit in the open file limit beside SIP's.
    let (caps, cut) = crate::fds::fit(
        crate::fds::limit().map(|l| l.soft),
        crate::fds::Caps {
            sip_tcp: config.sip.tcp.max_connections,
            admin: config.admin.as_ref().map(|a| a.max_connections),
            metrics: config.metrics.as_ref().map(|m| m.max_connections),
        },
    );
    if let Some(cut) = cut {
        tracing::warn!("{cut}");
    }
    if let Some(m) = &config.metrics {
        if opts.install_metrics {
            let handle = admin::install_metrics()?;
            let limits = admin::http::HttpLimits {
                max_connections: caps.metrics.unwrap_or(m.max_connections),
                ..admin::http::HttpLimits::metrics(m)
            };
            let addr = admin::serve(
                "metrics",
                m.listen,
                admin::metrics_routes(handle),
                limits,
                stop_signal(http_stop.clone()),
            )
            .await
            .with_context(|| format!("binding metrics {}", m.listen))?;
            bound.metrics = Some(addr);
        }
    }
    if let Some(a) = &config.admin {
        let mut app = admin::health_routes(shared.clone());
        if let Some(api) = &api {
            app = app.merge(admin::api::routes(api.clone()));
        }
        let limits = admin::http::HttpLimits {
            max_connections: caps.admin.unwrap_or(a.max_connections),
            ..admin::http::HttpLimits::admin(a)
        };
        let addr = admin::serve(
            "admin",
            a.listen,
            app,
            limits,
            stop_signal(http_stop.clone()),
        )
        .await
        .with_context(|| format!("binding admin {}", a.listen))?;
        bound.admin = Some(addr);
    }
    // Installed before anyone learns the addresses, so an early SIGHUP
    // never meets the default action (exit).
    let hup = reload_signal();
    on_bound(&bound);
    let mut locals: Vec<SocketAddr> = bound.udp.clone();
    locals.extend(&bound.tcp);
    let locals: Arc<[SocketAddr]> = locals.into();
    let seed: u64 = rand::random();
    let router: Arc<dyn Router> = Arc::new(TimedRouter((opts.make_router)(&config)?));
    let webhooks: crate::notify::Webhooks = Arc::new(arc_swap::ArcSwap::from_pointee(
        crate::notify::from_config(&config),
    ));
    let desk = crate::notify::SecurityDesk::start(
        webhooks.clone(),
        crate::notify::Policy::default(),
        opts.hub.clone(),
    );
    if let Some(api) = &api {
        api.set_webhooks(webhooks.clone());
    }
    let core_cfg = CoreConfig::from_config(&config, locals.to_vec(), seed);
    let allowed = core_cfg.allowed.clone();
    let mut core = Core::new(core_cfg, router);
    core.start(Instant::now());
    shared.set_trunks(core.trunk_health(Instant::now()));

    let (tx, mut rx) = mpsc::channel::<Inbound>(65536);
    let tcp_cfg = crate::config::TcpConfig {
        max_connections: caps.sip_tcp,
        ..config.sip.tcp.clone()
    };
    let pool = tcp::TcpPool::new(tx.clone(), limits, tcp_cfg);
    pool.set_allowed(allowed);
    let deref = Dereferencer::new(&config, tx.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for l in tcps {
        tasks.spawn(pool.clone().listen(l));
    }
    // UDP is read here, on the driver's own task: a datagram reaches the
    // core with no hand-off to wake it, and the replies leave in the same
    // turn.
    let mut bufs: Vec<Vec<u8>> = udps.iter().map(|_| udp::receive_buffer(&limits)).collect();
    let mut counters = m::MessageCounters::default();
    let mut names = NameCache::new(config.sip.name_settings());
    let mut reloads = Reloads::new();
    let tcp_gauge = metrics::gauge!(m::TCP_CONNECTIONS);
    let transactions_gauge = metrics::gauge!(m::TRANSACTIONS);
    // The signals are looked at only when they wake the driver, not on
    // every datagram.
    let mut shutdown = Woken::new(shutdown);
    let mut hup = Woken::new(hup.next());
    // One timer for the core's deadlines and the once-a-second tick, moved
    // only when the next deadline changes.
    let origin = tokio::time::Instant::now();
    let mut next_tick = origin + TICK;
    let mut armed = next_tick;
    let sleep = tokio::time::sleep_until(armed);
    tokio::pin!(sleep);
    let mut drain_timeout = Duration::from_secs(config.sip.drain_timeout_s);
    let mut drain_until: Option<tokio::time::Instant> = None;
    // Log lines below warning gather while the driver runs and are written
    // out together, at most one timer step after the first of them.
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
        let due = core
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
            _ = &mut shutdown, if drain_until.is_none() => {
                let n = core.calls_in_progress();
                tracing::info!(calls_in_progress = n, timeout_s = drain_timeout.as_secs(), "shutting down: refusing new calls, letting calls in progress finish");
                shared.draining.store(true, std::sync::atomic::Ordering::Relaxed);
                core.set_draining(true);
                drain_until = Some(tokio::time::Instant::now() + drain_timeout);
            }
            again = &mut hup => {
                // In the audit log, as a reload over the API is.
                let reply = store.as_ref().map(|s| s.audited_reload(Actor { name: "SIGHUP".into(), role: "system" }, "SIGHUP"));
                reloads.ask(reply, &opts, &locals, seed);
                hup = Woken::new(again.next());
            }
            Some(reply) = reload_rx.recv() => {
                reloads.ask(Some(reply), &opts, &locals, seed);
            }
            Some(built) = reloads.done_rx.recv() => {
                let r = apply_reload(built, &mut core, &pool, &webhooks, &mut drain_timeout, &mut names, api.as_deref());
                reloads.finished(r, &opts, &locals, seed);
            }
            first = std::future::poll_fn(|cx| udp::poll_any_readable(&udps, cx)) => {
                let now = Instant::now();
                // Up to a batch from each socket, the first one ready first.
                for k in 0..udps.len() {
                    let i = (first + k) % udps.len();
                    for _ in 0..BATCH {
                        match udp::try_receive(&udps[i], &mut bufs[i], &limits, &mut counters) {
                            Ok(Some(udp::Received::Message(msg, source))) => handle_message(&mut core, now, msg, source, &deref),
                            Ok(Some(udp::Received::Unparsed(answer, source))) => core.answer_unparsed(now, answer, &source),
                            Ok(None) => {}
                            Err(_) => break,
                        }
                    }
                }
                // A steady stream of datagrams must not hold back the rest.
                drain_inbound(&mut core, now, &mut rx, &deref, &tcp_gauge, &pool, &mut names);
                if core.next_deadline().is_some_and(|d| d <= now) {
                    core.handle_timeout(now);
                }
            }
            inbound = rx.recv() => {
                let Some(first) = inbound else { break };
                let now = Instant::now();
                handle(&mut core, now, first, &deref, &tcp_gauge, &pool, &mut names);
                // Take what else is queued before sending, in one batch.
                drain_inbound(&mut core, now, &mut rx, &deref, &tcp_gauge, &pool, &mut names);
                if core.next_deadline().is_some_and(|d| d <= now) {
                    core.handle_timeout(now);
                }
            }
            () = &mut sleep => {
                let now = Instant::now();
                if tokio::time::Instant::from_std(now) >= next_tick {
                    next_tick = tokio::time::Instant::from_std(now) + TICK;
                    shared.set_trunks(core.trunk_health(now));
                    let (txns, _) = core.open();
                    transactions_gauge.set(txns as f64);
                    // Overload eases as transactions end, with no request
                    // needed to notice it.
                    let load = core.load();
                    shared.overload.store(load.level(), std::sync::atomic::Ordering::Relaxed);
                    tcp_gauge.set(pool.open() as f64);
                }
                core.handle_timeout(now);
            }
        }
        flush(&mut core, &udps, &pool, &tx, &mut counters, &mut names);
        drain_events(&mut core, recorder.as_ref(), &desk);
        // A probe answered or missed, a trunk found to refuse TCP: /readyz
        // says so now, not at the next tick.
        if core.take_health_changed() {
            shared.set_trunks(core.trunk_health(Instant::now()));
        }
        if let Some(until) = drain_until {
            let left = core.calls_in_progress();
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
    // Let the last responses leave before the sockets close.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drain_events(&mut core, recorder.as_ref(), &desk);
    let _ = http_stop_tx.send(true);
    tasks.abort_all();
    if let Some(r) = recorder {
        // Calls still open are written too: a restart loses no record.
        r.finish().await;
    }
    Ok(())
}

/// Opens the database, imports the inventory file into an empty one, loads
/// the snapshot, and starts following changes and deleting old records.
async fn open_store(
    config: &Config,
    db: &DatabaseConfig,
    opts: &Options,
) -> anyhow::Result<Arc<Store>> {
    let hub = opts.hub.clone().unwrap_or_default();
    let store = Store::open(db, hub).await?;
    let file = opts
        .inventory
        .as_ref()
        .or(config.emergency.inventory.as_ref());
    if let Some(path) = file {
        if store.inventory_is_empty().await? {
            let inv =
                crate::inventory::Inventory::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let actor = Actor {
                name: format!("import:{}", path.display()),
                role: "system",
            };
            let n = store.import(&inv, &actor).await?;
            tracing::info!(numbers = n, file = %path.display(), "inventory file imported into the empty database");
        } else {
            tracing::info!(file = %path.display(), "the database holds an inventory already: the file is not imported, now or on reload (change numbers through the API)");
        }
    }
    store.refresh().await?;
    store.spawn_follower(Duration::from_millis(db.poll_interval_ms));
    store.spawn_retention(db.retention_days);
    tracing::info!(
        backend = store.backend().as_str(),
        numbers = store.hub().inventory().len(),
        "database ready"
    );
    Ok(store)
}

/// Hands the core's call events to the record pipeline (or lets them go
/// when there is none), so they never pile up in the core.
fn drain_events(core: &mut Core, recorder: Option<&Recorder>, desk: &crate::notify::SecurityDesk) {
    while let Some(ev) = core.poll_event() {
        desk.on_event(&ev);
        if let Some(r) = recorder {
            r.push(ev);
        }
    }
}

/// Reloads the configuration file (SIGHUP or `POST /v1/reload`): applied
/// whole, or refused whole with the running one kept. `built` comes from
/// [`Reloads`], which reads and builds off the driver.
fn apply_reload(
    built: Built,
    core: &mut Core,
    pool: &tcp::TcpPool,
    webhooks: &crate::notify::Webhooks,
    drain_timeout: &mut Duration,
    names: &mut NameCache,
    api: Option<&admin::api::Api>,
) -> Result<(), String> {
    match built {
        Ok((cfg, core_cfg, router)) => {
            pool.set_allowed(core_cfg.allowed.clone());
            let old = core.reconfigure(Instant::now(), core_cfg, Arc::new(TimedRouter(router)));
            // Freeing the old routing data takes milliseconds: not here.
            tokio::task::spawn_blocking(move || drop(old));
            webhooks.store(Arc::new(crate::notify::from_config(&cfg)));
            *drain_timeout = Duration::from_secs(cfg.sip.drain_timeout_s);
            names.set_settings(cfg.sip.name_settings());
            if let Some(api) = api {
                api.reconfigure(cfg.admin.as_ref());
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

type Built = anyhow::Result<(Config, CoreConfig, Arc<dyn Router>)>;
type ReloadReply = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Reloads (SIGHUP, `POST /v1/reload`) read the files and build the routing
/// data on a blocking thread: tens of milliseconds with the shipped data,
/// more with a national boundary set, during which the driver goes on
/// relaying calls. One runs at a time; a request that comes while one runs
/// is served by another started when it ends, so every request sees the
/// files as they were after it was made.
struct Reloads {
    /// The replies owed by the reload running, if one is.
    running: Option<Vec<ReloadReply>>,
    /// Asked for while one runs: the replies owed by the next.
    next: Option<Vec<ReloadReply>>,
    done_tx: mpsc::Sender<Built>,
    done_rx: mpsc::Receiver<Built>,
}

impl Reloads {
    fn new() -> Reloads {
        let (done_tx, done_rx) = mpsc::channel(1);
        Reloads {
            running: None,
            next: None,
            done_tx,
            done_rx,
        }
    }

    fn ask(
        &mut self,
        reply: Option<ReloadReply>,
        opts: &Arc<Options>,
        locals: &Arc<[SocketAddr]>,
        seed: u64,
    ) {
        if self.running.is_some() {
            self.next.get_or_insert_with(Vec::new).extend(reply);
            return;
        }
        self.running = Some(reply.into_iter().collect());
        tracing::info!("reloading the configuration");
        let (opts, locals, tx) = (opts.clone(), locals.clone(), self.done_tx.clone());
        tokio::task::spawn_blocking(move || {
            let _ = tx.blocking_send(reload(&opts, &locals, seed));
        });
    }

    /// The running reload was applied (or refused) with `result`.
    fn finished(
        &mut self,
        result: Result<(), String>,
        opts: &Arc<Options>,
        locals: &Arc<[SocketAddr]>,
        seed: u64,
    ) {
        for reply in self.running.take().unwrap_or_default() {
            let _ = reply.send(result.clone());
        }
        if let Some(waiting) = self.next.take() {
            // The first request starts the next reload; the rest join it.
            let mut waiting = waiting.into_iter();
            self.ask(waiting.next(), opts, locals, seed);
            if let Some(r) = self.running.as_mut() {
                r.extend(waiting);
            }
        }
    }
}

fn reload(opts: &Options, locals: &[SocketAddr], seed: u64) -> Built {
    let path = opts
        .config_path
        .as_ref()
        .context("running on the built-in configuration: nothing to reload from")?;
    let cfg = Config::load(path)?;
    let router = (opts.make_router)(&cfg)?;
    let core_cfg = CoreConfig::from_config(&cfg, locals.to_vec(), seed);
    Ok((cfg, core_cfg, router))
}

/// SIGHUP as a stream (never fires where there are no signals).
struct Hup(Option<tokio::signal::unix::Signal>);

impl Hup {
    /// Completes on the next SIGHUP, giving the stream back for the one
    /// after.
    async fn next(mut self) -> Hup {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
        self
    }
}

fn reload_signal() -> Hup {
    Hup(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok())
}

/// Fetches at most this many locations at once. A flood of calls carrying
/// references must not become a flood of connections; a call that finds
/// every fetch busy is routed at once without its location.
const DEREFERENCE_IN_FLIGHT: usize = 256;

/// Fetches locations given by reference before their calls reach the core.
/// The driver alone holds it; the fetches it spawns take only what they
/// need.
struct Dereferencer {
    client: Option<reqwest::Client>,
    deadline: Duration,
    tx: mpsc::Sender<Inbound>,
    permits: Arc<tokio::sync::Semaphore>,
    busy: crate::logbuf::SharedThrottle,
    /// `emergency.location_servers`.
    servers: Option<Arc<[String]>>,
    /// `emergency.location_fetches_per_server`.
    per_server: crate::held::ServerSlots,
    refused: crate::logbuf::SharedThrottle,
    /// The INVITEs being fetched for, by [`fetch_key`]: their
    /// retransmissions are answered 100 meanwhile, not fetched for again,
    /// and a CANCEL of one waits here to follow it into the core.
    fetching: std::sync::Mutex<HashMap<Vec<u8>, Option<Held>>>,
}

/// A message held back until the INVITE it refers to reaches the core.
type Held = (crate::sip::Message, crate::proxy::Source);

/// What ties an INVITE, its retransmissions and its CANCEL together:
/// Call-ID and top Via branch (RFC 3261 section 9.1).
fn fetch_key(msg: &crate::sip::Message) -> Vec<u8> {
    let mut key = msg.call_id().unwrap_or_default().to_vec();
    key.push(b'\n');
    key.extend_from_slice(msg.top_via().and_then(|v| v.branch()).unwrap_or_default());
    key
}

impl Dereferencer {
    fn new(config: &Config, tx: mpsc::Sender<Inbound>) -> Dereferencer {
        let ms = config.emergency.dereference_timeout_ms.unwrap_or(1000);
        let servers: Option<Arc<[String]>> = config
            .emergency
            .location_servers
            .as_ref()
            .map(|v| v.clone().into());
        let client = (ms > 0)
            .then(|| crate::held::client(servers.clone()).ok())
            .flatten();
        Dereferencer {
            client,
            deadline: Duration::from_millis(ms),
            tx,
            permits: Arc::new(tokio::sync::Semaphore::new(DEREFERENCE_IN_FLIGHT)),
            busy: Default::default(),
            servers,
            // Servers the operator listed are its carriers' own: a surge of
            // calls through one of them must not lose their locations, so
            // only the overall cap holds them. A server the caller names
            // gets a small share.
            per_server: crate::held::ServerSlots::new(
                config.emergency.location_fetches_per_server.unwrap_or(
                    if config.emergency.location_servers.is_some() {
                        DEREFERENCE_IN_FLIGHT
                    } else {
                        crate::held::PER_SERVER
                    },
                ),
            ),
            refused: Default::default(),
            fetching: Default::default(),
        }
    }

    /// Takes an initial INVITE that carries only a location reference and
    /// answers it `100 Trying` at once, as the core would; gives every
    /// other message back. A source not allowed (whose request must not
    /// make the router send anything anywhere) or a router refusing every
    /// new call gets its INVITE back too; the core is asked only about an
    /// INVITE with a reference, so other messages cost nothing.
    fn take(
        &self,
        msg: crate::sip::Message,
        source: crate::proxy::Source,
        core: &mut Core,
    ) -> Option<(crate::sip::Message, crate::proxy::Source)> {
        let Some(client) = &self.client else {
            return Some((msg, source));
        };
        if msg.method() == crate::sip::Method::Cancel {
            return self.hold_cancel(msg, source);
        }
        let initial_invite =
            msg.method() == crate::sip::Method::Invite && msg.to().and_then(|t| t.tag()).is_none();
        let uri = initial_invite
            .then(|| crate::emergency::location::reference_to_fetch(&msg))
            .flatten();
        let may_fetch = |core: &mut Core| {
            core.source_allowed(&source) && core.load() != crate::proxy::Load::Full
        };
        let Some(uri) = uri.filter(|_| may_fetch(core)) else {
            return Some((msg, source));
        };
        if !crate::held::host_allowed(&uri, self.servers.as_deref()) {
            let (reason, why) = if self.servers.is_some() {
                ("not_listed", "not one of emergency.location_servers")
            } else {
                ("reserved", "the router's own host, link-local or multicast, which only emergency.location_servers can allow")
            };
            metrics::counter!(m::DEREFERENCE_SKIPPED, "reason" => reason).increment(1);
            if let Some(calls) = self.refused.hit() {
                tracing::warn!(calls, host = %crate::held::host_of(&uri), why, call_id = %crate::sip::text::Printable(msg.call_id().unwrap_or_default()), "location by reference not fetched; routing without it (count since the last such line)");
            }
            return Some((msg, source));
        }
        let key = fetch_key(&msg);
        if self.fetching.lock().is_ok_and(|f| f.contains_key(&key)) {
            tracing::debug!(call_id = %crate::sip::text::Printable(msg.call_id().unwrap_or_default()), "retransmission of an INVITE whose location is being fetched; answered 100 and dropped");
            core.trying(&msg, &source);
            return None;
        }
        let Some(slot) = self.per_server.try_take(&uri) else {
            metrics::counter!(m::DEREFERENCE_SKIPPED, "reason" => "server_busy").increment(1);
            if let Some(calls) = self.busy.hit() {
                tracing::warn!(calls, host = %crate::held::host_of(&uri), call_id = %crate::sip::text::Printable(msg.call_id().unwrap_or_default()), "location by reference not fetched: its server has emergency.location_fetches_per_server fetches under way; routing without it (count since the last such line)");
            }
            return Some((msg, source));
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            metrics::counter!(m::DEREFERENCE_SKIPPED, "reason" => "busy").increment(1);
            if let Some(calls) = self.busy.hit() {
                tracing::warn!(calls, in_flight = DEREFERENCE_IN_FLIGHT, call_id = %crate::sip::text::Printable(msg.call_id().unwrap_or_default()), "location by reference not fetched: every fetch busy; routing without it (count since the last such line)");
            }
            return Some((msg, source));
        };
        if let Ok(mut f) = self.fetching.lock() {
            f.insert(key, None);
        }
        core.trying(&msg, &source);
        let (client, deadline, tx) = (client.clone(), self.deadline, self.tx.clone());
        tokio::spawn(async move {
            let _permit = (permit, slot);
            let call_id =
                crate::sip::text::Printable(msg.call_id().unwrap_or_default()).to_string();
            let fetched = crate::held::dereference(&client, &uri, deadline).await;
            let outcome = fetched.as_ref().map_or_else(|e| e.outcome(), |_| "ok");
            metrics::counter!(m::DEREFERENCES, "outcome" => outcome).increment(1);
            let doc = match fetched {
                Ok(doc) => {
                    tracing::info!(%call_id, "location fetched by reference");
                    Some(doc)
                }
                Err(e) => {
                    tracing::warn!(%call_id, error = %e, "location by reference not fetched; routing without it");
                    None
                }
            };
            let _ = tx
                .send(Inbound::Dereferenced(Box::new(msg), source, doc))
                .await;
        });
        None
    }

    /// A CANCEL of an INVITE whose location is being fetched waits for it:
    /// the core would answer it 481 now, and then route the call the caller
    /// gave up on. Its retransmissions meanwhile are dropped (the first
    /// one gets the core's answer). Any other CANCEL is given back.
    fn hold_cancel(&self, msg: crate::sip::Message, source: crate::proxy::Source) -> Option<Held> {
        let Ok(mut fetching) = self.fetching.lock() else {
            return Some((msg, source));
        };
        if fetching.is_empty() {
            return Some((msg, source));
        }
        match fetching.get_mut(&fetch_key(&msg)) {
            Some(held @ None) => {
                tracing::debug!(call_id = %crate::sip::text::Printable(msg.call_id().unwrap_or_default()), "CANCEL of an INVITE whose location is being fetched; held until the INVITE reaches the core");
                *held = Some((msg, source));
                None
            }
            Some(Some(_)) => None,
            None => Some((msg, source)),
        }
    }

    /// The fetch for `invite` is over and the INVITE goes to the core now:
    /// gives back the CANCEL held for it, to follow it.
    fn done(&self, invite: &crate::sip::Message) -> Option<Held> {
        self.fetching
            .lock()
            .ok()
            .and_then(|mut f| f.remove(&fetch_key(invite)))
            .flatten()
    }
}

/// Lets go of the log buffer (writing out what it gathered) however the
/// driver ends.
struct LogRelease;

impl Drop for LogRelease {
    fn drop(&mut self) {
        crate::logbuf::hold(false);
    }
}

/// How many datagrams are read from one socket before the driver looks at
/// its other inputs.
const BATCH: usize = 256;

/// The driver's own clock-driven work (health page, gauges).
const TICK: Duration = Duration::from_secs(1);

/// The core's timers wake the driver on a grid of this step: one wake-up
/// serves every timer due within it, instead of one per millisecond when
/// thousands of transactions linger. A timer fires at most this late (the
/// shortest SIP timer, T1, is 500 ms); timers that come due while the
/// driver is awake for messages are served then, on time.
const TIMER_GRID: Duration = Duration::from_millis(10);

/// `at` rounded up to the timer grid that starts at `origin`.
fn on_grid(origin: tokio::time::Instant, at: tokio::time::Instant) -> tokio::time::Instant {
    let step = TIMER_GRID.as_nanos();
    let since = at.saturating_duration_since(origin).as_nanos();
    let slots = since.div_ceil(step);
    let nanos = u64::try_from(slots * step).unwrap_or(u64::MAX);
    origin + Duration::from_nanos(nanos)
}

fn handle_message(
    core: &mut Core,
    now: Instant,
    msg: crate::sip::Message,
    source: crate::proxy::Source,
    deref: &Dereferencer,
) {
    let buf = msg.buf().clone();
    guarded(core, now, &buf, source, |core| {
        if let Some((msg, source)) = deref.take(msg, source, core) {
            core.handle_message(now, msg, source);
        }
    });
}

/// Runs the core on one message. A panic there is a bug, never an expected
/// outcome, but one message must not stop every call the router carries:
/// the panic is logged (its text just before, by the panic hook) with the
/// message's Call-ID and counted in `sosrouter_internal_errors_total`,
/// which pages, and the router goes on. A request other than ACK is
/// answered `500`, so that the carrier fails the call over to its other
/// router at once instead of waiting on one that sent `100 Trying`. Timers
/// are not guarded: a timer that panicked would panic again at once.
fn guarded(
    core: &mut Core,
    now: Instant,
    buf: &bytes::Bytes,
    source: crate::proxy::Source,
    f: impl FnOnce(&mut Core),
) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(core))).is_ok() {
        return;
    }
    metrics::counter!(m::INTERNAL_ERRORS).increment(1);
    let msg = crate::sip::parse_lenient(buf.clone());
    let call_id = msg
        .as_ref()
        .and_then(|m| m.call_id())
        .map(|c| crate::sip::text::Printable(c).to_string())
        .unwrap_or_default();
    tracing::error!(
        %call_id,
        "internal error while handling a message: message dropped, the router goes on"
    );
    crate::logbuf::flush();
    // The 500 goes out from a server transaction, so that a retransmission
    // of the request gets it again if the first is lost. Should that panic
    // too, it is sent once, outside any transaction.
    let stream = source.proto == crate::proxy::Proto::Tcp;
    if let Ok(req) = crate::sip::receive(buf.clone(), stream, &Limits::default()) {
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            core.answer_internal_error(now, &req, source)
        }));
        if answered.is_ok() {
            return;
        }
    }
    if let Some(req) = msg.filter(|m| m.is_request() && m.method() != crate::sip::Method::Ack) {
        let answer = crate::sip::build::response(
            &req,
            Some(source.peer),
            500,
            "Server Internal Error",
            Some("sos-err"),
            &[],
            None,
        );
        core.answer_unparsed(now, answer, &source);
    }
}

fn handle(
    core: &mut Core,
    now: Instant,
    inbound: Inbound,
    deref: &Dereferencer,
    tcp_gauge: &metrics::Gauge,
    pool: &tcp::TcpPool,
    names: &mut NameCache,
) {
    match inbound {
        Inbound::Message(msg, source) => handle_message(core, now, *msg, source, deref),
        Inbound::Dereferenced(msg, source, doc) => {
            // Every message reaches the core through this driver, so no
            // CANCEL can slip in between the INVITE and the one held for it.
            let held = deref.done(&msg);
            let buf = msg.buf().clone();
            guarded(core, now, &buf, source, |core| {
                core.handle_message_with(now, *msg, source, doc)
            });
            if let Some((cancel, source)) = held {
                let buf = cancel.buf().clone();
                guarded(core, now, &buf, source, |core| {
                    core.handle_message(now, cancel, source)
                });
            }
        }
        Inbound::SendFailed { token } => core.handle_send_failure(now, token),
        Inbound::Resolved { host, port, addr } => {
            let a = names.answer(&host, port, addr, now);
            let result = if addr.is_some() { "ok" } else { "failed" };
            metrics::counter!(m::NAME_LOOKUPS, "result" => result).increment(1);
            if a.kept_stale {
                tracing::warn!(%host, port, addr = ?a.addr, "could not resolve a next hop: its last address stays in use");
            } else if a.addr.is_none() {
                tracing::warn!(%host, port, failed = a.failed.len(), "could not resolve a next hop");
            } else if a.moved {
                tracing::info!(%host, port, addr = ?a.addr, "a next hop's address changed");
            }
            for token in a.failed.into_iter().filter_map(|t| t.token) {
                core.handle_send_failure(now, token);
            }
        }
        Inbound::ConnOpened(_) | Inbound::ConnClosed(_) => tcp_gauge.set(pool.open() as f64),
    }
}

/// Takes what the I/O tasks have queued, up to a batch, without waiting.
fn drain_inbound(
    core: &mut Core,
    now: Instant,
    rx: &mut mpsc::Receiver<Inbound>,
    deref: &Dereferencer,
    tcp_gauge: &metrics::Gauge,
    pool: &tcp::TcpPool,
    names: &mut NameCache,
) {
    for _ in 0..BATCH {
        match rx.try_recv() {
            Ok(more) => handle(core, now, more, deref, tcp_gauge, pool, names),
            Err(_) => break,
        }
    }
}

/// A future polled only once it has asked to be woken: the driver's loop
/// turns for every datagram, and its signal futures need no look then.
struct Woken<F> {
    fut: std::pin::Pin<Box<F>>,
    gate: Arc<Gate>,
}

struct Gate {
    woken: std::sync::atomic::AtomicBool,
    outer: futures_util::task::AtomicWaker,
}

impl std::task::Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Release);
        self.outer.wake();
    }
}

impl<F: Future> Woken<F> {
    fn new(fut: F) -> Woken<F> {
        Woken {
            fut: Box::pin(fut),
            gate: Arc::new(Gate {
                // Polled the first time.
                woken: std::sync::atomic::AtomicBool::new(true),
                outer: futures_util::task::AtomicWaker::new(),
            }),
        }
    }
}

impl<F: Future> Future for Woken<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.get_mut();
        this.gate.outer.register(cx.waker());
        if !this
            .gate
            .woken
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            return std::task::Poll::Pending;
        }
        let waker = std::task::Waker::from(this.gate.clone());
        this.fut
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
    }
}

fn flush(
    core: &mut Core,
    udps: &[udp::UdpEndpoint],
    pool: &tcp::TcpPool,
    tx: &mpsc::Sender<Inbound>,
    counters: &mut m::MessageCounters,
    names: &mut NameCache,
) {
    // What waited for a host name goes first, in the order it came.
    for (addr, t) in names.take_ready() {
        send_to(addr, t, udps, pool, tx, counters);
    }
    let now = Instant::now();
    while let Some(t) = core.poll_transmit() {
        match names.route(t, now) {
            Next::Send(addr, t) => send_to(addr, t, udps, pool, tx, counters),
            Next::Queued => {}
            Next::Full(t) => {
                tracing::warn!(target = ?t.dest.target, "next hop's name: too many names, or too many messages waiting for its address");
                let transport = match t.dest.proto {
                    Proto::Udp => "udp",
                    Proto::Tcp => "tcp",
                };
                fail(t.token, transport, tx);
            }
        }
    }
    start_lookups(names, udps, tx);
}

/// Looks up each name the cache asks for off the driver task; the answer
/// comes back as [`Inbound::Resolved`]. An address of a family the router
/// has a UDP socket for is preferred.
fn start_lookups(names: &mut NameCache, udps: &[udp::UdpEndpoint], tx: &mpsc::Sender<Inbound>) {
    let timeout = names.settings().timeout;
    for (host, port) in names.take_lookups() {
        let v4 = udps.iter().any(|u| u.local.is_ipv4());
        let v6 = udps.iter().any(|u| u.local.is_ipv6());
        let tx = tx.clone();
        tokio::spawn(async move {
            let found =
                match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                    .await
                {
                    Ok(Ok(addrs)) => {
                        let addrs: Vec<SocketAddr> = addrs.collect();
                        addrs
                            .iter()
                            .find(|a| if a.is_ipv4() { v4 } else { v6 })
                            .or(addrs.first())
                            .copied()
                    }
                    _ => None,
                };
            let _ = tx
                .send(Inbound::Resolved {
                    host,
                    port,
                    addr: found,
                })
                .await;
        });
    }
}

fn fail(token: Option<u64>, transport: &'static str, tx: &mpsc::Sender<Inbound>) {
    metrics::counter!(m::SEND_FAILURES, "transport" => transport).increment(1);
    if let Some(token) = token {
        let _ = tx.try_send(Inbound::SendFailed { token });
    }
}

fn send_to(
    addr: SocketAddr,
    t: Transmit,
    udps: &[udp::UdpEndpoint],
    pool: &tcp::TcpPool,
    tx: &mpsc::Sender<Inbound>,
    counters: &mut m::MessageCounters,
) {
    let Transmit { dest, bytes, token } = t;
    counters.sent(dest.proto);
    match dest.proto {
        Proto::Udp => {
            if let Err(e) = udp::send(udps, addr, bytes) {
                tracing::debug!(%addr, error = %e, "udp send failed");
                fail(token, "udp", tx);
            }
        }
        Proto::Tcp => pool.send(addr, dest.conn, bytes, token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Decision, RouteContext, Source, StaticRouter, Target};

    /// The table router, except that a call to 666 hits a bug.
    struct Buggy(StaticRouter);

    impl Router for Buggy {
        fn route(&self, req: &crate::sip::Message, ctx: &RouteContext<'_>) -> Decision {
            if req.request_uri_bytes().starts_with(b"sip:666@") {
                panic!("a bug in the routing phase");
            }
            self.0.route(req, ctx)
        }
    }

    fn invite(number: &str, call_id: &str) -> crate::sip::Message {
        let text = format!(
            "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{number}@127.0.0.1>\r\nFrom: <sip:+13035550117@127.0.0.1>;tag=1\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+13035550117@127.0.0.1:5061>\r\nContent-Length: 0\r\n\r\n"
        );
        crate::sip::receive(bytes::Bytes::from(text), false, &Limits::default()).unwrap()
    }

    #[test]
    fn a_bug_met_by_one_message_costs_that_message_only() {
        let c = Config::from_toml(
            r#"
[sip]
listen = ["udp:127.0.0.1:5060"]
allow = ["127.0.0.1/32"]
[[trunk]]
name = "psap"
kind = "psap"
uri = "sip:127.0.0.1:5070"
[[route]]
numbers = ["911", "666"]
targets = ["psap"]
"#,
        )
        .unwrap();
        let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let cfg = CoreConfig::from_config(&c, vec![local], 7);
        let mut core = Core::new(cfg, Arc::new(Buggy(StaticRouter::new(&c))));
        let source = Source {
            proto: Proto::Udp,
            peer: "127.0.0.1:5061".parse().unwrap(),
            local,
            conn: None,
        };
        let now = Instant::now();
        let psap = Target::Addr("127.0.0.1:5070".parse().unwrap());
        let forwarded = |core: &mut Core| {
            std::iter::from_fn(|| core.poll_transmit())
                .filter(|t| t.dest.target == psap && t.bytes.starts_with(b"INVITE "))
                .count()
        };

        let bad = invite("666", "bug-1");
        let buf = bad.buf().clone();
        guarded(&mut core, now, &buf, source, |core| {
            core.handle_message(now, bad, source)
        });
        let sent: Vec<Transmit> = std::iter::from_fn(|| core.poll_transmit()).collect();
        assert!(
            sent.iter().all(|t| t.dest.target != psap),
            "nothing reaches the PSAP"
        );
        let answers: Vec<String> = sent
            .iter()
            .map(|t| String::from_utf8_lossy(&t.bytes).into_owned())
            .collect();
        assert!(
            answers
                .iter()
                .any(|a| a.starts_with("SIP/2.0 500 Server Internal Error\r\n")
                    && a.contains("Call-ID: bug-1\r\n")),
            "the caller is told at once, so its carrier fails over: {answers:?}"
        );
        // The 500 came from a server transaction: when its datagram is lost,
        // the INVITE's retransmission gets it again (and does not meet the
        // bug again), and Timer G repeats it until the ACK.
        let again = invite("666", "bug-1");
        let buf = again.buf().clone();
        guarded(&mut core, now, &buf, source, |core| {
            core.handle_message(now, again, source)
        });
        let repeated: Vec<String> = std::iter::from_fn(|| core.poll_transmit())
            .map(|t| String::from_utf8_lossy(&t.bytes).into_owned())
            .collect();
        assert_eq!(
            repeated
                .iter()
                .filter(|a| a.starts_with("SIP/2.0 500 Server Internal Error\r\n"))
                .count(),
            1,
            "{repeated:?}"
        );
        let later = now + std::time::Duration::from_millis(600);
        core.handle_timeout(later);
        assert!(
            std::iter::from_fn(|| core.poll_transmit())
                .any(|t| t.bytes.starts_with(b"SIP/2.0 500 ")),
            "Timer G retransmits the 500"
        );

        let good = invite("911", "call-2");
        let buf = good.buf().clone();
        guarded(&mut core, now, &buf, source, |core| {
            core.handle_message(now, good, source)
        });
        assert_eq!(forwarded(&mut core), 1, "the next call is routed as ever");
    }
}
