//! The order rows themselves: claiming a PaymentIntent (the idempotency of every order
//! path), REJECTED orders of paid checkouts, and what became of their refunds.
//!
//! Placement decides stock; this module writes the order rows and their lines (and, for
//! a rejection, releases the checkout's reservation). A PaymentIntent is claimed
//! by inserting its order row first, `ON CONFLICT (payment_intent_id) DO NOTHING`: a
//! concurrent twin blocks on the unique index until the first transaction ends, then
//! inserts nothing and finds the order that now exists (bounded by `lock_timeout`).

use std::collections::HashMap;

use chrono::Utc;
use entity::{order_line, orders, orders::OrderStatus, sales_channel, shipping_option};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, TryInsertResult,
    sea_query::{Expr, ExprTrait},
};

use super::{
    reservations,
    values::{LineRequest, PaymentIntentId, ReservationKey},
};
use crate::{
    db::Database,
    error::{Error, Result},
};

/// The order, and whether this call created it (false: it existed for the PaymentIntent).
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: orders::Model,
    pub created: bool,
}

/// An order row to claim a PaymentIntent with.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub payment_intent_id: &'a PaymentIntentId,
    pub sales_channel_id: Option<i32>,
    pub shipping_option_id: Option<i32>,
    /// REJECTED with this reason; PLACED without one.
    pub rejection_reason: Option<String>,
}

/// Claims each PaymentIntent of `claims` (distinct ids) with one multi-row insert; returns,
/// by PaymentIntent id, the order: new (`created`) or the one that existed.
///
/// Rows are inserted in PaymentIntent order, so two transactions claiming overlapping sets
/// wait for each other's index entries in the same order and cannot deadlock.
pub async fn claim_all(txn: &DatabaseTransaction, claims: &[NewOrder<'_>]) -> Result<HashMap<String, Placed>> {
    let now = Utc::now();
    let mut sorted: Vec<&NewOrder<'_>> = claims.iter().collect();
    sorted.sort_by(|a, b| a.payment_intent_id.as_str().cmp(b.payment_intent_id.as_str()));
    let rows = sorted.iter().map(|claim| orders::ActiveModel {
        payment_intent_id: Set(claim.payment_intent_id.as_str().to_owned()),
        sales_channel_id: Set(claim.sales_channel_id),
        shipping_option_id: Set(claim.shipping_option_id),
        status: Set(if claim.rejection_reason.is_some() {
            OrderStatus::Rejected
        } else {
            OrderStatus::Placed
        }),
        rejection_reason: Set(claim.rejection_reason.clone()),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    });
    let inserted = orders::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([orders::Column::PaymentIntentId])
        .exec_with_returning_many(txn)
        .await?;
    let mut placed: HashMap<String, Placed> = match inserted {
        TryInsertResult::Inserted(rows) => rows
            .into_iter()
            .map(|order| (order.payment_intent_id.clone(), Placed { order, created: true }))
            .collect(),
        TryInsertResult::Conflicted | TryInsertResult::Empty => HashMap::new(),
    };
    let existing: Vec<&str> = claims
        .iter()
        .map(|claim| claim.payment_intent_id.as_str())
        .filter(|id| !placed.contains_key(*id))
        .collect();
    if !existing.is_empty() {
        // READ COMMITTED: this new statement sees the twins that made our inserts conflict.
        for order in orders::Entity::find()
            .filter(orders::Column::PaymentIntentId.is_in(existing))
            .all(txn)
            .await?
        {
            placed.insert(order.payment_intent_id.clone(), Placed { order, created: false });
        }
    }
    if placed.len() != claims.len() {
        return Err(Error::Internal("an order for a claimed PaymentIntent vanished".into()));
    }
    Ok(placed)
}

/// Removes orders this transaction claimed but could not place: they leave no trace, and
/// a twin waiting on their PaymentIntent then claims it afresh.
pub async fn unclaim(txn: &DatabaseTransaction, order_ids: Vec<i32>) -> Result<()> {
    if !order_ids.is_empty() {
        orders::Entity::delete_many()
            .filter(orders::Column::Id.is_in(order_ids))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// Records on orders which reservation each committed.
pub async fn link_reservation(txn: &DatabaseTransaction, order_id: i32, reservation_id: i32) -> Result<orders::Model> {
    orders::Entity::update_many()
        .col_expr(orders::Column::ReservationId, Expr::value(reservation_id))
        .filter(orders::Column::Id.eq(order_id))
        .exec_with_returning(txn)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the order being placed vanished".into()))
}

/// Stores the lines of orders: `rows` as built by the caller.
pub async fn insert_lines(txn: &DatabaseTransaction, rows: Vec<order_line::ActiveModel>) -> Result<()> {
    if !rows.is_empty() {
        order_line::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
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
    /// Why: its message is the order's `rejectionReason`, its code goes to the metrics.
    pub reason: Error,
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
    let claim = NewOrder {
        payment_intent_id: &rejected.payment_intent_id,
        sales_channel_id,
        shipping_option_id,
        rejection_reason: Some(rejected.reason.to_string()),
    };
    let placed = claim_all(txn, std::slice::from_ref(&claim))
        .await?
        .remove(rejected.payment_intent_id.as_str())
        .ok_or_else(|| Error::Internal("the rejected order vanished".into()))?;
    if !placed.created {
        return Ok(placed);
    }
    let rows = rejected
        .lines
        .iter()
        .map(|line| order_line::ActiveModel {
            order_id: Set(placed.order.id),
            sku: Set(line.sku.to_string()),
            quantity: Set(line.quantity.get()),
            backordered_quantity: Set(0),
            ..Default::default()
        })
        .collect();
    insert_lines(txn, rows).await?;
    if let (Some(key), Some(channel_id)) = (&rejected.reservation_key, sales_channel_id) {
        reservations::release_live_by_key_in(txn, key.as_str(), channel_id).await?;
    }
    Ok(placed)
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
