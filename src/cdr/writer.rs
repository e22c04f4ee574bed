//! The record writer: a bounded queue in front of the store, batched
//! writes, counted drops, and a flush on shutdown.
//!
//! A record comes through several times as its call goes on (routed,
//! answered, ended), always whole and under the same id. The assembler
//! gives the latest version of each call changed in a window, already
//! written as JSON ([`RecordRow`]); when the store is slower than the
//! windows, the rows queued meanwhile are written together, only the
//! latest of each id. Across batches the store replaces what it holds (an
//! upsert), and batches are written one after the other, so the last one
//! written is always the latest.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::CallRecord;
use crate::metrics as m;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One version of a record as the store keeps it: its JSON, and the
/// columns records are found and closed by.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    pub id: String,
    pub tenant: Option<String>,
    pub invite_ms: i64,
    pub call_id: String,
    pub caller_number: Option<String>,
    pub outcome: String,
    /// The router process that wrote it ([`CallRecord::node`]).
    pub node: String,
    /// The whole record, as JSON.
    pub record: String,
}

impl RecordRow {
    pub fn of(r: &CallRecord) -> serde_json::Result<RecordRow> {
        Ok(RecordRow {
            record: serde_json::to_string(r)?,
            id: r.id.clone(),
            tenant: r.tenant.clone(),
            invite_ms: r.invite_ms,
            call_id: r.call_id.clone(),
            caller_number: r.caller_number.clone(),
            outcome: r.outcome.clone(),
            node: r.node().to_string(),
        })
    }
}

/// Where records go: the database, or anything else that stores them.
pub trait RecordStore: Send + Sync {
    /// Writes each record, replacing one already stored under its id.
    fn write<'a>(&'a self, records: &'a [RecordRow]) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Says that the router process `node` is running and writing records
    /// (at its start, then every few seconds).
    fn renew<'a>(&'a self, _node: &'a str, _started_ms: i64) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Closes, as `interrupted`, the records left `open` by every process
    /// other than `node` that has not said it runs since `stale_before_ms`;
    /// how many.
    fn close_abandoned<'a>(
        &'a self,
        _node: &'a str,
        _stale_before_ms: i64,
    ) -> BoxFuture<'a, anyhow::Result<u64>> {
        Box::pin(async { Ok(0) })
    }

    /// The process `node` stopped, every record of it written.
    fn release<'a>(&'a self, _node: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// The sending side, used by the assembler's task. Never blocks: rows
/// past the queue's capacity are dropped, counted and logged.
pub struct Records {
    tx: mpsc::UnboundedSender<Vec<RecordRow>>,
    /// Rows sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    capacity: usize,
    /// The queue gauge, looked up once rather than per record.
    gauge: metrics::Gauge,
}

impl Records {
    /// The changed records of a window, to write together.
    pub fn push(&self, mut rows: Vec<RecordRow>) {
        let room = self
            .capacity
            .saturating_sub(self.queued.load(Ordering::Relaxed));
        if rows.len() > room {
            for r in rows.drain(room..) {
                metrics::counter!(m::CDR_DROPPED).increment(1);
                tracing::error!(call_id = %r.call_id, "call record queue full: record dropped");
            }
        }
        if rows.is_empty() {
            return;
        }
        let n = rows.len();
        self.queued.fetch_add(n, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(rows)) = self.tx.send(rows) {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            for r in rows {
                metrics::counter!(m::CDR_DROPPED).increment(1);
                tracing::error!(call_id = %r.call_id, "call record writer stopped: record dropped");
            }
        }
        self.gauge.set(self.queued.load(Ordering::Relaxed) as f64);
    }
}

/// Starts the writer task. Dropping the `Records` handle makes it write
/// what is queued and finish; await the handle to know it is done.
/// `capacity` bounds the rows waiting, `batch` the rows of one write.
pub fn start(
    store: Arc<dyn RecordStore>,
    capacity: usize,
    batch: usize,
) -> (Records, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<RecordRow>>();
    let queued = Arc::new(AtomicUsize::new(0));
    let held = queued.clone();
    let handle = tokio::spawn(async move {
        let mut buf = Batch::new(batch);
        let gauge = metrics::gauge!(m::CDR_QUEUE);
        while let Some(first) = rx.recv().await {
            let mut taken = first.len();
            buf.add_all(first);
            // What queued up while the last batch was written goes with
            // this one, up to a batch.
            while buf.len() < batch {
                let Ok(more) = rx.try_recv() else { break };
                taken += more.len();
                buf.add_all(more);
            }
            held.fetch_sub(taken, Ordering::Relaxed);
            gauge.set(held.load(Ordering::Relaxed) as f64);
            for rows in buf.rows.chunks(batch.max(1)) {
                write_with_retry(&*store, rows).await;
            }
            buf.clear();
        }
    });
    (
        Records {
            tx,
            queued,
            capacity: capacity.max(1),
            gauge: metrics::gauge!(m::CDR_QUEUE),
        },
        handle,
    )
}

