//! Call records in the database: written in batches, each record replacing
//! the one stored under its id (a record is written as its call goes on,
//! and a retried batch never doubles one), read back page by page for
//! exports, deleted after the retention period. The routers writing
//! records hold leases in `record_writers`; the `open` records of a router
//! whose lease ran out are closed as `interrupted` (see `cdr::store`).

use std::sync::Arc;

use sqlx::Row;

use crate::cdr::writer::{BoxFuture, RecordRow, RecordStore};
use crate::cdr::CallRecord;

use super::{Backend, Store, StoreError};

/// Which records to export: a tenant (or all), and the INVITE time range
/// `[from_ms, to_ms)`.
#[derive(Debug, Clone)]
pub struct RecordFilter {
    pub tenant: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// A position in an export: the last record's INVITE time and id.
pub type Cursor = (i64, String);

/// Rows one statement writes at most: 8 values each, well within the bind
/// limits of SQLite (32,766) and PostgreSQL (65,535).
pub const ROWS_PER_STATEMENT: usize = 64;

/// The statement sizes `n` rows are written in: powers of two, the
/// largest first, none over [`ROWS_PER_STATEMENT`].
fn sizes(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while n > 0 {
        let size = if n >= ROWS_PER_STATEMENT {
            ROWS_PER_STATEMENT
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        out.push(size);
        n -= size;
    }
    out
}

/// `INSERT ... ON CONFLICT (id) DO UPDATE` of `n` rows.
fn insert_sql(n: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::from(
        "INSERT INTO call_records (id, tenant, invite_ms, call_id, caller_number, outcome, record, node) VALUES ",
    );
    for i in 0..n {
        let b = i * 8;
        let _ = write!(
            sql,
            "{}(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            if i == 0 { "" } else { ", " },
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8
        );
    }
    sql.push_str(
        " ON CONFLICT (id) DO UPDATE SET \
         tenant = excluded.tenant, invite_ms = excluded.invite_ms, call_id = excluded.call_id, \
         caller_number = excluded.caller_number, outcome = excluded.outcome, \
         record = excluded.record, node = excluded.node",
    );
    sql
}

/// The statement writing `rows` (a size [`sizes`] gives), its values
/// bound.
fn insert_rows<'q>(
    rows: &[&'q RecordRow],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    // Made once: by size, 1, 2, 4, ... 64 rows.
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        (0..=ROWS_PER_STATEMENT.trailing_zeros())
            .map(|k| insert_sql(1 << k))
            .collect()
    });
    debug_assert!(rows.len().is_power_of_two() && rows.len() <= ROWS_PER_STATEMENT);
    let mut q = sqlx::query(sql[rows.len().trailing_zeros() as usize].as_str());
    for r in rows {
        q = q
            .bind(r.id.as_str())
            .bind(r.tenant.as_deref())
            .bind(r.invite_ms)
            .bind(r.call_id.as_str())
            .bind(r.caller_number.as_deref())
            .bind(r.outcome.as_str())
            .bind(r.record.as_str())
            .bind(r.node.as_str());
    }
    q
}

