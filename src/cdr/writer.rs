//! The record writer: a bounded queue in front of the store, batched
//! writes, counted drops, and a flush on shutdown.

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
    fn write<'a>(&'a self, records: &'a [CallRecord]) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// The sending side, used by the driver. Never blocks: a full queue drops
/// the record, counts it and logs it.
#[derive(Clone)]
pub struct Records {
    tx: mpsc::Sender<CallRecord>,
    capacity: usize,
}

impl Records {
    pub fn push(&self, rec: CallRecord) {
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
        metrics::gauge!(m::CDR_QUEUE).set((self.capacity - self.tx.capacity()) as f64);
    }
}

/// Starts the writer task. Dropping every `Records` handle makes it write
/// what is queued and finish; await the handle to know it is done.
pub fn start(
    store: Arc<dyn RecordStore>,
    capacity: usize,
    batch: usize,
) -> (Records, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<CallRecord>(capacity.max(1));
    let handle = tokio::spawn(async move {
        let mut buf: Vec<CallRecord> = Vec::with_capacity(batch);
        loop {
            let Some(first) = rx.recv().await else { break };
            buf.push(first);
            // Gather what else is ready, up to a batch, without waiting long.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
            while buf.len() < batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(r)) => buf.push(r),
                    _ => break,
                }
            }
            write_with_retry(&*store, &mut buf).await;
            metrics::gauge!(m::CDR_QUEUE).set(rx.len() as f64);
        }
        if !buf.is_empty() {
            write_with_retry(&*store, &mut buf).await;
        }
    });
    (
        Records {
            tx,
            capacity: capacity.max(1),
        },
        handle,
    )
}

async fn write_with_retry(store: &dyn RecordStore, buf: &mut Vec<CallRecord>) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        match store.write(buf).await {
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
