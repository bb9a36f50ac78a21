//! The stock ledger: one row for every change of a level, with the result.

use sea_orm::entity::prelude::*;

/// A row of `stock_movement`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stock_movement")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub inventory_level_id: i32,
    pub delta: i32,
    pub reserved_delta: i32,
    pub reason: MovementReason,
    pub stocked_after: i32,
    pub reserved_after: i32,
    pub order_id: Option<i32>,
    pub reservation_id: Option<i32>,
    pub note: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Why a level changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum MovementReason {
    #[sea_orm(string_value = "SET")]
    Set,
    #[sea_orm(string_value = "ADJUSTMENT")]
    Adjustment,
    #[sea_orm(string_value = "ORDER")]
    Order,
    #[sea_orm(string_value = "RESERVATION")]
    Reservation,
    #[sea_orm(string_value = "RELEASE")]
    Release,
    #[sea_orm(string_value = "COMMIT")]
    Commit,
    #[sea_orm(string_value = "EXPIRY")]
    Expiry,
}
