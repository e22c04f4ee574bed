//! The database: the number inventory, tenant locations, security desk
//! webhooks, the audit log and call records.
//!
//! SQLite (a file under `database.data_dir`, WAL mode) unless the URL is a
//! `postgres://` one; both run the same migrations (plain SQL written for
//! both, in `migrations/`; where the two cannot share a statement, a
//! migration has one file for each), recorded in sqlx's `_sqlx_migrations`
//! table.
//!
//! The call path never waits on the database: the router routes on an
//! in-memory snapshot published through the [`Hub`]. Every change commits
//! first, then the snapshot is updated and swapped in. Every change bumps
//! the one-row `inventory_version` table and appends what it changed to
//! the change log ([`changelog`]); each instance applies the log rows it
//! has not applied yet to its snapshot, right after its own writes, when
//! PostgreSQL notifies it of another instance's, and every
//! `database.poll_interval_ms` (500 ms by default), so instances sharing a
//! PostgreSQL database follow each other's changes within a second.

pub mod address;
pub mod audit;
pub mod bulk;
pub mod changelog;
mod checkpoint;
pub mod gazetteer;
pub mod hub;
pub mod numbers;
pub mod records;
pub mod rows;
pub mod transfer;
pub mod upload;
pub(crate) mod worker;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::AnyPool;
use sqlx::Row;

use crate::config::DatabaseConfig;
use crate::inventory::{Address, Capabilities, Inventory, TenantLocation};

pub use crate::cdr::now_ms;
pub use hub::{Hub, SecurityDesks};

