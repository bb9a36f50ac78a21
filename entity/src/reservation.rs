//! Stock held for a checkout until it is committed, released or expires.

use sea_orm::entity::prelude::*;

/// A row of `reservation`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reservation")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub key: String,
    pub sales_channel_id: i32,
    pub shipping_option_id: Option<i32>,
    pub status: ReservationStatus,
    pub expires_at: DateTimeUtc,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Life cycle of a reservation; only ACTIVE ones hold stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum ReservationStatus {
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    #[sea_orm(string_value = "RELEASED")]
    Released,
    #[sea_orm(string_value = "COMMITTED")]
    Committed,
    #[sea_orm(string_value = "EXPIRED")]
    Expired,
}
