//! Inventory items, their stock levels and the stock ledger; the admin stock edits.

use std::collections::HashMap;

use async_graphql::{Context, ID, InputObject, Object, Result, connection::Connection};
use chrono::{DateTime, Utc};
use entity::{inventory_item, inventory_level, stock_movement};
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};

use super::{
    Need,
    channels::load_location,
    dangling,
    enums::MovementReason,
    loaders,
    loaders::{ItemById, LapsedHoldsOfLevel, LevelsOfItem},
    locations::StockLocation,
    pagination::{Listing, Page},
    parse_id, state, to_id,
};
use crate::auth::Permission;
use crate::{
    error::Error,
    inventory::{
        allocation::available_units,
        catalog,
        stock::{self, AdjustStock, SetStockLevel},
        values::{Name, Sku, check_stock_bounds},
    },
};

/// A stock-keeping unit.
pub struct InventoryItem(pub inventory_item::Model);

#[Object]
impl InventoryItem {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }

    async fn sku(&self) -> &str {
        &self.0.sku
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    /// Stock of this item at each location that has a level for it.
    async fn levels(&self, ctx: &Context<'_>) -> Result<Vec<InventoryLevel>> {
        let levels = loaders(ctx).load_one(LevelsOfItem(self.0.id)).await?;
        Ok(levels.unwrap_or_default().into_iter().map(InventoryLevel).collect())
    }
}

/// Stock of one item at one location.
pub struct InventoryLevel(pub inventory_level::Model);

#[Object]
impl InventoryLevel {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }

    async fn item(&self, ctx: &Context<'_>) -> Result<InventoryItem> {
        let id = self.0.inventory_item_id;
        let item = loaders(ctx).load_one(ItemById(id)).await?;
        Ok(InventoryItem(item.ok_or_else(|| dangling("inventory item", id))?))
    }

    async fn location(&self, ctx: &Context<'_>) -> Result<StockLocation> {
        load_location(ctx, self.0.stock_location_id).await
    }

    /// Units on hand; negative when backordered.
    async fn stocked_quantity(&self) -> i32 {
        self.0.stocked_quantity
    }

    /// Units held by active reservations.
    async fn reserved_quantity(&self) -> i32 {
        self.0.reserved_quantity
    }

    async fn allow_backorder(&self) -> bool {
        self.0.allow_backorder
    }

    /// Bumped by every write; pass it as `expectedVersion` to edit safely.
    async fn version(&self) -> i32 {
        self.0.version
    }

    /// Units free to sell: `max(stockedQuantity - reservedQuantity, 0)`, where units held
    /// by reservations already past their `expiresAt` count as free (they hold nothing,
    /// even before the sweep marks them EXPIRED). The same rule as `availability`.
    async fn available(&self, ctx: &Context<'_>) -> Result<i32> {
        // Only a level that holds something can hold something lapsed.
        let lapsed = if self.0.reserved_quantity == 0 {
            None
        } else {
            loaders(ctx).load_one(LapsedHoldsOfLevel(self.0.id)).await?
        };
        Ok(available_units(
            self.0.stocked_quantity,
            self.0.reserved_quantity,
            lapsed.unwrap_or_default(),
        ))
    }
}

/// One change of a level, from the stock ledger.
pub struct StockMovement {
    row: stock_movement::Model,
    sku: String,
    location_id: i32,
}

#[Object]
impl StockMovement {
    async fn id(&self) -> ID {
        to_id(self.row.id)
    }

    async fn sku(&self) -> &str {
        &self.sku
    }

    async fn location(&self, ctx: &Context<'_>) -> Result<StockLocation> {
        load_location(ctx, self.location_id).await
    }

    /// Change of `stockedQuantity`.
    async fn delta(&self) -> i32 {
        self.row.delta
    }

    /// Change of `reservedQuantity`.
    async fn reserved_delta(&self) -> i32 {
        self.row.reserved_delta
    }

    async fn reason(&self) -> MovementReason {
        self.row.reason.into()
    }

