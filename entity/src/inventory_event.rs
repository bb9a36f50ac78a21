//! The outbox of inventory events; `id` follows commit order and is the cursor.

use sea_orm::entity::prelude::*;

/// A row of `inventory_event`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "inventory_event")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub event_type: String,
    pub sku: String,
    pub stock_location_id: i32,
    pub order_id: i32,
    pub quantity: i32,
    pub stocked_quantity: i32,
    pub backordered_quantity: i32,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
