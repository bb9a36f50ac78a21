//! Backorder events: the stored log (query) and the live stream (subscription).

use async_graphql::{Context, ID, Object, Result, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};

use super::{Need, locations::StockLocation, parse_optional_id, state, to_id};
use crate::auth::Permission;
use crate::{
    error::Error,
    events::{
        hub::{SharedEvent, events_between},
        stream::{self, Filter},
    },
};

/// Most events one `backorderEvents` query returns.
const MAX_EVENTS: i32 = 100;

/// An order line took a level's free stock below zero (`inventory.backordered`).
pub struct InventoryBackordered(SharedEvent);

#[Object]
impl InventoryBackordered {
    /// The event's cursor: strictly increasing in commit order; resume with `after: id`.
    async fn id(&self) -> ID {
        to_id(self.0.event.id)
    }

    async fn sku(&self) -> &str {
        &self.0.event.sku
    }

    async fn location(&self) -> StockLocation {
        StockLocation(self.0.location.clone())
    }

    async fn order_id(&self) -> ID {
        to_id(self.0.event.order_id)
    }

    /// Units ordered on the line.
    async fn quantity(&self) -> i32 {
        self.0.event.quantity
    }

    /// The level's stock right after the order.
    async fn stocked_quantity(&self) -> i32 {
        self.0.event.stocked_quantity
    }

    /// Units of the line that were not in stock.
    async fn backordered_quantity(&self) -> i32 {
        self.0.event.backordered_quantity
    }

    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.event.occurred_at
    }
}

/// Cursors are event ids; anything else is bad input (a cursor names no row).
fn parse_cursor(after: Option<&ID>) -> Result<Option<i64>, Error> {
    after
        .map(|id| {
            id.parse::<i64>()
                .map_err(|_| Error::bad_input(format!("invalid event cursor {:?}", id.as_str())))
        })
        .transpose()
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// Stored backorder events after the cursor `after` (and before `before`), oldest
    /// first, at most `first` (1 to 100). With `newestFirst`, the newest of them first: a
    /// client shows recent events so, pages back with `before`, and subscribes with
    /// `after:` the newest id.
    #[graphql(
        guard = "Need(Permission::ReadStock)",
        complexity = "super::page_cost(first, child_complexity)"
    )]
    async fn backorder_events(
        &self,
        ctx: &Context<'_>,
        after: Option<ID>,
        #[graphql(default = 100)] first: i32,
        before: Option<ID>,
        #[graphql(default = false)] newest_first: bool,
    ) -> Result<Vec<InventoryBackordered>> {
        if !(1..=MAX_EVENTS).contains(&first) {
            return Err(Error::bad_input(format!("first must be between 1 and {MAX_EVENTS}")).into());
        }
        let after = parse_cursor(after.as_ref())?.unwrap_or(0);
        let before = parse_cursor(before.as_ref())?;
        let events = events_between(state(ctx).db.conn(), after, before, first as u64, newest_first)
            .await
            .map_err(Error::from)?;
        Ok(events
            .into_iter()
            .map(|event| InventoryBackordered(event.into()))
            .collect())
    }
}

/// Every subscription field.
#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Backorder events as they commit, from any server process. With `after`, first
    /// replays the stored events after that cursor; optionally only one sku / location.
    #[graphql(guard = "Need(Permission::ReadStock)")]
    async fn backorder_events(
        &self,
        ctx: &Context<'_>,
        after: Option<ID>,
        sku: Option<String>,
        stock_location_id: Option<ID>,
    ) -> Result<impl Stream<Item = Result<InventoryBackordered>> + use<>> {
        let after = parse_cursor(after.as_ref())?;
        let stock_location_id = parse_optional_id(stock_location_id.as_ref(), "stock location")?;
        let filter = Filter { sku, stock_location_id };
        let events = stream::subscribe(state(ctx).events.clone(), after, filter);
        // A revoked key's subscriptions end (with `complete`) within the key cache time.
        let keys = state(ctx).keys.clone();
        let caller = super::caller(ctx);
        let revoked = async move { keys.revoked(caller).await };
        // When the process stops, subscriptions complete rather than being cut off.
        let stopping = state(ctx).stopping.clone().cancelled_owned();
        Ok(events
            .take_until(revoked)
            .take_until(stopping)
            .map(|event| event.map(InventoryBackordered).map_err(async_graphql::Error::from)))
    }
}
