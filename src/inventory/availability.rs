//! What a storefront may show: units available per sku over a channel's locations.
//!
//! A read, not a promise: placement re-checks under row locks. Levels are summed as
//! each level's `available` ([`available_units`], the one rule every reader uses), so one
//! backordered location never hides stock at another, and the result is never negative.

use std::collections::HashMap;

use entity::{inventory_item, inventory_level, sales_channel, sales_channel_location};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{allocation::available_units, holds, lookup, values::Sku};
use crate::{
    db::{self, Database},
    error::{Error, Result},
};

/// Most skus one availability call may ask for.
pub const MAX_SKUS: usize = 250;

/// Availability of one sku in one channel.
#[derive(Debug, Clone, PartialEq, Eq, async_graphql::SimpleObject)]
pub struct SkuAvailability {
    pub sku: String,
    /// Units that can be sold now (never negative).
    pub available: i32,
    pub in_stock: bool,
    /// True if any of the channel's levels for this sku allows backorder.
    pub backorderable: bool,
}

/// Availability of `skus` (in the order asked) through `channel_id`'s mapped locations.
pub async fn for_channel(db: &Database, channel_id: i32, skus: &[String]) -> Result<Vec<SkuAvailability>> {
    if skus.len() > MAX_SKUS {
        return Err(Error::bad_input(format!("at most {MAX_SKUS} skus per call")));
    }
    let conn = db.conn();
    lookup::by_id::<sales_channel::Entity>(conn, channel_id, "sales channel").await?;
    let location_ids: Vec<i32> = sales_channel_location::Entity::find()
        .filter(sales_channel_location::Column::SalesChannelId.eq(channel_id))
        .all(conn)
        .await?
        .into_iter()
        .map(|mapping| mapping.stock_location_id)
        .collect();
    // A malformed sku cannot name an item: it is simply unknown, like any other.
    let valid_skus = skus.iter().filter(|sku| Sku::parse(sku).is_ok());
    let items = inventory_item::Entity::find()
        .filter(inventory_item::Column::Sku.is_in(valid_skus))
        .all(conn)
        .await?;
    let sku_of_item: HashMap<i32, &str> = items.iter().map(|item| (item.id, item.sku.as_str())).collect();
    let levels = inventory_level::Entity::find()
        .filter(inventory_level::Column::InventoryItemId.is_in(sku_of_item.keys().copied()))
        .filter(inventory_level::Column::StockLocationId.is_in(location_ids))
        .all(conn)
        .await?;
    // Overdue reservations hold nothing, even before the sweep has marked them EXPIRED.
    let now = db::now(conn).await?;
    let lapsed = holds::overdue_holds(conn, levels.iter().map(|level| level.id), now, &[]).await?;
    let mut totals: HashMap<&str, (i64, bool)> = HashMap::new();
    for level in &levels {
        let lapsed = lapsed.get(&level.id).copied().unwrap_or_default();
        let entry = totals.entry(sku_of_item[&level.inventory_item_id]).or_default();
        entry.0 += i64::from(available_units(level.stocked_quantity, level.reserved_quantity, lapsed));
        entry.1 |= level.allow_backorder;
    }
    Ok(skus
        .iter()
        .map(|sku| {
            let (available, backorderable) = totals.get(sku.as_str()).copied().unwrap_or_default();
            let available = i32::try_from(available).unwrap_or(i32::MAX);
            SkuAvailability {
                sku: sku.clone(),
                available,
                in_stock: available > 0,
                backorderable,
            }
        })
        .collect())
}
