//! Order placement: the one transaction every order path goes through (the `placeOrder`
//! mutation, the Stripe webhook, reservation commits).
//!
//! The algorithm, and why each step is safe:
//! 1. **Claim the PaymentIntent** by inserting the order row first, `ON CONFLICT
//!    (payment_intent_id) DO NOTHING`. A concurrent twin blocks on the unique index until
//!    the first transaction ends; if that committed, the twin inserts nothing and returns
//!    the order that now exists, without touching stock. (Bounded by `lock_timeout`.)
//! 2. **Reservation**: with the key of an ACTIVE, unexpired reservation, lock its row; its
//!    lines are served from the levels it holds, and its hold is released by this order.
//! 3. **Candidates**: the shipping option's location (which must be mapped to the
//!    channel), then the channel's locations by priority.
//! 4. **Lock** every level the order may touch (each line's sku at each candidate, and
//!    the reservation's levels) with one `SELECT … ORDER BY id FOR UPDATE`: PostgreSQL
//!    locks rows in that sorted order, so two orders over the same levels always lock
//!    them in the same order and cannot deadlock. From here until commit no one else can
//!    change these rows. (See `planning`.)
//! 5. **Decide** with the pure `allocation::allocate` over the locked rows.
//! 6. **Write** each chosen level once, `SET stocked = stocked - n, version = version + 1
//!    WHERE id = ? AND version = <version read>`. Under the lock the guard always holds;
//!    it exists so that a path which ever forgets the lock fails (and retries) instead of
//!    overwriting a change it did not see.
//! 7. Order lines, ledger movements and backorder events in the same transaction; the
//!    event ids are taken last (see `events::outbox`).
//!
//! On SQLite the transaction is `BEGIN IMMEDIATE`: it holds the database's write lock
//! from the first statement, which serializes placements outright.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use entity::{
    inventory_item, order_line, orders, orders::OrderStatus, reservation::ReservationStatus, sales_channel,
    shipping_option, stock_movement::MovementReason,
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, TryInsertResult,
    sea_query::{Expr, ExprTrait},
};

use super::{
    allocation::{Allocation, LineCandidates},
    ledger::Movement,
    levels::{self, Delta},
    lookup,
    planning::{self, Plan},
    reservations,
    values::{PaymentIntentId, Quantity, ReservationKey, Sku},
};
use crate::{
    db::{self, Database},
    error::{Error, Result},
    events::outbox::{self, Backordered},
};

/// Most lines one order may have.
pub const MAX_LINES: usize = 100;

/// One requested line.
#[derive(Debug, Clone)]
pub struct LineRequest {
    pub sku: Sku,
    pub quantity: Quantity,
}

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
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            return Err(Error::bad_input(format!("an order needs 1 to {MAX_LINES} lines")));
        }
        Ok(())
    }
}

/// The order, and whether this call created it (false: it existed for the PaymentIntent).
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: orders::Model,
    pub created: bool,
}

/// Places `order` in one write transaction (see the module doc).
pub async fn place_order(db: &Database, order: &PlaceOrder) -> Result<Placed> {
    order.validate()?;
    let placed = db.write(order, |txn, order| Box::pin(place_order_in(txn, order))).await;
    crate::metrics::order(match &placed {
        Ok(Placed { created: true, .. }) => "placed",
        Ok(Placed { created: false, .. }) => "repeat",
        Err(err) => err.code(),
    });
    placed
}

