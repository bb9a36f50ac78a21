//! Reservations: stock held for a checkout (`reserveStock`), given back (`releaseReservation`,
//! or the expiry sweep), or turned into an order (`placeOrder` with its key, see
//! `placement`).
//!
//! A reservation raises `reserved_quantity` on the levels the location rules choose; it
//! never lowers `stocked_quantity`. Past `expires_at` it holds nothing: planning treats
//! its units as free at once, and [`expire_overdue`] later marks it EXPIRED and gives the
//! units back to `reserved_quantity`. Every path locks the reservation row first and then
//! its levels (in id order), the same order placement uses, so none can deadlock another.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use entity::{reservation, reservation::ReservationStatus, reservation_line, stock_movement::MovementReason};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TryInsertResult,
    sea_query::{Expr, ExprTrait},
};

use super::{
    ledger::Movement,
    levels::{self, Delta},
    planning::{OwnHold, PlanRequest, Planner},
    values::ReservationKey,
    values::{LineRequest, MAX_LINES},
};
use crate::{
    db::{self, Database},
    error::{Error, Result},
};

/// How long a checkout's hold lasts unless it says otherwise.
pub const DEFAULT_TTL_SECONDS: i32 = 900;

/// Longest hold a checkout may ask for.
pub const MAX_TTL_SECONDS: i64 = 7 * 24 * 3600;

/// Stock to hold for a checkout.
#[derive(Debug, Clone)]
pub struct ReserveStock {
    pub key: ReservationKey,
    pub sales_channel_id: i32,
    pub shipping_option_id: Option<i32>,
    pub lines: Vec<LineRequest>,
    pub ttl_seconds: i64,
}

/// Holds stock (idempotent per key: a repeat returns the reservation that exists).
pub async fn reserve_stock(db: &Database, cmd: &ReserveStock) -> Result<reservation::Model> {
    if cmd.lines.is_empty() || cmd.lines.len() > MAX_LINES {
        return Err(Error::bad_input(format!("a reservation needs 1 to {MAX_LINES} lines")));
    }
    if !(1..=MAX_TTL_SECONDS).contains(&cmd.ttl_seconds) {
        return Err(Error::bad_input(format!(
            "ttlSeconds must be between 1 and {MAX_TTL_SECONDS}"
        )));
    }
    db.write(cmd, |txn, cmd| Box::pin(reserve_in(txn, cmd))).await
}

