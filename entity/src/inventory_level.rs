//! Stock of one item at one location; negative `stocked_quantity` means backordered.

use sea_orm::entity::prelude::*;

/// A row of `inventory_level`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "inventory_level")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub inventory_item_id: i32,
    pub stock_location_id: i32,
    pub stocked_quantity: i32,
    pub reserved_quantity: i32,
    pub allow_backorder: bool,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
