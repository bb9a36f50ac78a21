//! API keys over GraphQL (ADMIN only): list, create (the secret is shown once), revoke.

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::api_key;

use super::{Need, parse_id, state, to_id};
use crate::{
    auth::{self, Permission, Role},
    inventory::values::Name,
};

/// What a key may do.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "ApiKeyRole")]
pub enum ApiKeyRole {
    /// Everything.
    Admin,
    /// Admin queries and subscriptions; no mutations.
    Read,
    /// `placeOrder`, `reserveStock`, `releaseReservation`, and reading orders and reservations.
    Checkout,
}

impl From<Role> for ApiKeyRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => ApiKeyRole::Admin,
            Role::Read => ApiKeyRole::Read,
            Role::Checkout => ApiKeyRole::Checkout,
        }
    }
}

impl From<ApiKeyRole> for Role {
    fn from(role: ApiKeyRole) -> Self {
        match role {
            ApiKeyRole::Admin => Role::Admin,
            ApiKeyRole::Read => Role::Read,
            ApiKeyRole::Checkout => Role::Checkout,
        }
    }
}

/// An API key as listed: never the secret, nor its hash.
pub struct ApiKey(api_key::Model);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn role(&self) -> ApiKeyRole {
        self.0.role.into()
    }

    /// The key's first characters, to tell it apart (empty for `STOCKROOM_ADMIN_KEY`).
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When the key was last used, to within about a minute.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }

    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}

/// A key just created, with its secret: shown here only, never again.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    api_key: ApiKey,
    secret: String,
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    name: String,
    role: ApiKeyRole,
}

#[derive(InputObject)]
pub struct RevokeApiKeyInput {
    id: ID,
}

#[derive(Default)]
pub struct KeyQuery;

#[Object]
impl KeyQuery {
    /// Every API key, oldest first, revoked ones included.
    #[graphql(guard = "Need(Permission::ManageKeys)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKey>> {
        Ok(auth::list_keys(&state(ctx).db).await?.into_iter().map(ApiKey).collect())
    }
}

#[derive(Default)]
pub struct KeyMutation;

#[Object]
impl KeyMutation {
    /// Creates a key with a role; its secret is in the answer and nowhere else.
    #[graphql(guard = "Need(Permission::ManageKeys)")]
    async fn create_api_key(&self, ctx: &Context<'_>, input: CreateApiKeyInput) -> Result<CreatedApiKey> {
        let name = Name::parse(&input.name, "name")?;
        let created = auth::create_key(&state(ctx).db, name, input.role.into()).await?;
        Ok(CreatedApiKey {
            api_key: ApiKey(created.key),
            secret: created.secret,
        })
    }

    /// Revokes a key: refused at once by this process, by every other within the key
    /// cache time (`STOCKROOM_KEY_CACHE_MS`); its open subscriptions end too.
    #[graphql(guard = "Need(Permission::ManageKeys)")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, input: RevokeApiKeyInput) -> Result<ApiKey> {
        let id = parse_id(&input.id, "API key")?;
        Ok(ApiKey(state(ctx).keys.revoke(id).await?))
    }
}
