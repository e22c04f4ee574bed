//! The inventory change log: how a snapshot follows the database without
//! reloading it whole.
//!
//! Every inventory write appends, in its own transaction, one row to
//! `inventory_changes` per number, tenant location or security desk it
//! changed ([`super::rows::append`]): a sequence number, what changed, and when. Every
//! writer takes the `inventory_version` row first (the row lock in
//! PostgreSQL, the one writer in SQLite), so sequence numbers are handed
//! out in commit order: once a row is seen, every row before it is too.
//!
//! Each instance remembers the last row it applied ([`Follow`]). Bringing
//! its snapshot up to date ([`Store::refresh`]) reads the rows after it in
//! bounded batches, reads the current rows of just the numbers and
//! locations they name (and the numbers that take their address from a
//! changed location), and publishes the last snapshot with those changes
//! applied. It reloads the whole inventory instead on its first load, when
//! the rows it still needs were trimmed ([`Store::trim_change_log`]), and
//! when so many rows wait that a whole load is the cheaper one.
//!
//! [`Store::spawn_follower`] does this every `database.poll_interval_ms`,
//! and on PostgreSQL also as soon as another instance commits a change
//! (`LISTEN`/`NOTIFY` on [`CHANNEL`]); it trims the log hourly.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::inventory::{Changes, Inventory};

use super::rows::{self, NumberRow, NUMBER_COLUMNS};
use super::{now_ms, Backend, Store, StoreError};

pub use super::rows::CHANNEL;

/// Log rows read per query.
const BATCH: i64 = 10_000;
/// Numbers read per query.
const NUMBERS_PER_QUERY: usize = 1000;
/// Log rows deleted per transaction by the trim.
const TRIM_BATCH: i64 = 10_000;
/// With more log rows than this (and than numbers in the inventory)
/// waiting, the whole inventory is loaded instead.
const FULL_LOAD_ROWS: usize = 100_000;
/// With more log rows than this waiting, the changed numbers are read as
/// one stream, joined to the log, on a worker thread.
const STREAM_ROWS: i64 = 20_000;
/// How often the follower trims the log.
const TRIM_EVERY: Duration = Duration::from_secs(3600);

/// How far this process follows the log.
#[derive(Debug, Default)]
pub struct Follow {
    /// The last log row applied to the published snapshot; `None` before
    /// the first load.
    pub(super) applied: Option<i64>,
    /// Whole loads so far.
    whole_loads: usize,
    /// When the next checkpoint is due.
    pub(super) due: super::checkpoint::Due,
}

/// What the streamed catch-up found.
enum Streamed {
    Done {
        next: Inventory,
        locations: BTreeSet<(String, String)>,
        desks: bool,
        read: usize,
    },
    Trimmed,
    Unknown,
}

/// What bringing the snapshot up to date did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// The snapshot was up to date.
    Nothing,
    /// This many log rows were applied to the last snapshot.
    Changes(usize),
    /// The whole inventory was loaded.
    Full,
}

/// The version row and the end of the log, read in one statement (so from
/// one state of the database).
struct Head {
    version: i64,
    /// Log rows up to this one were trimmed.
    trimmed: i64,
    /// The last log row written (the trimmed mark when none is left).
    last: i64,
}

/// Why the whole inventory is loaded.
#[derive(Debug, Clone, Copy)]
enum Why {
    First,
    Trimmed,
    Many,
    Unknown,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::First => "first load",
            Why::Trimmed => "the change log was trimmed past this instance's last change",
            Why::Many => "more changes than a whole load costs",
            Why::Unknown => "a kind of change this version does not know",
        }
    }
}

