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

mod control;
mod fetch;
mod guard;
mod listen;
mod services;
mod sip_loop;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::metrics as m;
use crate::proxy::{Core, CoreConfig, Router};
use crate::store::Hub;

pub use listen::{bind, Bound};

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

    fn location_reference(&self, req: &crate::sip::Message) -> Option<String> {
        self.0.location_reference(req)
    }
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
    let (services, api_reloads) = services::Services::start(&config, &opts, &mut bound).await?;
    let control = control::watch(shutdown, services.store.clone(), api_reloads);
    on_bound(&bound);
    let mut locals: Vec<SocketAddr> = bound.udp.clone();
    locals.extend(&bound.tcp);
    let locals: Arc<[SocketAddr]> = locals.into();
    let seed: u64 = rand::random();
    let router: Arc<dyn Router> = Arc::new(TimedRouter((opts.make_router)(&config)?));
    let mut core = Core::new(
        CoreConfig::from_config(&config, locals.to_vec(), seed),
        router,
    );
    core.start(Instant::now());
    let sip = sip_loop::SipLoop::new(&config, core, udps, tcps, services, opts, locals, seed);
    let services = sip.run(control).await;
    services.finish().await;
    Ok(())
}
