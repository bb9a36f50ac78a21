//! Reservations: stock held for a checkout (`reserveStock`, combined like orders: see
//! [`reserve_batch_in`]), given back (`releaseReservation`,
//! or the expiry sweep), or turned into an order (`placeOrder` with its key, see
//! `placement`).
//!
//! A reservation raises `reserved_quantity` on the levels the location rules choose; it
//! never lowers `stocked_quantity`. Past `expires_at` it holds nothing: planning treats
//! its units as free at once, and [`expire_overdue`] later marks it EXPIRED and gives the
//! units back to `reserved_quantity`. Every path locks the reservation row first and then
//! its levels (in id order), the same order placement uses, so none can deadlock another.

use std::collections::{BTreeMap, HashMap, hash_map::Entry};

use chrono::{DateTime, Duration, Utc};
use entity::{reservation, reservation::ReservationStatus, reservation_line, stock_movement::MovementReason};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TryInsertResult,
    sea_query::{Expr, ExprTrait},
};

use super::{
    combiner::Combinable,
    ledger::Movement,
    levels::{self, Change, Delta},
    planning::{OwnHold, PlanRequest, Planner},
    values::{LineRequest, ReservationKey, check_line_count},
};
use crate::{
    db::{self, Database, TxnFuture},
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

impl ReserveStock {
    /// Checks the shape of the request: 1 to `MAX_LINES` lines, a TTL within bounds.
    pub fn validate(&self) -> Result<()> {
        check_line_count(&self.lines, "a reservation")?;
        if !(1..=MAX_TTL_SECONDS).contains(&self.ttl_seconds) {
            return Err(Error::bad_input(format!(
                "ttlSeconds must be between 1 and {MAX_TTL_SECONDS}"
            )));
        }
        Ok(())
    }

    fn plan_request(&self) -> PlanRequest<'_> {
        PlanRequest {
            sales_channel_id: self.sales_channel_id,
            shipping_option_id: self.shipping_option_id,
            lines: &self.lines,
        }
    }
}

impl Combinable for ReserveStock {
    type Outcome = reservation::Model;

    const KIND: &'static str = "reservation";

    fn validate(&self) -> Result<()> {
        ReserveStock::validate(self)
    }

    fn lines(&self) -> &[LineRequest] {
        &self.lines
    }

    fn write_batch<'c>(
        txn: &'c DatabaseTransaction,
        batch: &'c [Self],
    ) -> TxnFuture<'c, Vec<Result<reservation::Model>>> {
        Box::pin(reserve_batch_in(txn, batch))
    }

    fn count(_db: &Database, verdict: &Result<reservation::Model>) {
        crate::metrics::reservation(match verdict {
            Ok(_) => "held",
            Err(err) => err.code(),
        });
    }
}