impl Store {
    /// Writes records in one transaction, each replacing the one stored
    /// under its id.
    pub async fn write_records<R>(&self, records: &[R]) -> Result<(), StoreError>
    where
        R: std::borrow::Borrow<CallRecord> + Sync,
    {
        let rows = records
            .iter()
            .map(|r| RecordRow::of(r.borrow()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::from)?;
        self.write_rows(&rows).await
    }

    /// Writes records already made rows (their JSON written) in one
    /// transaction, each replacing the one stored under its id. Of several
    /// rows of one id, the last is written.
    ///
    /// The rows go in statements of 64, 32, ... or 1 rows ([`sizes`]):
    /// every statement is a round trip to the database's thread (SQLite's
    /// runs on a thread of its own, woken for each), and one statement per
    /// row made the call records the largest source of context switches
    /// per call. Seven sizes are seven statement texts, each prepared once
    /// per connection and then kept by sqlx; a text per batch size was
    /// prepared again and again. A batch of one statement needs no
    /// transaction of its own.
    pub async fn write_rows(&self, rows: &[RecordRow]) -> Result<(), StoreError> {
        // One statement may not change a row twice (PostgreSQL refuses
        // it): each id once, at its last row, in the batch's order.
        let mut latest: Vec<&RecordRow> = Vec::with_capacity(rows.len());
        let mut at: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(rows.len());
        for r in rows {
            match at.entry(r.id.as_str()) {
                std::collections::hash_map::Entry::Occupied(e) => latest[*e.get()] = r,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(latest.len());
                    latest.push(r);
                }
            }
        }
        if latest.is_empty() {
            return Ok(());
        }
        let sizes = sizes(latest.len());
        let _g = self.write_lock.lock().await;
        if let [n] = sizes[..] {
            insert_rows(&latest[..n]).execute(&self.pool).await?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut rest = &latest[..];
        for n in sizes {
            let (now, after) = rest.split_at(n);
            insert_rows(now).execute(&mut *tx).await?;
            rest = after;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Says that the router process `node` runs (its lease). Not behind
    /// the write lock: a long upload must not make a live router look
    /// stopped.
    pub async fn renew_writer(&self, node: &str, started_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO record_writers (node, started_ms, seen_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (node) DO UPDATE SET seen_ms = excluded.seen_ms",
        )
        .bind(node.to_string())
        .bind(started_ms)
        .bind(super::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The router process `node` stopped with every record written.
    pub async fn release_writer(&self, node: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM record_writers WHERE node = $1")
            .bind(node.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes as `interrupted` the `open` records of every router but
    /// `node` whose lease was last renewed before `stale_before_ms` (or
    /// that has none: stopped, or older than leases), and forgets those
    /// leases; how many records.
    pub async fn close_abandoned_records(
        &self,
        node: &str,
        stale_before_ms: i64,
    ) -> Result<u64, StoreError> {
        // The record's JSON says the outcome too.
        let record = match self.backend {
            Backend::Sqlite => "json_set(record, '$.outcome', 'interrupted')",
            Backend::Postgres => "(record::jsonb || '{\"outcome\": \"interrupted\"}'::jsonb)::text",
        };
        let _g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let closed = sqlx::query(&format!(
            "UPDATE call_records SET outcome = 'interrupted', record = {record} \
             WHERE outcome = 'open' AND (node IS NULL OR (node <> $1 AND node NOT IN \
             (SELECT node FROM record_writers WHERE seen_ms >= $2)))"
        ))
        .bind(node.to_string())
        .bind(stale_before_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM record_writers WHERE seen_ms < $1 AND node <> $2")
            .bind(stale_before_ms)
            .bind(node.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(closed)
    }

    /// The next page of records after `after`, in INVITE time order.
    pub async fn records_page(
        &self,
        filter: &RecordFilter,
        after: &Cursor,
        limit: i64,
    ) -> Result<Vec<(Cursor, CallRecord)>, StoreError> {
        let mut sql = String::from(
            "SELECT id, invite_ms, record FROM call_records WHERE invite_ms >= $1 AND invite_ms < $2 \
             AND (invite_ms > $3 OR (invite_ms = $3 AND id > $4))",
        );
        if filter.tenant.is_some() {
            sql.push_str(" AND tenant = $6");
        }
        sql.push_str(" ORDER BY invite_ms, id LIMIT $5");
        let mut q = sqlx::query(&sql)
            .bind(filter.from_ms)
            .bind(filter.to_ms)
            .bind(after.0)
            .bind(after.1.clone())
            .bind(limit);
        if let Some(t) = &filter.tenant {
            q = q.bind(t.clone());
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get(0)?;
            let at: i64 = r.try_get(1)?;
            let text: String = r.try_get(2)?;
            let rec: CallRecord = serde_json::from_str(&text).map_err(anyhow::Error::from)?;
            out.push(((at, id), rec));
        }
        Ok(out)
    }

    /// Deletes records whose INVITE came before `before_ms`; how many.
    pub async fn purge_records(&self, before_ms: i64) -> Result<u64, StoreError> {
        let _g = self.write_lock.lock().await;
        let r = sqlx::query("DELETE FROM call_records WHERE invite_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Deletes records older than `days` now and then once a day.
    pub fn spawn_retention(self: &std::sync::Arc<Self>, days: u32) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
            loop {
                tick.tick().await;
                let before = super::now_ms() - i64::from(days) * 86_400_000;
                match store.purge_records(before).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(records = n, days, "call records past retention deleted")
                    }
                    Err(e) => tracing::warn!(error = %e, "could not delete old call records"),
                }
            }
        })
    }
}

/// Call records go to the database: the store behind a
/// [`Recorder`](crate::cdr::store::Recorder).
pub struct DbRecords(pub Arc<Store>);

impl RecordStore for DbRecords {
    fn write<'a>(&'a self, records: &'a [RecordRow]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.0.write_rows(records).await.map_err(Into::into) })
    }

    fn renew<'a>(&'a self, node: &'a str, started_ms: i64) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.0
                .renew_writer(node, started_ms)
                .await
                .map_err(Into::into)
        })
    }

    fn close_abandoned<'a>(
        &'a self,
        node: &'a str,
        stale_before_ms: i64,
    ) -> BoxFuture<'a, anyhow::Result<u64>> {
        Box::pin(async move {
            self.0
                .close_abandoned_records(node, stale_before_ms)
                .await
                .map_err(Into::into)
        })
    }

