//! From the core's call events to rows in the database: the driver hands
//! events over without waiting ([`Recorder::push`]); a task of its own
//! assembles records and feeds the batched writer. On shutdown whatever is
//! still open is written with outcome `interrupted`.
//!
//! Records are written while their calls go on, so a router that is
//! killed leaves the records of its calls in progress `open`. Each router
//! process (a node) says in the database every few seconds that it runs
//! (a lease); once a node has been silent for [`STALE_AFTER`], any other
//! router on the database (a restarted one, or a replica) closes the
//! node's `open` records as `interrupted` and logs how many. A router
//! closes nothing until it has itself renewed its lease for that long
//! without a failure, so that routers cut off from the database together
//! do not close each other's calls when it comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::writer::{self, RecordStore};
use super::{now_ms, Assembler, Change};
use crate::metrics as m;
use crate::proxy::CallEvent;

/// How often a router says it runs.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);
/// Silent this long, a router is taken for stopped.
pub const STALE_AFTER: Duration = Duration::from_secs(15);

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
            let mut asm = Assembler::new(Instant::now(), now_ms(), rand::random());
            let node = asm.node();
            // The lease comes before the first record, so that no other
            // router ever takes this one's records for abandoned.
            let lease = Lease::start(store.clone(), node.clone()).await;
            let (records, writer) = writer::start(store.clone(), cfg.queue, cfg.batch);
            // The records changed by the events at hand, the latest of each:
            // the events of one call often come together (an attempt and
            // the final response), and one write of it is enough.
            let mut changed = writer::Batch::new(64);
            // The calls in progress changed by the events at hand; each
            // one's record is copied once, after the last of them.
            let mut touched: Vec<super::CallKey> = Vec::with_capacity(64);
            let mut sweep = tokio::time::interval(Duration::from_secs(60));
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => {
                            let mut apply = |ev| match asm.apply(ev) {
                                Change::None => {}
                                Change::InProgress(call) => {
                                    if !touched.contains(&call) {
                                        touched.push(call);
                                    }
                                }
                                Change::Over(rec) => changed.add(rec),
                            };
                            apply(ev);
                            for _ in 0..256 {
                                let Ok(ev) = rx.try_recv() else { break };
                                apply(ev);
                            }
                            // A call over is in `changed` already, and no
                            // longer in progress.
                            for call in touched.drain(..) {
                                changed.add_some(asm.in_progress_of(call));
                            }
                            for r in changed.records.drain(..) {
                                records.push(r);
                            }
                            changed.clear();
                        }
                        None => break,
                    },
                    _ = sweep.tick() => {
                        for r in asm.expire(Instant::now(), cfg.open_call_max) {
                            records.push(Arc::new(r));
                        }
                    }
                }
            }
            let open = asm.flush_all();
            if !open.is_empty() {
                tracing::info!(
                    records = open.len(),
                    "writing the records of calls still up as interrupted"
                );
            }
            for r in open {
                records.push(Arc::new(r));
            }
            drop(records);
            let _ = writer.await;
            lease.stop().await;
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

    /// Writes everything still held (calls still up as `interrupted`) and
    /// waits until it is in the database.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// This router's lease, renewed by a task of its own (never by the
/// assembler, which must not wait on the database), and the closing of
/// records other routers left open.
struct Lease {
    store: Arc<dyn RecordStore>,
    node: String,
    task: tokio::task::JoinHandle<()>,
}

impl Lease {
    async fn start(store: Arc<dyn RecordStore>, node: String) -> Lease {
        let started_ms = now_ms();
        let mut healthy_since = match store.renew(&node, started_ms).await {
            Ok(()) => Some(Instant::now()),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not register this router for call records; retrying");
                None
            }
        };
        let (s, n) = (store.clone(), node.clone());
        let task = tokio::spawn(async move {
            let (store, node) = (s, n);
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match store.renew(&node, started_ms).await {
                    Ok(()) => {
                        if healthy_since.is_none() {
                            tracing::info!(
                                "call records: this router's registration renewed again"
                            );
                        }
                        healthy_since.get_or_insert_with(Instant::now);
                    }
                    Err(e) => {
                        if healthy_since.is_some() {
                            tracing::warn!(error = %format!("{e:#}"), "could not renew this router's registration for call records; retrying");
                        }
                        healthy_since = None;
                        continue;
                    }
                }
                if healthy_since.is_none_or(|t| t.elapsed() < STALE_AFTER) {
                    continue;
                }
                let stale_before = now_ms() - STALE_AFTER.as_millis() as i64;
                match store.close_abandoned(&node, stale_before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        records = n,
                        "call records left open by a router that stopped closed as interrupted"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "could not close call records left open by a router that stopped")
                    }
                }
            }
        });
        Lease { store, node, task }
    }

    /// Every record written: this router no longer holds any open.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Err(e) = self.store.release(&self.node).await {
            tracing::warn!(error = %format!("{e:#}"), "could not unregister this router for call records");
        }
    }
}
