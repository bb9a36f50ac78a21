//! An index for every foreign key that had none (found by the test that checks them all):
//! without one, deleting or re-keying a parent row scans the child table under a lock,
//! and "the orders of this channel" or "the movements of this order" read every row.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Whether a foreign key's column is mostly null: its index leaves nulls out (a partial
/// index), so the rows that have none (most orders have no reservation or shipping
/// option, no stock movement of a flash sale has a reservation) cost no index entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nulls {
    Rare,
    Common,
}

/// (table, column) of each foreign key that gets an index `ix_<table>_<column>`.
const FOREIGN_KEYS: &[(&str, &str, Nulls)] = &[
    ("sales_channel_location", "stock_location_id", Nulls::Rare),
    ("shipping_option", "stock_location_id", Nulls::Rare),
    ("reservation", "sales_channel_id", Nulls::Rare),
    ("reservation", "shipping_option_id", Nulls::Common),
    ("reservation_line", "inventory_level_id", Nulls::Rare),
    ("reservation_line", "stock_location_id", Nulls::Rare),
    ("orders", "sales_channel_id", Nulls::Rare),
    ("orders", "shipping_option_id", Nulls::Common),
    ("orders", "reservation_id", Nulls::Common),
    ("order_line", "inventory_item_id", Nulls::Rare),
    ("order_line", "stock_location_id", Nulls::Rare),
    ("stock_movement", "order_id", Nulls::Common),
    ("stock_movement", "reservation_id", Nulls::Common),
    ("inventory_event", "order_id", Nulls::Rare),
];

fn name(table: &str, column: &str) -> String {
    format!("ix_{table}_{column}")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for &(table, column, nulls) in FOREIGN_KEYS {
            let mut index = Index::create();
            index
                .name(name(table, column))
                .table(Alias::new(table))
                .col(Alias::new(column));
            if nulls == Nulls::Common {
                index.and_where(Expr::col(Alias::new(column)).is_not_null());
            }
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for &(table, column, _) in FOREIGN_KEYS.iter().rev() {
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
