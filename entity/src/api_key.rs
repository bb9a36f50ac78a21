//! An API key; only its SHA-256 hash is stored, beside a short prefix to recognise it by.

use sea_orm::entity::prelude::*;

/// A row of `api_key`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_key")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub name: String,
    #[sea_orm(unique)]
    pub key_hash: String,
    pub role: ApiKeyRole,
    /// The key's first characters (`srk_` and a few more): enough to tell keys apart in a
    /// list, far too few to guess the rest. Empty for keys registered from outside.
    pub prefix: String,
    pub created_at: DateTimeUtc,
    /// Written at most about once a minute per key and process, off the request path.
    pub last_used_at: Option<DateTimeUtc>,
    /// Set once; a revoked key is refused.
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum ApiKeyRole {
    /// Everything.
    #[sea_orm(string_value = "ADMIN")]
    Admin,
    /// Admin queries and subscriptions; no mutations.
    #[sea_orm(string_value = "READ")]
    Read,
    /// Orders and reservations: place, reserve, release, and read them.
    #[sea_orm(string_value = "CHECKOUT")]
    Checkout,
}