impl Store {
    /// Brings the published snapshot up to date with the database (see the
    /// module documentation). Returns whether a new snapshot was published.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        Ok(self.catch_up().await? != Refreshed::Nothing)
    }

    /// [`Store::refresh`], saying what it did.
    pub async fn catch_up(&self) -> Result<Refreshed, StoreError> {
        self.catch_up_by(BATCH, STREAM_ROWS).await
    }

    /// [`Store::catch_up`], reading `batch` log rows per query.
    async fn catch_up_by(&self, batch: i64, stream_rows: i64) -> Result<Refreshed, StoreError> {
        let mut follow = self.follow.lock().await;
        let head = self.head().await?;
        let applied = match follow.applied {
            Some(a) => a,
            None => match self.read_checkpoint(head.trimmed, head.last).await {
                Some(seq) => {
                    follow.applied = Some(seq);
                    follow.due.at = Some(Instant::now());
                    seq
                }
                None => return self.load_whole(&mut follow, Why::First).await,
            },
        };
        if head.trimmed > applied {
            return self.load_whole(&mut follow, Why::Trimmed).await;
        }
        if head.last <= applied {
            if head.version != self.hub.version() {
                // A write that changed nothing (an upload of the same rows).
                self.hub.set_version(head.version);
            }
            return Ok(Refreshed::Nothing);
        }
        let most = FULL_LOAD_ROWS.max(self.hub.inventory().len());
        if usize::try_from(head.last - applied).unwrap_or(usize::MAX) > most {
            return self.load_whole(&mut follow, Why::Many).await;
        }
        if head.last - applied > stream_rows {
            return self.catch_up_streamed(&mut follow, applied, &head).await;
        }

        let mut numbers: BTreeSet<String> = BTreeSet::new();
        let mut locations: BTreeSet<(String, String)> = BTreeSet::new();
        let mut desks = false;
        let mut cursor = applied;
        let mut rows_read = 0usize;
        loop {
            let rows = sqlx::query(
                "SELECT seq, kind, tenant, subject FROM inventory_changes \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(cursor)
            .bind(batch)
            .fetch_all(&self.pool)
            .await?;
            // Read after the rows: a trim that removed rows this instance
            // still needed shows here.
            let trimmed: i64 =
                sqlx::query_scalar("SELECT trimmed_seq FROM inventory_version WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?;
            if trimmed > cursor {
                return self.load_whole(&mut follow, Why::Trimmed).await;
            }
            let n = rows.len();
            for r in rows {
                let seq: i64 = r.try_get(0)?;
                let kind: String = r.try_get(1)?;
                let tenant: String = r.try_get(2)?;
                let subject: String = r.try_get(3)?;
                match kind.as_str() {
                    "number" => {
                        numbers.insert(subject);
                    }
                    "location" => {
                        locations.insert((tenant, subject));
                    }
                    "desk" => desks = true,
                    other => {
                        // Written by a later version of the router: only a
                        // whole load is sure to take it in.
                        tracing::warn!(kind = other, seq, "unknown kind of inventory change");
                        return self.load_whole(&mut follow, Why::Unknown).await;
                    }
                }
                cursor = seq;
            }
            rows_read += n;
            if rows_read > most {
                return self.load_whole(&mut follow, Why::Many).await;
            }
            if (n as i64) < batch {
                break;
            }
        }
        if rows_read == 0 {
            // The rows the first statement saw are gone, and not by a
            // trim (that reloads above): only the version to record.
            self.hub.set_version(head.version);
            return Ok(Refreshed::Nothing);
        }
        let changes = self
            .read_changes(&self.hub.inventory(), &numbers, &locations)
            .await?;
        let desks = if desks {
            Some(self.load_desks().await?)
        } else {
            None
        };
        let t = Instant::now();
        self.hub.apply(&changes, desks, head.version);
        follow.applied = Some(cursor);
        follow.due.rows += rows_read;
        tracing::debug!(
            rows = rows_read,
            numbers = changes.numbers.len(),
            removed = changes.removed.len(),
            locations = changes.locations.len(),
            removed_locations = changes.removed_locations.len(),
            seq = cursor,
            apply_ms = t.elapsed().as_millis() as u64,
            "inventory changes applied"
        );
        Ok(Refreshed::Changes(rows_read))
    }

    /// Applies many log rows at once (an upload's): the numbers they name
    /// are read in one statement joined to the log, as a stream, on a
    /// worker thread that builds the next snapshot; tenant locations and
    /// webhooks as in [`Store::catch_up`]. One snapshot is published.
    async fn catch_up_streamed(
        &self,
        follow: &mut Follow,
        applied: i64,
        head: &Head,
    ) -> Result<Refreshed, StoreError> {
        let t = Instant::now();
        let current = self.hub.inventory();
        let last = head.last;
        let streamed =
            super::worker::run(&self.url, "inventory-follow", move |mut conn| async move {
                use futures_util::TryStreamExt;
                let mut locations: BTreeSet<(String, String)> = BTreeSet::new();
                let mut desks = false;
                let others = sqlx::query(
                    "SELECT kind, tenant, subject FROM inventory_changes \
                 WHERE seq > $1 AND seq <= $2 AND kind <> 'number'",
                )
                .bind(applied)
                .bind(last)
                .fetch_all(&mut conn)
                .await?;
                for r in others {
                    let kind: String = r.try_get(0)?;
                    match kind.as_str() {
                        "location" => {
                            locations.insert((r.try_get(1)?, r.try_get(2)?));
                        }
                        "desk" => desks = true,
                        _ => return Ok(Streamed::Unknown),
                    }
                }
                let mut next = (*current).clone();
                drop(current);
                let sql = format!(
                    "{}, c.subject FROM inventory_changes c \
                 LEFT JOIN numbers n ON n.number = c.subject \
                 LEFT JOIN locations l ON l.tenant = n.tenant AND l.id = n.location_id \
                 WHERE c.seq > $1 AND c.seq <= $2 AND c.kind = 'number' ORDER BY c.seq",
                    rows::joined_columns()
                );
                let mut rows = sqlx::query(&sql).bind(applied).bind(last).fetch(&mut conn);
                let mut read = 0usize;
                while let Some(r) = rows.try_next().await? {
                    read += 1;
                    let number: Option<String> = r.try_get(0)?;
                    if number.is_none() {
                        let subject: String = r.try_get(rows::JOINED_LEN)?;
                        next.remove(&subject);
                        continue;
                    }
                    let n = NumberRow::from_row(&r)?;
                    let location = rows::joined_location(&r)?;
                    next.insert(n.entry(location.as_ref()));
                }
                drop(rows);
                // Read after the rows: a trim that removed rows still needed
                // shows here.
                let trimmed: i64 =
                    sqlx::query_scalar("SELECT trimmed_seq FROM inventory_version WHERE id = 1")
                        .fetch_one(&mut conn)
                        .await?;
                if trimmed > applied {
                    return Ok(Streamed::Trimmed);
                }
                Ok(Streamed::Done {
                    next,
                    locations,
                    desks,
                    read,
                })
            })
            .await?;
        let (next, locations, desks, read) = match streamed {
            Streamed::Unknown => return self.load_whole(follow, Why::Unknown).await,
            Streamed::Trimmed => return self.load_whole(follow, Why::Trimmed).await,
            Streamed::Done {
                next,
                locations,
                desks,
                read,
            } => (next, locations, desks, read),
        };
        let changes = self
            .read_changes(&next, &BTreeSet::new(), &locations)
            .await?;
        let next = if changes.is_empty() {
            next
        } else {
            next.with_changes(&changes)
        };
        let desks = if desks {
            self.load_desks().await?
        } else {
            (*self.hub.security_desks()).clone()
        };
        self.hub.publish(next, desks, head.version);
        tokio::task::spawn_blocking(super::worker::give_back_memory);
        let rows = usize::try_from(last - applied).unwrap_or(usize::MAX);
        follow.applied = Some(last);
        follow.due.rows += rows;
        tracing::info!(
            rows,
            numbers = read,
            locations = locations.len(),
            seq = last,
            apply_ms = t.elapsed().as_millis() as u64,
            "inventory changes applied as one stream"
        );
        Ok(Refreshed::Changes(rows))
    }

    async fn head(&self) -> Result<Head, StoreError> {
        let r = sqlx::query(
            "SELECT version, trimmed_seq, (SELECT MAX(seq) FROM inventory_changes) \
             FROM inventory_version WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        let trimmed: i64 = r.try_get(1)?;
        let last: Option<i64> = r.try_get(2)?;
        Ok(Head {
            version: r.try_get(0)?,
            trimmed,
            last: last.unwrap_or(trimmed).max(trimmed),
        })
    }

    /// Loads the whole inventory. The end of the log is read first: the
    /// tables are at least that new, and rows after it are applied on the
    /// next refresh (again, for those already loaded).
    async fn load_whole(&self, follow: &mut Follow, why: Why) -> Result<Refreshed, StoreError> {
        let head = self.head().await?;
        let t = Instant::now();
        let (inventory, desks) = self.load_snapshot().await?;
        tracing::info!(
            numbers = inventory.len(),
            version = head.version,
            seq = head.last,
            why = why.as_str(),
            load_ms = t.elapsed().as_millis() as u64,
            "inventory snapshot loaded from the database"
        );
        self.hub.publish(inventory, desks, head.version);
        tokio::task::spawn_blocking(super::worker::give_back_memory);
        follow.applied = Some(head.last);
        follow.whole_loads += 1;
        follow.due.stale = true;
        Ok(Refreshed::Full)
    }

    /// The current database rows of the numbers and locations named, as
    /// changes to the published snapshot: numbers and locations present
    /// are added or replaced, absent ones removed, and the numbers that
    /// take their address from a changed location are replaced too.
    async fn read_changes(
        &self,
        current: &Inventory,
        numbers: &BTreeSet<String>,
        locations: &BTreeSet<(String, String)>,
    ) -> Result<Changes, StoreError> {
        let mut changes = Changes::default();
        let mut done: HashSet<String> = HashSet::new();
        let mut conn = self.pool.acquire().await?;

        let mut by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (t, id) in locations {
            by_tenant.entry(t).or_default().push(id);
        }
        for (tenant, ids) in by_tenant {
            let stored = rows::read_locations(&mut *conn, tenant).await?;
            let have = current.tenant_locations(tenant);
            let new_id = ids
                .iter()
                .any(|id| stored.iter().any(|l| l.id == *id) && !have.iter().any(|l| l.id == *id));
            if new_id {
                // A location new to the snapshot goes where a whole load
                // puts it (the first location that matches a caller's
                // position is the one used): the tenant's locations are
                // replaced by the stored ones, in the database's order.
                changes
                    .removed_locations
                    .extend(have.iter().map(|l| (tenant.to_string(), l.id.clone())));
                changes
                    .locations
                    .extend(stored.iter().map(|l| (tenant.to_string(), l.clone())));
            } else {
                for id in &ids {
                    match stored.iter().find(|l| l.id == *id) {
                        Some(l) => changes.locations.push((tenant.to_string(), l.clone())),
                        None => changes
                            .removed_locations
                            .push((tenant.to_string(), id.to_string())),
                    }
                }
            }
            for id in ids {
                let location = stored.iter().find(|l| l.id == id).map(|l| &l.address);
                let rows = sqlx::query(&format!(
                    "SELECT {NUMBER_COLUMNS} FROM numbers \
                     WHERE tenant = $1 AND location_id = $2 AND address_civic IS NULL"
                ))
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_all(&mut *conn)
                .await?;
                for r in rows {
                    let n = NumberRow::from_row(&r)?;
                    done.insert(n.number.clone());
                    changes.numbers.push(n.entry(location));
                }
            }
        }

        let named: Vec<&String> = numbers.iter().filter(|n| !done.contains(*n)).collect();
        for chunk in named.chunks(NUMBERS_PER_QUERY) {
            let mut q_sql = rows::joined_select();
            q_sql.push_str(" WHERE n.number IN ");
            rows::push_marks(&mut q_sql, 1, chunk.len(), &conn);
            let mut q = sqlx::query(&q_sql);
            for n in chunk {
                q = q.bind(n.to_string());
            }
            let mut found: HashSet<String> = HashSet::with_capacity(chunk.len());
            for r in q.fetch_all(&mut *conn).await? {
                let n = NumberRow::from_row(&r)?;
                let location = rows::joined_location(&r)?;
                found.insert(n.number.clone());
                changes.numbers.push(n.entry(location.as_ref()));
            }
            changes.removed.extend(
                chunk
                    .iter()
                    .filter(|n| !found.contains(n.as_str()))
                    .map(|n| n.to_string()),
            );
        }
        Ok(changes)
    }

    /// Deletes the change log rows written before `before_ms`, oldest
    /// first, [`TRIM_BATCH`] rows per transaction, and marks how far the
    /// log was trimmed: an instance that had not applied them yet loads
    /// the whole inventory. Returns how many rows went.
    pub async fn trim_change_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let g = self.write_lock.lock().await;
            let mut tx = self.pool.begin().await?;
            let upto: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(seq) FROM (SELECT seq, at_ms FROM inventory_changes \
                 ORDER BY seq LIMIT $1) oldest WHERE at_ms < $2",
            )
            .bind(TRIM_BATCH)
            .bind(before_ms)
            .fetch_one(&mut *tx)
            .await?;
            let Some(upto) = upto else {
                tx.rollback().await?;
                break;
            };
            let gone = sqlx::query("DELETE FROM inventory_changes WHERE seq <= $1")
                .bind(upto)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE inventory_version SET trimmed_seq = $1 WHERE id = 1 AND trimmed_seq < $1",
            )
            .bind(upto)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            drop(g);
            total += gone;
            // Writers go between the batches.
            tokio::task::yield_now().await;
        }
        Ok(total)
    }

    /// Keeps the snapshot up to date with the database (see the module
    /// documentation): every `every`, and on PostgreSQL as soon as another
    /// instance commits a change. Trims the change log hourly.
    pub fn spawn_follower(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let wake = Arc::new(tokio::sync::Notify::new());
        let listener = (self.backend == Backend::Postgres)
            .then(|| AbortOnDrop(tokio::spawn(listen(self.url.clone(), wake.clone()))));
        tokio::spawn(async move {
            let _listener = listener;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut trimmed_at: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = wake.notified() => {}
                }
                if let Err(e) = store.refresh().await {
                    tracing::warn!(error = %e, "could not check the database for inventory changes");
                }
                if store.checkpoint_due().await {
                    let s = store.clone();
                    tokio::spawn(async move {
                        if let Err(e) = s.write_checkpoint().await {
                            tracing::warn!(error = %e, "the inventory checkpoint was not written");
                        }
                    });
                }
                if trimmed_at.is_none_or(|t| t.elapsed() >= TRIM_EVERY) {
                    trimmed_at = Some(Instant::now());
                    let before = now_ms() - i64::from(store.change_log_days) * 86_400_000;
                    match store.trim_change_log(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(
                            rows = n,
                            days = store.change_log_days,
                            "old inventory change log rows deleted"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not trim the inventory change log")
                        }
                    }
                }
            }
        })
    }
}

