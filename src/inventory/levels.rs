//! Locking levels and writing them: every write is version-guarded and recorded in the
//! ledger, in the caller's transaction. Shared by placement and reservations.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use entity::inventory_level;
use sea_orm::{
    ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{
    ledger::{self, Movement},
    values::MAX_STOCK,
};
use crate::error::{Error, Result};

use inventory_level::Column as Level;

/// Locks (`FOR UPDATE`) every level matching `condition`, in id order. Every path that
/// locks levels goes through here, so all of them lock in the same order and no two
/// transactions can wait on each other in a cycle.
pub async fn lock(txn: &DatabaseTransaction, condition: Condition) -> Result<Vec<inventory_level::Model>> {
    let started = std::time::Instant::now();
    let locked = inventory_level::Entity::find()
        .filter(condition)
        .order_by_asc(Level::Id)
        .lock_exclusive()
        .all(txn)
        .await;
    crate::metrics::lock_wait(started.elapsed());
    Ok(locked?)
}

/// A change of one level: how much stock and how much reservation it gains (or loses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    pub stocked: i32,
    pub reserved: i32,
}

/// Refuses a change that would take a level outside the range an admin may set
/// (`±MAX_STOCK` on hand, `0..=MAX_STOCK` reserved). Allocation already keeps orders and
/// holds inside it; this is the last line, so that no path can reach the columns' `i32`
/// limits and fail as an internal error.
fn check_bounds(read: &inventory_level::Model, delta: Delta) -> Result<()> {
    let stocked = i64::from(read.stocked_quantity) + i64::from(delta.stocked);
    let reserved = i64::from(read.reserved_quantity) + i64::from(delta.reserved);
    let bound = i64::from(MAX_STOCK);
    if stocked.abs() > bound || !(0..=bound).contains(&reserved) {
        return Err(Error::bad_input(format!(
            "this would take stock level {} beyond ±{MAX_STOCK} units (on hand {stocked}, reserved {reserved})",
            read.id
        )));
    }
    Ok(())
}

/// One order's (or hold's) change of one level, and how the ledger records it.
#[derive(Debug, Clone)]
pub struct Change {
    pub level_id: i32,
    pub delta: Delta,
    pub movement: Movement,
}

/// Applies `deltas` (by level id) to levels the transaction has locked, each guarded by
/// the version it read, each with the movement `describe` gives it.
pub async fn apply(
    txn: &DatabaseTransaction,
    locked: &[inventory_level::Model],
    deltas: &BTreeMap<i32, Delta>,
    describe: impl Fn(Delta) -> Movement,
) -> Result<()> {
    let changes = deltas
        .iter()
        .map(|(&level_id, &delta)| Change {
            level_id,
            delta,
            movement: describe(delta),
        })
        .collect();
    apply_changes(txn, locked, changes).await?;
    Ok(())
}

/// Applies `changes` (in order; several may touch one level) to levels the transaction
/// has locked. Each level is written once, with the summed delta, guarded by the version
/// it read; its version rises by one per change, so it keeps counting changes however
/// they were combined. Each change gets its own ledger movement, with the level as that
/// change left it. Returns each change's movement with the level as it left it (changes
/// that change nothing are skipped).
pub async fn apply_changes(
    txn: &DatabaseTransaction,
    locked: &[inventory_level::Model],
    changes: Vec<Change>,
) -> Result<Vec<(Movement, inventory_level::Model)>> {
    let changes: Vec<Change> = changes
        .into_iter()
        .filter(|change| change.delta != Delta::default())
        .collect();
    let mut totals: BTreeMap<i32, (Delta, i32)> = BTreeMap::new();
    for change in &changes {
        let (total, count) = totals.entry(change.level_id).or_default();
        total.stocked += change.delta.stocked;
        total.reserved += change.delta.reserved;
        *count += 1;
    }
    let mut running: HashMap<i32, inventory_level::Model> = HashMap::with_capacity(totals.len());
    for (&level_id, &(total, count)) in &totals {
        let read = locked
            .iter()
            .find(|level| level.id == level_id)
            .ok_or_else(|| Error::Internal(format!("level {level_id} written without its lock")))?;
        check_bounds(read, total)?;
        inventory_level::Entity::update_many()
            .col_expr(
                Level::StockedQuantity,
                Expr::col(Level::StockedQuantity).add(total.stocked),
            )
            .col_expr(
                Level::ReservedQuantity,
                Expr::col(Level::ReservedQuantity).add(total.reserved),
            )
            .col_expr(Level::Version, Expr::col(Level::Version).add(count))
            .col_expr(Level::UpdatedAt, Expr::value(Utc::now()))
            .filter(Level::Id.eq(level_id))
            .filter(Level::Version.eq(read.version))
            .exec_with_returning(txn)
            .await?
            .pop()
            // Someone wrote the level without holding its lock: start over from a fresh read.
            .ok_or(Error::Contention)?;
        running.insert(level_id, read.clone());
    }
    let mut applied = Vec::with_capacity(changes.len());
    for change in changes {
        let level = running
            .get_mut(&change.level_id)
            .ok_or_else(|| Error::Internal("a change lost its level".into()))?;
        level.stocked_quantity += change.delta.stocked;
        level.reserved_quantity += change.delta.reserved;
        level.version += 1;
        applied.push((change.movement, level.clone()));
    }
    ledger::record(txn, applied.iter().map(|(movement, level)| (movement.clone(), level))).await?;
    Ok(applied)
}
