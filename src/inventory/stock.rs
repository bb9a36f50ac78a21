//! Admin edits of stock levels: `setStockLevel` (absolute) and `adjustStock` (relative).
//!
//! Both follow the version rule of the contract: an `expected_version` that is not the
//! current one fails with `VERSION_CONFLICT` and changes nothing; every successful write
//! bumps `version` by one and records a ledger movement in the same transaction.
//!
//! Neither reads a quantity and writes it back computed in Rust. `adjust_stock` is one
//! conditional `UPDATE … SET stocked = stocked + delta … RETURNING`, so concurrent
//! adjustments serialize on the row and none is lost. `set_stock_level` needs the old
//! quantity for the ledger's delta, so it first locks the row (`FOR UPDATE`; SQLite's
//! `BEGIN IMMEDIATE` already excludes other writers) and then writes guarded by version.

use chrono::Utc;
use entity::{inventory_level, stock_movement::MovementReason};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{
    ledger::{self, Movement},
    lookup,
    values::{MAX_STOCK, Sku},
};
use crate::{
    db::Database,
    error::{Error, Result, is_unique_violation},
};

use inventory_level::Column as Level;

/// Set a level to an absolute quantity (creating it if missing).
#[derive(Debug, Clone)]
pub struct SetStockLevel {
    pub sku: Sku,
    pub stock_location_id: i32,
    pub stocked_quantity: i32,
    /// `None` keeps the current setting (`false` for a new level).
    pub allow_backorder: Option<bool>,
    pub expected_version: Option<i32>,
}

impl SetStockLevel {
    /// Sets a level without the version check: for seeding (demo data, fixtures), where
    /// nobody else can be writing the level.
    pub fn unguarded(sku: Sku, stock_location_id: i32, stocked_quantity: i32, allow_backorder: bool) -> Self {
        SetStockLevel {
            sku,
            stock_location_id,
            stocked_quantity,
            allow_backorder: Some(allow_backorder),
            expected_version: None,
        }
    }
}

/// Change a level by a relative amount.
#[derive(Debug, Clone)]
pub struct AdjustStock {
    pub sku: Sku,
    pub stock_location_id: i32,
    pub delta: i32,
    pub note: Option<String>,
    pub expected_version: Option<i32>,
}

/// Applies a [`SetStockLevel`] in its own write transaction.
pub async fn set_stock_level(db: &Database, cmd: &SetStockLevel) -> Result<inventory_level::Model> {
    db.write(cmd, |txn, cmd| Box::pin(set_stock_level_in(txn, cmd))).await
}

/// Applies an [`AdjustStock`] in its own write transaction.
pub async fn adjust_stock(db: &Database, cmd: &AdjustStock) -> Result<inventory_level::Model> {
    db.write(cmd, |txn, cmd| Box::pin(adjust_stock_in(txn, cmd))).await
}

fn check_backorder_rule(stocked_quantity: i32, allow_backorder: bool) -> Result<()> {
    if stocked_quantity < 0 && !allow_backorder {
        return Err(Error::bad_input(
            "stock can only be negative on a level that allows backorder",
        ));
    }
    Ok(())
}

/// [`set_stock_level`] inside the caller's write transaction.
pub async fn set_stock_level_in(txn: &DatabaseTransaction, cmd: &SetStockLevel) -> Result<inventory_level::Model> {
    let item = lookup::item_by_sku(txn, &cmd.sku).await?;
    lookup::location(txn, cmd.stock_location_id).await?;
    let current = inventory_level::Entity::find()
        .filter(Level::InventoryItemId.eq(item.id))
        .filter(Level::StockLocationId.eq(cmd.stock_location_id))
        .lock_exclusive()
        .one(txn)
        .await?;
    let Some(current) = current else {
        return create_level(txn, cmd, item.id).await;
    };
    if let Some(expected) = cmd.expected_version
        && expected != current.version
    {
        return Err(Error::VersionConflict {
            expected,
            current: current.version,
        });
    }
    let allow_backorder = cmd.allow_backorder.unwrap_or(current.allow_backorder);
    check_backorder_rule(cmd.stocked_quantity, allow_backorder)?;
    let written = inventory_level::Entity::update_many()
        .col_expr(Level::StockedQuantity, Expr::value(cmd.stocked_quantity))
        .col_expr(Level::AllowBackorder, Expr::value(allow_backorder))
        .col_expr(Level::Version, Expr::col(Level::Version).add(1))
        .col_expr(Level::UpdatedAt, Expr::value(Utc::now()))
        .filter(Level::Id.eq(current.id))
        .filter(Level::Version.eq(current.version))
        .exec_with_returning(txn)
        .await?
        .pop();
    // Unreachable while the row lock holds; if it ever fails, the write is refused
    // rather than applied on top of a change this transaction did not see.
    let Some(written) = written else {
        return Err(version_conflict(txn, current.id, current.version).await);
    };
    let delta = written.stocked_quantity - current.stocked_quantity;
    ledger::record(txn, [(Movement::stocked(MovementReason::Set, delta), &written)]).await?;
    Ok(written)
}

