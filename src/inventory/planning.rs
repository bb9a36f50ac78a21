//! Deciding where each line of an order or reservation is served from, under lock.
//!
//! Shared by placement and reservations, which follow the same location rules: resolve
//! the candidate locations and items, lock every level that may be touched (see
//! [`levels::lock`]), work out how much of each level is really free, and [`allocate`].
//!
//! "Free" is [`free_units`]: `stocked - reserved`, where `reserved` leaves out two kinds
//! of hold: those of ACTIVE reservations already past `expires_at` at the transaction's
//! `now` (they hold nothing, even before the sweep marks them EXPIRED), and the hold of
//! the reservation this order is committing (its units are the order's own). The two
//! never overlap: the reservation being committed was checked to be live at the same
//! `now`, and is never counted as lapsed to itself.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{inventory_item, inventory_level, reservation_line, sales_channel_location, shipping_option};
use sea_orm::{ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder};

use super::{
    allocation::{Allocation, Candidate, LineCandidates, allocate, free_units},
    levels,
    placement::LineRequest,
    reservations,
    values::Sku,
};
use crate::error::{Error, Result};

/// The decision for every line, and what it was made from.
pub struct Plan {
    pub lines: Vec<LineCandidates>,
    pub allocations: Vec<Allocation>,
    pub locked: Vec<inventory_level::Model>,
    pub items: HashMap<Sku, inventory_item::Model>,
}

/// The hold an order is committing: the reservation's id and its lines, in the order held.
#[derive(Debug, Clone, Copy)]
pub struct OwnHold<'a> {
    pub reservation_id: i32,
    pub lines: &'a [reservation_line::Model],
}

/// Locks and decides `lines` for a channel (and shipping option), with expiry decided at
/// `now`. With `own_hold`, a line whose sku the reservation holds is served from the
/// levels it holds that sku at (in the order held), whatever the rules would choose now.
pub async fn plan(
    txn: &DatabaseTransaction,
    channel_id: i32,
    shipping: Option<&shipping_option::Model>,
    lines: &[LineRequest],
    own_hold: Option<OwnHold<'_>>,
    now: DateTime<Utc>,
) -> Result<Plan> {
    let (own_reservation, own_hold) = match own_hold {
        Some(hold) => (Some(hold.reservation_id), hold.lines),
        None => (None, &[][..]),
    };
    let locations = candidate_locations(txn, channel_id, shipping).await?;
    let items = items_by_sku(txn, lines).await?;
    let item_ids: Vec<i32> = items.values().map(|item| item.id).collect();
    let held_level_ids: Vec<i32> = own_hold.iter().map(|line| line.inventory_level_id).collect();
    let locked = levels::lock(
        txn,
        Condition::any()
            .add(
                Condition::all()
                    .add(inventory_level::Column::InventoryItemId.is_in(item_ids))
                    .add(inventory_level::Column::StockLocationId.is_in(locations.clone())),
            )
            .add(inventory_level::Column::Id.is_in(held_level_ids)),
    )
    .await?;
    let mut not_held =
        reservations::overdue_holds(txn, locked.iter().map(|level| level.id), now, own_reservation).await?;
    for line in own_hold {
        *not_held.entry(line.inventory_level_id).or_default() += line.quantity;
    }
    let candidate = |level: &inventory_level::Model| Candidate {
        level_id: level.id,
        stock_location_id: level.stock_location_id,
        free: free_units(
            level.stocked_quantity,
            level.reserved_quantity,
            not_held.get(&level.id).copied().unwrap_or_default(),
        ),
        allow_backorder: level.allow_backorder,
    };
    let lines: Vec<LineCandidates> = lines
        .iter()
        .map(|line| {
            let item_id = items[&line.sku].id;
            let mut held_levels: Vec<i32> = Vec::new();
            for held in own_hold.iter().filter(|held| held.sku == line.sku.as_str()) {
                if !held_levels.contains(&held.inventory_level_id) {
                    held_levels.push(held.inventory_level_id);
                }
            }
            let candidates = if held_levels.is_empty() {
                locations
                    .iter()
                    .filter_map(|location| {
                        locked
                            .iter()
                            .find(|level| level.inventory_item_id == item_id && level.stock_location_id == *location)
                    })
                    .map(candidate)
                    .collect()
            } else {
                held_levels
                    .iter()
                    .filter_map(|id| locked.iter().find(|level| level.id == *id))
                    .map(candidate)
                    .collect()
            };
            LineCandidates {
                sku: line.sku.clone(),
                quantity: line.quantity,
                candidates,
            }
        })
        .collect();
    let allocations = allocate(&lines)?;
    Ok(Plan {
        lines,
        allocations,
        locked,
        items,
    })
}

/// Location ids in preference order: the shipping option's, then by channel priority.
async fn candidate_locations(
    txn: &DatabaseTransaction,
    channel_id: i32,
    shipping: Option<&shipping_option::Model>,
) -> Result<Vec<i32>> {
    let mapped: Vec<i32> = sales_channel_location::Entity::find()
        .filter(sales_channel_location::Column::SalesChannelId.eq(channel_id))
        .order_by_asc(sales_channel_location::Column::Priority)
        .order_by_asc(sales_channel_location::Column::StockLocationId)
        .all(txn)
        .await?
        .into_iter()
        .map(|mapping| mapping.stock_location_id)
        .collect();
    let Some(shipping) = shipping else {
        return Ok(mapped);
    };
    if !mapped.contains(&shipping.stock_location_id) {
        return Err(Error::LocationUnmapped(format!(
            "shipping option {} ships from stock location {}, which sales channel {channel_id} does not sell from",
            shipping.id, shipping.stock_location_id
        )));
    }
    let mut ordered = vec![shipping.stock_location_id];
    ordered.extend(
        mapped
            .into_iter()
            .filter(|location| *location != shipping.stock_location_id),
    );
    Ok(ordered)
}

async fn items_by_sku(txn: &DatabaseTransaction, lines: &[LineRequest]) -> Result<HashMap<Sku, inventory_item::Model>> {
    let skus: Vec<&str> = lines.iter().map(|line| line.sku.as_str()).collect();
    let found: HashMap<String, inventory_item::Model> = inventory_item::Entity::find()
        .filter(inventory_item::Column::Sku.is_in(skus))
        .all(txn)
        .await?
        .into_iter()
        .map(|item| (item.sku.clone(), item))
        .collect();
    lines
        .iter()
        .map(|line| match found.get(line.sku.as_str()) {
            Some(item) => Ok((line.sku.clone(), item.clone())),
            None => Err(Error::not_found(format!("inventory item {}", line.sku))),
        })
        .collect()
}
