//! The inventory change log: how a snapshot follows the database without
//! reloading it whole.
//!
//! Every inventory write appends, in its own transaction, one row to
//! `inventory_changes` per number, tenant location or security desk it
//! changed ([`append`]): a sequence number, what changed, and when. Every
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

use sqlx::{Any, Row, Transaction};

use crate::inventory::{Changes, TenantLocation};

use super::numbers::{self, NumberRow, NUMBER_COLUMNS};
use super::{address, now_ms, Backend, Store, StoreError};

/// The PostgreSQL notification channel of inventory changes.
pub const CHANNEL: &str = "sosrouter_inventory";

/// Log rows read per query.
const BATCH: i64 = 10_000;
/// Numbers read per query.
const NUMBERS_PER_QUERY: usize = 500;
/// Log rows deleted per transaction by the trim.
const TRIM_BATCH: i64 = 10_000;
/// With more log rows than this (or than a quarter of the inventory)
/// waiting, the whole inventory is loaded instead.
const FULL_LOAD_ROWS: usize = 100_000;
/// How often the follower trims the log.
const TRIM_EVERY: Duration = Duration::from_secs(3600);

/// One thing an inventory write changed, as the log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed<'a> {
    /// A number (tenant, number): created, changed or deleted.
    Number(&'a str, &'a str),
    /// A tenant location (tenant, id): created, changed or deleted; the
    /// numbers that take their address from it follow.
    Location(&'a str, &'a str),
    /// A tenant's security desk webhook.
    Desk(&'a str),
}

impl Changed<'_> {
    fn columns(&self) -> (&'static str, &str, &str) {
        match *self {
            Changed::Number(t, n) => ("number", t, n),
            Changed::Location(t, id) => ("location", t, id),
            Changed::Desk(t) => ("desk", t, ""),
        }
    }
}

/// Appends `changed` to the log in the writer's transaction (which has
/// bumped the version row first). On PostgreSQL the instances listening
/// are notified when the transaction commits.
pub async fn append(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    changed: &[Changed<'_>],
) -> Result<(), sqlx::Error> {
    if changed.is_empty() {
        return Ok(());
    }
    let at = now_ms();
    for chunk in changed.chunks(250) {
        let mut sql =
            String::from("INSERT INTO inventory_changes (kind, tenant, subject, at_ms) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let b = i * 4;
            sql.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
        }
        let mut q = sqlx::query(&sql);
        for c in chunk {
            let (kind, tenant, subject) = c.columns();
            q = q
                .bind(kind)
                .bind(tenant.to_string())
                .bind(subject.to_string())
                .bind(at);
        }
        q.execute(&mut **tx).await?;
    }
    if backend == Backend::Postgres {
        sqlx::query(&format!("NOTIFY {CHANNEL}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// How far this process follows the log.
#[derive(Debug, Default)]
pub struct Follow {
    /// The last log row applied to the published snapshot; `None` before
    /// the first load.
    applied: Option<i64>,
    /// Whole loads so far.
    whole_loads: usize,
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
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::First => "first load",
            Why::Trimmed => "the change log was trimmed past this instance's last change",
            Why::Many => "more changes than a whole load costs",
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
        self.catch_up_by(BATCH).await
    }

    /// [`Store::catch_up`], reading `batch` log rows per query.
    async fn catch_up_by(&self, batch: i64) -> Result<Refreshed, StoreError> {
        let mut follow = self.follow.lock().await;
        let head = self.head().await?;
        let Some(applied) = follow.applied else {
            return self.load_whole(&mut follow, Why::First).await;
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
        let most = FULL_LOAD_ROWS.max(self.hub.inventory().len() / 4);
        if usize::try_from(head.last - applied).unwrap_or(usize::MAX) > most {
            return self.load_whole(&mut follow, Why::Many).await;
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
                        tracing::warn!(
                            kind = other,
                            seq,
                            "unknown kind of inventory change; loading the whole inventory"
                        );
                        return self.load_whole(&mut follow, Why::Many).await;
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
            // The rows seen by the first statement were trimmed since: the
            // check above reloaded; or the version moved alone.
            self.hub.set_version(head.version);
            return Ok(Refreshed::Nothing);
        }
        let changes = self.read_changes(&numbers, &locations).await?;
        let desks = if desks {
            Some(self.load_desks().await?)
        } else {
            None
        };
        let t = Instant::now();
        self.hub.apply(&changes, desks, head.version);
        follow.applied = Some(cursor);
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
        follow.applied = Some(head.last);
        follow.whole_loads += 1;
        Ok(Refreshed::Full)
    }

    /// The current database rows of the numbers and locations named, as
    /// changes to the published snapshot: numbers and locations present
    /// are added or replaced, absent ones removed, and the numbers that
    /// take their address from a changed location are replaced too.
    async fn read_changes(
        &self,
        numbers: &BTreeSet<String>,
        locations: &BTreeSet<(String, String)>,
    ) -> Result<Changes, StoreError> {
        let current = self.hub.inventory();
        let mut changes = Changes::default();
        let mut done: HashSet<String> = HashSet::new();
        let mut conn = self.pool.acquire().await?;

        let mut by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (t, id) in locations {
            by_tenant.entry(t).or_default().push(id);
        }
        for (tenant, ids) in by_tenant {
            let rows = sqlx::query(
                "SELECT id, address_civic, address_lat, address_lon FROM locations \
                 WHERE tenant = $1 ORDER BY id",
            )
            .bind(tenant.to_string())
            .fetch_all(&mut *conn)
            .await?;
            let mut stored = Vec::with_capacity(rows.len());
            for r in rows {
                stored.push(TenantLocation {
                    id: r.try_get(0)?,
                    address: address::from_db(
                        &r.try_get::<String, _>(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                    )?,
                });
            }
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
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let mut q_sql = numbers::joined_select();
            q_sql.push_str(&format!(" WHERE n.number IN ({})", marks.join(",")));
            let mut q = sqlx::query(&q_sql);
            for n in chunk {
                q = q.bind(n.to_string());
            }
            let mut found: HashSet<String> = HashSet::with_capacity(chunk.len());
            for r in q.fetch_all(&mut *conn).await? {
                let n = NumberRow::from_row(&r)?;
                let location = numbers::joined_location(&r)?;
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
        let result = async {
            let mut l = sqlx::postgres::PgListener::connect(&url).await?;
            l.listen(CHANNEL).await?;
            if failing {
                tracing::info!("listening for inventory change notifications again");
            }
            failing = false;
            // Changes committed while (re)connecting were not notified.
            wake.notify_one();
            loop {
                l.recv().await?;
                while l.next_buffered().is_some() {}
                wake.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        }
        .await;
        if let Err(e) = result {
            if !failing {
                tracing::warn!(error = %e, "cannot listen for inventory change notifications; polling only until it can");
            }
            failing = true;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

