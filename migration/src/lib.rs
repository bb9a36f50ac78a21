//! Database migrations for Stockroom, applied at server start and runnable on their own
//! (`cargo run -p migration -- up`).

// `MigrationTrait` is declared through `async_trait`, whose expansion does not accept the
// `SchemaManager<'_>` spelling that `rust_2018_idioms` asks for.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_schema;
mod m20261123_000001_api_key_roles;
mod m20261124_000001_refusal_tally;
mod m20261124_000002_foreign_key_indexes;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_schema::Migration),
            Box::new(m20261123_000001_api_key_roles::Migration),
            Box::new(m20261124_000001_refusal_tally::Migration),
            Box::new(m20261124_000002_foreign_key_indexes::Migration),
        ]
    }
}
