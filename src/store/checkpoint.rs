//! This instance's inventory checkpoint: the published snapshot written to
//! `data_dir` (in the form of [`crate::inventory::checkpoint`]), with the
//! change log row it was built up to. A restart reads it and applies the
//! log rows written since, instead of reading the whole inventory from the
//! database: seconds instead of minutes at ten million numbers.
//!
//! A checkpoint is used only when it was made from this database (its URL,
//! credentials left out) and the database's log still holds its last row
//! unchanged (same sequence number, same time) and every row after it; a
//! database restored from a backup, or a log trimmed past it, makes the
//! router load the whole inventory instead. It is written after every
//! whole load, then once 100,000 log rows or an hour with any change have
//! been applied since the last one, on a blocking thread, to a new file
//! renamed over the old one.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// The file's name in `data_dir`.
pub(super) const FILE: &str = "inventory.checkpoint";
/// Log rows applied since the last checkpoint that make a new one due.
const EVERY_ROWS: usize = 100_000;
/// With any log row applied since the last checkpoint, a new one is due
/// after this long.
const EVERY: Duration = Duration::from_secs(3600);

/// What the store writes beside the snapshot.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Meta {
    database: String,
    /// The last change log row applied to the snapshot (0: none).
    seq: i64,
    /// That row's time, to tell it from another row of the same number.
    seq_at_ms: Option<i64>,
    /// The database's inventory version the snapshot was built from.
    version: i64,
}

/// Whether a new checkpoint is due (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Due {
    /// Log rows applied since the last checkpoint.
    pub(super) rows: usize,
    /// When the last one was written or read.
    pub(super) at: Option<Instant>,
    /// The published snapshot was loaded whole and is in no checkpoint.
    pub(super) stale: bool,
}

impl Due {
    fn now(&self) -> bool {
        self.stale
            || self.rows >= EVERY_ROWS
            || (self.rows > 0 && self.at.is_none_or(|t| t.elapsed() >= EVERY))
    }
}

impl Store {
    /// The database as a checkpoint names it: its URL without user and
    /// password.
    fn database_name(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) if u.has_host() => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string()
            }
            _ => self.url.clone(),
        }
    }

    /// Reads the checkpoint and, when it fits the database (`trimmed` and
    /// `last` bound its change log), publishes its snapshot. Returns the
    /// last log row it holds; `None` when there is none to use (said in
    /// the log when one was there).
    pub(super) async fn read_checkpoint(&self, trimmed: i64, last: i64) -> Option<i64> {
        let path = self.checkpoint.clone()?;
        if !path.exists() {
            return None;
        }
        let t = Instant::now();
        let p = path.clone();
        let read = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&p)?;
            let size = f.metadata()?.len();
            crate::inventory::checkpoint::read(f, size)
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .await;
        let (inv, meta) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "the inventory checkpoint cannot be read: loading the whole inventory");
                return None;
            }
            Err(_) => return None,
        };
        let meta: Meta = match serde_json::from_slice(&meta) {
            Ok(m) => m,
            Err(_) => return None,
        };
        let why_not = if meta.database != self.database_name() {
            Some("it was made from another database".to_string())
        } else if meta.seq < trimmed {
            Some("the change log was trimmed past it".into())
        } else if meta.seq > last {
            Some(
                "the database's change log ends before it (a database restored from a backup?)"
                    .into(),
            )
        } else if meta.seq > 0 {
            let at: Result<Option<i64>, sqlx::Error> =
                sqlx::query_scalar("SELECT at_ms FROM inventory_changes WHERE seq = $1")
                    .bind(meta.seq)
                    .fetch_optional(&self.pool)
                    .await;
            match at {
                Ok(at) if at.is_some() && at == meta.seq_at_ms => None,
                Ok(_) => Some("its last change is not in the database's change log".into()),
                Err(e) => Some(format!("the change log cannot be read: {e}")),
            }
        } else {
            None
        };
        if let Some(why) = why_not {
            tracing::info!(file = %path.display(), why = %why, "the inventory checkpoint does not fit the database: loading the whole inventory");
            return None;
        }
        let desks = match self.load_desks().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "the security desks cannot be read");
                return None;
            }
        };
        tracing::info!(
            numbers = inv.len(),
            seq = meta.seq,
            version = meta.version,
            read_ms = t.elapsed().as_millis() as u64,
            "inventory snapshot read from its checkpoint; applying the changes made since"
        );
        self.hub.publish(inv, desks, meta.version);
        Some(meta.seq)
    }

    /// Whether a new checkpoint is due and none is being written.
    pub async fn checkpoint_due(&self) -> bool {
        self.checkpoint.is_some()
            && !self.checkpoint_writing.load(Ordering::Acquire)
            && self.follow.lock().await.due.now()
    }

    /// Writes the published snapshot to the checkpoint (on a blocking
    /// thread; one write at a time).
    pub async fn write_checkpoint(&self) -> Result<(), StoreError> {
        let Some(path) = self.checkpoint.clone() else {
            return Ok(());
        };
        if self.checkpoint_writing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let r = self.write_checkpoint_to(path).await;
        self.checkpoint_writing.store(false, Ordering::Release);
        r
    }

    async fn write_checkpoint_to(&self, path: std::path::PathBuf) -> Result<(), StoreError> {
        let (seq, inv, version, rows) = {
            let follow = self.follow.lock().await;
            let Some(seq) = follow.applied else {
                return Ok(());
            };
            (
                seq,
                self.hub.inventory(),
                self.hub.version(),
                follow.due.rows,
            )
        };
        let seq_at_ms: Option<i64> = if seq > 0 {
            sqlx::query_scalar("SELECT at_ms FROM inventory_changes WHERE seq = $1")
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?
        } else {
            None
        };
        let meta = serde_json::to_vec(&Meta {
            database: self.database_name(),
            seq,
            seq_at_ms,
            version,
        })
        .map_err(|e| StoreError::Other(e.into()))?;
        let t = Instant::now();
        let p = path.clone();
        let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = p.with_extension(format!(
                "tmp-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            let f = std::fs::File::create(&tmp)?;
            let written = crate::inventory::checkpoint::write(&inv, &meta, &f)
                .and_then(|()| f.sync_all())
                .and_then(|()| f.metadata().map(|m| m.len()));
            match written {
                Ok(n) => {
                    std::fs::rename(&tmp, &p)?;
                    // Freeing a carrier's snapshot takes a while: here,
                    // not on the runtime.
                    drop(inv);
                    Ok(n)
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| StoreError::Other(anyhow::anyhow!("{e}")))?
        .map_err(|e| StoreError::Other(anyhow::anyhow!("writing {}: {e}", path.display())))?;
        {
            let mut follow = self.follow.lock().await;
            follow.due.rows = follow.due.rows.saturating_sub(rows);
            follow.due.at = Some(Instant::now());
            follow.due.stale = false;
        }
        tracing::info!(
            file = %path.display(),
            seq,
            bytes,
            write_ms = t.elapsed().as_millis() as u64,
            "inventory checkpoint written"
        );
        Ok(())
    }
}
