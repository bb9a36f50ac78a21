//! Public storefront fields: no admin key needed.

use async_graphql::{Context, ID, Object, Result};

use super::{parse_id, state};
use crate::inventory::availability::SkuAvailability;

#[derive(Default)]
pub struct StorefrontQuery;

#[Object]
impl StorefrontQuery {
    /// Units available per sku through a sales channel's locations (never negative);
    /// unknown skus come back as not in stock. At most 250 skus per call.
    #[graphql(complexity = "super::list_cost(skus.len(), child_complexity)")]
    async fn availability(
        &self,
        ctx: &Context<'_>,
        sales_channel_id: ID,
        skus: Vec<String>,
    ) -> Result<Vec<SkuAvailability>> {
        let channel_id = parse_id(&sales_channel_id, "sales channel")?;
        let state = state(ctx);
        Ok(state.availability.read(&state.db, channel_id, skus).await?)
    }
}
