//! Deciding where each line of an order or reservation is served from, under lock, for
//! one request or a batch of them.
//!
//! Shared by placement and reservations, which follow the same location rules, in two
//! steps around the caller's own claims:
//! 1. [`Planner::prepare`] reads what the requests name (channels with their mappings,
//!    shipping options, items) with one statement each, whatever the batch size; a request
//!    naming something unknown gets its own error here, before anything is claimed.
//! 2. [`Planner::lock`] locks every level the prepared requests may touch (see
//!    [`levels::lock`]) and works out how much of each is really free; then
//!    [`Planner::decide`] runs the pure [`allocate`] for one request after another, each
//!    against the stock its predecessors left.
//!
//! "Free" is [`free_units`]: `stocked - reserved`, where `reserved` leaves out two kinds
//! of hold: those of ACTIVE reservations already past `expires_at` at the transaction's
//! `now` (they hold nothing, even before the sweep marks them EXPIRED), and the hold of
//! the reservation a request is committing (its units are that request's own). The two
//! never overlap: a reservation being committed was checked to be live at the same `now`,
//! and is never counted as lapsed.

use std::collections::{HashMap, HashSet};

use entity::{
    inventory_item, inventory_level, reservation_line, sales_channel, sales_channel_location, shipping_option,
};
use sea_orm::{
    ColumnTrait, Condition, DatabaseTransaction, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationDef,
};

use super::{
    allocation::{Allocation, Candidate, LineCandidates, allocate, free_units},
    holds, levels,
    values::LineRequest,
};
use crate::{
    db::Clock,
    error::{Error, Result},
};

/// The hold a request is committing: the reservation's id and its lines, in the order held.
#[derive(Debug, Clone, Copy)]
pub struct OwnHold<'a> {
    pub reservation_id: i32,
    pub lines: &'a [reservation_line::Model],
}

/// What one order or reservation asks for.
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest<'a> {
    pub sales_channel_id: i32,
    pub shipping_option_id: Option<i32>,
    pub lines: &'a [LineRequest],
}

/// The decision for every line of one request, and the item of each line.
#[derive(Debug, Clone)]
pub struct Decision {
    pub lines: Vec<LineCandidates>,
    pub allocations: Vec<Allocation>,
    pub item_ids: Vec<i32>,
}

/// The catalog a batch of requests names, then its locked levels and their free stock.
pub struct Planner {
    /// Per request: its candidate locations in preference order, or why it cannot be placed.
    locations: Vec<Result<Vec<i32>>>,
    items: HashMap<String, inventory_item::Model>,
    locked: Vec<inventory_level::Model>,
    /// Free units per locked level, as the requests decided so far left them.
    free: HashMap<i32, i64>,
}

