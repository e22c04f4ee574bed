//! The HTTP side: health endpoints on the admin listener, `/metrics` on
//! its own listener, and with a database the operators' API ([`api`]) next
//! to the health endpoints. Everything here reads shared state the driver
//! publishes or the database; nothing here touches a call.

pub mod api;
pub mod auth;
pub mod http;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
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

    /// Ready: not draining, not refusing every new call for overload, and
    /// a screening or last-resort trunk is up, so every emergency call has
    /// somewhere to go.
    pub fn ready(&self) -> (bool, String) {
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

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let (ready, reason) = shared.ready();
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    http::serve(name, addr, app, limits, shutdown).await
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
            let (ready, reason) = shared.ready();
            assert_eq!(ready, want, "level {level}: {reason}");
            if !want {
                assert!(reason.contains("overloaded"), "{reason}");
            }
        }
    }
}
