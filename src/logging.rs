//! Logging to stderr (text or JSON lines) through the log buffer
//! ([`crate::logbuf`]), and the signals that change its level while the
//! router runs.

/// Changes the log filter while the router runs.
pub type LogHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Logging to stderr, text or JSON lines. The filter comes from `RUST_LOG`
/// when set, else from the configuration; it can change at run time.
pub fn init(level: &str, json: bool) -> (LogHandle, String) {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&base)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    // Through the buffer the driver writes out once per timer step.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(crate::logbuf::Stderr);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
    crate::logbuf::install_panic_flush();
    (handle, base)
}

/// SIGUSR1 turns debug logging on, SIGUSR2 back to the configured level.
/// Debug logs carry callers' locations: leave it on only while needed.
pub async fn level_signals(handle: LogHandle, base: String) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut up), Ok(mut down)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        return;
    };
    loop {
        let (filter, what) = tokio::select! {
            _ = up.recv() => ("debug".to_string(), "debug"),
            _ = down.recv() => (base.clone(), "configured"),
        };
        let changed = tracing_subscriber::EnvFilter::try_new(&filter)
            .ok()
            .is_some_and(|f| handle.reload(f).is_ok());
        if changed {
            tracing::warn!(level = %filter, "log level changed to the {what} level");
        } else {
            tracing::error!(level = %filter, "log level not changed");
        }
    }
}