/// The placement itself, inside a write transaction the caller opened (and commits only
/// if this returns `Ok`: on `Err` nothing of the order may be kept).
pub async fn place_order_in(txn: &DatabaseTransaction, cmd: &PlaceOrder) -> Result<Placed> {
    lookup::by_id::<sales_channel::Entity>(txn, cmd.sales_channel_id, "sales channel").await?;
    let shipping = match cmd.shipping_option_id {
        Some(id) => Some(lookup::by_id::<shipping_option::Entity>(txn, id, "shipping option").await?),
        None => None,
    };
    let claim = claim_payment_intent(
        txn,
        &cmd.payment_intent_id,
        Some(cmd.sales_channel_id),
        cmd.shipping_option_id,
        None,
    );
    let order = match claim.await? {
        Claim::New(order) => order,
        Claim::Existing(order) => {
            return Ok(Placed { order, created: false });
        }
    };
    let now = db::now(txn).await?;
    let committing = match &cmd.reservation_key {
        Some(key) => reservations::lock_live_by_key(txn, key.as_str(), cmd.sales_channel_id, now).await?,
        None => None,
    };
    let own_hold = committing.as_ref().map(reservations::Held::own_hold);
    let Plan {
        lines,
        allocations,
        locked,
        items,
    } = planning::plan(txn, cmd.sales_channel_id, shipping.as_ref(), &cmd.lines, own_hold, now).await?;
    let mut deltas: BTreeMap<i32, Delta> = BTreeMap::new();
    for allocation in &allocations {
        deltas.entry(allocation.level_id).or_default().stocked -= allocation.quantity;
    }
    for held in own_hold.map(|hold| hold.lines).unwrap_or_default() {
        deltas.entry(held.inventory_level_id).or_default().reserved -= held.quantity;
    }
    let reservation_id = own_hold.map(|hold| hold.reservation_id);
    let written = levels::apply(txn, &locked, &deltas, |delta| Movement {
        // A level whose hold this order uses up records a COMMIT; any other an ORDER.
        reason: if delta.reserved == 0 {
            MovementReason::Order
        } else {
            MovementReason::Commit
        },
        delta: delta.stocked,
        reserved_delta: delta.reserved,
        order_id: Some(order.id),
        reservation_id: reservation_id.filter(|_| delta.reserved != 0),
        note: None,
    })
    .await?;
    let order = match reservation_id {
        Some(id) => {
            reservations::set_status(txn, id, ReservationStatus::Committed).await?;
            link_reservation(txn, order.id, id).await?
        }
        None => order,
    };
    insert_lines(txn, order.id, &lines, &items, &allocations).await?;
    let events = lines
        .iter()
        .zip(&allocations)
        .filter(|(_, allocation)| allocation.backordered_quantity > 0)
        .map(|(line, allocation)| Backordered {
            sku: line.sku.to_string(),
            stock_location_id: allocation.stock_location_id,
            order_id: order.id,
            quantity: allocation.quantity,
            stocked_quantity: written[&allocation.level_id].stocked_quantity,
            backordered_quantity: allocation.backordered_quantity,
        })
        .collect();
    outbox::append(txn, events).await?;
    Ok(Placed { order, created: true })
}

enum Claim {
    New(orders::Model),
    Existing(orders::Model),
}

