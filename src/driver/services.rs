//! What runs beside the SIP loop, wired once at start: the database (the
//! inventory and its changes, call records, the audit log), the
//! operators' API and health pages, `/metrics`, the call record pipeline
//! and the security desk webhooks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use super::control::ReloadReply;
use super::{Bound, Options};
use crate::admin;
use crate::cdr::store::{Recorder, RecorderConfig};
use crate::config::{Config, DatabaseConfig};
use crate::notify::{SecurityDesk, Webhooks};
use crate::proxy::CallEvent;
use crate::store::address::AddressRules;
use crate::store::records::DbRecords;
use crate::store::{Actor, Store};

/// The services, for the loop to feed and, at the end, to stop.
pub(super) struct Services {
    pub(super) store: Option<Arc<Store>>,
    pub(super) api: Option<Arc<admin::api::Api>>,
    /// What the health pages show (trunks, overload, draining).
    pub(super) shared: Arc<admin::Shared>,
    pub(super) webhooks: Webhooks,
    desk: SecurityDesk,
    recorder: Option<Recorder>,
    http_stop: tokio::sync::watch::Sender<bool>,
    /// The TCP connections SIP may keep, fitted to the open file limit
    /// beside the HTTP listeners'.
    pub(super) sip_tcp_connections: usize,
    /// The certificate the HTTPS listeners serve, replaced on reload.
    pub(super) http_tls: admin::http::HttpTls,
}

impl Services {
    /// Opens the database and starts the HTTP listeners (their addresses
    /// go into `bound`). Gives back where `POST /v1/reload` asks too.
    pub(super) async fn start(
        config: &Config,
        opts: &Options,
        bound: &mut Bound,
        http_tls: admin::http::HttpTls,
    ) -> anyhow::Result<(Services, mpsc::Receiver<ReloadReply>)> {
        let database = DatabaseConfig::effective(config);
        // One client for the ECRFs that check registered addresses: those
        // of the inventory file at start and the API's.
        let ecrf = admin::ecrf_check::EcrfAddresses::from_config(config);
        let store = match &database {
            Some(db) => Some(open_store(config, db, opts, ecrf.clone()).await?),
            None => None,
        };
        let api = match (&config.admin, &store) {
            (Some(a), Some(s)) => Some(admin::api::Api::new(s.clone(), a)),
            _ => None,
        };
        let (reload_tx, reload_rx) = mpsc::channel(4);
        if let Some(api) = &api {
            api.set_reload(reload_tx);
            api.set_ecrf(ecrf);
        }
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
        let shared = Arc::new(admin::Shared {
            inventory: store.as_ref().map(|s| s.hub().clone()),
            ..admin::Shared::default()
        });
        let (http_stop, http_stopped) = tokio::sync::watch::channel(false);
        let stop_signal = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
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
                    m.tls.then(|| http_tls.clone()),
                    stop_signal(http_stopped.clone()),
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
            if config.emergency.lost.serve {
                app = app.merge(admin::lost::routes(lost_server(config).await?));
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
                a.tls.then(|| http_tls.clone()),
                stop_signal(http_stopped.clone()),
            )
            .await
            .with_context(|| format!("binding admin {}", a.listen))?;
            bound.admin = Some(addr);
        }
        let webhooks: Webhooks = Arc::new(arc_swap::ArcSwap::from_pointee(
            crate::notify::from_config(config),
        ));
        let desk = SecurityDesk::start(
            webhooks.clone(),
            crate::notify::Policy::default(),
            opts.hub.clone(),
        );
        if let Some(api) = &api {
            api.set_webhooks(webhooks.clone());
        }
        let services = Services {
            store,
            api,
            shared,
            webhooks,
            desk,
            recorder,
            http_stop,
            sip_tcp_connections: caps.sip_tcp,
            http_tls,
        };
        Ok((services, reload_rx))
    }

    /// A call event from the core: to the security desk and to the record
    /// pipeline (or let go when there is none), so that none piles up in
    /// the core.
    pub(super) fn on_event(&self, ev: CallEvent) {
        self.desk.on_event(&ev);
        if let Some(r) = &self.recorder {
            r.push(ev);
        }
    }

    /// Stops the HTTP listeners and writes the last records, calls still
    /// open included: a restart loses no record.
    pub(super) async fn finish(self) {
        let _ = self.http_stop.send(true);
        if let Some(r) = self.recorder {
            r.finish().await;
        }
    }
}

/// Opens the database and starts loading its inventory, off the start:
/// the router takes calls from its first second, routing those without a
/// location by the country defaults until the inventory is loaded (see
/// [`load_inventory`]).
async fn open_store(
    config: &Config,
    db: &DatabaseConfig,
    opts: &Options,
    ecrf: Option<Arc<admin::ecrf_check::EcrfAddresses>>,
) -> anyhow::Result<Arc<Store>> {
    let hub = opts.hub.clone().unwrap_or_default();
    let store = Store::open(db, hub).await?;
    let file = opts
        .inventory
        .clone()
        .or_else(|| config.emergency.inventory.clone());
    let poll = Duration::from_millis(db.poll_interval_ms);
    let import = file.map(|path| Import {
        path,
        rules: Arc::new(AddressRules::of_admin(config.admin.as_ref())),
        ecrf,
    });
    tokio::spawn(load_inventory(store.clone(), import, poll));
    store.spawn_retention(db.retention_days);
    Ok(store)
}

