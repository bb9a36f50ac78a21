//! Order placement: the one transaction every order path goes through (the `placeOrder`
//! mutation, the Stripe webhook, reservation commits), for one order or a batch of
//! concurrent ones (see [`super::combiner`]).
//!
//! The algorithm, and why each step is safe:
//! 1. **Read the catalog** the orders name (channels with their mappings, shipping
//!    options, items: one statement each for the whole batch). An order naming something
//!    unknown fails here, alone, before anything is claimed.
//! 2. **Claim the PaymentIntents** with one multi-row `INSERT … ON CONFLICT DO NOTHING
//!    RETURNING` (see `orders::claim_all`). A PaymentIntent another transaction is placing
//!    waits on the unique index until that one ends; one that has an order returns it,
//!    without touching stock. A PaymentIntent twice in one batch is placed by its first
//!    order; the later ones answer with that result.
//! 3. **Reservations**: with the key of an ACTIVE, unexpired reservation of the same
//!    channel, lock its row (keys in sorted order); its lines are served from the levels it
//!    holds, and its hold is released by this order. A key serves the first order of a
//!    batch that names it; the others are placed as if they had none.
//! 4. **Lock** every level the orders may touch with one `SELECT … ORDER BY id FOR
//!    UPDATE`: PostgreSQL locks rows in that sorted order, so two transactions over the
//!    same levels always lock them in the same order and cannot deadlock.
//! 5. **Decide** every order in arrival order with the pure `allocation::allocate`, each
//!    against the stock its predecessors left. An order that fails (`OUT_OF_STOCK`,
//!    `LOCATION_UNMAPPED`, …) gets its own error and leaves no trace: its claimed row is
//!    deleted before commit. It never fails the orders beside it.
//! 6. **Write** each level once, the summed delta, `version = version + <orders that
//!    changed it>` guarded by the version read (see `levels::apply_changes`). Under the
//!    lock the guard always holds; it exists so that a path which ever forgets the lock
//!    fails (and retries) instead of overwriting a change it did not see.
//! 7. Order lines, one ledger movement per order and level, and backorder events, with
//!    multi-row inserts in the same transaction; the event ids are taken last (see
//!    `events::outbox`).
//!
//! On SQLite the transaction is `BEGIN IMMEDIATE`: it holds the database's write lock
//! from the first statement, which serializes placements outright.

use std::collections::{BTreeMap, HashMap, hash_map::Entry};

use entity::{order_line, reservation::ReservationStatus, stock_movement::MovementReason};
use sea_orm::{ActiveValue::Set, DatabaseTransaction};

use super::{
    combiner::Combinable,
    ledger::Movement,
    levels::{self, Change, Delta},
    orders::{self, NewOrder, Placed},
    planning::{Decision, OwnHold, PlanRequest, Planner},
    reservations::{self, Held},
    values::{LineRequest, PaymentIntentId, ReservationKey, check_line_count},
};
use crate::{
    db::{Clock, Database, TxnFuture},
    error::{Error, Result},
    events::outbox::{self, Backordered},
};

/// An order to place.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    pub payment_intent_id: PaymentIntentId,
    pub sales_channel_id: i32,
    pub shipping_option_id: Option<i32>,
    /// Commits this reservation if it is ACTIVE; otherwise the order is placed as if no
    /// key was given.
    pub reservation_key: Option<ReservationKey>,
    pub lines: Vec<LineRequest>,
}

impl PlaceOrder {
    /// Checks the shape of the order: 1 to `MAX_LINES` lines.
    pub fn validate(&self) -> Result<()> {
        check_line_count(&self.lines, "an order")
    }

    fn plan_request(&self) -> PlanRequest<'_> {
        PlanRequest {
            sales_channel_id: self.sales_channel_id,
            shipping_option_id: self.shipping_option_id,
            lines: &self.lines,
        }
    }
}

impl Combinable for PlaceOrder {
    type Outcome = Placed;

    const KIND: &'static str = "order";

    fn validate(&self) -> Result<()> {
        PlaceOrder::validate(self)
    }

    fn lines(&self) -> &[LineRequest] {
        &self.lines
    }

    fn write_batch<'c>(txn: &'c DatabaseTransaction, batch: &'c [Self]) -> TxnFuture<'c, Vec<Result<Placed>>> {
        Box::pin(place_batch_in(txn, batch))
    }

    fn count(db: &Database, verdict: &Result<Placed>) {
        count(db, verdict)
    }
}