/// Ends a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens on [`CHANNEL`] and wakes the follower on each notification,
/// reconnecting when the connection is lost (the follower's polling covers
/// what is missed meanwhile).
async fn listen(url: String, wake: Arc<tokio::sync::Notify>) {
    let mut failing = false;
    loop {
        let Err(e) = listen_once(&url, &wake, &mut failing).await;
        if !failing {
            tracing::warn!(error = %e, "cannot listen for inventory change notifications; polling only until it can");
        }
        failing = true;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// One connection of [`listen`]: returns only when it fails.
async fn listen_once(
    url: &str,
    wake: &tokio::sync::Notify,
    failing: &mut bool,
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut l = sqlx::postgres::PgListener::connect(url).await?;
    l.listen(CHANNEL).await?;
    if *failing {
        tracing::info!("listening for inventory change notifications again");
        *failing = false;
    }
    // Changes committed while (re)connecting were not notified.
    wake.notify_one();
    loop {
        l.recv().await?;
        while l.next_buffered().is_some() {}
        wake.notify_one();
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::DatabaseConfig;
    use crate::inventory::address_check::AddressCheck;
    use crate::inventory::{Address, Capabilities, Inventory, NumberEntry, TenantLocation};
    use crate::pidf::CivicAddress;
    use crate::store::address::AddressRules;
    use crate::store::upload::{self, Format};
    use crate::store::{Actor, Hub};

    fn actor() -> Actor {
        Actor {
            name: "test".into(),
            role: "operator",
        }
    }

    fn addr(street: &str, hno: u32) -> Address {
        let mut civic = CivicAddress::new();
        civic.push("country", "US");
        civic.push("A1", "NY");
        civic.push("A3", "New York");
        civic.push("RD", street);
        civic.push("HNO", hno.to_string());
        Address { civic, point: None }
    }

    fn number(i: u32) -> String {
        format!("+1212555{i:04}")
    }

    /// 40 numbers of acme: even ones take their address from location
    /// `hq`, odd ones have their own; number 1 is linked to `hq` with its
    /// own address. Tenant globex has one number and location `g1`.
    fn inventory() -> Inventory {
        let mut inv = Inventory::empty();
        inv.add_location(
            "acme",
            TenantLocation {
                id: "hq".into(),
                address: addr("34th", 20),
            },
        );
        inv.add_location(
            "acme",
            TenantLocation {
                id: "lab".into(),
                address: addr("Lab Rd", 1),
            },
        );
        inv.add_location(
            "globex",
            TenantLocation {
                id: "g1".into(),
                address: addr("Globe Ave", 9),
            },
        );
        for i in 0..40 {
            let linked = i % 2 == 0 || i == 1;
            inv.insert(NumberEntry {
                number: number(i),
                tenant: "acme".into(),
                country: "US".into(),
                common_area_phone: false,
                capabilities: Capabilities::default(),
                location_id: linked.then(|| "hq".into()),
                registered: Some(if i % 2 == 0 {
                    addr("34th", 20)
                } else {
                    addr("Broadway", i)
                }),
            });
        }
        inv.insert(NumberEntry {
            number: "+13035550100".into(),
            tenant: "globex".into(),
            country: "US".into(),
            common_area_phone: true,
            capabilities: Capabilities::default(),
            location_id: Some("g1".into()),
            registered: Some(addr("Globe Ave", 9)),
        });
        inv
    }

    /// A fresh SQLite database.
    fn sqlite() -> (DatabaseConfig, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "sosrouter-changelog-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let db = DatabaseConfig {
            data_dir: dir.clone(),
            ..DatabaseConfig::default()
        };
        (db, dir)
    }

    /// A fresh database on the PostgreSQL test cluster, or `None` when
    /// SOSROUTER_TEST_PG_URL is not set (outside CI).
    async fn postgres(test: &str) -> Option<(DatabaseConfig, PgDrop)> {
        use sqlx::Connection;
        let Ok(url) = std::env::var("SOSROUTER_TEST_PG_URL") else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("SOSROUTER_TEST_PG_URL is not set: .ci/run starts PostgreSQL and sets it");
            }
            eprintln!(
                "{test}: skipped: SOSROUTER_TEST_PG_URL is not set (.ci/postgres starts a cluster)"
            );
            return None;
        };
        let name = format!(
            "sosrouter_cl_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut c = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let _ = c.close().await;
        let (base, _) = url.rsplit_once('/').unwrap();
        let db = DatabaseConfig {
            url: Some(format!("{base}/{name}")),
            data_dir: std::env::temp_dir().join(format!("sosrouter-changelog-{name}")),
            ..DatabaseConfig::default()
        };
        Some((db, PgDrop { admin: url, name }))
    }

    /// Drops the test database.
    struct PgDrop {
        admin: String,
        name: String,
    }

    impl PgDrop {
        async fn drop_now(self) {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::postgres::PgConnection::connect(&self.admin).await {
                let _ = sqlx::query(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .execute(&mut c)
                .await;
                let _ = c.close().await;
            }
        }
    }

    async fn whole_loads(store: &Store) -> usize {
        store.follow.lock().await.whole_loads
    }

    /// The two snapshots hold the same entries and the same tenant
    /// locations, in the same order.
    fn assert_same(a: &Inventory, b: &Inventory) {
        assert_eq!(a.len(), b.len());
        for e in a.numbers() {
            assert_eq!(b.get(&e.number).as_ref(), Some(&e), "{}", e.number);
        }
        for t in ["acme", "globex", "initech"] {
            assert_eq!(a.tenant_locations(t), b.tenant_locations(t), "{t}");
        }
    }

    /// What a whole load of the database gives.
    async fn loaded(db: &DatabaseConfig) -> Inventory {
        let hub = Hub::new();
        let store = Store::open(db, hub.clone()).await.unwrap();
        store.refresh().await.unwrap();
        let inv = (*hub.inventory()).clone();
        store.pool.close().await;
        inv
    }

    fn city_street(inv: &Inventory, n: &str) -> Option<String> {
        let a = inv.get(n)?.registered?;
        a.civic.get("RD").map(str::to_string)
    }

    async fn upload(store: &Store, tenant: &str, csv: &str) -> super::rows::UploadSummary {
        let up = upload::parse(csv.as_bytes(), Format::Csv, tenant).unwrap();
        store
            .apply_upload(tenant, &up, &actor(), &AddressRules::of_admin(None))
            .await
            .unwrap()
    }

    async fn log_rows(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM inventory_changes")
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn one_address_change_replaces_one_entry() {
        let (db, dir) = sqlite();
        let hub = Hub::new();
        let store = Store::open(&db, hub.clone()).await.unwrap();
        store.import(&inventory(), &actor()).await.unwrap();
        assert_eq!(whole_loads(&store).await, 1);
        // One row per number and per location, in the import's transaction.
        assert_eq!(log_rows(&store).await, 41 + 3);
        let before = hub.inventory();
        let version = hub.version();
        let seen = hub.subscribe();

        let n = number(7);
        store
            .set_address(
                "acme",
                &n,
                Some((addr("Lexington", 5), AddressCheck::Valid)),
                &actor(),
                false,
            )
            .await
            .unwrap();
        assert!(seen.has_changed().unwrap(), "a new snapshot was published");
        let after = hub.inventory();
        assert_eq!(whole_loads(&store).await, 1, "no whole load");
        assert_eq!(log_rows(&store).await, 45, "one row for one number");
        assert_eq!(hub.version(), version + 1);
        assert_eq!(store.version().await.unwrap(), hub.version());
        assert_eq!(city_street(&after, &n).as_deref(), Some("Lexington"));
        assert_eq!(city_street(&before, &n).as_deref(), Some("Broadway"));
        assert_eq!(after.len(), before.len());
        for e in before.numbers().filter(|e| e.number != n) {
            assert_eq!(
                after.get(&e.number).as_ref(),
                Some(&e),
                "{} is the same",
                e.number
            );
        }
        assert_same(&after, &loaded(&db).await);

        // An upload that changes nothing publishes nothing but keeps the
        // version the API reports in step.
        let seen = hub.subscribe();
        upload(
            &store,
            "acme",
            &format!("number,country\n{},US\n", number(3)),
        )
        .await;
        assert!(!seen.has_changed().unwrap());
        assert_eq!(store.version().await.unwrap(), hub.version());
        store.pool.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_location_change_moves_the_numbers_that_take_its_address() {
        let (db, dir) = sqlite();
        let hub = Hub::new();
        let store = Store::open(&db, hub.clone()).await.unwrap();
        store.import(&inventory(), &actor()).await.unwrap();
        let before = hub.inventory();

        store
            .put_location(
                "acme",
                "hq",
                &addr("35th", 1),
                &AddressCheck::Valid,
                &actor(),
            )
            .await
            .unwrap();
        let after = hub.inventory();
        assert_eq!(whole_loads(&store).await, 1, "no whole load");
        for i in 0..40 {
            let n = number(i);
            let want = if i % 2 == 0 {
                "35th".to_string()
            } else {
                // Its own address, linked or not.
                "Broadway".to_string()
            };
            assert_eq!(city_street(&after, &n), Some(want), "{n}");
        }
        assert_eq!(
            after.get("+13035550100"),
            before.get("+13035550100"),
            "another tenant's number"
        );
        assert_eq!(after.tenant_locations("acme")[0].address, addr("35th", 1));
        assert_same(&after, &loaded(&db).await);

        // A new location sorts where a whole load puts it; an unused one
        // can go.
        store
            .put_location(
                "acme",
                "annex",
                &addr("Annex St", 2),
                &AddressCheck::Valid,
                &actor(),
            )
            .await
            .unwrap();
        let ids: Vec<String> = hub
            .inventory()
            .tenant_locations("acme")
            .iter()
            .map(|l| l.id.clone())
            .collect();
        assert_eq!(ids, ["annex", "hq", "lab"]);
        store
            .delete_location("acme", "lab", &actor())
            .await
            .unwrap();
        let ids: Vec<String> = hub
            .inventory()
            .tenant_locations("acme")
            .iter()
            .map(|l| l.id.clone())
            .collect();
        assert_eq!(ids, ["annex", "hq"]);
        // Putting the same address again changes nothing and logs nothing.
        let rows = log_rows(&store).await;
        store
            .put_location(
                "acme",
                "annex",
                &addr("Annex St", 2),
                &AddressCheck::Valid,
                &actor(),
            )
            .await
            .unwrap();
        assert_eq!(log_rows(&store).await, rows);
        assert_eq!(whole_loads(&store).await, 1, "no whole load");
        assert_same(&hub.inventory(), &loaded(&db).await);
        store.pool.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn numbers_deleted_and_uploaded() {
        let (db, dir) = sqlite();
        let hub = Hub::new();
        let store = Store::open(&db, hub.clone()).await.unwrap();
        store.import(&inventory(), &actor()).await.unwrap();

        store
            .delete_number("acme", &number(4), &actor())
            .await
            .unwrap();
        assert!(hub.inventory().get(&number(4)).is_none());
        assert_eq!(hub.inventory().len(), 40);

        let rows = log_rows(&store).await;
        let s = upload(
            &store,
            "acme",
            "number,country,location_id,reg_A1,reg_A3,reg_RD,reg_HNO\n\
             +12125559001,US,lab,,,,\n\
             +12125559002,US,,NY,New York,Wall St,11\n\
             +12125550005,US,hq,,,,\n\
             +12125550003,US,,,,,\n",
        )
        .await;
        assert_eq!((s.created, s.updated, s.unchanged), (2, 2, 0));
        assert_eq!(
            log_rows(&store).await,
            rows + 4,
            "one row per number written"
        );
        let inv = hub.inventory();
        assert_eq!(inv.len(), 42);
        assert_eq!(city_street(&inv, "+12125559001").as_deref(), Some("Lab Rd"));
        assert_eq!(
            city_street(&inv, "+12125559002").as_deref(),
            Some("Wall St")
        );
        // Blank address columns remove a number's own address: number 5
        // takes its new location's, number 3 has none.
        assert_eq!(city_street(&inv, &number(5)).as_deref(), Some("34th"));
        assert_eq!(inv.get(&number(3)).unwrap().registered, None);
        assert_eq!(whole_loads(&store).await, 1, "no whole load");
        assert_same(&inv, &loaded(&db).await);
        store.pool.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Changes of every kind made through `a` while `b` does not look;
    /// then `b` catches up and holds what a whole load gives.
    async fn catches_up(db: &DatabaseConfig, stream_rows: i64) {
        let hub_a = Hub::new();
        let a = Store::open(db, hub_a.clone()).await.unwrap();
        a.import(&inventory(), &actor()).await.unwrap();
        let hub_b = Hub::new();
        let b = Store::open(db, hub_b.clone()).await.unwrap();
        assert_eq!(b.catch_up().await.unwrap(), Refreshed::Full);
        assert_eq!(b.catch_up().await.unwrap(), Refreshed::Nothing);

        a.set_address(
            "acme",
            &number(9),
            Some((addr("Park Ave", 3), AddressCheck::Valid)),
            &actor(),
            false,
        )
        .await
        .unwrap();
        a.delete_number("acme", &number(11), &actor())
            .await
            .unwrap();
        a.put_location(
            "acme",
            "hq",
            &addr("36th", 4),
            &AddressCheck::Valid,
            &actor(),
        )
        .await
        .unwrap();
        a.put_location(
            "initech",
            "one",
            &addr("Initech Way", 1),
            &AddressCheck::Valid,
            &actor(),
        )
        .await
        .unwrap();
        a.set_security_desk("acme", Some("https://desk.example/hook"), &actor())
            .await
            .unwrap();
        upload(
            &a,
            "initech",
            "number,country,location_id\n+14155550100,US,one\n+14155550101,US,\n",
        )
        .await;
        assert_eq!(hub_b.inventory().len(), 41, "b did not look yet");

        // Two rows per query: the batches follow each other; or all of
        // them read as one stream.
        assert_eq!(
            b.catch_up_by(2, stream_rows).await.unwrap(),
            Refreshed::Changes(7)
        );
        let inv = hub_b.inventory();
        assert_same(&inv, &hub_a.inventory());
        assert_same(&inv, &loaded(db).await);
        assert_eq!(city_street(&inv, &number(2)).as_deref(), Some("36th"));
        assert_eq!(
            city_street(&inv, "+14155550100").as_deref(),
            Some("Initech Way")
        );
        assert!(inv.get(&number(11)).is_none());
        assert_eq!(
            hub_b.security_desk("acme").as_deref(),
            Some("https://desk.example/hook")
        );
        assert_eq!(hub_b.version(), a.version().await.unwrap());
        assert_eq!(whole_loads(&b).await, 1);
        a.pool.close().await;
        b.pool.close().await;
    }

    #[tokio::test]
    async fn an_instance_that_was_not_looking_catches_up() {
        let (db, dir) = sqlite();
        catches_up(&db, STREAM_ROWS).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn many_changes_are_read_as_one_stream() {
        let (db, dir) = sqlite();
        catches_up(&db, 0).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn many_changes_are_read_as_one_stream_on_postgres() {
        let Some((db, pg)) = postgres("many_changes_are_read_as_one_stream_on_postgres").await
        else {
            return;
        };
        catches_up(&db, 0).await;
        pg.drop_now().await;
    }

    #[tokio::test]
    async fn an_instance_that_was_not_looking_catches_up_on_postgres() {
        let Some((db, pg)) =
            postgres("an_instance_that_was_not_looking_catches_up_on_postgres").await
        else {
            return;
        };
        catches_up(&db, STREAM_ROWS).await;
        pg.drop_now().await;
    }

    /// `b` misses changes whose rows are trimmed, and loads the whole
    /// inventory.
    async fn trimmed(db: &DatabaseConfig) {
        let hub_a = Hub::new();
        let a = Store::open(db, hub_a.clone()).await.unwrap();
        a.import(&inventory(), &actor()).await.unwrap();
        let hub_b = Hub::new();
        let b = Store::open(db, hub_b.clone()).await.unwrap();
        b.refresh().await.unwrap();

        // Rows younger than the cut stay.
        assert_eq!(a.trim_change_log(now_ms() - 3_600_000).await.unwrap(), 0);
        a.set_address(
            "acme",
            &number(13),
            Some((addr("Elm St", 8), AddressCheck::Valid)),
            &actor(),
            false,
        )
        .await
        .unwrap();
        a.delete_number("acme", &number(15), &actor())
            .await
            .unwrap();
        assert_eq!(a.trim_change_log(now_ms() + 1000).await.unwrap(), 46);
        assert_eq!(log_rows(&a).await, 0);

        // b missed two changes the log no longer has.
        assert_eq!(b.catch_up().await.unwrap(), Refreshed::Full);
        assert_eq!(whole_loads(&b).await, 2);
        let inv = hub_b.inventory();
        assert_eq!(city_street(&inv, &number(13)).as_deref(), Some("Elm St"));
        assert!(inv.get(&number(15)).is_none());
        assert_same(&inv, &hub_a.inventory());
        // a had applied them: nothing to do, and the log goes on.
        assert_eq!(a.catch_up().await.unwrap(), Refreshed::Nothing);
        a.set_address(
            "acme",
            &number(17),
            Some((addr("Oak St", 2), AddressCheck::Valid)),
            &actor(),
            false,
        )
        .await
        .unwrap();
        assert_eq!(b.catch_up().await.unwrap(), Refreshed::Changes(1));
        assert_same(&hub_b.inventory(), &hub_a.inventory());
        assert_eq!(whole_loads(&a).await, 1);
        a.pool.close().await;
        b.pool.close().await;
    }

    /// A restart reads its checkpoint and the log rows written after it;
    /// a checkpoint that does not fit the database is not used.
    async fn restarts_from_its_checkpoint(db: &DatabaseConfig) {
        let hub_a = Hub::new();
        let a = Store::open(db, hub_a.clone()).await.unwrap();
        a.import(&inventory(), &actor()).await.unwrap();
        assert!(a.checkpoint_due().await, "due after a whole load");
        a.write_checkpoint().await.unwrap();
        assert!(!a.checkpoint_due().await);
        a.set_address(
            "acme",
            &number(7),
            Some((addr("Elm St", 8), AddressCheck::Valid)),
            &actor(),
            false,
        )
        .await
        .unwrap();
        a.delete_number("acme", &number(9), &actor()).await.unwrap();
        assert!(!a.checkpoint_due().await, "two changes make none due");

        let restarted = |db: DatabaseConfig| async move {
            let hub = Hub::new();
            let s = Store::open(&db, hub.clone()).await.unwrap();
            s.refresh().await.unwrap();
            let loads = whole_loads(&s).await;
            s.pool.close().await;
            (loads, hub.inventory())
        };
        let (loads, inv) = restarted(db.clone()).await;
        assert_eq!(loads, 0, "no whole load");
        assert_eq!(city_street(&inv, &number(7)).as_deref(), Some("Elm St"));
        assert!(inv.get(&number(9)).is_none());
        assert_same(&inv, &hub_a.inventory());

        // The log row the checkpoint ends at is not what it was (a
        // database restored from a backup): a whole load.
        sqlx::query("UPDATE inventory_changes SET at_ms = at_ms + 1 WHERE seq = (SELECT MAX(seq) - 2 FROM inventory_changes)")
            .execute(&a.pool)
            .await
            .unwrap();
        let (loads, inv) = restarted(db.clone()).await;
        assert_eq!(loads, 1);
        assert_same(&inv, &hub_a.inventory());

        // A damaged file: a whole load.
        a.write_checkpoint().await.unwrap();
        let file = db.data_dir.join(super::super::checkpoint::FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let (loads, inv) = restarted(db.clone()).await;
        assert_eq!(loads, 1);
        assert_same(&inv, &hub_a.inventory());

        // Another database's checkpoint: a whole load of this one.
        a.write_checkpoint().await.unwrap();
        let (other, other_dir) = sqlite();
        std::fs::create_dir_all(&other_dir).unwrap();
        std::fs::copy(&file, other_dir.join(super::super::checkpoint::FILE)).unwrap();
        let (loads, inv) = restarted(other).await;
        assert_eq!((loads, inv.len()), (1, 0));
        let _ = std::fs::remove_dir_all(other_dir);
        a.pool.close().await;
    }

    #[tokio::test]
    async fn a_restart_reads_its_checkpoint() {
        let (db, dir) = sqlite();
        restarts_from_its_checkpoint(&db).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_restart_reads_its_checkpoint_on_postgres() {
        let Some((db, pg)) = postgres("a_restart_reads_its_checkpoint_on_postgres").await else {
            return;
        };
        restarts_from_its_checkpoint(&db).await;
        let _ = std::fs::remove_dir_all(&db.data_dir);
        pg.drop_now().await;
    }

    #[tokio::test]
    async fn a_trimmed_log_means_a_whole_load() {
        let (db, dir) = sqlite();
        trimmed(&db).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_trimmed_log_means_a_whole_load_on_postgres() {
        let Some((db, pg)) = postgres("a_trimmed_log_means_a_whole_load_on_postgres").await else {
            return;
        };
        trimmed(&db).await;
        pg.drop_now().await;
    }

    /// Two instances on one PostgreSQL database, each following it: a
    /// change made through one reaches the other's hub within a second.
    /// Polling is set to a minute, so only the notification can bring it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_instance_sees_a_change_within_a_second_on_postgres() {
        let Some((mut db, pg)) =
            postgres("another_instance_sees_a_change_within_a_second_on_postgres").await
        else {
            return;
        };
        db.poll_interval_ms = 60_000;
        let hub_a = Hub::new();
        let a = Store::open(&db, hub_a.clone()).await.unwrap();
        a.import(&inventory(), &actor()).await.unwrap();
        let hub_b = Hub::new();
        let b = Store::open(&db, hub_b.clone()).await.unwrap();
        b.refresh().await.unwrap();
        let follower_a = a.spawn_follower(Duration::from_millis(db.poll_interval_ms));
        let follower_b = b.spawn_follower(Duration::from_millis(db.poll_interval_ms));
        // The followers' first round (and the listener's connection).
        tokio::time::sleep(Duration::from_millis(500)).await;

        for (k, (from, to)) in [(&a, &hub_b), (&b, &hub_a), (&a, &hub_b)]
            .into_iter()
            .enumerate()
        {
            let mut seen = to.subscribe();
            let n = number(21 + 2 * k as u32);
            let t = Instant::now();
            from.set_address(
                "acme",
                &n,
                Some((addr("Maple St", k as u32), AddressCheck::Valid)),
                &actor(),
                false,
            )
            .await
            .unwrap();
            tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    seen.changed().await.unwrap();
                    if city_street(&seen.borrow_and_update(), &n).as_deref() == Some("Maple St") {
                        break;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("change {k} not seen within a second"));
            eprintln!(
                "change {k} seen by the other instance after {:?}",
                t.elapsed()
            );
        }
        assert_same(&hub_a.inventory(), &hub_b.inventory());
        assert_eq!(whole_loads(&a).await, 1);
        assert_eq!(whole_loads(&b).await, 1);
        follower_a.abort();
        follower_b.abort();
        let _ = follower_a.await;
        let _ = follower_b.await;
        a.pool.close().await;
        b.pool.close().await;
        pg.drop_now().await;
    }
}
