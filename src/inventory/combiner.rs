//! Group commit for order placement: concurrent orders go to the database together.
//!
//! Why: on one hot level every placement transaction queues on the same row lock, so
//! throughput is bounded by one transaction per lock hand-over (and PostgreSQL's lock
//! queue degrades as waiters pile up). Here, while a placement transaction is in flight,
//! orders that arrive wait in a queue; when it commits, the queued ones (up to
//! [`MAX_BATCH`]) go as the next transaction, decided one after another in arrival order
//! by the same placement function (`placement::place_batch_in`). A lone order finds the
//! queue idle and goes at once.
//!
//! Orders are spread over a few independent queues ("lanes", `STOCKROOM_PLACEMENT_LANES`)
//! by their first sku, so orders for different skus still run in parallel while each hot
//! sku's orders combine. Few lanes, because the win is in the combining: with many, orders
//! for many skus spread so thin that each transaction carries one order again. Nothing
//! depends on the combining for correctness: every batch takes the same row locks and
//! version guards as a single order, across processes too.
//!
//! Every order gets its own verdict; one that fails never fails the others. If the batch
//! transaction itself fails (a lost connection, say), its orders are placed again one by
//! one: PaymentIntents make that idempotent, so none is lost or doubled.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
};

use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio::sync::oneshot;

use super::{
    orders::Placed,
    placement::{self, PlaceOrder},
};
use crate::{
    db::Database,
    error::{Error, Result},
};

/// Most orders one transaction places. Large enough that a burst of a few hundred
/// clients needs only a few transactions, small enough to keep each one short.
pub const MAX_BATCH: usize = 128;

/// Most order lines one transaction places: keeps its multi-row statements far below
/// PostgreSQL's 65,535 bind parameters (a ledger row takes 10), however large the orders.
pub const MAX_BATCH_LINES: usize = 2_000;

struct Pending {
    order: PlaceOrder,
    reply: oneshot::Sender<Result<Placed>>,
}

#[derive(Default)]
struct Lane {
    queue: Vec<Pending>,
    /// Whether a task is draining this lane.
    busy: bool,
    /// Orders in the transaction running now.
    in_flight: usize,
}

/// The per-process placement queues; cheap to clone.
#[derive(Clone)]
pub struct Combiner {
    db: Database,
    lanes: Arc<[Mutex<Lane>]>,
}

impl std::fmt::Debug for Combiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner").field("queued", &self.queued()).finish()
    }
}

impl Combiner {
    /// `lanes` queues placing through `db`.
    pub fn new(db: Database, lanes: usize) -> Self {
        Combiner {
            db,
            lanes: (0..lanes.max(1)).map(|_| Mutex::new(Lane::default())).collect(),
        }
    }

    /// Places `order`, combined with whatever other orders are waiting in its lane.
    pub async fn place(&self, order: PlaceOrder) -> Result<Placed> {
        order.validate()?;
        let lane = lane_of(&order, self.lanes.len());
        let (reply, verdict) = oneshot::channel();
        let start = {
            let mut queue = self.lock(lane);
            queue.queue.push(Pending { order, reply });
            !std::mem::replace(&mut queue.busy, true)
        };
        if start {
            // A task of its own, not the caller's: a client that hangs up must not
            // strand the orders queued behind its own.
            tokio::spawn(self.clone().drain(lane));
        }
        verdict
            .await
            .unwrap_or_else(|_| Err(Error::Internal("the placement queue dropped an order".into())))
    }

    /// Orders waiting for a transaction (not counting those in one).
    pub fn queued(&self) -> usize {
        (0..self.lanes.len()).map(|lane| self.lock(lane).queue.len()).sum()
    }

    /// Orders in a transaction right now.
    pub fn in_flight(&self) -> usize {
        (0..self.lanes.len()).map(|lane| self.lock(lane).in_flight).sum()
    }

    fn lock(&self, lane: usize) -> std::sync::MutexGuard<'_, Lane> {
        // A panic while holding this lock cannot leave a half-made change: the queue is a Vec.
        self.lanes[lane].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn drain(self, lane: usize) {
        loop {
            let batch: Vec<Pending> = {
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
                        lines += pending.order.lines.len();
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
                    "a placement batch panicked; its orders were answered with an error"
                );
            }
        }
    }

    async fn run(&self, batch: Vec<Pending>) {
        let (orders, replies): (Vec<PlaceOrder>, Vec<_>) =
            batch.into_iter().map(|pending| (pending.order, pending.reply)).unzip();
        crate::metrics::placement_batch(orders.len());
        let verdicts = self
            .db
            .write(&orders, |txn, orders| Box::pin(placement::place_batch_in(txn, orders)))
            .await;
        let verdicts = match verdicts {
            Ok(verdicts) => verdicts,
            Err(err) if orders.len() == 1 => vec![Err(err)],
            Err(err) => {
                tracing::warn!(error = %err, orders = orders.len(), "batch placement failed; placing its orders one by one");
                self.one_by_one(&orders).await
            }
        };
        for (reply, verdict) in replies.into_iter().zip(verdicts) {
            // Counted here, not by the caller: the caller may have gone away, and its
            // order stands (and counts) either way.
            placement::count(&verdict);
            reply.send(verdict).ok();
        }
    }

    /// Places the orders of a failed batch each in its own transaction. A transient
    /// failure (the database unreachable, a lock wait that ran out) would only repeat for
    /// every order behind it, holding the lane for as many timeouts: from the first one on,
    /// the rest get the same answer and retry (their PaymentIntents make that safe).
    async fn one_by_one(&self, orders: &[PlaceOrder]) -> Vec<Result<Placed>> {
        let mut verdicts: Vec<Result<Placed>> = Vec::with_capacity(orders.len());
        for order in orders {
            if let Some(Err(err)) = verdicts.last()
                && err.is_transient()
            {
                verdicts.push(Err(err.clone()));
                continue;
            }
            let placed = self
                .db
                .write(order, |txn, order| Box::pin(placement::place_order_in(txn, order)))
                .await;
            verdicts.push(placed);
        }
        verdicts
    }
}

/// The lane of an order: by its first sku, so one sku's orders always meet in one queue.
fn lane_of(order: &PlaceOrder, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    order.lines.first().map(|line| line.sku.as_str()).hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}
