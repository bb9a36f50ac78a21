//! Sales channels, their location mappings, and shipping options.

use async_graphql::{Context, ID, InputObject, Object, Result};
use entity::{sales_channel, sales_channel_location, shipping_option};
use sea_orm::{EntityTrait, QueryOrder};

use super::{
    Need, dangling, loaders,
    loaders::{LocationById, MappingsOfChannel},
    locations::StockLocation,
    parse_id, state, to_id,
};
use crate::auth::Permission;
use crate::{
    error::Error,
    inventory::{
        catalog::{self, ChannelMapping},
        values::Name,
    },
};

/// Where orders come from; sells from its mapped locations.
pub struct SalesChannel(pub sales_channel::Model);

#[Object]
impl SalesChannel {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Mapped locations, preferred (lowest priority number) first.
    async fn locations(&self, ctx: &Context<'_>) -> Result<Vec<ChannelLocation>> {
        let mut mappings = loaders(ctx)
            .load_one(MappingsOfChannel(self.0.id))
            .await?
            .unwrap_or_default();
        mappings.sort_by_key(|mapping| (mapping.priority, mapping.id));
        Ok(mappings.into_iter().map(ChannelLocation).collect())
    }
}

/// A location a channel sells from, with its priority (lower = preferred).
pub struct ChannelLocation(sales_channel_location::Model);

#[Object]
impl ChannelLocation {
    async fn location(&self, ctx: &Context<'_>) -> Result<StockLocation> {
        load_location(ctx, self.0.stock_location_id).await
    }

    async fn priority(&self) -> i32 {
        self.0.priority
    }
}

/// A way to ship, bound to the location it ships from.
pub struct ShippingOption(pub shipping_option::Model);

#[Object]
impl ShippingOption {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn stock_location(&self, ctx: &Context<'_>) -> Result<StockLocation> {
        load_location(ctx, self.0.stock_location_id).await
    }
}

/// Loads a location that a foreign key points to.
pub async fn load_location(ctx: &Context<'_>, id: i32) -> Result<StockLocation> {
    let location = loaders(ctx).load_one(LocationById(id)).await?;
    Ok(StockLocation(location.ok_or_else(|| dangling("stock location", id))?))
}

#[derive(Default)]
pub struct ChannelQuery;

#[Object]
impl ChannelQuery {
    /// All sales channels, oldest first.
    #[graphql(guard = "Need(Permission::ReadStock)")]
    async fn sales_channels(&self, ctx: &Context<'_>) -> Result<Vec<SalesChannel>> {
        let rows = sales_channel::Entity::find()
            .order_by_asc(sales_channel::Column::Id)
            .all(state(ctx).db.conn())
            .await
            .map_err(Error::from)?;
        Ok(rows.into_iter().map(SalesChannel).collect())
    }

    /// All shipping options, oldest first.
    #[graphql(guard = "Need(Permission::ReadStock)")]
    async fn shipping_options(&self, ctx: &Context<'_>) -> Result<Vec<ShippingOption>> {
        let rows = shipping_option::Entity::find()
            .order_by_asc(shipping_option::Column::Id)
            .all(state(ctx).db.conn())
            .await
            .map_err(Error::from)?;
        Ok(rows.into_iter().map(ShippingOption).collect())
    }
}

#[derive(InputObject)]
pub struct CreateSalesChannelInput {
    pub name: String,
}

#[derive(InputObject)]
pub struct MapSalesChannelLocationInput {
    pub sales_channel_id: ID,
    pub stock_location_id: ID,
    /// Lower numbers are preferred when placing orders.
    pub priority: i32,
}

#[derive(InputObject)]
pub struct CreateShippingOptionInput {
    pub name: String,
    pub stock_location_id: ID,
}

#[derive(Default)]
pub struct ChannelMutation;

#[Object]
impl ChannelMutation {
    /// Creates a sales channel with no locations.
    #[graphql(guard = "Need(Permission::WriteStock)")]
    async fn create_sales_channel(&self, ctx: &Context<'_>, input: CreateSalesChannelInput) -> Result<SalesChannel> {
        let name = Name::parse(&input.name, "name")?;
        Ok(SalesChannel(catalog::create_channel(&state(ctx).db, name).await?))
    }

    /// Lets a channel sell from a location; mapping an existing pair again updates its priority.
    #[graphql(guard = "Need(Permission::WriteStock)")]
    async fn map_sales_channel_location(
        &self,
        ctx: &Context<'_>,
        input: MapSalesChannelLocationInput,
    ) -> Result<SalesChannel> {
        let mapping = ChannelMapping {
            sales_channel_id: parse_id(&input.sales_channel_id, "sales channel")?,
            stock_location_id: parse_id(&input.stock_location_id, "stock location")?,
            priority: input.priority,
        };
        Ok(SalesChannel(
            catalog::map_channel_location(&state(ctx).db, &mapping).await?,
        ))
    }

    /// Creates a shipping option that ships from a location.
    #[graphql(guard = "Need(Permission::WriteStock)")]
    async fn create_shipping_option(
        &self,
        ctx: &Context<'_>,
        input: CreateShippingOptionInput,
    ) -> Result<ShippingOption> {
        let name = Name::parse(&input.name, "name")?;
        let location_id = parse_id(&input.stock_location_id, "stock location")?;
        Ok(ShippingOption(
            catalog::create_shipping_option(&state(ctx).db, name, location_id).await?,
        ))
    }
}
