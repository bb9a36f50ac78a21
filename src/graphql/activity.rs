//! `activity`: per-minute counts for dashboards (see [`crate::activity`]).

use async_graphql::{Context, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::{Need, state};
use crate::{activity, auth::Permission};

/// One minute of activity, across every server process.
#[derive(SimpleObject)]
pub struct ActivityMinute {
    /// The minute's first instant (UTC).
    pub start: DateTime<Utc>,
    /// Orders placed in it.
    pub orders_placed: i64,
    /// Orders refused for lack of stock: `placeOrder` answered `OUT_OF_STOCK`, or a paid
    /// order stored REJECTED for it. Counted up to 5 s late.
    pub out_of_stock_refusals: i64,
    /// Backorder events.
    pub backorders: i64,
}

#[derive(Default)]
pub struct ActivityQuery;

#[Object]
impl ActivityQuery {
    /// The last `minutes` minutes (1 to 1440), oldest first; the last one is the current,
    /// partial minute. Minutes with nothing in them are included.
    // Costed as one field whatever `minutes` is: the work is three grouped reads.
    #[graphql(guard = "Need(Permission::ReadStock).and(Need(Permission::ReadOrders))")]
    async fn activity(&self, ctx: &Context<'_>, #[graphql(default = 60)] minutes: i32) -> Result<Vec<ActivityMinute>> {
        let series = activity::last_minutes(&state(ctx).db, minutes).await?;
        Ok(series
            .into_iter()
            .map(|minute| ActivityMinute {
                start: minute.start,
                orders_placed: minute.orders_placed,
                out_of_stock_refusals: minute.out_of_stock_refusals,
                backorders: minute.backorders,
            })
            .collect())
    }
}