/// The inventory file to import into an empty database at start, and how
/// its addresses are checked: by the rules of `[admin]`, with the answers
/// of the ECRFs of `[emergency.lost]` when it names any.
struct Import {
    path: std::path::PathBuf,
    rules: Arc<AddressRules>,
    ecrf: Option<Arc<admin::ecrf_check::EcrfAddresses>>,
}

/// Imports the inventory file into an empty database, loads the snapshot
/// (retrying while the database fails), then follows the changes. A file
/// that cannot be imported leaves the router on the country defaults, the
/// reason on `/readyz`, until it is fixed and the router restarted.
async fn load_inventory(store: Arc<Store>, file: Option<Import>, poll: Duration) {
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(500);
    let mut imported = file.is_none();
    loop {
        let step = async {
            if !imported {
                if let Some(import) = &file {
                    import_file(&store, import).await?;
                }
                imported = true;
            }
            store.refresh().await.map_err(anyhow::Error::from)
        };
        match step.await {
            Ok(_) => break,
            Err(e) if e.is::<FileRefused>() => {
                let e = format!("{e:#}");
                tracing::error!(error = %e, "the inventory file was not imported: calls without a location are routed by the country defaults");
                store.hub().set_load_error(Some(e));
                return;
            }
            Err(e) => {
                let e = format!("{e:#}");
                tracing::error!(error = %e, retry_ms = wait.as_millis() as u64, "the inventory could not be loaded: calls without a location are routed by the country defaults meanwhile");
                store.hub().set_load_error(Some(e));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
    store.spawn_follower(poll);
    tracing::info!(
        backend = store.backend().as_str(),
        numbers = store.hub().inventory().len(),
        load_ms = started.elapsed().as_millis() as u64,
        "inventory ready: calls are routed on the database's inventory"
    );
}

/// An inventory file that cannot be read: retrying would not help.
#[derive(Debug, thiserror::Error)]
#[error("inventory file {0}")]
struct FileRefused(String);

/// Imports the inventory file when the database holds no inventory yet.
///
/// Its addresses are asked of the ECRF first, as an upload's are (each
/// distinct one once, a few at once, all within the upload's budget; the
/// gazetteer decides those it does not answer), and only then imported:
/// the file is refused or kept as `[admin.address_validation]` says on
/// the ECRF's own answers. The router routes calls meanwhile, those
/// without a location by the country defaults, as during any load; an
/// ECRF that is down (connection refused) costs nothing, a silent one
/// at most the budget, and this happens once, into an empty database.
async fn import_file(store: &Store, import: &Import) -> anyhow::Result<()> {
    let path = import.path.as_path();
    if !store.inventory_is_empty().await? {
        tracing::info!(file = %path.display(), "the database holds an inventory already: the file is not imported, now or on reload (change numbers through the API)");
        return Ok(());
    }
    let format = crate::store::transfer::file_format(path).map_err(FileRefused)?;
    let actor = Actor {
        name: format!("import:{}", path.display()),
        role: "system",
    };
    let tenants = crate::store::bulk::Tenants::PerRow;
    let (rules, asked) = admin::ecrf_check::rules_for_file(
        import.ecrf.clone(),
        import.rules.clone(),
        path,
        format,
        &tenants,
    )
    .await;
    if let Some(asked) = asked {
        tracing::info!(file = %path.display(), "inventory file: {asked}");
    }
    // Off the SIP thread, as every bulk upload (see store::bulk).
    let summary = store
        .bulk_upload(path, format, tenants, &actor, &rules, Default::default())
        .await
        .map_err(|e| match e {
            crate::store::bulk::Refused::Store(e) => anyhow::Error::from(e),
            crate::store::bulk::Refused::Malformed(m) => {
                FileRefused(format!("{}: {m}", path.display())).into()
            }
            crate::store::bulk::Refused::Rows { listed, count } => {
                let first = listed
                    .first()
                    .map(|r| format!(": {}: {}", r.at, r.errors.join("; ")))
                    .unwrap_or_default();
                FileRefused(format!(
                    "{}: {count} row(s) cannot be imported{first}",
                    path.display()
                ))
                .into()
            }
        })?;
    let n = summary.created;
    tracing::info!(numbers = n, file = %path.display(), "inventory file imported into the empty database");
    Ok(())
}

/// The LoST server of `[emergency.lost]`, on its own copy of the
/// service-area data (read off the runtime's thread).
async fn lost_server(config: &Config) -> anyhow::Result<Arc<admin::lost::LostServer>> {
    let dir = config.emergency.service_areas.clone();
    let areas = tokio::task::spawn_blocking(move || match dir {
        Some(d) => crate::emergency::psap::ServiceAreas::load(&d),
        None => crate::emergency::psap::ServiceAreas::embedded(),
    })
    .await?
    .map_err(|e| anyhow::anyhow!("emergency.lost: {e}"))?;
    let lost = &config.emergency.lost;
    Ok(Arc::new(admin::lost::LostServer::new(
        Arc::new(areas),
        lost.source_name(&config.emergency),
        Duration::from_secs(lost.expires_s),
        time::OffsetDateTime::now_utc(),
    )))
}