/// Places `order` in a write transaction of its own (see the module doc).
pub async fn place_order(db: &Database, order: &PlaceOrder) -> Result<Placed> {
    order.validate()?;
    let placed = db.write(order, |txn, order| Box::pin(place_order_in(txn, order))).await;
    count(db, &placed);
    placed
}

/// Counts an order request in the metrics by its outcome (and a refusal for lack of
/// stock in the activity tally).
pub fn count(db: &Database, placed: &Result<Placed>) {
    match placed {
        Ok(placed) => crate::metrics::order_placed(placed.created),
        Err(err) => {
            db.refusals().count(err);
            crate::metrics::order_failed(err)
        }
    }
}

/// One order's placement inside a write transaction the caller opened (and commits only
/// if this returns `Ok`: on `Err` nothing of the order may be kept).
pub async fn place_order_in(txn: &DatabaseTransaction, order: &PlaceOrder) -> Result<Placed> {
    place_batch_in(txn, std::slice::from_ref(order))
        .await?
        .pop()
        .unwrap_or_else(|| Err(Error::Internal("a placed order got no verdict".into())))
}

/// Places every order of `batch` (each already validated) inside the caller's write
/// transaction, deciding them in order. Returns one verdict per order; an `Err` of the
/// whole call means the transaction itself failed and must be rolled back.
pub async fn place_batch_in(txn: &DatabaseTransaction, batch: &[PlaceOrder]) -> Result<Vec<Result<Placed>>> {
    let requests: Vec<PlanRequest<'_>> = batch.iter().map(PlaceOrder::plan_request).collect();
    let mut planner = Planner::prepare(txn, &requests).await?;
    let mut verdicts: Vec<Option<Result<Placed>>> = (0..batch.len())
        .map(|index| planner.check(index).err().map(Err))
        .collect();

    // Step 2: one claim per PaymentIntent, by the first order that names it.
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut repeats = Vec::new();
    let mut claims = Vec::new();
    for (index, order) in batch.iter().enumerate() {
        if verdicts[index].is_some() {
            continue;
        }
        match first_of.entry(order.payment_intent_id.as_str()) {
            Entry::Occupied(first) => repeats.push((index, *first.get())),
            Entry::Vacant(slot) => {
                slot.insert(index);
                claims.push(NewOrder {
                    payment_intent_id: &order.payment_intent_id,
                    sales_channel_id: Some(order.sales_channel_id),
                    shipping_option_id: order.shipping_option_id,
                    rejection_reason: None,
                });
            }
        }
    }
    let mut claimed = if claims.is_empty() {
        HashMap::new()
    } else {
        orders::claim_all(txn, &claims).await?
    };
    let mut to_decide: Vec<usize> = Vec::new();
    for (payment_intent_id, &index) in &first_of {
        match claimed.get(*payment_intent_id) {
            Some(placed) if placed.created => to_decide.push(index),
            Some(existing) => verdicts[index] = Some(Ok(existing.clone())),
            None => verdicts[index] = Some(Err(Error::Internal("a claim got no order".into()))),
        }
    }
    to_decide.sort_unstable();

    // Step 3: reservations, locked in key order. A key serves the first order naming it
    // from the reservation's own channel.
    let mut clock = Clock::default();
    let mut keyed: Vec<(&str, usize)> = to_decide
        .iter()
        .filter_map(|&index| batch[index].reservation_key.as_ref().map(|key| (key.as_str(), index)))
        .collect();
    keyed.sort_unstable();
    let mut held: Vec<Option<Held>> = vec![None; batch.len()];
    let mut served: Option<&str> = None;
    for (key, index) in keyed {
        if served == Some(key) {
            continue;
        }
        let now = clock.now(txn).await?;
        held[index] = reservations::lock_live_by_key(txn, key, batch[index].sales_channel_id, now).await?;
        if held[index].is_some() {
            served = Some(key);
        }
    }
    let own_holds: Vec<Option<OwnHold<'_>>> = held.iter().map(|hold| hold.as_ref().map(Held::own_hold)).collect();

    // Steps 4 and 5: lock, then decide in arrival order.
    planner.lock(txn, &requests, &to_decide, &own_holds, &mut clock).await?;
    let mut decided: Vec<(usize, i32, Decision)> = Vec::with_capacity(to_decide.len());
    let mut failed = Vec::new();
    for &index in &to_decide {
        let payment_intent_id = batch[index].payment_intent_id.as_str();
        let Some(order_id) = claimed.get(payment_intent_id).map(|placed| placed.order.id) else {
            verdicts[index] = Some(Err(Error::Internal("a claimed order vanished".into())));
            continue;
        };
        match planner.decide(index, &requests[index], own_holds[index]) {
            Ok(decision) => decided.push((index, order_id, decision)),
            Err(err) => {
                claimed.remove(payment_intent_id);
                failed.push(order_id);
                verdicts[index] = Some(Err(err));
            }
        }
    }

    // Steps 6 and 7.
    let mut changes = Vec::new();
    for (index, order_id, decision) in &decided {
        changes.extend(level_changes(*order_id, decision, own_holds[*index]));
    }
    // The stock each order left at each level it changed, for its backorder events.
    let stocked_after: HashMap<(Option<i32>, i32), i32> = levels::apply_changes(txn, planner.locked(), changes)
        .await?
        .into_iter()
        .map(|(movement, level)| ((movement.order_id, level.id), level.stocked_quantity))
        .collect();
    let mut lines = Vec::new();
    let mut events = Vec::new();
    for &(_, order_id, ref decision) in &decided {
        for ((line, allocation), item_id) in decision.lines.iter().zip(&decision.allocations).zip(&decision.item_ids) {
            lines.push(order_line::ActiveModel {
                order_id: Set(order_id),
                sku: Set(line.sku.to_string()),
                inventory_item_id: Set(Some(*item_id)),
                stock_location_id: Set(Some(allocation.stock_location_id)),
                quantity: Set(allocation.quantity),
                backordered_quantity: Set(allocation.backordered_quantity),
                ..Default::default()
            });
            if allocation.backordered_quantity > 0 {
                events.push(Backordered {
                    sku: line.sku.to_string(),
                    stock_location_id: allocation.stock_location_id,
                    order_id,
                    quantity: allocation.quantity,
                    stocked_quantity: stocked_after
                        .get(&(Some(order_id), allocation.level_id))
                        .copied()
                        .unwrap_or_default(),
                    backordered_quantity: allocation.backordered_quantity,
                });
            }
        }
    }
    orders::insert_lines(txn, lines).await?;
    for &(index, order_id, _) in &decided {
        if let Some(hold) = own_holds[index] {
            reservations::set_status(txn, hold.reservation_id, ReservationStatus::Committed).await?;
            let linked = orders::link_reservation(txn, order_id, hold.reservation_id).await?;
            if let Some(placed) = claimed.get_mut(batch[index].payment_intent_id.as_str()) {
                placed.order = linked;
            }
        }
    }
    orders::unclaim(txn, failed).await?;
    outbox::append(txn, events).await?;

    for &(index, _, _) in &decided {
        verdicts[index] = claimed.get(batch[index].payment_intent_id.as_str()).cloned().map(Ok);
    }
    for (index, first) in repeats {
        verdicts[index] = Some(match &verdicts[first] {
            Some(Ok(placed)) => Ok(Placed {
                order: placed.order.clone(),
                created: false,
            }),
            Some(Err(err)) => Err(err.clone()),
            None => Err(Error::Internal("a repeated order's first got no verdict".into())),
        });
    }
    Ok(verdicts
        .into_iter()
        .map(|verdict| verdict.unwrap_or_else(|| Err(Error::Internal("an order got no verdict".into()))))
        .collect())
}

/// The level changes of one decided order: one per level, stock taken by its lines and
/// the hold it commits given back. A level whose hold this order uses up records a COMMIT;
/// any other an ORDER.
fn level_changes(order_id: i32, decision: &Decision, own_hold: Option<OwnHold<'_>>) -> Vec<Change> {
    let mut deltas: BTreeMap<i32, Delta> = BTreeMap::new();
    for allocation in &decision.allocations {
        deltas.entry(allocation.level_id).or_default().stocked -= allocation.quantity;
    }
    for held in own_hold.map(|hold| hold.lines).unwrap_or_default() {
        deltas.entry(held.inventory_level_id).or_default().reserved -= held.quantity;
    }
    let reservation_id = own_hold.map(|hold| hold.reservation_id);
    deltas
        .into_iter()
        .map(|(level_id, delta)| Change {
            level_id,
            delta,
            movement: Movement {
                reason: if delta.reserved == 0 {
                    MovementReason::Order
                } else {
                    MovementReason::Commit
                },
                delta: delta.stocked,
                reserved_delta: delta.reserved,
                order_id: Some(order_id),
                reservation_id: reservation_id.filter(|_| delta.reserved != 0),
                note: None,
            },
        })
        .collect()
}
