//! A sales channel may sell from a stock location; lower `priority` is preferred.

use sea_orm::entity::prelude::*;

/// A row of `sales_channel_location`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sales_channel_location")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub sales_channel_id: i32,
    pub stock_location_id: i32,
    pub priority: i32,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
