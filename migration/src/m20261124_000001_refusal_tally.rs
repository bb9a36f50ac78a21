//! Out-of-stock refusals per minute, for the admin page's activity chart: a refusal stores
//! nothing else, so the count needs a table every process adds to.

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
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RefusalTally::Table).to_owned())
            .await
    }
}
