//! Call records in the database: written in batches (a record already
//! there is left alone, so a retried batch never doubles one), read back
//! page by page for exports, deleted after the retention period.

use sqlx::Row;

use crate::cdr::CallRecord;

use super::{Store, StoreError};

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

impl Store {
    /// Writes records in one transaction.
    pub async fn write_records(&self, records: &[CallRecord]) -> Result<(), StoreError> {
        let _g = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        for r in records {
            let json = serde_json::to_string(r).map_err(anyhow::Error::from)?;
            sqlx::query(
                "INSERT INTO call_records (id, tenant, invite_ms, call_id, caller_number, outcome, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(r.id.clone())
            .bind(r.tenant.clone())
            .bind(r.invite_ms)
            .bind(r.call_id.clone())
            .bind(r.caller_number.clone())
            .bind(r.outcome.clone())
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
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

    #[tokio::test]
    async fn records_page_in_order_survive_retries_and_expire() {
        let dir = std::env::temp_dir().join(format!(
            "sosrouter-store-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let db = DatabaseConfig {
            data_dir: dir.clone(),
            ..DatabaseConfig::default()
        };
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
}