impl Planner {
    /// Reads the channels (with their mappings), shipping options and items `requests`
    /// name, without locking anything. See [`Planner::check`] for each request's verdict.
    pub async fn prepare(txn: &DatabaseTransaction, requests: &[PlanRequest<'_>]) -> Result<Planner> {
        let channel_ids: HashSet<i32> = requests.iter().map(|request| request.sales_channel_id).collect();
        // Channels and their mappings in one statement (a round trip fewer in every
        // placement): a channel's row comes once per mapped location, or once with none.
        let mappings: RelationDef = sales_channel_location::Entity::belongs_to(sales_channel::Entity)
            .from(sales_channel_location::Column::SalesChannelId)
            .to(sales_channel::Column::Id)
            .into();
        let mut channels: HashSet<i32> = HashSet::new();
        let mut mapped: HashMap<i32, Vec<i32>> = HashMap::new();
        for (channel_id, location_id) in sales_channel::Entity::find()
            .select_only()
            .column(sales_channel::Column::Id)
            .column(sales_channel_location::Column::StockLocationId)
            .join_rev(JoinType::LeftJoin, mappings)
            .filter(sales_channel::Column::Id.is_in(channel_ids))
            .order_by_asc(sales_channel_location::Column::Priority)
            .order_by_asc(sales_channel_location::Column::StockLocationId)
            .into_tuple::<(i32, Option<i32>)>()
            .all(txn)
            .await?
        {
            channels.insert(channel_id);
            if let Some(location_id) = location_id {
                mapped.entry(channel_id).or_default().push(location_id);
            }
        }
        let shipping_ids: HashSet<i32> = requests
            .iter()
            .filter_map(|request| request.shipping_option_id)
            .collect();
        let shipping: HashMap<i32, shipping_option::Model> = if shipping_ids.is_empty() {
            HashMap::new()
        } else {
            shipping_option::Entity::find()
                .filter(shipping_option::Column::Id.is_in(shipping_ids))
                .all(txn)
                .await?
                .into_iter()
                .map(|option| (option.id, option))
                .collect()
        };
        let skus: HashSet<&str> = requests
            .iter()
            .flat_map(|request| request.lines.iter().map(|line| line.sku.as_str()))
            .collect();
        let items = inventory_item::Entity::find()
            .filter(inventory_item::Column::Sku.is_in(skus))
            .all(txn)
            .await?
            .into_iter()
            .map(|item| (item.sku.clone(), item))
            .collect();
        let locations = requests
            .iter()
            .map(|request| candidate_locations(request, &channels, &mapped, &shipping))
            .collect();
        Ok(Planner {
            locations,
            items,
            locked: Vec::new(),
            free: HashMap::new(),
        })
    }

    /// Whether request `index` names a channel (and shipping option) that exist, the
    /// option at a location the channel sells from; if not, the error it fails with. (Its
    /// skus are checked by [`Planner::decide`], after the caller's claim: a repeated
    /// order is answered with the order it made, whatever else it says.)
    pub fn check(&self, index: usize) -> Result<()> {
        self.locations[index].as_ref().map(|_| ()).map_err(Clone::clone)
    }

    fn item_id(&self, sku: &str) -> Result<i32> {
        self.items
            .get(sku)
            .map(|item| item.id)
            .ok_or_else(|| Error::not_found(format!("inventory item {sku}")))
    }

    /// Locks every level the requests `to_decide` (which passed [`Planner::check`]) may
    /// touch, plus the levels of their `holds` (aligned with `requests`), and reads their
    /// free stock at the transaction's `now`.
    pub async fn lock(
        &mut self,
        txn: &DatabaseTransaction,
        requests: &[PlanRequest<'_>],
        to_decide: &[usize],
        holds: &[Option<OwnHold<'_>>],
        clock: &mut Clock,
    ) -> Result<()> {
        let mut item_ids = HashSet::new();
        let mut location_ids = HashSet::new();
        for &index in to_decide {
            if let Ok(locations) = &self.locations[index] {
                location_ids.extend(locations.iter().copied());
                item_ids.extend(
                    requests[index]
                        .lines
                        .iter()
                        .filter_map(|line| self.item_id(line.sku.as_str()).ok()),
                );
            }
        }
        let holds: Vec<&OwnHold<'_>> = to_decide.iter().filter_map(|&index| holds[index].as_ref()).collect();
        let held_level_ids: Vec<i32> = holds
            .iter()
            .flat_map(|hold| hold.lines.iter().map(|line| line.inventory_level_id))
            .collect();
        if item_ids.is_empty() && held_level_ids.is_empty() {
            return Ok(());
        }
        self.locked = levels::lock(
            txn,
            Condition::any()
                .add(
                    Condition::all()
                        .add(inventory_level::Column::InventoryItemId.is_in(item_ids))
                        .add(inventory_level::Column::StockLocationId.is_in(location_ids)),
                )
                .add(inventory_level::Column::Id.is_in(held_level_ids)),
        )
        .await?;
        // Only a level with units reserved can have lapsed holds: in a rush without
        // reservations this skips a statement (and the clock) altogether.
        let reserved: Vec<i32> = self
            .locked
            .iter()
            .filter(|level| level.reserved_quantity != 0)
            .map(|level| level.id)
            .collect();
        let lapsed = if reserved.is_empty() {
            HashMap::new()
        } else {
            let committing: Vec<i32> = holds.iter().map(|hold| hold.reservation_id).collect();
            holds::overdue_holds(txn, reserved, clock.now(txn).await?, &committing).await?
        };
        self.free = self
            .locked
            .iter()
            .map(|level| {
                let lapsed = lapsed.get(&level.id).copied().unwrap_or_default();
                (
                    level.id,
                    free_units(level.stocked_quantity, level.reserved_quantity, lapsed),
                )
            })
            .collect();
        Ok(())
    }

    /// Decides request `index` against the stock left by the requests decided before it;
    /// on success its allocations (and the hold it commits) count for the ones after it.
    /// With `own_hold`, a line whose sku the reservation holds is served from the levels it
    /// holds that sku at (in the order held), whatever the rules would choose now.
    pub fn decide(
        &mut self,
        index: usize,
        request: &PlanRequest<'_>,
        own_hold: Option<OwnHold<'_>>,
    ) -> Result<Decision> {
        let locations = self.locations[index].as_ref().map_err(Clone::clone)?;
        let item_ids = request
            .lines
            .iter()
            .map(|line| self.item_id(line.sku.as_str()))
            .collect::<Result<Vec<i32>>>()?;
        let own_lines = own_hold.map(|hold| hold.lines).unwrap_or_default();
        let mut own_units: HashMap<i32, i64> = HashMap::new();
        for line in own_lines {
            *own_units.entry(line.inventory_level_id).or_default() += i64::from(line.quantity);
        }
        let candidate = |level: &inventory_level::Model| Candidate {
            level_id: level.id,
            stock_location_id: level.stock_location_id,
            free: self.free.get(&level.id).copied().unwrap_or_default()
                + own_units.get(&level.id).copied().unwrap_or_default(),
            allow_backorder: level.allow_backorder,
        };
        let lines: Vec<LineCandidates> = request
            .lines
            .iter()
            .zip(&item_ids)
            .map(|(line, &item_id)| {
                let mut held_levels: Vec<i32> = Vec::new();
                for held in own_lines.iter().filter(|held| held.sku == line.sku.as_str()) {
                    if !held_levels.contains(&held.inventory_level_id) {
                        held_levels.push(held.inventory_level_id);
                    }
                }
                let candidates = if held_levels.is_empty() {
                    locations
                        .iter()
                        .filter_map(|location| {
                            self.locked.iter().find(|level| {
                                level.inventory_item_id == item_id && level.stock_location_id == *location
                            })
                        })
                        .map(candidate)
                        .collect()
                } else {
                    held_levels
                        .iter()
                        .filter_map(|id| self.locked.iter().find(|level| level.id == *id))
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
        for allocation in &allocations {
            *self.free.entry(allocation.level_id).or_default() -= i64::from(allocation.quantity);
        }
        for (level_id, units) in own_units {
            *self.free.entry(level_id).or_default() += units;
        }
        Ok(Decision {
            lines,
            allocations,
            item_ids,
        })
    }

    /// The levels [`Planner::lock`] locked, as read.
    pub fn locked(&self) -> &[inventory_level::Model] {
        &self.locked
    }
}

/// Location ids in preference order: the shipping option's, then by channel priority.
fn candidate_locations(
    request: &PlanRequest<'_>,
    channels: &HashSet<i32>,
    mapped: &HashMap<i32, Vec<i32>>,
    shipping: &HashMap<i32, shipping_option::Model>,
) -> Result<Vec<i32>> {
    let channel_id = request.sales_channel_id;
    if !channels.contains(&channel_id) {
        return Err(Error::not_found(format!("sales channel {channel_id}")));
    }
    let mapped = mapped.get(&channel_id).cloned().unwrap_or_default();
    let Some(shipping_id) = request.shipping_option_id else {
        return Ok(mapped);
    };
    let shipping = shipping
        .get(&shipping_id)
        .ok_or_else(|| Error::not_found(format!("shipping option {shipping_id}")))?;
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
