//! Out-of-stock refusals per minute, for the admin page's activity chart: a refusal stores
//! nothing else, so the count needs a table every process adds to. And the indexes that
//! let the chart read the last hour of orders and events without scanning all of them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RefusalTally {
    Table,
    /// Minutes since the Unix epoch (UTC).
    Minute,
    Refusals,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    CreatedAt,
}

#[derive(DeriveIden)]
enum InventoryEvent {
    Table,
    OccurredAt,
}

const ORDERS_BY_CREATED_AT: &str = "ix_orders_created_at";
const EVENTS_BY_OCCURRED_AT: &str = "ix_inventory_event_occurred_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefusalTally::Table)
                    .col(big_integer(RefusalTally::Minute).primary_key())
                    .col(big_integer(RefusalTally::Refusals))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(ORDERS_BY_CREATED_AT)
                    .table(Orders::Table)
                    .col(Orders::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(EVENTS_BY_OCCURRED_AT)
                    .table(InventoryEvent::Table)
                    .col(InventoryEvent::OccurredAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (index, table) in [
            (EVENTS_BY_OCCURRED_AT, InventoryEvent::Table.into_iden()),
            (ORDERS_BY_CREATED_AT, Orders::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(index).table(table).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(RefusalTally::Table).to_owned())
            .await
    }
}
