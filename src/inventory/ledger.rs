//! The stock ledger: one `stock_movement` row for every change of a level, written in the
//! same transaction as the change itself, so the ledger can never disagree with the level.
//!
//! Invariant (checked by the tests): for every level, the first movement's
//! `stocked_after - delta` plus the sum of all deltas equals the current stock.

use chrono::Utc;
use entity::{inventory_level, stock_movement, stock_movement::MovementReason};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

use crate::error::Result;

/// One change of one level, described by the level as it is after the change.
#[derive(Debug, Clone)]
pub struct Movement {
    pub reason: MovementReason,
    pub delta: i32,
    pub reserved_delta: i32,
    pub order_id: Option<i32>,
    pub reservation_id: Option<i32>,
    pub note: Option<String>,
}

impl Movement {
    /// A change of `stocked_quantity` only.
    pub fn stocked(reason: MovementReason, delta: i32) -> Self {
        Movement {
            reason,
            delta,
            reserved_delta: 0,
            order_id: None,
            reservation_id: None,
            note: None,
        }
    }

    /// A change of `reserved_quantity` only, made by a reservation.
    pub fn reservation(reason: MovementReason, reserved_delta: i32, reservation_id: i32) -> Self {
        Movement {
            reason,
            delta: 0,
            reserved_delta,
            order_id: None,
            reservation_id: Some(reservation_id),
            note: None,
        }
    }

    fn row(self, after: &inventory_level::Model) -> stock_movement::ActiveModel {
        stock_movement::ActiveModel {
            inventory_level_id: Set(after.id),
            delta: Set(self.delta),
            reserved_delta: Set(self.reserved_delta),
            reason: Set(self.reason),
            stocked_after: Set(after.stocked_quantity),
            reserved_after: Set(after.reserved_quantity),
            order_id: Set(self.order_id),
            reservation_id: Set(self.reservation_id),
            note: Set(self.note),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
    }
}

/// Records movements, each paired with the level as written by its change.
pub async fn record(
    txn: &impl ConnectionTrait,
    movements: impl IntoIterator<Item = (Movement, &inventory_level::Model)>,
) -> Result<()> {
    let rows: Vec<_> = movements
        .into_iter()
        .map(|(movement, after)| movement.row(after))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    stock_movement::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}