/// Rows to write together, the latest of each id only.
struct Batch {
    rows: Vec<RecordRow>,
    at: HashMap<String, usize>,
}

impl Batch {
    fn new(batch: usize) -> Batch {
        Batch {
            rows: Vec::with_capacity(batch),
            at: HashMap::with_capacity(batch),
        }
    }

    /// Adds rows, each replacing the earlier one of its id.
    fn add_all(&mut self, rows: Vec<RecordRow>) {
        for r in rows {
            match self.at.get(&r.id) {
                Some(&i) => self.rows[i] = r,
                None => {
                    self.at.insert(r.id.clone(), self.rows.len());
                    self.rows.push(r);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.at.clear();
    }
}

async fn write_with_retry(store: &dyn RecordStore, rows: &[RecordRow]) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        match store.write(rows).await {
            Ok(()) => {
                metrics::counter!(m::CDR_WRITTEN).increment(rows.len() as u64);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), attempt, records = rows.len(), "writing call records failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    metrics::counter!(m::CDR_DROPPED).increment(rows.len() as u64);
    tracing::error!(
        records = rows.len(),
        "call records could not be written: dropped"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;
    use crate::cdr::Assembler;
    use crate::proxy::events::{example_started, CallEvent};

    /// Keeps every batch written.
    #[derive(Default)]
    struct Memory(Mutex<Vec<Vec<RecordRow>>>);

    impl RecordStore for Memory {
        fn write<'a>(&'a self, records: &'a [RecordRow]) -> BoxFuture<'a, anyhow::Result<()>> {
            self.0.lock().unwrap().push(records.to_vec());
            Box::pin(async { Ok(()) })
        }
    }

    fn rows(a: &mut Assembler) -> Vec<RecordRow> {
        let mut out = Vec::new();
        a.take_changed(|r| out.push(RecordRow::of(r).unwrap()));
        out
    }

    #[tokio::test]
    async fn the_versions_of_a_record_queued_together_are_written_once_the_latest() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 0, 7);
        a.apply(example_started(1, t0));
        a.apply(example_started(2, t0));
        let first = rows(&mut a);
        a.apply(CallEvent::Finished {
            call: 1,
            at: t0,
            status: 486,
            outcome: "failed",
        });
        let second = rows(&mut a);
        // Two windows queued before the writer ran: one write.
        let store = Arc::new(Memory::default());
        let (records, writer) = start(store.clone(), 16, 16);
        records.push(first);
        records.push(second);
        drop(records);
        writer.await.unwrap();
        let batches = store.0.lock().unwrap();
        assert_eq!(batches.len(), 1);
        let written: Vec<(&str, &str)> = batches[0]
            .iter()
            .map(|r| (r.call_id.as_str(), r.outcome.as_str()))
            .collect();
        assert_eq!(written, [("cid-1", "failed"), ("cid-2", "open")]);
        // The columns are the record's, and the JSON is the record.
        let row = &batches[0][0];
        let rec: CallRecord = serde_json::from_str(&row.record).unwrap();
        assert_eq!(
            (rec.id.as_str(), rec.outcome.as_str(), rec.final_status),
            (row.id.as_str(), "failed", Some(486))
        );
        assert_eq!(row.node, "0000000000000007");
        assert_eq!(row.node, rec.node());
        assert_eq!(row.invite_ms, rec.invite_ms);
        assert_eq!(row.tenant, rec.tenant);
        assert_eq!(row.caller_number, rec.caller_number);
    }

    #[tokio::test]
    async fn rows_past_the_queue_capacity_are_dropped_the_others_written() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 0, 7);
        for call in 1..=5 {
            a.apply(example_started(call, t0));
        }
        let store = Arc::new(Memory::default());
        let (records, writer) = start(store.clone(), 3, 2);
        records.push(rows(&mut a));
        drop(records);
        writer.await.unwrap();
        let batches = store.0.lock().unwrap();
        let written: Vec<&str> = batches
            .iter()
            .flatten()
            .map(|r| r.call_id.as_str())
            .collect();
        // In transactions of a batch at most.
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1]);
        assert_eq!(written, ["cid-1", "cid-2", "cid-3"]);
    }
}
