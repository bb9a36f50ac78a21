//! `payment_intent.succeeded` → an order, exactly once.
//!
//! The Stripe event id is inserted (unique) in the same transaction as the order it
//! causes. A redelivery, or a copy arriving at the same moment, conflicts on that id: it
//! waits for the first copy's transaction and then finds the event processed. A different
//! event for the same PaymentIntent finds the order through the PaymentIntent's unique
//! index (placement step 2, `orders::claim_all`). So one PaymentIntent makes one order, whatever Stripe sends.

use chrono::{Duration, Utc};
use entity::{orders, orders::OrderStatus, stripe_event};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TryInsertResult,
};

use super::refunds::Refunds;
use crate::{
    db::Database,
    error::Result,
    inventory::{
        orders::{self as order_rows, Placed, RejectedOrder},
        placement::{self, PlaceOrder},
    },
};

/// The event being processed.
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    pub payment_intent_id: String,
}

/// What processing an event did.
#[derive(Debug)]
pub enum Outcome {
    /// This event id was processed before; nothing was done.
    AlreadyProcessed,
    /// The order (new, or the PaymentIntent's existing one).
    Placed(Placed),
    /// The order could not be placed and is stored as REJECTED.
    Rejected(Placed),
}

/// Stores the event id; `false` if it was stored already.
async fn claim_event(txn: &DatabaseTransaction, event: &StripeEvent) -> Result<bool> {
    let row = stripe_event::ActiveModel {
        id: Set(event.id.clone()),
        event_type: Set(event.event_type.clone()),
        payment_intent_id: Set(Some(event.payment_intent_id.clone())),
        received_at: Set(Utc::now()),
    };
    let inserted = stripe_event::Entity::insert(row)
        .on_conflict_do_nothing_on([stripe_event::Column::Id])
        .exec_without_returning(txn)
        .await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(1)))
}

/// Processes a verified `payment_intent.succeeded` whose metadata gave `order`.
///
/// A transient failure (lock timeout, database down) is returned as an error and leaves
/// nothing behind, so Stripe's retry can succeed later.
pub async fn payment_succeeded(
    db: &Database,
    refunds: &Refunds,
    event: &StripeEvent,
    order: std::result::Result<PlaceOrder, RejectedOrder>,
) -> Result<Outcome> {
    let rejected = match order {
        Ok(order) => {
            let placed = db
                .write(&(event, &order), |txn, (event, order)| {
                    Box::pin(async move {
                        if !claim_event(txn, event).await? {
                            return Ok(Outcome::AlreadyProcessed);
                        }
                        Ok(Outcome::Placed(placement::place_order_in(txn, order).await?))
                    })
                })
                .await;
            if let Ok(Outcome::Placed(Placed { created: true, .. })) = &placed {
                crate::metrics::order_placed(true);
            }
            match placed {
                Err(err) if err.is_rejection() => RejectedOrder {
                    payment_intent_id: order.payment_intent_id.clone(),
                    sales_channel_id: Some(order.sales_channel_id),
                    shipping_option_id: order.shipping_option_id,
                    lines: order.lines.clone(),
                    reservation_key: order.reservation_key.clone(),
                    reason: err,
                },
                other => return other,
            }
        }
        Err(rejected) => rejected,
    };
    let outcome = db
        .write(&(event, &rejected), |txn, (event, rejected)| {
            Box::pin(async move {
                if !claim_event(txn, event).await? {
                    return Ok(Outcome::AlreadyProcessed);
                }
                Ok(Outcome::Rejected(order_rows::reject_order_in(txn, rejected).await?))
            })
        })
        .await?;
    if let Outcome::Rejected(Placed { order, created: true }) = &outcome {
        crate::metrics::order_rejected(rejected.reason.code());
        db.refusals().count(&rejected.reason);
        tracing::info!(payment_intent_id = %order.payment_intent_id, reason = ?order.rejection_reason, "order rejected");
        // After the commit, not inside it: no lock is held while Stripe answers.
        refund(db, refunds, order).await?;
    }
    Ok(outcome)
}

/// Requests the refund of a rejected order (if refunds are configured) and records the
/// refund id, or the failure, on the order.
async fn refund(db: &Database, refunds: &Refunds, order: &orders::Model) -> Result<()> {
    if let Some(outcome) = refunds.refund(&order.payment_intent_id).await {
        order_rows::record_refund(db, order.id, &outcome).await?;
    }
    Ok(())
}

/// How long a rejected order may wait for its refund call before the retry sweep takes it
/// over (the webhook request that rejected it makes the call right after its commit).
const REFUND_GRACE: Duration = Duration::seconds(60);

/// How long failed refunds are retried.
const REFUND_HORIZON: Duration = Duration::days(3);

/// Retries the refunds of rejected orders that have none yet: those whose refund failed,
/// and those whose process stopped between the REJECTED commit and the refund call. The
/// idempotency key is the same on every attempt, so Stripe refunds a PaymentIntent once.
/// Returns how many orders were attempted, or `None` when another process is retrying
/// right now (one at a time, so Stripe gets one call per order and round, not one per process).
pub async fn retry_refunds(db: &Database, refunds: &Refunds) -> Result<Option<usize>> {
    if !refunds.is_enabled() {
        return Ok(Some(0));
    }
    db.unless_running_elsewhere(crate::db::REFUND_RETRY_LOCK, retry_refunds_here(db, refunds))
        .await?
        .transpose()
}

async fn retry_refunds_here(db: &Database, refunds: &Refunds) -> Result<usize> {
    let pending = orders::Entity::find()
        .filter(orders::Column::Status.eq(OrderStatus::Rejected))
        .filter(orders::Column::RefundId.is_null())
        // Give up after Stripe's own retry horizon; what is left then needs a person.
        .filter(orders::Column::CreatedAt.gte(Utc::now() - REFUND_HORIZON))
        .filter(
            Condition::any()
                .add(orders::Column::RefundError.is_not_null())
                .add(orders::Column::CreatedAt.lte(Utc::now() - REFUND_GRACE)),
        )
        .order_by_asc(orders::Column::Id)
        .limit(50)
        .all(db.conn())
        .await?;
    for order in &pending {
        refund(db, refunds, order).await?;
    }
    let without_refund = || {
        orders::Entity::find()
            .filter(orders::Column::Status.eq(OrderStatus::Rejected))
            .filter(orders::Column::RefundId.is_null())
    };
    let failed = without_refund()
        .filter(orders::Column::RefundError.is_not_null())
        .count(db.conn())
        .await?;
    let waiting = without_refund()
        .filter(orders::Column::RefundError.is_null())
        .count(db.conn())
        .await?;
    crate::metrics::refund_backlog(waiting, failed);
    Ok(pending.len())
}
