//! One line of an order and the location it was taken from.

use sea_orm::entity::prelude::*;

/// A row of `order_line`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "order_line")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub order_id: i32,
    pub sku: String,
    pub inventory_item_id: Option<i32>,
    pub stock_location_id: Option<i32>,
    pub quantity: i32,
    pub backordered_quantity: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