/// Makes every reservation of `batch` (each already validated) inside the caller's write
/// transaction, deciding them in order, each against the stock its predecessors left;
/// the same steps as placement (see `placement`): read the catalog, claim the keys with
/// one multi-row insert, lock the levels, decide, write each level once. A key twice in
/// the batch is held by its first request; the later ones answer with its result. Returns
/// one verdict per request; an `Err` of the whole call means the transaction failed.
pub async fn reserve_batch_in(
    txn: &DatabaseTransaction,
    batch: &[ReserveStock],
) -> Result<Vec<Result<reservation::Model>>> {
    let requests: Vec<PlanRequest<'_>> = batch.iter().map(ReserveStock::plan_request).collect();
    let mut planner = Planner::prepare(txn, &requests).await?;
    let mut verdicts: Vec<Option<Result<reservation::Model>>> = (0..batch.len())
        .map(|index| planner.check(index).err().map(Err))
        .collect();
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut repeats = Vec::new();
    for (index, cmd) in batch.iter().enumerate() {
        if verdicts[index].is_some() {
            continue;
        }
        match first_of.entry(cmd.key.as_str()) {
            Entry::Occupied(first) => repeats.push((index, *first.get())),
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
        }
    }
    let mut clock = db::Clock::default();
    let mut firsts: Vec<&ReserveStock> = first_of.values().map(|&index| &batch[index]).collect();
    let claimed = if firsts.is_empty() {
        HashMap::new()
    } else {
        let now = clock.now(txn).await?;
        claim_keys(txn, &mut firsts, now).await?
    };
    let mut to_decide: Vec<usize> = Vec::new();
    for (key, &index) in &first_of {
        verdicts[index] = match claimed.get(*key) {
            Some(Claimed { created: true, .. }) => {
                to_decide.push(index);
                None
            }
            Some(Claimed { held, .. }) => Some(Ok(held.clone())),
            None => Some(Err(Error::Internal("a claimed reservation vanished".into()))),
        };
    }
    to_decide.sort_unstable();

    let no_holds = vec![None; batch.len()];
    planner.lock(txn, &requests, &to_decide, &no_holds, &mut clock).await?;
    let mut changes = Vec::new();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for &index in &to_decide {
        let Some(Claimed { held, .. }) = claimed.get(batch[index].key.as_str()) else {
            continue;
        };
        match planner.decide(index, &requests[index], None) {
            Ok(plan) => {
                let mut deltas: BTreeMap<i32, Delta> = BTreeMap::new();
                for allocation in &plan.allocations {
                    deltas.entry(allocation.level_id).or_default().reserved += allocation.quantity;
                }
                changes.extend(deltas.into_iter().map(|(level_id, delta)| Change {
                    level_id,
                    delta,
                    movement: Movement::reservation(MovementReason::Reservation, delta.reserved, held.id),
                }));
                rows.extend(plan.lines.iter().zip(&plan.allocations).map(|(line, allocation)| {
                    reservation_line::ActiveModel {
                        reservation_id: Set(held.id),
                        sku: Set(line.sku.to_string()),
                        inventory_level_id: Set(allocation.level_id),
                        stock_location_id: Set(allocation.stock_location_id),
                        quantity: Set(allocation.quantity),
                        ..Default::default()
                    }
                }));
                verdicts[index] = Some(Ok(held.clone()));
            }
            Err(err) => {
                failed.push(held.id);
                verdicts[index] = Some(Err(err));
            }
        }
    }
    levels::apply_changes(txn, planner.locked(), changes).await?;
    if !rows.is_empty() {
        reservation_line::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    if !failed.is_empty() {
        // A request that could not be held leaves no trace; a twin waiting on its key
        // then claims it afresh.
        reservation::Entity::delete_many()
            .filter(reservation::Column::Id.is_in(failed))
            .exec(txn)
            .await?;
    }
    for (index, first) in repeats {
        verdicts[index] = Some(match &verdicts[first] {
            Some(verdict) => verdict.clone(),
            None => Err(Error::Internal("a repeated reservation's first got no verdict".into())),
        });
    }
    Ok(verdicts
        .into_iter()
        .map(|verdict| verdict.unwrap_or_else(|| Err(Error::Internal("a reservation got no verdict".into()))))
        .collect())
}

/// A reservation row for a key: new (`created`) or the one that existed.
struct Claimed {
    held: reservation::Model,
    created: bool,
}

/// Claims each key of `requests` (distinct keys) with one multi-row insert, in key order
/// so that two transactions claiming overlapping keys cannot deadlock; a concurrent twin
/// waits on the unique key, then finds the row. Returns the rows by key.
async fn claim_keys(
    txn: &DatabaseTransaction,
    requests: &mut [&ReserveStock],
    now: DateTime<Utc>,
) -> Result<HashMap<String, Claimed>> {
    requests.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    let rows = requests.iter().map(|cmd| reservation::ActiveModel {
        key: Set(cmd.key.as_str().to_owned()),
        sales_channel_id: Set(cmd.sales_channel_id),
        shipping_option_id: Set(cmd.shipping_option_id),
        status: Set(ReservationStatus::Active),
        expires_at: Set(now + Duration::seconds(cmd.ttl_seconds)),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    });
    let inserted = reservation::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([reservation::Column::Key])
        .exec_with_returning_many(txn)
        .await?;
    let mut claimed: HashMap<String, Claimed> = match inserted {
        TryInsertResult::Inserted(rows) => rows
            .into_iter()
            .map(|held| (held.key.clone(), Claimed { held, created: true }))
            .collect(),
        TryInsertResult::Conflicted | TryInsertResult::Empty => HashMap::new(),
    };
    let existing: Vec<&str> = requests
        .iter()
        .map(|cmd| cmd.key.as_str())
        .filter(|key| !claimed.contains_key(*key))
        .collect();
    if !existing.is_empty() {
        // READ COMMITTED: this new statement sees the twins that made our inserts conflict.
        for held in reservation::Entity::find()
            .filter(reservation::Column::Key.is_in(existing))
            .all(txn)
            .await?
        {
            claimed.insert(held.key.clone(), Claimed { held, created: false });
        }
    }
    if claimed.len() != requests.len() {
        return Err(Error::Internal("the reservation for a claimed key vanished".into()));
    }
    Ok(claimed)
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
/// back, each in its own transaction. Returns how many it expired, or `None` when another
/// process is sweeping right now (one sweeper at a time: see `Database::unless_running_elsewhere`).
pub async fn expire_overdue(db: &Database) -> Result<Option<usize>> {
    db.unless_running_elsewhere(db::RESERVATION_SWEEP_LOCK, expire_overdue_here(db))
        .await?
        .transpose()
}

async fn expire_overdue_here(db: &Database) -> Result<usize> {
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