async fn create_level(txn: &DatabaseTransaction, cmd: &SetStockLevel, item_id: i32) -> Result<inventory_level::Model> {
    if let Some(expected) = cmd.expected_version.filter(|version| *version != 0) {
        return Err(Error::VersionConflict { expected, current: 0 });
    }
    let allow_backorder = cmd.allow_backorder.unwrap_or(false);
    check_backorder_rule(cmd.stocked_quantity, allow_backorder)?;
    let now = Utc::now();
    let created = inventory_level::ActiveModel {
        inventory_item_id: Set(item_id),
        stock_location_id: Set(cmd.stock_location_id),
        stocked_quantity: Set(cmd.stocked_quantity),
        reserved_quantity: Set(0),
        allow_backorder: Set(allow_backorder),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    // A concurrent request created the level first: start over, and the retry takes
    // the "level exists" path with its version check.
    .map_err(|err| {
        if is_unique_violation(&err) {
            Error::Contention
        } else {
            err.into()
        }
    })?;
    let movement = Movement::stocked(MovementReason::Set, created.stocked_quantity);
    ledger::record(txn, [(movement, &created)]).await?;
    Ok(created)
}

async fn adjust_stock_in(txn: &DatabaseTransaction, cmd: &AdjustStock) -> Result<inventory_level::Model> {
    if cmd.delta == 0 {
        return Err(Error::bad_input("delta must not be zero"));
    }
    let item = lookup::item_by_sku(txn, &cmd.sku).await?;
    lookup::location(txn, cmd.stock_location_id).await?;
    let after = Expr::col(Level::StockedQuantity).add(cmd.delta);
    let mut update = inventory_level::Entity::update_many()
        .col_expr(Level::StockedQuantity, after.clone())
        .col_expr(Level::Version, Expr::col(Level::Version).add(1))
        .col_expr(Level::UpdatedAt, Expr::value(Utc::now()))
        .filter(Level::InventoryItemId.eq(item.id))
        .filter(Level::StockLocationId.eq(cmd.stock_location_id))
        .filter(after.clone().between(-MAX_STOCK, MAX_STOCK))
        .filter(Condition::any().add(Level::AllowBackorder.eq(true)).add(after.gte(0)));
    if let Some(expected) = cmd.expected_version {
        update = update.filter(Level::Version.eq(expected));
    }
    // One statement decides and writes: PostgreSQL re-checks the WHERE clause against
    // the latest committed row after waiting for its lock, so no adjustment is lost.
    let Some(written) = update.exec_with_returning(txn).await?.pop() else {
        return Err(explain_refused_adjustment(txn, cmd, item.id).await);
    };
    let movement = Movement {
        note: cmd.note.clone(),
        ..Movement::stocked(MovementReason::Adjustment, cmd.delta)
    };
    ledger::record(txn, [(movement, &written)]).await?;
    Ok(written)
}

/// Says why the guarded adjustment matched no row.
async fn explain_refused_adjustment(txn: &DatabaseTransaction, cmd: &AdjustStock, item_id: i32) -> Error {
    let level = inventory_level::Entity::find()
        .filter(Level::InventoryItemId.eq(item_id))
        .filter(Level::StockLocationId.eq(cmd.stock_location_id))
        .one(txn)
        .await;
    match level {
        Err(err) => err.into(),
        Ok(None) => Error::not_found(format!(
            "stock level for sku {} at stock location {}",
            cmd.sku, cmd.stock_location_id
        )),
        Ok(Some(level)) => match cmd.expected_version {
            Some(expected) if expected != level.version => Error::VersionConflict {
                expected,
                current: level.version,
            },
            _ if (i64::from(level.stocked_quantity) + i64::from(cmd.delta)).abs() > i64::from(MAX_STOCK) => {
                Error::bad_input(format!("stock must stay within ±{MAX_STOCK}"))
            }
            _ => Error::bad_input(format!(
                "adjusting by {} would take stock below zero on a level that does not allow backorder",
                cmd.delta
            )),
        },
    }
}

/// The `VERSION_CONFLICT` for a level whose guarded write matched nothing.
pub async fn version_conflict(conn: &impl ConnectionTrait, level_id: i32, expected: i32) -> Error {
    match inventory_level::Entity::find_by_id(level_id).one(conn).await {
        Ok(Some(level)) => Error::VersionConflict {
            expected,
            current: level.version,
        },
        Ok(None) => Error::not_found(format!("stock level {level_id}")),
        Err(err) => err.into(),
    }
}