    async fn stocked_after(&self) -> i32 {
        self.row.stocked_after
    }

    async fn reserved_after(&self) -> i32 {
        self.row.reserved_after
    }

    async fn order_id(&self) -> Option<ID> {
        self.row.order_id.map(to_id)
    }

    async fn reservation_id(&self) -> Option<ID> {
        self.row.reservation_id.map(to_id)
    }

    /// Free text given with an adjustment.
    async fn note(&self) -> Option<&str> {
        self.row.note.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
}

#[derive(Default)]
pub struct InventoryQuery;

#[Object]
impl InventoryQuery {
    /// The item with this sku, or null.
    #[graphql(guard = "Need(Permission::ReadStock)")]
    async fn inventory_item(&self, ctx: &Context<'_>, sku: String) -> Result<Option<InventoryItem>> {
        let item = inventory_item::Entity::find()
            .filter(inventory_item::Column::Sku.eq(sku))
            .one(state(ctx).db.conn())
            .await
            .map_err(Error::from)?;
        Ok(item.map(InventoryItem))
    }

    /// Items, oldest first; with `search`, only those whose sku or title contains it
    /// (ignoring ASCII case).
    #[graphql(
        guard = "Need(Permission::ReadStock)",
        complexity = "super::page_cost(first, child_complexity)"
    )]
    async fn inventory_items(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, InventoryItem>> {
        let page = Page::parse(first, after.as_deref())?;
        let mut query = inventory_item::Entity::find();
        if let Some(search) = search.as_deref().filter(|search| !search.is_empty()) {
            query = query.filter(contains_ignoring_case(search)?);
        }
        let rows = page
            .rows(
                query,
                inventory_item::Column::Id,
                Listing::OldestFirst,
                state(ctx).db.conn(),
            )
            .await?;
        Ok(page.connection(rows.into_iter().map(InventoryItem).collect(), |item| item.0.id.into()))
    }

    /// Levels below zero (backordered), oldest level first.
    #[graphql(
        guard = "Need(Permission::ReadStock)",
        complexity = "super::page_cost(first, child_complexity)"
    )]
    async fn backorders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, InventoryLevel>> {
        let page = Page::parse(first, after.as_deref())?;
        let query = inventory_level::Entity::find().filter(inventory_level::Column::StockedQuantity.lt(0));
        let rows = page
            .rows(
                query,
                inventory_level::Column::Id,
                Listing::OldestFirst,
                state(ctx).db.conn(),
            )
            .await?;
        Ok(
            page.connection(rows.into_iter().map(InventoryLevel).collect(), |level| {
                level.0.id.into()
            }),
        )
    }

    /// The stock ledger of one sku (optionally at one location), newest first.
    #[graphql(
        guard = "Need(Permission::ReadStock)",
        complexity = "super::page_cost(first, child_complexity)"
    )]
    async fn stock_movements(
        &self,
        ctx: &Context<'_>,
        sku: String,
        stock_location_id: Option<ID>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, StockMovement>> {
        let page = Page::parse(first, after.as_deref())?;
        let db = state(ctx).db.conn();
        let item = inventory_item::Entity::find()
            .filter(inventory_item::Column::Sku.eq(sku.as_str()))
            .one(db)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(format!("inventory item {sku}")))?;
        let mut levels = inventory_level::Entity::find().filter(inventory_level::Column::InventoryItemId.eq(item.id));
        if let Some(location) = &stock_location_id {
            levels = levels.filter(inventory_level::Column::StockLocationId.eq(parse_id(location, "stock location")?));
        }
        let location_of_level: HashMap<i32, i32> = levels
            .all(db)
            .await
            .map_err(Error::from)?
            .into_iter()
            .map(|level| (level.id, level.stock_location_id))
            .collect();
        let query = stock_movement::Entity::find()
            .filter(stock_movement::Column::InventoryLevelId.is_in(location_of_level.keys().copied()));
        let rows = page
            .rows(query, stock_movement::Column::Id, Listing::NewestFirst, db)
            .await?;
        let movements = rows
            .into_iter()
            .map(|row| StockMovement {
                location_id: location_of_level[&row.inventory_level_id],
                sku: sku.clone(),
                row,
            })
            .collect();
        Ok(page.connection(movements, |movement| movement.row.id))
    }
}

