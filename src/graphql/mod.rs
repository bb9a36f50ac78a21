//! The GraphQL API, organised by domain: each module owns its types, its queries and
//! mutations, and contributes them to the root objects merged here.
//!
//! Resolvers only parse input into typed values, call one function of the domain
//! (`crate::inventory`) and wrap the result; the rules live in the domain.

mod activity;
mod channels;
mod enums;
mod events;
mod inventory;
mod keys;
mod loaders;
mod locations;
mod orders;
mod pagination;
pub mod query_threads;
mod reservations;
mod storefront;

use std::time::Duration;

use async_graphql::{Context, Guard, ID, MergedObject, Schema, SchemaBuilder, dataloader::DataLoader};

pub use loaders::Loaders;

use crate::{
    AppState,
    auth::{Caller, IdentifiedPerConnection, Permission},
    error::Error,
};

/// Every query field.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    locations::LocationQuery,
    channels::ChannelQuery,
    inventory::InventoryQuery,
    orders::OrderQuery,
    events::EventQuery,
    reservations::ReservationQuery,
    storefront::StorefrontQuery,
    keys::KeyQuery,
    activity::ActivityQuery,
);

/// Every mutation field.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    locations::LocationMutation,
    channels::ChannelMutation,
    inventory::InventoryMutation,
    orders::OrderMutation,
    reservations::ReservationMutation,
    keys::KeyMutation,
);

/// The served schema.
pub type StockroomSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

pub use events::SubscriptionRoot;

/// Deepest query accepted: the deepest sensible query (connection → edges → node →
/// levels → location → levels → item) is 8 levels, and GraphiQL's introspection query
/// (types → fields → type → `ofType` nested for wrapped types) is 14.
const MAX_DEPTH: usize = 16;
/// The most work one request may ask for, counted before anything runs: each field costs
/// 1, and a field that returns one entry per element of a list argument (`availability`'s
/// `skus`, a connection's `first`) costs its selection once per element. A 250-sku
/// availability check of all four fields costs 1,001; a 100-item admin page with levels,
/// items and locations about 900; a request of 1,000 aliased 250-sku checks would cost
/// 250,000 and is refused unrun, whoever sends it.
const MAX_COMPLEXITY: usize = 2_000;

/// Complexity of a field that resolves its selection once per element of a list argument.
fn list_cost(elements: usize, child_complexity: usize) -> usize {
    elements.max(1).saturating_mul(child_complexity)
}

/// Complexity of a page of `first` rows (out-of-range `first` is refused when it runs).
fn page_cost(first: i32, child_complexity: usize) -> usize {
    list_cost(first.clamp(1, pagination::MAX_PAGE_SIZE) as usize, child_complexity)
}

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

/// How long a DataLoader collects keys before it queries. The window has to outlast one
/// round of resolving a page of 100 objects (a few ms in a debug build, on a busy 2-core
/// machine), or the batch closes early and one query becomes several. Only admin queries
/// with nested fields pay it, once per nesting level.
const LOADER_BATCH_WINDOW: Duration = Duration::from_millis(10);

/// The schema with its data: the app state and the batch loaders.
pub fn build_schema(state: AppState) -> StockroomSchema {
    let loaders = DataLoader::new(Loaders::new(state.db.conn().clone()), tokio::spawn).delay(LOADER_BATCH_WINDOW);
    builder().data(loaders).data(state).finish()
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

/// Admits callers whose key's role grants the permission (see `auth::Permission`).
pub struct Need(pub Permission);

impl Guard for Need {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let caller = caller(ctx);
        caller.require(self.0)?;
        // Over HTTP the key was looked up for this very request; over a WebSocket, once
        // for the whole connection, so a key revoked since must be caught here.
        if let Caller::Key { id, .. } = caller
            && ctx.data_opt::<IdentifiedPerConnection>().is_some()
            && !state(ctx).keys.is_live(id).await
        {
            return Err(Error::Unauthenticated.into());
        }
        Ok(())
    }
}

/// The caller of this request, as the HTTP layer decided it.
fn caller(ctx: &Context<'_>) -> Caller {
    ctx.data_opt::<Caller>().copied().unwrap_or(Caller::Anonymous)
}

fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

fn loaders<'a>(ctx: &Context<'a>) -> &'a DataLoader<Loaders> {
    ctx.data_unchecked::<DataLoader<Loaders>>()
}

/// Our ids are integers rendered as strings; anything else names nothing → `NOT_FOUND`.
fn parse_id(id: &ID, what: &str) -> Result<i32, Error> {
    id.parse::<i32>()
        .map_err(|_| Error::not_found(format!("{what} {}", id.as_str())))
}

/// Like [`parse_id`], for an optional argument.
fn parse_optional_id(id: Option<&ID>, what: &str) -> Result<Option<i32>, Error> {
    id.map(|id| parse_id(id, what)).transpose()
}

fn to_id(id: impl ToString) -> ID {
    ID(id.to_string())
}

/// A row that a foreign key guarantees but the loader did not return: a bug, not input.
fn dangling(what: &str, id: i32) -> Error {
    Error::Internal(format!("{what} {id} referenced but missing"))
}
