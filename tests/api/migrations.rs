//! The migrations themselves: reversible on both databases, and the schema they build
//! serves its foreign keys with indexes.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::{helpers::EmptyDatabase, operations::scalar, server::SqliteFile};

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