    fn release<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.0.release_writer(node).await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseConfig;
    use crate::store::Hub;

    fn record(id: &str, tenant: &str, invite_ms: i64) -> CallRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "tenant": tenant, "kind": "emergency", "call_id": format!("c-{id}"),
            "caller_number": "+12125550142", "caller_uri": "sip:+12125550142@h", "from": "<sip:+12125550142@h>",
            "pai": null, "dialed": "911", "request_uri": "sip:911@h", "invite_ms": invite_ms,
            "answer_ms": null, "end_ms": null, "duration_ms": null, "final_status": 486,
            "outcome": "failed", "route": "psap", "reason": "r", "trunk": null, "psap_id": null,
            "attempts": [], "country": "US", "location_source": "none", "location": null,
            "registered_address": null, "source_ip": "127.0.0.1", "source_port": 5060,
            "transport": "udp", "user_agent": null
        }))
        .unwrap()
    }

    /// A SQLite database in a directory of its own under the system's
    /// temporary directory: the directory and the configuration naming it.
    fn sqlite_config() -> (std::path::PathBuf, DatabaseConfig) {
        let dir = std::env::temp_dir().join(format!(
            "sosrouter-store-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let db = DatabaseConfig {
            data_dir: dir.clone(),
            ..DatabaseConfig::default()
        };
        (dir, db)
    }

    #[tokio::test]
    async fn records_page_in_order_survive_retries_and_expire() {
        let (dir, db) = sqlite_config();
        let store = Store::open(&db, Hub::new()).await.unwrap();
        let batch = vec![
            record("b", "acme", 2000),
            record("a", "acme", 2000),
            record("c", "globex", 1000),
            record("d", "acme", 3000),
        ];
        store.write_records(&batch).await.unwrap();
        // A retried batch writes nothing twice.
        store.write_records(&batch[..2]).await.unwrap();
        drop(store);
        // Opening again runs no migration twice.
        let store = Store::open(&db, Hub::new()).await.unwrap();
        let all = RecordFilter {
            tenant: None,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
        };
        let mut seen = Vec::new();
        let mut cursor: Cursor = (i64::MIN, String::new());
        loop {
            let page = store.records_page(&all, &cursor, 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            cursor = page.last().unwrap().0.clone();
            seen.extend(page.into_iter().map(|(_, r)| r.id));
        }
        assert_eq!(seen, ["c", "a", "b", "d"]);
        let acme = RecordFilter {
            tenant: Some("acme".into()),
            from_ms: 2000,
            to_ms: 3000,
        };
        let page = store
            .records_page(&acme, &(i64::MIN, String::new()), 10)
            .await
            .unwrap();
        let ids: Vec<&str> = page.iter().map(|(_, r)| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(store.purge_records(2500).await.unwrap(), 3);
        let left = store
            .records_page(&all, &(i64::MIN, String::new()), 10)
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1.id, "d");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A large batch and a small one: every row in, each id once, the
    /// later write replacing the earlier in the columns and in the record.
    #[tokio::test]
    async fn a_batch_replaces_every_record_it_writes_again() {
        let (dir, db) = sqlite_config();
        let store = Store::open(&db, Hub::new()).await.unwrap();
        let n = 250;
        let batch: Vec<CallRecord> = (0..n)
            .map(|i| record(&format!("r{i:04}"), "acme", i as i64))
            .collect();
        store.write_records(&batch).await.unwrap();
        let answered: Vec<CallRecord> = batch
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.outcome = "answered".into();
                r.final_status = Some(200);
                r
            })
            .collect();
        store.write_records(&answered[..3]).await.unwrap();
        store.write_records(&answered[3..]).await.unwrap();
        let all = RecordFilter {
            tenant: None,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
        };
        let page = store
            .records_page(&all, &(i64::MIN, String::new()), 1000)
            .await
            .unwrap();
        assert_eq!(page.len(), n);
        for ((_, got), want) in page.iter().zip(&answered) {
            assert_eq!(got, want);
        }
        let columns: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM call_records WHERE outcome = 'answered' AND tenant = 'acme' \
             AND call_id = 'c-' || id AND node = substr(id, 1, 16)",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(columns, n as i64);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A batch larger than one statement, holding several versions of
    /// some records: each record is stored once, at its last version, on
    /// SQLite here and on PostgreSQL in the tests below.
    async fn a_large_batch_keeps_the_last_version_of_each_record(store: &Store) {
        let n = ROWS_PER_STATEMENT * 2 + 13;
        let mut batch: Vec<CallRecord> = (0..n)
            .map(|i| record(&format!("big-{i:04}"), "acme", i as i64))
            .collect();
        // Later versions of every seventh record, answered, in the batch.
        for i in (0..n).step_by(7) {
            let mut r = record(&format!("big-{i:04}"), "acme", i as i64);
            r.outcome = "answered".into();
            batch.push(r);
        }
        store.write_records(&batch).await.unwrap();
        let got: Vec<(String, String)> = outcomes(store)
            .await
            .into_iter()
            .filter(|(id, _)| id.starts_with("big-"))
            .collect();
        assert_eq!(got.len(), n, "each record once");
        for (id, outcome) in got {
            let i: usize = id["big-".len()..].parse().unwrap();
            let want = if i.is_multiple_of(7) {
                "answered"
            } else {
                "failed"
            };
            assert_eq!(outcome, want, "{id}");
        }
        // A batch of one statement, of one record written twice.
        let mut again = record("big-0001", "acme", 1);
        again.outcome = "interrupted".into();
        store
            .write_records(&[record("big-0001", "acme", 1), again])
            .await
            .unwrap();
        assert!(outcomes(store)
            .await
            .contains(&("big-0001".to_owned(), "interrupted".to_owned())));
        store.write_records::<CallRecord>(&[]).await.unwrap();
    }

    #[tokio::test]
    async fn sqlite_a_large_batch_keeps_the_last_version_of_each_record() {
        let (dir, db) = sqlite_config();
        let store = Store::open(&db, Hub::new()).await.unwrap();
        a_large_batch_keeps_the_last_version_of_each_record(&store).await;
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rows_go_in_statements_of_powers_of_two() {
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(45), [32, 8, 4, 1]);
        assert_eq!(sizes(64), [64]);
        assert_eq!(sizes(141), [64, 64, 8, 4, 1]);
        for n in 0..300 {
            let s = sizes(n);
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s
                .iter()
                .all(|k| k.is_power_of_two() && *k <= ROWS_PER_STATEMENT));
        }
        assert!(insert_sql(2).contains("($9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT"));
    }

    async fn outcomes(store: &Store) -> Vec<(String, String)> {
        let all = RecordFilter {
            tenant: None,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
        };
        let page = store
            .records_page(&all, &(i64::MIN, String::new()), 1000)
            .await
            .unwrap();
        let mut out = Vec::new();
        for (_, r) in page {
            let column: String =
                sqlx::query_scalar("SELECT outcome FROM call_records WHERE id = $1")
                    .bind(r.id.clone())
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            assert_eq!(column, r.outcome, "{}", r.id);
            out.push((r.id, r.outcome));
        }
        out
    }

    /// `store` (SQLite here, PostgreSQL when SOSROUTER_TEST_PG_URL is set).
    async fn records_are_replaced_and_closed_when_their_router_is_gone(store: &Store) {
        let (a, b) = ("a".repeat(16), "b".repeat(16));
        let open = |node: &str, n: u32| {
            let mut r = record(&format!("{node}{n:016x}"), "acme", 1000 + i64::from(n));
            r.outcome = "open".into();
            r
        };
        // Written open, then again when over: one record, the latest.
        store
            .write_records(&[open(&a, 1), open(&a, 2)])
            .await
            .unwrap();
        let mut over = open(&a, 1);
        over.outcome = "failed".into();
        store.write_records(&[over]).await.unwrap();
        store.write_records(&[open(&b, 3)]).await.unwrap();
        let mut legacy = open("old", 4);
        legacy.id = "legacy".into();
        store.write_records(&[legacy]).await.unwrap();
        sqlx::query("UPDATE call_records SET node = NULL WHERE id = 'legacy'")
            .execute(store.pool())
            .await
            .unwrap();
        let now = crate::store::now_ms();
        store.renew_writer(&a, now).await.unwrap();
        store.renew_writer(&b, now).await.unwrap();
        // Both routers alive: only the record older than leases is closed.
        assert_eq!(
            store
                .close_abandoned_records(&b, now - 15_000)
                .await
                .unwrap(),
            1
        );
        let ids = |v: &[(String, String)]| {
            v.iter()
                .map(|(i, o)| format!("{}:{o}", &i[..3]))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&outcomes(store).await),
            ["aaa:failed", "aaa:open", "bbb:open", "leg:interrupted"]
        );
        // a's lease runs out: b closes a's open record, never its own.
        assert_eq!(
            store
                .close_abandoned_records(&b, now + 60_000)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            ids(&outcomes(store).await),
            [
                "aaa:failed",
                "aaa:interrupted",
                "bbb:open",
                "leg:interrupted"
            ]
        );
        let writers: Vec<String> = sqlx::query_scalar("SELECT node FROM record_writers")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(writers, vec![b.clone()]);
        // b stops cleanly: its lease goes; a later router closes the rest.
        store.release_writer(&b).await.unwrap();
        assert_eq!(
            store
                .close_abandoned_records(&a, now - 15_000)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            ids(&outcomes(store).await),
            [
                "aaa:failed",
                "aaa:interrupted",
                "bbb:interrupted",
                "leg:interrupted"
            ]
        );
    }

    #[tokio::test]
    async fn sqlite_records_are_replaced_and_closed_when_their_router_is_gone() {
        let (dir, db) = sqlite_config();
        let store = Store::open(&db, Hub::new()).await.unwrap();
        records_are_replaced_and_closed_when_their_router_is_gone(&store).await;
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn postgres_records_are_replaced_and_closed_when_their_router_is_gone() {
        let Ok(admin) = std::env::var("SOSROUTER_TEST_PG_URL") else {
            eprintln!("skipped: SOSROUTER_TEST_PG_URL is not set");
            return;
        };
        use sqlx::{Connection, Executor};
        let name = format!(
            "sosrouter_unit_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut c = sqlx::postgres::PgConnection::connect(&admin).await.unwrap();
        c.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        let db = DatabaseConfig {
            url: Some(url),
            ..DatabaseConfig::default()
        };
        let store = Store::open(&db, Hub::new()).await.unwrap();
        records_are_replaced_and_closed_when_their_router_is_gone(&store).await;
        a_large_batch_keeps_the_last_version_of_each_record(&store).await;
        store.pool().close().await;
        drop(store);
        c.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
    }
}
