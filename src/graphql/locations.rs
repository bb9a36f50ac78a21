//! Stock locations: the `StockLocation` type, `stockLocations`, `createStockLocation`.

use async_graphql::{Context, ID, InputObject, Object, Result};
use entity::stock_location;
use sea_orm::{EntityTrait, QueryOrder};

use super::{Need, inventory::InventoryLevel, loaders, loaders::LevelsAtLocation, state, to_id};
use crate::auth::Permission;
use crate::{
    error::Error,
    inventory::{catalog, values::Name},
};

/// A place that holds stock.
pub struct StockLocation(pub stock_location::Model);

#[Object]
impl StockLocation {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Stock of every item held here.
    #[graphql(guard = "Need(Permission::ReadStock)")]
    async fn levels(&self, ctx: &Context<'_>) -> Result<Vec<InventoryLevel>> {
        let levels = loaders(ctx).load_one(LevelsAtLocation(self.0.id)).await?;
        Ok(levels.unwrap_or_default().into_iter().map(InventoryLevel).collect())
    }
}

#[derive(Default)]
pub struct LocationQuery;

#[Object]
impl LocationQuery {
    /// All stock locations, oldest first.
    #[graphql(guard = "Need(Permission::ReadStock)")]
    async fn stock_locations(&self, ctx: &Context<'_>) -> Result<Vec<StockLocation>> {
        let rows = stock_location::Entity::find()
            .order_by_asc(stock_location::Column::Id)
            .all(state(ctx).db.conn())
            .await
            .map_err(Error::from)?;
        Ok(rows.into_iter().map(StockLocation).collect())
    }
}

#[derive(InputObject)]
pub struct CreateStockLocationInput {
    pub name: String,
}

#[derive(Default)]
pub struct LocationMutation;

#[Object]
impl LocationMutation {
    /// Creates a stock location.
    #[graphql(guard = "Need(Permission::WriteStock)")]
    async fn create_stock_location(&self, ctx: &Context<'_>, input: CreateStockLocationInput) -> Result<StockLocation> {
        let name = Name::parse(&input.name, "name")?;
        Ok(StockLocation(catalog::create_location(&state(ctx).db, name).await?))
    }
}
