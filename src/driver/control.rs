//! What the loop is told from outside: shut down (the future `run` was
//! given), reload (SIGHUP, `POST /v1/reload`). One task turns them into
//! messages on one channel, which the loop looks at as cheaply as its
//! other queues. Reloads read the files and build the routing data off
//! the loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;

use super::Options;
use crate::config::Config;
use crate::proxy::{CoreConfig, Router};
use crate::store::{Actor, Store};

/// A word to the loop.
pub(super) enum Control {
    /// Refuse new calls, let the calls in progress finish, then stop.
    Shutdown,
    /// Read the configuration again; the reply, when someone waits for it.
    Reload(Option<ReloadReply>),
}

/// Starts the task that turns `shutdown`, SIGHUP and the API's reload
/// requests into [`Control`] messages. SIGHUP is caught from this call on,
/// so call it before anyone learns the router's addresses: an early SIGHUP
/// then never meets the default action (exit). A SIGHUP is written to the
/// audit log, as a reload over the API is.
pub(super) fn watch(
    shutdown: impl Future<Output = ()> + Send + 'static,
    store: Option<Arc<Store>>,
    mut api: mpsc::Receiver<ReloadReply>,
) -> mpsc::Receiver<Control> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut shut = false;
        let mut api_open = true;
        loop {
            let word = tokio::select! {
                () = &mut shutdown, if !shut => {
                    shut = true;
                    Control::Shutdown
                }
                Some(()) = async { hup.as_mut()?.recv().await } => {
                    let reply = store.as_ref().map(|s| {
                        s.audited_reload(Actor { name: "SIGHUP".into(), role: "system" }, "SIGHUP")
                    });
                    Control::Reload(reply)
                }
                reply = api.recv(), if api_open => match reply {
                    Some(r) => Control::Reload(Some(r)),
                    None => {
                        api_open = false;
                        continue;
                    }
                },
                else => std::future::pending().await,
            };
            if tx.send(word).await.is_err() {
                return;
            }
        }
    });
    rx
}

pub(super) type Built = anyhow::Result<(
    Config,
    CoreConfig,
    Box<dyn Router>,
    Option<crate::transport::tls::TlsSetup>,
)>;
pub(super) type ReloadReply = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Reloads (SIGHUP, `POST /v1/reload`) read the files and build the routing
/// data on a blocking thread: tens of milliseconds with the shipped data,
/// more with a national boundary set, during which the driver goes on
/// relaying calls. One runs at a time; a request that comes while one runs
/// is served by another started when it ends, so every request sees the
/// files as they were after it was made.
pub(super) struct Reloads {
    /// The replies owed by the reload running, if one is.
    running: Option<Vec<ReloadReply>>,
    /// Asked for while one runs: the replies owed by the next.
    next: Option<Vec<ReloadReply>>,
    done_tx: mpsc::Sender<Built>,
    pub(super) done_rx: mpsc::Receiver<Built>,
    /// The TLS listener's port as bound, for the configurations built.
    pub(super) tls_port: Option<u16>,
}

impl Reloads {
    pub(super) fn new() -> Reloads {
        let (done_tx, done_rx) = mpsc::channel(1);
        Reloads {
            running: None,
            next: None,
            done_tx,
            done_rx,
            tls_port: None,
        }
    }

    pub(super) fn ask(
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
        let tls_port = self.tls_port;
        tokio::task::spawn_blocking(move || {
            let _ = tx.blocking_send(reload(&opts, &locals, seed, tls_port));
        });
    }

    /// The running reload was applied (or refused) with `result`.
    pub(super) fn finished(
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

fn reload(opts: &Options, locals: &[SocketAddr], seed: u64, tls_port: Option<u16>) -> Built {
    let path = opts
        .config_path
        .as_ref()
        .context("running on the built-in configuration: nothing to reload from")?;
    let cfg = Config::load(path)?;
    // Certificates and keys are read again, and checked, with the rest.
    let tls = crate::transport::tls::TlsSetup::load(&cfg).map_err(anyhow::Error::msg)?;
    let router = (opts.make_router)(&cfg)?;
    let core_cfg = CoreConfig::from_config(&cfg, locals.to_vec(), seed).with_tls_port(tls_port);
    Ok((cfg, core_cfg, router, tls))
}