async fn reserve_in(txn: &DatabaseTransaction, cmd: &ReserveStock) -> Result<reservation::Model> {
    let request = PlanRequest {
        sales_channel_id: cmd.sales_channel_id,
        shipping_option_id: cmd.shipping_option_id,
        lines: &cmd.lines,
    };
    let requests = [request];
    let mut planner = Planner::prepare(txn, &requests).await?;
    planner.check(0)?;
    let mut clock = db::Clock::default();
    let now = clock.now(txn).await?;
    let row = reservation::ActiveModel {
        key: Set(cmd.key.as_str().to_owned()),
        sales_channel_id: Set(cmd.sales_channel_id),
        shipping_option_id: Set(cmd.shipping_option_id),
        status: Set(ReservationStatus::Active),
        expires_at: Set(now + Duration::seconds(cmd.ttl_seconds)),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    // Same idempotency as orders: a concurrent twin waits on the unique key, then finds it.
    let inserted = reservation::Entity::insert(row)
        .on_conflict_do_nothing_on([reservation::Column::Key])
        .exec_without_returning(txn)
        .await?;
    let held = reservation::Entity::find()
        .filter(reservation::Column::Key.eq(cmd.key.as_str()))
        .one(txn)
        .await?
        .ok_or_else(|| Error::Internal("the reservation for this key vanished".into()))?;
    if !matches!(inserted, TryInsertResult::Inserted(1)) {
        return Ok(held);
    }
    planner.lock(txn, &requests, &[0], &[None], &mut clock).await?;
    let plan = planner.decide(0, &request, None)?;
    let mut deltas: BTreeMap<i32, Delta> = BTreeMap::new();
    for allocation in &plan.allocations {
        deltas.entry(allocation.level_id).or_default().reserved += allocation.quantity;
    }
    levels::apply(txn, planner.locked(), &deltas, |delta| {
        Movement::reservation(MovementReason::Reservation, delta.reserved, held.id)
    })
    .await?;
    let rows = plan
        .lines
        .iter()
        .zip(&plan.allocations)
        .map(|(line, allocation)| reservation_line::ActiveModel {
            reservation_id: Set(held.id),
            sku: Set(line.sku.to_string()),
            inventory_level_id: Set(allocation.level_id),
            stock_location_id: Set(allocation.stock_location_id),
            quantity: Set(allocation.quantity),
            ..Default::default()
        });
    reservation_line::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(held)
}

/// ACTIVE → RELEASED, giving the held stock back. Releasing again is harmless; a
/// COMMITTED reservation cannot be released.
pub async fn release_reservation(db: &Database, id: i32) -> Result<reservation::Model> {
    db.write(&id, |txn, id| {
        Box::pin(async move {
            let held = lock_reservation(txn, reservation::Column::Id.eq(*id))
                .await?
                .ok_or_else(|| Error::not_found(format!("reservation {id}")))?;
            match held.status {
                ReservationStatus::Committed => Err(Error::bad_input(format!(
                    "reservation {id} was committed to an order and cannot be released"
                ))),
                ReservationStatus::Released | ReservationStatus::Expired => Ok(held),
                ReservationStatus::Active => {
                    let lines = lines_of(txn, held.id).await?;
                    give_back(txn, &held, &lines, ReservationStatus::Released, MovementReason::Release).await
                }
            }
        })
    })
    .await
}

/// The background sweep: marks overdue ACTIVE reservations EXPIRED and gives their stock
/// back, each in its own transaction. Returns how many it expired.
pub async fn expire_overdue(db: &Database) -> Result<usize> {
    let now = db::now(db.conn()).await?;
    let overdue: Vec<i32> = reservation::Entity::find()
        .filter(reservation::Column::Status.eq(ReservationStatus::Active))
        .filter(reservation::Column::ExpiresAt.lte(now))
        .order_by_asc(reservation::Column::Id)
        .limit(100)
        .all(db.conn())
        .await?
        .into_iter()
        .map(|held| held.id)
        .collect();
    let mut expired = 0;
    for id in overdue {
        let done = db
            .write(&id, |txn, id| {
                Box::pin(async move {
                    // Re-checked under the row lock: it may have been committed or released since.
                    let held = lock_reservation(txn, reservation::Column::Id.eq(*id)).await?;
                    let now = db::now(txn).await?;
                    match held {
                        Some(held) if held.status == ReservationStatus::Active && held.expires_at <= now => {
                            let lines = lines_of(txn, held.id).await?;
                            give_back(txn, &held, &lines, ReservationStatus::Expired, MovementReason::Expiry).await?;
                            Ok(true)
                        }
                        _ => Ok(false),
                    }
                })
            })
            .await?;
        expired += usize::from(done);
    }
    Ok(expired)
}

/// Locks the reservation matching `condition` (`FOR UPDATE`).
async fn lock_reservation(
    txn: &DatabaseTransaction,
    condition: impl sea_orm::sea_query::IntoCondition,
) -> Result<Option<reservation::Model>> {
    Ok(reservation::Entity::find()
        .filter(condition)
        .lock_exclusive()
        .one(txn)
        .await?)
}

/// Removes the reservation's hold (its `lines`, read under its row lock) from its levels
/// and moves it to `status`.
async fn give_back(
    txn: &DatabaseTransaction,
    held: &reservation::Model,
    lines: &[reservation_line::Model],
    status: ReservationStatus,
    reason: MovementReason,
) -> Result<reservation::Model> {
    let locked = levels::lock(
        txn,
        sea_orm::Condition::all()
            .add(entity::inventory_level::Column::Id.is_in(lines.iter().map(|line| line.inventory_level_id))),
    )
    .await?;
    let mut deltas: BTreeMap<i32, Delta> = BTreeMap::new();
    for line in lines {
        deltas.entry(line.inventory_level_id).or_default().reserved -= line.quantity;
    }
    levels::apply(txn, &locked, &deltas, |delta| {
        Movement::reservation(reason, delta.reserved, held.id)
    })
    .await?;
    set_status(txn, held.id, status).await
}

/// Moves a reservation (whose row the transaction has locked) to `status`.
pub async fn set_status(txn: &DatabaseTransaction, id: i32, status: ReservationStatus) -> Result<reservation::Model> {
    reservation::Entity::update_many()
        .col_expr(reservation::Column::Status, Expr::value(status))
        .col_expr(
            reservation::Column::Version,
            Expr::col(reservation::Column::Version).add(1),
        )
        .col_expr(reservation::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(reservation::Column::Id.eq(id))
        .exec_with_returning(txn)
        .await?
        .pop()
        .ok_or_else(|| Error::not_found(format!("reservation {id}")))
}

async fn lines_of(txn: &DatabaseTransaction, reservation_id: i32) -> Result<Vec<reservation_line::Model>> {
    Ok(reservation_line::Entity::find()
        .filter(reservation_line::Column::ReservationId.eq(reservation_id))
        .order_by_asc(reservation_line::Column::Id)
        .all(txn)
        .await?)
}

/// A live reservation, locked, with its lines in the order held.
#[derive(Debug, Clone)]
pub struct Held {
    pub reservation: reservation::Model,
    pub lines: Vec<reservation_line::Model>,
}

impl Held {
    /// The hold as planning sees it.
    pub fn own_hold(&self) -> OwnHold<'_> {
        OwnHold {
            reservation_id: self.reservation.id,
            lines: &self.lines,
        }
    }
}

/// The reservation with `key`, locked, with its lines, if it is ACTIVE at `now` and was
/// made through `sales_channel_id`: the hold an order with this key commits. Anything
/// else means "no reservation". A key from another channel is no key: its holds sit at
/// locations that channel chose, which this channel may not sell from.
pub async fn lock_live_by_key(
    txn: &DatabaseTransaction,
    key: &str,
    sales_channel_id: i32,
    now: DateTime<Utc>,
) -> Result<Option<Held>> {
    let Some(reservation) = lock_reservation(txn, reservation::Column::Key.eq(key)).await? else {
        return Ok(None);
    };
    if reservation.status != ReservationStatus::Active
        || reservation.expires_at <= now
        || reservation.sales_channel_id != sales_channel_id
    {
        return Ok(None);
    }
    let lines = lines_of(txn, reservation.id).await?;
    Ok(Some(Held { reservation, lines }))
}

/// Releases the live reservation `key` of `sales_channel_id` (if there is one), inside the
/// caller's transaction: for a paid order that was REJECTED, whose checkout is over.
pub async fn release_live_by_key_in(
    txn: &DatabaseTransaction,
    key: &str,
    sales_channel_id: i32,
) -> Result<Option<reservation::Model>> {
    let now = db::now(txn).await?;
    match lock_live_by_key(txn, key, sales_channel_id, now).await? {
        Some(held) => Ok(Some(
            give_back(
                txn,
                &held.reservation,
                &held.lines,
                ReservationStatus::Released,
                MovementReason::Release,
            )
            .await?,
        )),
        None => Ok(None),
    }
}