#[derive(InputObject)]
pub struct CreateInventoryItemInput {
    pub sku: String,
    pub title: String,
}

#[derive(InputObject)]
pub struct SetStockLevelInput {
    pub sku: String,
    pub stock_location_id: ID,
    pub stocked_quantity: i32,
    /// Omitted: keep the current setting (`false` for a new level).
    pub allow_backorder: Option<bool>,
    /// If given, the write only happens when this is the level's current `version`
    /// (0 or null for a level that does not exist yet).
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct AdjustStockInput {
    pub sku: String,
    pub stock_location_id: ID,
    /// Relative change; negative removes stock.
    pub delta: i32,
    /// Free text kept as the ledger movement's note.
    pub reason: Option<String>,
    pub expected_version: Option<i32>,
}

#[derive(Default)]
pub struct InventoryMutation;

#[Object]
impl InventoryMutation {
    /// Creates an item; a duplicate sku is `BAD_USER_INPUT`.
    #[graphql(guard = "Need(Permission::WriteStock)")]
    async fn create_inventory_item(&self, ctx: &Context<'_>, input: CreateInventoryItemInput) -> Result<InventoryItem> {
        let sku = Sku::parse(&input.sku)?;
        let title = Name::parse(&input.title, "title")?;
        Ok(InventoryItem(catalog::create_item(&state(ctx).db, sku, title).await?))
    }

    /// Sets a level to an absolute quantity, creating it if missing.
    #[graphql(guard = "Need(Permission::WriteStock)")]
    async fn set_stock_level(&self, ctx: &Context<'_>, input: SetStockLevelInput) -> Result<InventoryLevel> {
        let cmd = SetStockLevel {
            sku: Sku::parse(&input.sku)?,
            stock_location_id: parse_id(&input.stock_location_id, "stock location")?,
            stocked_quantity: check_stock_bounds(input.stocked_quantity.into(), "stockedQuantity")?,
            allow_backorder: input.allow_backorder,
            expected_version: input.expected_version,
        };
        Ok(InventoryLevel(stock::set_stock_level(&state(ctx).db, &cmd).await?))
    }

    /// Changes a level by `delta`, recorded in the ledger as an ADJUSTMENT.
    #[graphql(guard = "Need(Permission::WriteStock)")]
    async fn adjust_stock(&self, ctx: &Context<'_>, input: AdjustStockInput) -> Result<InventoryLevel> {
        let cmd = AdjustStock {
            sku: Sku::parse(&input.sku)?,
            stock_location_id: parse_id(&input.stock_location_id, "stock location")?,
            delta: check_stock_bounds(input.delta.into(), "delta")?,
            note: input.reason,
            expected_version: input.expected_version,
        };
        Ok(InventoryLevel(stock::adjust_stock(&state(ctx).db, &cmd).await?))
    }
}

/// Longest `search` text accepted.
const MAX_SEARCH_CHARS: usize = 100;

/// Sku or title contains `search`, ASCII case ignored; `%`, `_` and `\` match themselves.
fn contains_ignoring_case(search: &str) -> Result<sea_orm::Condition, Error> {
    if search.chars().count() > MAX_SEARCH_CHARS {
        return Err(Error::bad_input(format!(
            "search is longer than {MAX_SEARCH_CHARS} characters"
        )));
    }
    let mut escaped = String::with_capacity(search.len() + 2);
    for c in search.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    let pattern = format!("%{escaped}%");
    let like = |column: inventory_item::Column| {
        Expr::expr(Func::lower(Expr::col(column))).like(LikeExpr::new(pattern.clone()).escape('\\'))
    };
    Ok(sea_orm::Condition::any()
        .add(like(inventory_item::Column::Sku))
        .add(like(inventory_item::Column::Title)))
}
