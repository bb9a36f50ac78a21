//! Small "find it or say NOT_FOUND" helpers shared by the write paths.

use entity::{inventory_item, stock_location};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PrimaryKeyTrait, QueryFilter};

use super::values::Sku;
use crate::error::{Error, Result};

/// Loads a row by its integer id, or `NOT_FOUND` naming `what`.
pub async fn by_id<E>(conn: &impl ConnectionTrait, id: i32, what: &str) -> Result<E::Model>
where
    E: EntityTrait,
    <E::PrimaryKey as PrimaryKeyTrait>::ValueType: From<i32>,
{
    E::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found(format!("{what} {id}")))
}

/// Loads an inventory item by sku, or `NOT_FOUND`.
pub async fn item_by_sku(conn: &impl ConnectionTrait, sku: &Sku) -> Result<inventory_item::Model> {
    inventory_item::Entity::find()
        .filter(inventory_item::Column::Sku.eq(sku.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found(format!("inventory item {sku}")))
}

/// Checks that a stock location exists.
pub async fn location(conn: &impl ConnectionTrait, id: i32) -> Result<stock_location::Model> {
    by_id::<stock_location::Entity>(conn, id, "stock location").await
}
