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

use super::writer::{self, RecordRow, RecordStore};
use super::{now_ms, Assembler};
use crate::metrics as m;
use crate::proxy::CallEvent;

/// How often a router says it runs.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);
/// Silent this long, a router is taken for stopped.
pub const STALE_AFTER: Duration = Duration::from_secs(15);
/// How long the changes of calls gather before they go to the writer:
/// a call's routing, answer and attempts often come within it, and one
/// write of it is enough.
pub const WINDOW: Duration = Duration::from_millis(50);

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
            // The changes gather in the assembler for a window from the
            // first of them, then go to the writer as one batch.
            let window = tokio::time::sleep(Duration::ZERO);
            tokio::pin!(window);
            let mut gathering = false;
            let mut sweep = tokio::time::interval(Duration::from_secs(60));
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => {
                            asm.apply(ev);
                            for _ in 0..256 {
                                let Ok(ev) = rx.try_recv() else { break };
                                asm.apply(ev);
                            }
                        }
                        None => break,
                    },
                    () = &mut window, if gathering => {
                        gathering = false;
                        hand_over(&mut asm, &records);
                    }
                    _ = sweep.tick() => {
                        asm.expire(Instant::now(), cfg.open_call_max);
                    }
                }
                if asm.pending() >= cfg.batch.max(1) {
                    gathering = false;
                    hand_over(&mut asm, &records);
                } else if !gathering && asm.pending() > 0 {
                    gathering = true;
                    window.as_mut().reset(tokio::time::Instant::now() + WINDOW);
                }
            }
            let open = asm.flush_all();
            if open > 0 {
                tracing::info!(
                    records = open,
                    "writing the records of calls still up as interrupted"
                );
            }
            hand_over(&mut asm, &records);
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

/// Gives the writer the records changed since the last hand-over, each
/// as JSON: written once per window, from the assembler's own record.
fn hand_over(asm: &mut Assembler, records: &writer::Records) {
    let mut rows = Vec::with_capacity(asm.pending());
    asm.take_changed(|r| match RecordRow::of(r) {
        Ok(row) => rows.push(row),
        Err(e) => {
            metrics::counter!(m::CDR_DROPPED).increment(1);
            tracing::error!(call_id = %r.call_id, error = %e, "call record not written as JSON: dropped");
        }
    });
    if !rows.is_empty() {
        records.push(rows);
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
