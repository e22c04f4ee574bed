//! The sosrouter binary: command line, logging, runtime. The work is done in
//! the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sosrouter",
    version,
    about = "Emergency call router: finds emergency INVITEs, locates the caller and relays each call to the right PSAP or screening center"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration and everything it points to (country rules,
    /// inventory, service areas, trunk names) without starting.
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
        /// Number inventory file, as `run --inventory`.
        #[arg(long)]
        inventory: Option<PathBuf>,
    },
    /// Run the router. Without --config it runs on the shipped lab
    /// configuration (config/loopback.toml, compiled in).
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Number inventory (TSV or CSV); replaces `emergency.inventory`.
        #[arg(long)]
        inventory: Option<PathBuf>,
    },
    /// Print what the router makes of SIP messages, one JSON object per file:
    /// the message, and for requests the emergency detection, the location
    /// and the routing decision.
    Inspect {
        /// Read each file as TCP stream bytes instead of one datagram.
        #[arg(long)]
        stream: bool,
        /// Configuration file (TOML); default: the shipped lab configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Number inventory (TSV or CSV); replaces `emergency.inventory`.
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// Where the messages are taken to come from (IP:PORT); default: an
        /// address the configuration takes requests from (the first inbound
        /// trunk's network, else the first `sip.allow` network).
        #[arg(long)]
        from: Option<std::net::SocketAddr>,
        /// Message files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh random token (shown once: store it) and the
    /// `[[admin.token]]` table to paste into the configuration, which
    /// holds only the token's SHA-256.
    New {
        /// `operator` (every tenant) or `tenant-admin` (one tenant).
        #[arg(long, value_parser = ["operator", "tenant-admin"])]
        role: String,
        /// The tenant of a tenant-admin token.
        #[arg(long)]
        tenant: Option<String>,
        /// The token's name, written into the audit log with each change.
        #[arg(long)]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file, inventory } => {
            let result = sosrouter::config::Config::load(&file)
                .map_err(|e| e.to_string())
                .and_then(|c| sosrouter::check::check(&c, inventory.as_deref()));
            match result {
                Ok(lines) => {
                    for l in lines {
                        println!("ok: {l}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sosrouter: {}: {e}", file.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { config, inventory } => run(config, inventory),
        Command::Token {
            command: TokenCommand::New { role, tenant, name },
        } => {
            let role = match role.as_str() {
                "operator" => sosrouter::config::Role::Operator,
                _ => sosrouter::config::Role::TenantAdmin,
            };
            match sosrouter::token::new(role, tenant.as_deref(), &name) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sosrouter: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Inspect {
            stream,
            config,
            inventory,
            from,
            files,
        } => {
            let result = load_config(config.as_ref()).and_then(|c| {
                sosrouter::inspect::run(&c, inventory.as_deref(), from, stream, &files)
            });
            match result {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_unreadable) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("sosrouter: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<sosrouter::config::Config, String> {
    match path {
        Some(p) => sosrouter::config::Config::load(p).map_err(|e| e.to_string()),
        None => sosrouter::config::Config::from_toml(sosrouter::config::EMBEDDED_DEFAULT)
            .map_err(|e| format!("the shipped configuration: {e}")),
    }
}

/// Changes the log filter while the router runs.
type LogHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Logging to stderr, text or JSON lines. The filter comes from `RUST_LOG`
/// when set, else from the configuration; it can change at run time.
fn init_logging(level: &str, json: bool) -> (LogHandle, String) {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&base)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    // Through the buffer the driver writes out once per timer step.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(sosrouter::logbuf::Stderr);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
    sosrouter::logbuf::install_panic_flush();
    (handle, base)
}

/// SIGUSR1 turns debug logging on, SIGUSR2 back to the configured level.
/// Debug logs carry callers' locations: leave it on only while needed.
async fn log_level_signals(handle: LogHandle, base: String) {
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

fn run(config_path: Option<PathBuf>, inventory: Option<PathBuf>) -> ExitCode {
    let config = match load_config(config_path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sosrouter: {e}");
            return ExitCode::from(2);
        }
    };
    let (log_handle, log_base) = init_logging(&config.log.level, config.log.json);
    sosrouter::fds::raise();
    let hub =
        sosrouter::config::DatabaseConfig::effective(&config).map(|_| sosrouter::store::Hub::new());
    let make_router = sosrouter::driver::routers(inventory.clone(), hub.is_some());
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
        tokio::spawn(log_level_signals(log_handle, log_base));
        let opts = sosrouter::driver::Options {
            config_path: config_path.clone(),
            make_router,
            install_metrics: true,
            hub,
            inventory,
        };
        sosrouter::driver::run(config, opts, shutdown_signal(), |bound| {
            for a in &bound.udp {
                tracing::info!("listening sip udp {a}");
            }
            for a in &bound.tcp {
                tracing::info!("listening sip tcp {a}");
            }
            if let Some(a) = bound.admin {
                tracing::info!("listening admin http {a}");
            }
            if let Some(a) = bound.metrics {
                tracing::info!("listening metrics http {a}");
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