/// A migration's SQL: one text for both databases, or one for each.
enum Sql {
    Both(&'static str),
    Each {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

/// The migrations, in order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, Sql)] = &[
    (
        1,
        "inventory",
        Sql::Both(include_str!("migrations/0001_inventory.sql")),
    ),
    (
        2,
        "call records",
        Sql::Both(include_str!("migrations/0002_call_records.sql")),
    ),
    (
        3,
        "open call records",
        Sql::Both(include_str!("migrations/0003_open_records.sql")),
    ),
    (
        4,
        "inventory change log",
        Sql::Each {
            sqlite: include_str!("migrations/0004_change_log.sqlite.sql"),
            postgres: include_str!("migrations/0004_change_log.postgres.sql"),
        },
    ),
    (
        5,
        "address checks",
        Sql::Both(include_str!("migrations/0005_address_check.sql")),
    ),
    (
        6,
        "no index of address check states",
        Sql::Both(include_str!("migrations/0006_no_address_state_index.sql")),
    ),
];

/// The migrations of one database.
#[derive(Debug)]
struct Embedded(Backend);

type BoxDynError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|(v, d, sql)| {
                    let sql = match (sql, self.0) {
                        (Sql::Both(s), _) => *s,
                        (Sql::Each { sqlite, .. }, Backend::Sqlite) => *sqlite,
                        (Sql::Each { postgres, .. }, Backend::Postgres) => *postgres,
                    };
                    Migration::new(
                        *v,
                        Cow::Borrowed(*d),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Which database the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Who made a change, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The token's name.
    pub name: String,
    pub role: &'static str,
}

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A tenant admin lacks a number capability (`set_address`, ...).
    #[error("{message}")]
    Forbidden {
        message: String,
        capability: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    /// Rows of an upload that cannot be applied.
    #[error("{} rows cannot be applied", .0.len())]
    Rows(Vec<upload::RowError>),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// The open database.
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    hub: Arc<Hub>,
    /// Writes from this process, one at a time: SQLite allows one writer,
    /// and a read-then-write transaction must not meet another.
    write_lock: tokio::sync::Mutex<()>,
    /// How far this process follows the change log; held while the
    /// snapshot is brought up to date.
    follow: tokio::sync::Mutex<changelog::Follow>,
    /// The database URL, for PostgreSQL's notifications.
    url: String,
    /// Change log rows older than this many days are trimmed.
    change_log_days: u32,
    /// Where this instance keeps its inventory checkpoint, if it does.
    checkpoint: Option<std::path::PathBuf>,
    checkpoint_writing: std::sync::atomic::AtomicBool,
    data_dir: std::path::PathBuf,
}

impl Store {
    /// Connects, creating the SQLite file and its directory when needed,
    /// and brings the schema up to date.
    pub async fn open(db: &DatabaseConfig, hub: Arc<Hub>) -> anyhow::Result<Arc<Store>> {
        sqlx::any::install_default_drivers();
        let mut url = db.url();
        crate::config::check_database_url(&url)?;
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            if !path.is_empty() && path != ":memory:" {
                if let Some(dir) = std::path::Path::new(path).parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).with_context(|| {
                            format!("creating the database directory {}", dir.display())
                        })?;
                    }
                }
            }
            if !url.contains("mode=") {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("mode=rwc");
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(db.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .with_context(|| format!("connecting to the {} database", backend.as_str()))?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await
                .context("switching SQLite to WAL mode")?;
        }
        Migrator::new(Embedded(backend))
            .await
            .context("reading the migrations")?
            .run(&pool)
            .await
            .context("migrating the database")?;
        Ok(Arc::new(Store {
            pool,
            backend,
            hub,
            write_lock: tokio::sync::Mutex::new(()),
            follow: tokio::sync::Mutex::new(changelog::Follow::default()),
            url,
            change_log_days: db.change_log_days,
            checkpoint: db
                .inventory_checkpoint
                .then(|| db.data_dir.join(checkpoint::FILE)),
            checkpoint_writing: Default::default(),
            data_dir: db.data_dir.clone(),
        }))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Where this instance keeps its files (the SQLite database by
    /// default, the inventory checkpoint, bulk uploads being applied).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// ` FOR UPDATE` where the database has it (row locks in PostgreSQL;
    /// SQLite has one writer anyway).
    fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// The inventory version in the database.
    pub async fn version(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT version FROM inventory_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await
    }

    /// Builds a snapshot from the tables, on a thread and a connection of
    /// its own ([`worker`]), reading the numbers as a stream; the hub
    /// counts them as they come.
    async fn load_snapshot(&self) -> Result<(Inventory, SecurityDesks), StoreError> {
        let hub = self.hub.clone();
        worker::run(&self.url, "inventory-load", move |mut conn| async move {
            let inv = read_inventory(&mut conn, &hub).await?;
            let desks = read_desks(&mut conn).await?;
            let _ = sqlx::Connection::close(conn).await;
            Ok((inv, desks))
        })
        .await
    }

    /// Every tenant's security desk webhook.
    async fn load_desks(&self) -> Result<SecurityDesks, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_desks(&mut conn).await
    }

    /// Whether the inventory tables hold nothing yet.
    pub async fn inventory_is_empty(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM numbers) + (SELECT COUNT(*) FROM locations)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n == 0)
    }

