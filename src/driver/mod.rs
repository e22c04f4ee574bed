//! The router process: the I/O edge around the sans-IO core. It binds the
//! listeners, starts the services beside SIP, and drives the proxy core
//! on one task until the shutdown future completes and the calls in
//! progress have drained.
//!
//! - `listen.rs`: the SIP sockets.
//! - `services.rs`: the database, the operators' API, `/metrics`, call
//!   records and webhooks, wired once at start.
//! - `sip_loop.rs`: the task that owns the core: messages in, timers,
//!   messages out, call events on.
//! - `control.rs`: shutdown, SIGHUP and `POST /v1/reload` as messages to
//!   the loop; reloads built off it.
//! - `fetch.rs`: the HTTP fetches of locations by reference the core asks
//!   for.
//! - `guard.rs`: a bug met by one message costs that message only.
//! - `process.rs`: `sosrouter run`: logging, the runtime, the signals.

mod control;
mod fetch;
mod guard;
mod listen;
pub mod process;
mod services;
mod sip_loop;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, RoutingMode};
use crate::emergency::EmergencyRouter;
use crate::metrics as m;
use crate::proxy::{Core, CoreConfig, Router, StaticRouter};
use crate::store::Hub;

pub use listen::{bind, Bound};

/// Builds the routing phase from a configuration (at start and on reload).
pub type RouterFactory = Arc<dyn Fn(&Config) -> anyhow::Result<Box<dyn Router>> + Send + Sync>;

/// How to run: the config file (for reloads) and how to build the router.
pub struct Options {
    pub config_path: Option<PathBuf>,
    pub make_router: RouterFactory,
    /// Install the global Prometheus recorder (once per process).
    pub install_metrics: bool,
    /// With a database: where the inventory snapshot is published. The
    /// loop hands each new one to the core. `None` makes one nobody
    /// follows.
    pub hub: Option<Arc<Hub>>,
    /// An inventory file to import into an empty database (the
    /// `--inventory` option; else `emergency.inventory`).
    pub inventory: Option<PathBuf>,
}

/// Times the routing phase for the histogram, at the I/O edge so the core
/// itself never reads the clock.
struct TimedRouter(Box<dyn Router>, metrics::Histogram);

impl TimedRouter {
    /// The histogram's handle is taken once, not looked up per call.
    fn new(router: Box<dyn Router>) -> TimedRouter {
        TimedRouter(router, metrics::histogram!(m::ROUTING_DECISION))
    }
}

impl Router for TimedRouter {
    fn route(
        &mut self,
        req: &crate::sip::Message,
        ctx: &crate::proxy::RouteContext<'_>,
    ) -> crate::proxy::Decision {
        let start = Instant::now();
        let d = self.0.route(req, ctx);
        self.1.record(start.elapsed().as_secs_f64());
        d
    }

    fn location_reference(&self, req: &crate::sip::Message) -> Option<String> {
        self.0.location_reference(req)
    }

    fn lost_query(
        &mut self,
        req: &crate::sip::Message,
        ctx: &crate::proxy::RouteContext<'_>,
    ) -> Option<crate::proxy::LostQuery> {
        self.0.lost_query(req, ctx)
    }

    fn set_inventory(
        &mut self,
        inventory: crate::inventory::SharedInventory,
    ) -> Option<crate::inventory::SharedInventory> {
        self.0.set_inventory(inventory)
    }

    fn poll_lost_refresh(&mut self) -> Option<crate::proxy::LostRefresh> {
        self.0.poll_lost_refresh()
    }

    fn lost_refreshed(
        &mut self,
        refresh: crate::proxy::LostRefresh,
        answer: crate::proxy::LostAnswer<'_>,
        wall: Option<time::OffsetDateTime>,
    ) {
        self.0.lost_refreshed(refresh, answer, wall)
    }

    fn take_lost_caches(&mut self) -> crate::proxy::LostCaches {
        self.0.take_lost_caches()
    }

    fn keep_lost_caches(&mut self, old: crate::proxy::LostCaches) {
        self.0.keep_lost_caches(old)
    }
}

/// The routing phase for a configuration: the emergency router, or the
/// static table when `routing.mode = "static"`. `inventory` overrides the
/// config's inventory path (the `--inventory` option). With a database,
/// the emergency router starts empty and the loop hands it the database's
/// snapshot, before any call and after every change.
pub fn routers(inventory: Option<PathBuf>, database: bool) -> RouterFactory {
    Arc::new(move |c: &Config| {
        let r: Box<dyn Router> = match c.routing.mode {
            RoutingMode::Static => Box::new(StaticRouter::new(c)),
            RoutingMode::Emergency if database => {
                let mut c = c.clone();
                c.emergency.inventory = None;
                let r =
                    EmergencyRouter::from_config(&c, None).map_err(|e| anyhow::anyhow!("{e}"))?;
                Box::new(r)
            }
            RoutingMode::Emergency => {
                let r = EmergencyRouter::from_config(c, inventory.as_deref())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                tracing::info!(numbers = r.inventory().len(), "emergency router ready");
                metrics::gauge!(m::INVENTORY_NUMBERS).set(r.inventory().len() as f64);
                Box::new(r)
            }
        };
        Ok(r)
    })
}

/// Runs the router until `shutdown` completes, then drains: new calls are
/// refused, calls in progress get up to `sip.drain_timeout_s` to finish.
pub async fn run(
    config: Config,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    let opts = Arc::new(opts);
    let (udps, tcps, mut bound) = bind(&config).await?;
    let http_tls = Arc::new(arc_swap::ArcSwapOption::new(
        tcps.tls_setup.as_ref().and_then(|s| s.http_server()),
    ));
    let (services, api_reloads) =
        services::Services::start(&config, &opts, &mut bound, http_tls).await?;
    let control = control::watch(shutdown, services.store.clone(), api_reloads);
    on_bound(&bound);
    let mut locals: Vec<SocketAddr> = bound.udp.clone();
    locals.extend(bound.tcp.iter().chain(&bound.tls));
    let locals: Arc<[SocketAddr]> = locals.into();
    let seed: u64 = rand::random();
    let router: Box<dyn Router> = Box::new(TimedRouter::new((opts.make_router)(&config)?));
    let mut core = Core::new(
        CoreConfig::from_config(&config, locals.to_vec(), seed)
            .with_tls_port(bound.tls.first().map(|a| a.port())),
        router,
    );
    core.set_wall_clock(Instant::now(), time::OffsetDateTime::now_utc());
    core.start(Instant::now());
    let sip = sip_loop::SipLoop::new(&config, core, udps, tcps, services, opts, locals, seed);
    let services = sip.run(control).await;
    services.finish().await;
    Ok(())
}
