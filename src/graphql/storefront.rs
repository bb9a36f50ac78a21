//! Public storefront fields: no admin key needed.

use async_graphql::{Context, ID, Object, Result, SimpleObject};

use super::{parse_id, state};
use crate::inventory::availability;

/// Availability of one sku in one channel.
#[derive(SimpleObject)]
pub struct SkuAvailability {
    pub sku: String,
    /// Units that can be sold now (never negative).
    pub available: i32,
    pub in_stock: bool,
    /// True if any of the channel's levels for this sku allows backorder.
    pub backorderable: bool,
}

impl From<availability::SkuAvailability> for SkuAvailability {
    fn from(answer: availability::SkuAvailability) -> Self {
        let availability::SkuAvailability {
            sku,
            available,
            in_stock,
            backorderable,
        } = answer;
        SkuAvailability {
            sku,
            available,
            in_stock,
            backorderable,
        }
    }
}

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
        let answers = state.availability.read(&state.db, channel_id, skus).await?;
        Ok(answers.into_iter().map(SkuAvailability::from).collect())
    }
}
