//! An index for every foreign key that had none (found by the test that checks them all):
//! without one, deleting or re-keying a parent row scans the child table under a lock,
//! and "the orders of this channel" or "the movements of this order" read every row.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, column) of each foreign key that gets an index `ix_<table>_<column>`.
const FOREIGN_KEYS: &[(&str, &str)] = &[
    ("sales_channel_location", "stock_location_id"),
    ("shipping_option", "stock_location_id"),
    ("reservation", "sales_channel_id"),
    ("reservation", "shipping_option_id"),
    ("reservation_line", "inventory_level_id"),
    ("reservation_line", "stock_location_id"),
    ("orders", "sales_channel_id"),
    ("orders", "shipping_option_id"),
    ("orders", "reservation_id"),
    ("order_line", "inventory_item_id"),
    ("order_line", "stock_location_id"),
    ("stock_movement", "order_id"),
    ("stock_movement", "reservation_id"),
    ("inventory_event", "order_id"),
];

fn name(table: &str, column: &str) -> String {
    format!("ix_{table}_{column}")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for &(table, column) in FOREIGN_KEYS {
            manager
                .create_index(
                    Index::create()
                        .name(name(table, column))
                        .table(Alias::new(table))
                        .col(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for &(table, column) in FOREIGN_KEYS.iter().rev() {
            manager
                .drop_index(
                    Index::drop()
                        .name(name(table, column))
                        .table(Alias::new(table))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
