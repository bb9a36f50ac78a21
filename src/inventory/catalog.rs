//! The things stock lives in and is sold through: locations, sales channels and their
//! location mappings, shipping options, inventory items. Plain inserts, each one atomic;
//! those that check a parent first do both in one write transaction.

use chrono::Utc;
use entity::{inventory_item, sales_channel, sales_channel_location, shipping_option, stock_location};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ConnectionTrait, DatabaseTransaction, EntityTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use super::{
    lookup,
    values::{Name, Sku},
};
use crate::{
    db::Database,
    error::{Error, Result, is_unique_violation},
};

/// Creates a stock location.
pub async fn create_location(db: &Database, name: Name) -> Result<stock_location::Model> {
    create_location_in(db.conn(), name).await
}

/// Creates a stock location, in the caller's connection or transaction.
pub async fn create_location_in(conn: &impl ConnectionTrait, name: Name) -> Result<stock_location::Model> {
    let now = Utc::now();
    Ok(stock_location::ActiveModel {
        name: Set(name.into_inner()),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await?)
}

/// Creates a sales channel with no locations mapped yet.
pub async fn create_channel(db: &Database, name: Name) -> Result<sales_channel::Model> {
    create_channel_in(db.conn(), name).await
}

/// Creates a sales channel, in the caller's connection or transaction.
pub async fn create_channel_in(conn: &impl ConnectionTrait, name: Name) -> Result<sales_channel::Model> {
    let now = Utc::now();
    Ok(sales_channel::ActiveModel {
        name: Set(name.into_inner()),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await?)
}

/// Which location a channel sells from, and how much it prefers it.
#[derive(Debug, Clone)]
pub struct ChannelMapping {
    pub sales_channel_id: i32,
    pub stock_location_id: i32,
    pub priority: i32,
}

/// Maps a location to a channel, or changes the priority of an existing mapping.
pub async fn map_channel_location(db: &Database, mapping: &ChannelMapping) -> Result<sales_channel::Model> {
    db.write(mapping, |txn, mapping| Box::pin(map_channel_location_in(txn, mapping)))
        .await
}

/// [`map_channel_location`] inside the caller's write transaction.
pub async fn map_channel_location_in(
    txn: &DatabaseTransaction,
    mapping: &ChannelMapping,
) -> Result<sales_channel::Model> {
    let channel = lookup::by_id::<sales_channel::Entity>(txn, mapping.sales_channel_id, "sales channel").await?;
    lookup::location(txn, mapping.stock_location_id).await?;
    let now = Utc::now();
    let row = sales_channel_location::ActiveModel {
        sales_channel_id: Set(mapping.sales_channel_id),
        stock_location_id: Set(mapping.stock_location_id),
        priority: Set(mapping.priority),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    // An upsert rather than read-then-insert: two admins mapping the same pair at once
    // both succeed, the later priority wins, and the version counts both writes.
    sales_channel_location::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                sales_channel_location::Column::SalesChannelId,
                sales_channel_location::Column::StockLocationId,
            ])
            .update_columns([
                sales_channel_location::Column::Priority,
                sales_channel_location::Column::UpdatedAt,
            ])
            .value(
                sales_channel_location::Column::Version,
                Expr::col((sales_channel_location::Entity, sales_channel_location::Column::Version)).add(1),
            )
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(channel)
}

/// Creates a shipping option that ships from `stock_location_id`.
pub async fn create_shipping_option(
    db: &Database,
    name: Name,
    stock_location_id: i32,
) -> Result<shipping_option::Model> {
    db.write(&(name, stock_location_id), |txn, (name, stock_location_id)| {
        Box::pin(create_shipping_option_in(txn, name.clone(), *stock_location_id))
    })
    .await
}

/// [`create_shipping_option`] inside the caller's write transaction.
pub async fn create_shipping_option_in(
    txn: &DatabaseTransaction,
    name: Name,
    stock_location_id: i32,
) -> Result<shipping_option::Model> {
    lookup::location(txn, stock_location_id).await?;
    let now = Utc::now();
    Ok(shipping_option::ActiveModel {
        name: Set(name.into_inner()),
        stock_location_id: Set(stock_location_id),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?)
}

/// Creates an inventory item; a sku that exists already is `BAD_USER_INPUT`.
pub async fn create_item(db: &Database, sku: Sku, title: Name) -> Result<inventory_item::Model> {
    create_item_in(db.conn(), sku, title).await
}

/// [`create_item`] in the caller's connection or transaction.
pub async fn create_item_in(conn: &impl ConnectionTrait, sku: Sku, title: Name) -> Result<inventory_item::Model> {
    let now = Utc::now();
    inventory_item::ActiveModel {
        sku: Set(sku.as_str().to_owned()),
        title: Set(title.into_inner()),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            Error::bad_input(format!("an inventory item with sku {sku} already exists"))
        } else {
            err.into()
        }
    })
}
