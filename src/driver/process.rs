//! `sosrouter run`: logging, the open file limit, the runtime, and the
//! router until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;

/// `sosrouter run`: the router on `config` (read from `config_path`, which
/// reloads read again, or the shipped one) until SIGINT or SIGTERM.
pub fn run(config: Config, config_path: Option<PathBuf>, inventory: Option<PathBuf>) -> ExitCode {
    let (log_handle, log_base) = crate::logging::init(&config.log.level, config.log.json);
    crate::fds::raise();
    let hub = crate::config::DatabaseConfig::effective(&config).map(|_| crate::store::Hub::new());
    let make_router = super::routers(inventory.clone(), hub.is_some());
    // Build once here so a bad inventory or rules file stops the start with
    // a clear message, before any socket is bound.
    if let Err(e) = make_router(&config) {
        tracing::error!("{e:#}");
        eprintln!("sosrouter: {e:#}");
        return ExitCode::from(2);
    }
    // One thread: a datagram's trip from the socket to the core and out
    // again wakes no other thread (a third of the CPU per call and a third
    // of the memory of the multi-thread runtime at 500 calls/s; see
    // docs/performance.md). Blocking work (SQLite) has threads of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sosrouter: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        tokio::spawn(crate::logging::level_signals(log_handle, log_base));
        let opts = super::Options {
            config_path: config_path.clone(),
            make_router,
            install_metrics: true,
            hub,
            inventory,
        };
        let scheme = |tls: bool| if tls { "https" } else { "http" };
        let admin_scheme = scheme(config.admin.as_ref().is_some_and(|a| a.tls));
        let metrics_scheme = scheme(config.metrics.as_ref().is_some_and(|m| m.tls));
        super::run(config, opts, shutdown_signal(), move |bound| {
            for a in &bound.udp {
                tracing::info!("listening sip udp {a}");
            }
            for a in &bound.tcp {
                tracing::info!("listening sip tcp {a}");
            }
            for a in &bound.tls {
                tracing::info!("listening sip tls {a}");
            }
            if let Some(a) = bound.admin {
                tracing::info!("listening admin {admin_scheme} {a}");
            }
            if let Some(a) = bound.metrics {
                tracing::info!("listening metrics {metrics_scheme} {a}");
            }
        })
        .await
    });
    // A reload stuck reading a file (a hung network mount) must not hold
    // the exit: blocking work gets a bounded time to end.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sosrouter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
