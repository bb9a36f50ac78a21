//! Group commit for order placement and reservations: concurrent writes go to the
//! database together.
//!
//! Why: on one hot level every placement transaction queues on the same row lock, so
//! throughput is bounded by one transaction per lock hand-over (and PostgreSQL's lock
//! queue degrades as waiters pile up). Here, while a transaction is in flight, writes
//! that arrive wait in a queue; when it commits, the queued ones (up to [`MAX_BATCH`]) go
//! as the next transaction, decided one after another in arrival order by the same
//! function a lone write uses ([`Combinable::write_batch`]: `placement::place_batch_in`,
//! `reservations::reserve_batch_in`). A lone write finds the queue idle and goes at once.
//!
//! Writes are spread over a few independent queues ("lanes", `STOCKROOM_PLACEMENT_LANES`)
//! by their first sku, so writes for different skus still run in parallel while each hot
//! sku's writes combine. Few lanes, because the win is in the combining: with many, writes
//! for many skus spread so thin that each transaction carries one again. Nothing depends
//! on the combining for correctness: every batch takes the same row locks and version
//! guards as a single write, across processes too.
//!
//! The transactions run on a thread of their own with connections of their own (see
//! `runtime`): the request load of a rush must not slow the hot row's transaction.
//!
//! Every write gets its own verdict; one that fails never fails the others. If the batch
//! transaction itself fails (a lost connection, say), its writes are made again one by
//! one: their idempotency keys (PaymentIntents, reservation keys) make that safe, so none
//! is lost or doubled.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, OnceLock},
};

use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio::sync::oneshot;

use sea_orm::{DatabaseTransaction, DbErr};

use super::values::LineRequest;
use crate::{
    config::Config,
    db::{Database, TxnFuture},
    error::{Error, Result},
};

/// A write that can share its transaction with concurrent writes of its kind.
pub trait Combinable: Send + Sync + Sized + 'static {
    type Outcome: Send + 'static;

    /// What the batch-size metric calls this kind of write.
    const KIND: &'static str;

    /// Refuses a malformed write before it queues.
    fn validate(&self) -> Result<()>;

    /// Its lines: the first one's sku picks its lane (writes for one sku always meet in
    /// one queue), and they count against [`MAX_BATCH_LINES`].
    fn lines(&self) -> &[LineRequest];

    /// Makes every write of `batch`, in order, inside the caller's transaction: one
    /// verdict each. An `Err` of the whole call means the transaction failed and must be
    /// rolled back.
    fn write_batch<'c>(txn: &'c DatabaseTransaction, batch: &'c [Self]) -> TxnFuture<'c, Vec<Result<Self::Outcome>>>;

    /// Counts a verdict in the metrics.
    fn count(db: &Database, verdict: &Result<Self::Outcome>);
}

/// Most writes one transaction makes. Large enough that a burst of a few hundred
/// clients needs only a few transactions, small enough to keep each one short.
pub const MAX_BATCH: usize = 128;

/// Most lines one transaction writes: keeps its multi-row statements far below
/// PostgreSQL's 65,535 bind parameters (a ledger row takes 10), however large the writes.
pub const MAX_BATCH_LINES: usize = 2_000;

struct Pending<W: Combinable> {
    write: W,
    reply: oneshot::Sender<Result<W::Outcome>>,
}

struct Lane<W: Combinable> {
    queue: Vec<Pending<W>>,
    /// Whether a task is draining this lane.
    busy: bool,
    /// Writes in the transaction running now.
    in_flight: usize,
}

impl<W: Combinable> Default for Lane<W> {
    fn default() -> Self {
        Lane {
            queue: Vec::new(),
            busy: false,
            in_flight: 0,
        }
    }
}

/// The per-process queues for one kind of write; cheap to clone.
pub struct Combiner<W: Combinable> {
    db: Database,
    lanes: Arc<[Mutex<Lane<W>>]>,
}

impl<W: Combinable> Clone for Combiner<W> {
    fn clone(&self) -> Self {
        Combiner {
            db: self.db.clone(),
            lanes: self.lanes.clone(),
        }
    }
}

impl<W: Combinable> std::fmt::Debug for Combiner<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner").field("queued", &self.queued()).finish()
    }
}

impl<W: Combinable> Combiner<W> {
    /// `lanes` queues writing through `db`, which must come from [`database`].
    pub fn new(db: Database, lanes: usize) -> Self {
        Combiner {
            db,
            lanes: (0..lanes.max(1)).map(|_| Mutex::new(Lane::default())).collect(),
        }
    }

    /// Makes `write`, combined with whatever other writes are waiting in its lane.
    pub async fn submit(&self, write: W) -> Result<W::Outcome> {
        write.validate()?;
        let lane = lane_of(&write, self.lanes.len());
        let (reply, verdict) = oneshot::channel();
        let start = {
            let mut queue = self.lock(lane);
            queue.queue.push(Pending { write, reply });
            !std::mem::replace(&mut queue.busy, true)
        };
        if start {
            // A task of its own, not the caller's: a client that hangs up must not
            // strand the writes queued behind its own. On the combiner's thread: see
            // `runtime`.
            runtime().spawn(self.clone().drain(lane));
        }
        verdict
            .await
            .unwrap_or_else(|_| Err(Error::Internal("the write queue dropped a write".into())))
    }