/// Inserts the order for a PaymentIntent (REJECTED if it has a `rejection_reason`, else
/// PLACED) unless one exists already; returns the one that does.
async fn claim_payment_intent(
    txn: &DatabaseTransaction,
    payment_intent_id: &PaymentIntentId,
    sales_channel_id: Option<i32>,
    shipping_option_id: Option<i32>,
    rejection_reason: Option<String>,
) -> Result<Claim> {
    let now = Utc::now();
    let status = if rejection_reason.is_some() {
        OrderStatus::Rejected
    } else {
        OrderStatus::Placed
    };
    let row = orders::ActiveModel {
        payment_intent_id: Set(payment_intent_id.as_str().to_owned()),
        sales_channel_id: Set(sales_channel_id),
        shipping_option_id: Set(shipping_option_id),
        status: Set(status),
        rejection_reason: Set(rejection_reason),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    let inserted = orders::Entity::insert(row)
        .on_conflict_do_nothing_on([orders::Column::PaymentIntentId])
        .exec_without_returning(txn)
        .await?;
    let created = matches!(inserted, TryInsertResult::Inserted(1));
    // READ COMMITTED: this new statement sees the twin that made our insert conflict.
    let order = orders::Entity::find()
        .filter(orders::Column::PaymentIntentId.eq(payment_intent_id.as_str()))
        .one(txn)
        .await?
        .ok_or_else(|| Error::Internal("the order for this PaymentIntent vanished".into()))?;
    Ok(if created {
        Claim::New(order)
    } else {
        Claim::Existing(order)
    })
}

/// Records on the order which reservation it committed.
async fn link_reservation(txn: &DatabaseTransaction, order_id: i32, reservation_id: i32) -> Result<orders::Model> {
    orders::Entity::update_many()
        .col_expr(orders::Column::ReservationId, Expr::value(reservation_id))
        .filter(orders::Column::Id.eq(order_id))
        .exec_with_returning(txn)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the order being placed vanished".into()))
}

async fn insert_lines(
    txn: &DatabaseTransaction,
    order_id: i32,
    lines: &[LineCandidates],
    items: &HashMap<Sku, inventory_item::Model>,
    allocations: &[Allocation],
) -> Result<()> {
    let rows = lines
        .iter()
        .zip(allocations)
        .map(|(line, allocation)| order_line::ActiveModel {
            order_id: Set(order_id),
            sku: Set(line.sku.to_string()),
            inventory_item_id: Set(Some(items[&line.sku].id)),
            stock_location_id: Set(Some(allocation.stock_location_id)),
            quantity: Set(allocation.quantity),
            backordered_quantity: Set(allocation.backordered_quantity),
            ..Default::default()
        });
    order_line::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// An order that could not be placed, to be kept as REJECTED with its reason.
#[derive(Debug, Clone)]
pub struct RejectedOrder {
    pub payment_intent_id: PaymentIntentId,
    pub sales_channel_id: Option<i32>,
    pub shipping_option_id: Option<i32>,
    /// The lines as requested, where they could be read.
    pub lines: Vec<LineRequest>,
    /// The checkout's reservation, released with the rejection (its checkout is over).
    pub reservation_key: Option<ReservationKey>,
    pub reason: String,
}

/// Stores a REJECTED order (no stock moves) unless an order exists for the PaymentIntent,
/// inside the caller's write transaction. The checkout's live reservation, if any, is
/// released in the same transaction: the payment is being refunded, so nothing will ever
/// commit it, and its units should not stay held until it expires.
pub async fn reject_order_in(txn: &DatabaseTransaction, rejected: &RejectedOrder) -> Result<Placed> {
    // Keep references only to rows that exist: the ids came from outside.
    let sales_channel_id = match rejected.sales_channel_id {
        Some(id) => sales_channel::Entity::find_by_id(id)
            .one(txn)
            .await?
            .map(|channel| channel.id),
        None => None,
    };
    let shipping_option_id = match rejected.shipping_option_id {
        Some(id) => shipping_option::Entity::find_by_id(id)
            .one(txn)
            .await?
            .map(|option| option.id),
        None => None,
    };
    let reason = Some(rejected.reason.clone());
    let claim = claim_payment_intent(
        txn,
        &rejected.payment_intent_id,
        sales_channel_id,
        shipping_option_id,
        reason,
    );
    let order = match claim.await? {
        Claim::New(order) => order,
        Claim::Existing(order) => {
            return Ok(Placed { order, created: false });
        }
    };
    if !rejected.lines.is_empty() {
        let rows = rejected.lines.iter().map(|line| order_line::ActiveModel {
            order_id: Set(order.id),
            sku: Set(line.sku.to_string()),
            quantity: Set(line.quantity.get()),
            backordered_quantity: Set(0),
            ..Default::default()
        });
        order_line::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    if let (Some(key), Some(channel_id)) = (&rejected.reservation_key, sales_channel_id) {
        reservations::release_live_by_key_in(txn, key.as_str(), channel_id).await?;
    }
    Ok(Placed { order, created: true })
}

/// Records on a rejected order what became of its refund.
///
/// A stored refund id is final: several processes may retry the same refund at once
/// (Stripe answers each with the same refund, thanks to the idempotency key), and a late
/// failure of one attempt must not wipe out the success of another. So both writes only
/// touch an order that has no refund id yet.
pub async fn record_refund(db: &Database, order_id: i32, outcome: &std::result::Result<String, String>) -> Result<()> {
    let update = match outcome {
        Ok(id) => orders::Entity::update_many()
            .col_expr(orders::Column::RefundId, Expr::value(id.clone()))
            .col_expr(orders::Column::RefundError, Expr::value(Option::<String>::None)),
        Err(error) => orders::Entity::update_many().col_expr(orders::Column::RefundError, Expr::value(error.clone())),
    };
    update
        .col_expr(orders::Column::Version, Expr::col(orders::Column::Version).add(1))
        .col_expr(orders::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(orders::Column::Id.eq(order_id))
        .filter(orders::Column::RefundId.is_null())
        .exec(db.conn())
        .await?;
    Ok(())
}
