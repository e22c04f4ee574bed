//! From the core's call events to rows in the database: the driver hands
//! events over without waiting ([`Recorder::push`]); a task of its own
//! assembles records and feeds the batched writer. On shutdown whatever is
//! still open is written with outcome `open`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::writer::{self, BoxFuture, RecordStore};
use super::{Assembler, CallRecord};
use crate::metrics as m;
use crate::proxy::CallEvent;
use crate::store::Store;

/// Call records go to the database.
pub struct DbRecords(pub Arc<Store>);

impl RecordStore for DbRecords {
    fn write<'a>(&'a self, records: &'a [CallRecord]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.0.write_records(records).await.map_err(Into::into) })
    }
}

/// How the record pipeline runs.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Events waiting for the assembler at most.
    pub events: usize,
    /// Records waiting for the writer at most.
    pub queue: usize,
    pub batch: usize,
    /// Answered calls without a BYE for this long are written as they are.
    pub open_call_max: Duration,
}

/// The driver's end of the pipeline.
pub struct Recorder {
    tx: mpsc::Sender<CallEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Starts the assembler and the writer.
    pub fn start(store: Arc<dyn RecordStore>, cfg: RecorderConfig) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<CallEvent>(cfg.events.max(1));
        let task = tokio::spawn(async move {
            let (records, writer) = writer::start(store, cfg.queue, cfg.batch);
            let mut asm = Assembler::new(Instant::now(), crate::store::now_ms(), rand::random());
            let mut sweep = tokio::time::interval(Duration::from_secs(60));
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => {
                            if let Some(r) = asm.on_event(ev) {
                                records.push(r);
                            }
                        }
                        None => break,
                    },
                    _ = sweep.tick() => {
                        for r in asm.expire(Instant::now(), cfg.open_call_max) {
                            records.push(r);
                        }
                    }
                }
            }
            let open = asm.flush_all();
            if !open.is_empty() {
                tracing::info!(
                    records = open.len(),
                    "writing the records of calls still open"
                );
            }
            for r in open {
                records.push(r);
            }
            drop(records);
            let _ = writer.await;
        });
        Recorder { tx, task }
    }

    /// Hands an event over; never waits. A full queue drops the event and
    /// counts it as a dropped record.
    pub fn push(&self, ev: CallEvent) {
        if self.tx.try_send(ev).is_err() {
            metrics::counter!(m::CDR_DROPPED).increment(1);
            tracing::error!("call event queue full: a call record will be incomplete or lost");
        }
    }

    /// Writes everything still held (open calls included) and waits until
    /// it is in the database.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}
