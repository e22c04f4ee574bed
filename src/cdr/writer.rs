//! The record writer: a bounded queue in front of the store, batched
//! writes, counted drops, and a flush on shutdown.
//!
//! A record comes through several times as its call goes on (routed,
//! answered, ended), always whole and under the same id. Within a batch
//! only the latest of each id is written; across batches the store
//! replaces what it holds (an upsert), and batches are written one after
//! the other, so the last one written is always the latest.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::CallRecord;
use crate::metrics as m;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where records go: the database, or anything else that stores them.
pub trait RecordStore: Send + Sync {
    /// Writes each record, replacing one already stored under its id.
    fn write<'a>(&'a self, records: &'a [Arc<CallRecord>]) -> BoxFuture<'a, anyhow::Result<()>>;

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

/// The sending side, used by the driver. Never blocks: a full queue drops
/// the record, counts it and logs it.
#[derive(Clone)]
pub struct Records {
    tx: mpsc::Sender<Arc<CallRecord>>,
    capacity: usize,
    /// The queue gauge, looked up once rather than per record.
    queued: metrics::Gauge,
}

impl Records {
    /// A record to write: shared with the assembler while its call goes
    /// on, so that handing it over copies nothing.
    pub fn push(&self, rec: Arc<CallRecord>) {
        match self.tx.try_send(rec) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(r)) => {
                metrics::counter!(m::CDR_DROPPED).increment(1);
                tracing::error!(call_id = %r.call_id, "call record queue full: record dropped");
            }
            Err(mpsc::error::TrySendError::Closed(r)) => {
                metrics::counter!(m::CDR_DROPPED).increment(1);
                tracing::error!(call_id = %r.call_id, "call record writer stopped: record dropped");
            }
        }
        self.queued.set((self.capacity - self.tx.capacity()) as f64);
    }
}

/// Starts the writer task. Dropping every `Records` handle makes it write
/// what is queued and finish; await the handle to know it is done.
pub fn start(
    store: Arc<dyn RecordStore>,
    capacity: usize,
    batch: usize,
) -> (Records, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Arc<CallRecord>>(capacity.max(1));
    let handle = tokio::spawn(async move {
        let mut buf = Batch::new(batch);
        let queued = metrics::gauge!(m::CDR_QUEUE);
        loop {
            let Some(first) = rx.recv().await else { break };
            buf.add(first);
            // Gather what else is ready, up to a batch, without waiting long.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
            while buf.records.len() < batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(r)) => buf.add(r),
                    _ => break,
                }
            }
            write_with_retry(&*store, &mut buf).await;
            queued.set(rx.len() as f64);
        }
        if !buf.records.is_empty() {
            write_with_retry(&*store, &mut buf).await;
        }
    });
    (
        Records {
            tx,
            capacity: capacity.max(1),
            queued: metrics::gauge!(m::CDR_QUEUE),
        },
        handle,
    )
}

/// Records to write together, the latest of each id only.
pub(super) struct Batch {
    pub(super) records: Vec<Arc<CallRecord>>,
    at: HashMap<String, usize>,
}

impl Batch {
    pub(super) fn new(batch: usize) -> Batch {
        Batch {
            records: Vec::with_capacity(batch),
            at: HashMap::with_capacity(batch),
        }
    }

    /// Adds a record, or replaces the earlier one of its id.
    pub(super) fn add(&mut self, r: Arc<CallRecord>) {
        match self.at.get(&r.id) {
            Some(&i) => self.records[i] = r,
            None => {
                self.at.insert(r.id.clone(), self.records.len());
                self.records.push(r);
            }
        }
    }

    pub(super) fn add_some(&mut self, r: Option<Arc<CallRecord>>) {
        if let Some(r) = r {
            self.add(r);
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn clear(&mut self) {
        self.records.clear();
        self.at.clear();
    }
}

async fn write_with_retry(store: &dyn RecordStore, buf: &mut Batch) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        match store.write(&buf.records).await {
            Ok(()) => {
                metrics::counter!(m::CDR_WRITTEN).increment(buf.len() as u64);
                buf.clear();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), attempt, records = buf.len(), "writing call records failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    metrics::counter!(m::CDR_DROPPED).increment(buf.len() as u64);
    tracing::error!(
        records = buf.len(),
        "call records could not be written: dropped"
    );
    buf.clear();
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
    struct Memory(Mutex<Vec<Vec<Arc<CallRecord>>>>);

    impl RecordStore for Memory {
        fn write<'a>(
            &'a self,
            records: &'a [Arc<CallRecord>],
        ) -> BoxFuture<'a, anyhow::Result<()>> {
            self.0.lock().unwrap().push(records.to_vec());
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn the_versions_of_a_record_in_one_batch_are_written_once_the_latest() {
        let t0 = Instant::now();
        let mut a = Assembler::new(t0, 0, 7);
        let mut versions = vec![a.on_event(example_started(1, t0)).unwrap()];
        versions.push(a.on_event(example_started(2, t0)).unwrap());
        versions.extend(a.on_event(CallEvent::Finished {
            call: 1,
            at: t0,
            status: 486,
            outcome: "failed",
        }));
        let store = Arc::new(Memory::default());
        let (records, writer) = start(store.clone(), 16, 16);
        for v in versions {
            records.push(Arc::new(v));
        }
        drop(records);
        writer.await.unwrap();
        let batches = store.0.lock().unwrap();
        let written: Vec<(&str, &str)> = batches
            .iter()
            .flatten()
            .map(|r| (r.call_id.as_str(), r.outcome.as_str()))
            .collect();
        assert_eq!(written, [("cid-1", "failed"), ("cid-2", "open")]);
    }
}
