//! One held quantity of a reservation, on the level it was taken from.

use sea_orm::entity::prelude::*;

/// A row of `reservation_line`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reservation_line")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub reservation_id: i32,
    pub sku: String,
    pub inventory_level_id: i32,
    pub stock_location_id: i32,
    pub quantity: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
