//! The HTTP side: health endpoints on the admin listener, `/metrics` on
//! its own listener, and with a database the operators' API ([`api`]) next
//! to the health endpoints. Everything here reads shared state the driver
//! publishes or the database; nothing here touches a call.

pub mod api;
pub mod auth;
pub mod ecrf_check;
pub mod http;
pub mod lost;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::proxy::{Load, TrunkHealth, TrunkState};

/// What the driver publishes for the HTTP side.
#[derive(Default)]
pub struct Shared {
    pub trunks: RwLock<Vec<TrunkHealth>>,
    /// Set once shutdown has begun: no new calls are taken.
    pub draining: AtomicBool,
    /// The core's admission state ([`Load::level`]), once a second.
    pub overload: AtomicU8,
    /// With a database: where its inventory snapshot is published.
    pub inventory: Option<Arc<crate::store::Hub>>,
}

/// How far the inventory is, for the health pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryState {
    /// No database: the inventory, if any, was read from its file at start.
    Static,
    /// The database's inventory is being read: calls are routed meanwhile,
    /// those without a location by the country defaults.
    Loading,
    Loaded,
}

impl InventoryState {
    pub fn as_str(self) -> &'static str {
        match self {
            InventoryState::Static => "file",
            InventoryState::Loading => "loading",
            InventoryState::Loaded => "loaded",
        }
    }
}

impl Shared {
    pub fn set_trunks(&self, trunks: Vec<TrunkHealth>) {
        if let Ok(mut t) = self.trunks.write() {
            *t = trunks;
        }
    }

    pub fn load(&self) -> Load {
        Load::from_level(self.overload.load(Ordering::Relaxed))
    }

    pub fn inventory_state(&self) -> InventoryState {
        match &self.inventory {
            None => InventoryState::Static,
            Some(h) if h.loaded() => InventoryState::Loaded,
            Some(_) => InventoryState::Loading,
        }
    }

    /// Ready: not draining, not refusing every new call for overload, and
    /// a screening or last-resort trunk is up, so every emergency call has
    /// somewhere to go. While the database's inventory loads the router
    /// routes calls (see [`InventoryState::Loading`]) and counts as ready,
    /// saying so; with `strict`, it does not until the inventory is loaded
    /// (for a fleet whose balancer should prefer loaded instances).
    pub fn ready(&self, strict: bool) -> (bool, String) {
        let (ready, reason) = self.routes_calls();
        if !ready || self.inventory_state() != InventoryState::Loading {
            return (ready, reason);
        }
        let why = match self.inventory.as_ref().and_then(|h| h.load_error()) {
            Some(e) => format!("the inventory could not be loaded yet ({e}); calls without a location are routed by the country defaults"),
            None => "the inventory is loading: calls without a location are routed by the country defaults".into(),
        };
        (!strict, why)
    }

    fn routes_calls(&self) -> (bool, String) {
        if self.draining.load(Ordering::Relaxed) {
            return (false, "shutting down".into());
        }
        if self.load() == Load::Full {
            return (false, "overloaded: new calls refused with 503".into());
        }
        let trunks = self.trunks.read().map(|t| t.clone()).unwrap_or_default();
        let safety_net = trunks.iter().any(|t| {
            (t.kind == "screening" || t.kind == "last-resort") && t.state == TrunkState::Up
        });
        if safety_net {
            (true, "ok".into())
        } else {
            (false, "no screening or last-resort trunk is up".into())
        }
    }
}

/// Routes of the admin listener that need no token.
pub fn health_routes(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(shared)
}

async fn readyz(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let strict = q.get("inventory").is_some_and(|v| v == "loaded");
    let (ready, reason) = shared.ready(strict);
    let state = shared.inventory_state();
    let inventory = match &shared.inventory {
        None => json!({"state": state.as_str()}),
        Some(h) => json!({
            "state": state.as_str(),
            "numbers": h.progress(),
            "error": h.load_error(),
        }),
    };
    let trunks = shared.trunks.read().map(|t| t.clone()).unwrap_or_default();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({
            "ready": ready,
            "reason": reason,
            "overload": shared.load().as_str(),
            "inventory": inventory,
            "trunks": trunks,
        })),
    )
        .into_response()
}

/// The metrics listener: `/metrics` in the Prometheus text format.
pub fn metrics_routes(handle: PrometheusHandle) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    )
}

/// Serves `app` on `addr` within `limits` until `shutdown` completes
/// (see [`http`]); `name` labels its metrics and log lines.
pub async fn serve(
    name: &'static str,
    addr: SocketAddr,
    app: axum::Router,
    limits: http::HttpLimits,
    tls: Option<http::HttpTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    http::serve(name, addr, app, limits, tls, shutdown).await
}

/// Installs the Prometheus recorder with the router's histograms and help
/// texts. Once per process.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    use crate::metrics as m;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(m::CALL_SETUP.into()), m::CALL_SETUP_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(m::ROUTING_DECISION.into()),
            m::ROUTING_BUCKETS,
        )?
        .install_recorder()?;
    for (name, help) in m::ALL {
        if name.ends_with("_total") {
            metrics::describe_counter!(*name, *help);
        } else if *name == m::CALL_SETUP || *name == m::ROUTING_DECISION {
            metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
        } else {
            metrics::describe_gauge!(*name, *help);
        }
    }
    metrics::gauge!(m::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_while_every_new_call_is_refused_for_overload() {
        let shared = Shared::default();
        shared.set_trunks(vec![TrunkHealth::new(
            "last-resort",
            "last-resort",
            std::time::Instant::now(),
            false,
        )]);
        // (overload level, ready)
        for (level, want) in [(0, true), (1, true), (2, false), (0, true)] {
            shared.overload.store(level, Ordering::Relaxed);
            let (ready, reason) = shared.ready(false);
            assert_eq!(ready, want, "level {level}: {reason}");
            if !want {
                assert!(reason.contains("overloaded"), "{reason}");
            }
        }
    }

    #[test]
    fn while_the_inventory_loads_the_router_is_ready_only_when_not_strict() {
        let hub = crate::store::Hub::new();
        let shared = Shared {
            inventory: Some(hub.clone()),
            ..Shared::default()
        };
        shared.set_trunks(vec![TrunkHealth::new(
            "screening",
            "screening",
            std::time::Instant::now(),
            false,
        )]);
        assert_eq!(shared.inventory_state(), InventoryState::Loading);
        let (ready, reason) = shared.ready(false);
        assert!(ready, "{reason}");
        assert!(reason.contains("country defaults"), "{reason}");
        assert!(!shared.ready(true).0);
        hub.set_load_error(Some("database: connection refused".into()));
        let (_, reason) = shared.ready(true);
        assert!(reason.contains("connection refused"), "{reason}");
        hub.publish(crate::inventory::Inventory::empty(), Default::default(), 1);
        assert_eq!(shared.inventory_state(), InventoryState::Loaded);
        assert_eq!(shared.ready(true), (true, "ok".to_string()));
        assert_eq!(hub.load_error(), None);
        // Draining wins over everything.
        shared.draining.store(true, Ordering::Relaxed);
        assert!(!shared.ready(false).0);
    }
}