    /// Imports an inventory file's snapshot into empty tables (the first
    /// start on a new database). A number that takes its address from its
    /// tenant location keeps that link. The addresses are stored without a
    /// check (the API shows them `unchecked` until they are uploaded again).
    pub async fn import(&self, inv: &Inventory, actor: &Actor) -> Result<usize, StoreError> {
        let g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        bump_version(&mut tx).await?;
        let now = now_ms();
        let mut tenants: Vec<String> = inv.numbers().map(|n| n.tenant.clone()).collect();
        tenants.sort();
        tenants.dedup();
        let mut locations = 0;
        for t in &tenants {
            for l in inv.tenant_locations(t) {
                rows::put_location_row(&mut tx, t, &l.id, &l.address, None, now).await?;
                locations += 1;
            }
        }
        let mut rows = Vec::with_capacity(inv.len());
        for n in inv.numbers() {
            let inherited = n.location_id.as_ref().is_some_and(|id| {
                inv.tenant_locations(&n.tenant)
                    .iter()
                    .any(|l| &l.id == id && Some(&l.address) == n.registered.as_ref())
            });
            rows.push(rows::NumberRow {
                number: n.number.clone(),
                tenant: n.tenant.clone(),
                country: n.country.clone(),
                common_area_phone: n.common_area_phone,
                capabilities: n.capabilities,
                location_id: n.location_id.clone(),
                address: if inherited {
                    None
                } else {
                    n.registered.clone()
                },
                address_check: None,
            });
        }
        rows::put_number_rows(&mut tx, &rows, now).await?;
        let changed: Vec<rows::Changed> = tenants
            .iter()
            .flat_map(|t| {
                inv.tenant_locations(t)
                    .iter()
                    .map(move |l| rows::Changed::Location(t, &l.id))
            })
            .chain(
                rows.iter()
                    .map(|r| rows::Changed::Number(&r.tenant, &r.number)),
            )
            .collect();
        rows::append(&mut tx, self.backend, &changed).await?;
        rows::audit(
            &mut tx,
            &[rows::AuditEntry {
                actor: actor.clone(),
                tenant: "*".into(),
                subject: "inventory".into(),
                field: "import",
                action: "create",
                old: None,
                new: Some(serde_json::json!({"numbers": rows.len(), "locations": locations})),
            }],
        )
        .await?;
        tx.commit().await?;
        drop(g);
        self.refresh().await?;
        Ok(rows.len())
    }
}

/// Reads the whole inventory: the tenant locations, then the numbers as a
/// stream (counted in `hub` as they come).
async fn read_inventory(
    conn: &mut sqlx::AnyConnection,
    hub: &Hub,
) -> Result<Inventory, StoreError> {
    use futures_util::TryStreamExt;
    let mut inv = Inventory::empty();
    let mut located: std::collections::HashMap<(String, String), Address> =
        std::collections::HashMap::new();
    for (tenant, l) in all_locations(conn).await? {
        located.insert((tenant.clone(), l.id.clone()), l.address.clone());
        inv.add_location(&tenant, l);
    }
    let sql = format!("SELECT {} FROM numbers", rows::NUMBER_COLUMNS);
    let mut rows = sqlx::query(&sql).fetch(&mut *conn);
    let mut counted = 0u64;
    while let Some(r) = rows.try_next().await? {
        let n = rows::NumberRow::from_row(&r)?;
        let location = match &n.location_id {
            Some(id) if n.address.is_none() => located.get(&(n.tenant.clone(), id.clone())),
            _ => None,
        };
        inv.insert(n.entry(location));
        counted += 1;
        if counted.is_multiple_of(16_384) {
            hub.add_progress(16_384);
        }
    }
    Ok(inv)
}

/// Every tenant location, by tenant and id.
pub(super) async fn all_locations(
    conn: &mut sqlx::AnyConnection,
) -> Result<Vec<(String, TenantLocation)>, StoreError> {
    let rows = sqlx::query(
        "SELECT tenant, id, address_civic, address_lat, address_lon FROM locations ORDER BY tenant, id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut all = Vec::with_capacity(rows.len());
    for r in rows {
        let tenant: String = r.try_get(0)?;
        let id: String = r.try_get(1)?;
        let address = address::from_db(&r.try_get::<String, _>(2)?, r.try_get(3)?, r.try_get(4)?)?;
        all.push((tenant, TenantLocation { id, address }));
    }
    Ok(all)
}

/// Every tenant's security desk webhook.
async fn read_desks(conn: &mut sqlx::AnyConnection) -> Result<SecurityDesks, StoreError> {
    let mut desks = SecurityDesks::new();
    let rows = sqlx::query("SELECT tenant, webhook_url FROM security_desks")
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        desks.insert(r.try_get(0)?, r.try_get(1)?);
    }
    Ok(desks)
}

/// Moves the inventory version on; in PostgreSQL this also takes the row
/// lock that keeps writers of every instance one at a time.
async fn bump_version(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE inventory_version SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Capabilities as the API shows them.
pub fn capabilities_json(c: &Capabilities) -> serde_json::Value {
    serde_json::json!({
        "set_address": c.set_address,
        "change_address": c.change_address,
        "delete_address": c.delete_address,
    })
}
