//! API keys get a role, a recognisable prefix, a last-used time and revocation.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Role,
    Prefix,
    LastUsedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time. Keys that exist
        // were admin keys (the only kind there was) and have no known prefix.
        let columns = [
            ColumnDef::new(ApiKey::Role)
                .string_len(16)
                .not_null()
                .default("ADMIN")
                .to_owned(),
            ColumnDef::new(ApiKey::Prefix)
                .string()
                .not_null()
                .default("")
                .to_owned(),
            timestamp_with_time_zone_null(ApiKey::LastUsedAt),
            timestamp_with_time_zone_null(ApiKey::RevokedAt),
        ];
        for mut column in columns {
            manager
                .alter_table(Table::alter().table(ApiKey::Table).add_column(&mut column).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [ApiKey::RevokedAt, ApiKey::LastUsedAt, ApiKey::Prefix, ApiKey::Role] {
            manager
                .alter_table(Table::alter().table(ApiKey::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
