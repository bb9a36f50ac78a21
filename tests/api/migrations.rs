//! The migrations themselves: reversible on both databases, and the schema they build
//! serves its foreign keys with indexes.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use stockroom_test_support::database::{EmptyDatabase, SqliteFile, scalar};

/// The tables and their columns, as the database describes them.
async fn shape(conn: &DatabaseConnection) -> Vec<String> {
    let sql = match conn.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
             FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1"
        }
        _ => {
            "SELECT m.name || '.' || p.name || ' ' || p.type || ' ' || p.\"notnull\"
             FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1"
        }
    };
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

async fn up_down_up(url: &str) {
    let conn = sea_orm::Database::connect(url).await.unwrap();
    Migrator::up(&conn, None).await.expect("every migration applies");
    let migrated = shape(&conn).await;
    assert!(
        migrated.iter().any(|column| column.starts_with("refusal_tally.")),
        "{migrated:?}"
    );
    Migrator::down(&conn, None).await.expect("every migration reverts");
    let reverted = shape(&conn).await;
    assert!(
        reverted.iter().all(|column| column.starts_with("seaql_migrations.")),
        "only the migrations' own table is left: {reverted:?}"
    );
    Migrator::up(&conn, None).await.expect("every migration applies again");
    assert_eq!(shape(&conn).await, migrated, "the same schema the second time");
    conn.close().await.ok();
}

#[tokio::test]
async fn every_migration_goes_up_down_and_up_again_on_both_databases() {
    let sqlite = SqliteFile::new();
    up_down_up(&sqlite.url()).await;
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    up_down_up(&database.url).await;
}

/// A foreign key without an index makes every delete or key update of the parent row
/// scan the child table, under a lock.
#[tokio::test]
async fn every_foreign_key_has_an_index_that_starts_with_its_columns() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let conn = sea_orm::Database::connect(&database.url).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    let unindexed = "SELECT c.conrelid::regclass::text || ' ' || c.conname
        FROM pg_constraint c
        WHERE c.contype = 'f' AND NOT EXISTS (
            SELECT 1 FROM pg_index i
            WHERE i.indrelid = c.conrelid
              AND array_to_string((i.indkey::int2[])[0:array_length(c.conkey, 1) - 1], ',')
                  = array_to_string(c.conkey, ','))";
    let rows = conn
        .query_all_raw(Statement::from_string(sea_orm::DatabaseBackend::Postgres, unindexed))
        .await
        .unwrap();
    let missing: Vec<String> = rows
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    assert!(missing.is_empty(), "foreign keys without an index: {missing:?}");
    assert!(
        scalar(&conn, "SELECT COUNT(*) FROM pg_constraint WHERE contype = 'f'").await > 0,
        "the schema has foreign keys to check"
    );
    conn.close().await.ok();
}

/// A coarse type family, enough to catch an entity field of the wrong kind.
fn entity_family(column_type: &sea_orm::ColumnType) -> &'static str {
    use sea_orm::ColumnType::*;
    match column_type {
        Integer | SmallInteger | TinyInteger => "int",
        BigInteger => "bigint",
        String(_) | Text | Char(_) | Enum { .. } => "text",
        Boolean => "bool",
        TimestampWithTimeZone => "timestamptz",
        _ => "other",
    }
}

fn database_family(data_type: &str) -> &'static str {
    match data_type {
        "integer" | "smallint" => "int",
        "bigint" => "bigint",
        "character varying" | "text" | "character" => "text",
        "boolean" => "bool",
        "timestamp with time zone" => "timestamptz",
        _ => "other",
    }
}

/// Every column of `E` as "table.column family nullable".
fn entity_shape<E: sea_orm::EntityTrait>(entity: E) -> Vec<String> {
    use sea_orm::{ColumnTrait, IdenStatic, Iterable};
    let table = entity.table_name().to_owned();
    E::Column::iter()
        .map(|column| {
            let def = column.def();
            format!(
                "{table}.{} {} {}",
                column.as_str(),
                entity_family(def.get_column_type()),
                if def.is_null() { "null" } else { "not null" }
            )
        })
        .collect()
}

/// The entities are written by hand beside the migrations: they must agree column for
/// column (name, kind, nullability), or a query would fail only at run time.
#[tokio::test]
async fn the_entities_match_the_migrated_schema() {
    use entity::prelude::*;
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let conn = sea_orm::Database::connect(&database.url).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    let mut entities: Vec<String> = [
        entity_shape(ApiKey),
        entity_shape(EventSequence),
        entity_shape(InventoryEvent),
        entity_shape(InventoryItem),
        entity_shape(InventoryLevel),
        entity_shape(OrderLine),
        entity_shape(Orders),
        entity_shape(Reservation),
        entity_shape(ReservationLine),
        entity_shape(SalesChannel),
        entity_shape(SalesChannelLocation),
        entity_shape(ShippingOption),
        entity_shape(StockLocation),
        entity_shape(StockMovement),
        entity_shape(StripeEvent),
        entity_shape(entity::refusal_tally::Entity),
    ]
    .concat();
    entities.sort();
    let rows = conn
        .query_all_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> 'seaql_migrations'",
        ))
        .await
        .unwrap();
    let mut migrated: Vec<String> = rows
        .iter()
        .map(|row| {
            let text = |index| row.try_get_by_index::<String>(index).unwrap();
            let nullable = if text(3) == "YES" { "null" } else { "not null" };
            format!("{}.{} {} {nullable}", text(0), text(1), database_family(&text(2)))
        })
        .collect();
    migrated.sort();
    assert!(
        entities.iter().all(|column| !column.contains(" other ")),
        "every entity column has a known kind: {entities:?}"
    );
    assert_eq!(
        entities, migrated,
        "entities (left) and the migrated schema (right) differ"
    );
    conn.close().await.ok();
}