    /// The database these writes go through (see [`database`]).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Writes waiting for a transaction (not counting those in one).
    pub fn queued(&self) -> usize {
        (0..self.lanes.len()).map(|lane| self.lock(lane).queue.len()).sum()
    }

    /// Writes in a transaction right now.
    pub fn in_flight(&self) -> usize {
        (0..self.lanes.len()).map(|lane| self.lock(lane).in_flight).sum()
    }

    fn lock(&self, lane: usize) -> std::sync::MutexGuard<'_, Lane<W>> {
        // A panic while holding this lock cannot leave a half-made change: the queue is a Vec.
        self.lanes[lane].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn drain(self, lane: usize) {
        loop {
            let batch: Vec<Pending<W>> = {
                let mut queue = self.lock(lane);
                if queue.queue.is_empty() {
                    queue.busy = false;
                    queue.in_flight = 0;
                    return;
                }
                let mut lines = 0;
                let take = queue
                    .queue
                    .iter()
                    .take(MAX_BATCH)
                    .take_while(|pending| {
                        lines += pending.write.lines().len();
                        lines <= MAX_BATCH_LINES
                    })
                    .count()
                    .max(1);
                queue.in_flight = take;
                queue.queue.drain(..take).collect()
            };
            // A panic must not leave the lane marked busy with nobody draining it: the
            // batch's callers then hear "dropped" (their senders are gone), and the lane
            // goes on with the next batch.
            if AssertUnwindSafe(self.run(batch)).catch_unwind().await.is_err() {
                tracing::error!(
                    lane,
                    kind = W::KIND,
                    "a combined batch panicked; its writes were answered with an error"
                );
            }
        }
    }

    async fn run(&self, batch: Vec<Pending<W>>) {
        let (writes, replies): (Vec<W>, Vec<_>) =
            batch.into_iter().map(|pending| (pending.write, pending.reply)).unzip();
        crate::metrics::combined_batch(W::KIND, writes.len());
        let verdicts = self.db.write(&writes, |txn, writes| W::write_batch(txn, writes)).await;
        let verdicts = match verdicts {
            Ok(verdicts) => verdicts,
            Err(err) if writes.len() == 1 => vec![Err(err)],
            Err(err) => {
                tracing::warn!(error = %err, kind = W::KIND, writes = writes.len(), "a combined batch failed; making its writes one by one");
                self.one_by_one(&writes).await
            }
        };
        for (reply, verdict) in replies.into_iter().zip(verdicts) {
            // Counted here, not by the caller: the caller may have gone away, and its
            // write stands (and counts) either way.
            W::count(&self.db, &verdict);
            reply.send(verdict).ok();
        }
    }

    /// Makes the writes of a failed batch each in its own transaction. A transient
    /// failure (the database unreachable, a lock wait that ran out) would only repeat for
    /// every write behind it, holding the lane for as many timeouts: from the first one on,
    /// the rest get the same answer and retry (their idempotency keys make that safe).
    async fn one_by_one(&self, writes: &[W]) -> Vec<Result<W::Outcome>> {
        let mut verdicts: Vec<Result<W::Outcome>> = Vec::with_capacity(writes.len());
        for write in writes {
            if let Some(Err(err)) = verdicts.last()
                && err.is_transient()
            {
                verdicts.push(Err(err.clone()));
                continue;
            }
            let verdict = self
                .db
                .write(write, |txn, write| {
                    Box::pin(async move {
                        W::write_batch(txn, std::slice::from_ref(write))
                            .await?
                            .pop()
                            .unwrap_or_else(|| Err(Error::Internal("a write got no verdict".into())))
                    })
                })
                .await;
            verdicts.push(verdict);
        }
        verdicts
    }
}

/// The thread every combined transaction runs on, driving connections of its own.
///
/// Why: a hot sku's throughput is one transaction at a time on its row, and the row stays
/// locked until the task running that transaction has taken up each of PostgreSQL's
/// replies. On the runtime that serves requests, that task waited behind the HTTP work of
/// every client (a reply is noticed only between other tasks' turns), so the flash sale
/// slowed with the request load that a flash sale brings. Here nothing else runs: a reply
/// is taken up as soon as the thread gets a core. One thread is enough: a batch costs
/// little CPU, and its transactions mostly wait on the database.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stockroom-combiner")
            .enable_all()
            .build()
            .expect("a runtime of one thread can always be built")
    })
}

/// The database combined writes go through, given the request pool's `db`: on
/// PostgreSQL a pool of their own on the combined writes' thread (see `runtime` and
/// `Database::for_runtime`), of one connection per lane for placements and one for
/// reservations (each lane has one transaction at a time).
pub async fn database(db: &Database, config: &Config) -> std::result::Result<Database, DbErr> {
    db.for_runtime(runtime(), config, 2 * config.placement_lanes as u32)
        .await
}

/// The lane of a write: by its first sku, so one sku's writes always meet in one queue.
fn lane_of<W: Combinable>(write: &W, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    write.lines().first().map(|line| line.sku.as_str()).hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}
