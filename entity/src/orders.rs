//! An order, placed or rejected; `payment_intent_id` makes placement idempotent.

use sea_orm::entity::prelude::*;

/// A row of `orders`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub payment_intent_id: String,
    pub sales_channel_id: Option<i32>,
    pub shipping_option_id: Option<i32>,
    pub reservation_id: Option<i32>,
    pub status: OrderStatus,
    pub rejection_reason: Option<String>,
    pub refund_id: Option<String>,
    pub refund_error: Option<String>,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Whether an order took stock or was turned down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum OrderStatus {
    #[sea_orm(string_value = "PLACED")]
    Placed,
    #[sea_orm(string_value = "REJECTED")]
    Rejected,
}
