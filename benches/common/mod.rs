//! Set-up shared by the benches: a scratch PostgreSQL database and a one-location shop.

// Each bench binary includes this module and uses a part of it.
#![allow(dead_code)]

pub mod load;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use stockroom::{
    AppState, Config,
    db::{self, Database},
    inventory::{
        catalog::{self, ChannelMapping},
        placement::PlaceOrder,
        stock::{self, SetStockLevel},
        values::{LineRequest, Name, PaymentIntentId, Quantity, Sku},
    },
};

/// A database created for one bench run at `TEST_DATABASE_URL`, dropped by [`Self::drop`].
pub struct ScratchDatabase {
    admin: DatabaseConnection,
    name: String,
    pub url: String,
}

impl ScratchDatabase {
    pub async fn create() -> ScratchDatabase {
        Self::create_named("main").await
    }

    /// Like [`Self::create`], with `tag` in the name (several per run).
    pub async fn create_named(tag: &str) -> ScratchDatabase {
        let admin_url =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let admin = sea_orm::Database::connect(&admin_url)
            .await
            .expect("PostgreSQL at TEST_DATABASE_URL");
        let name = format!("stockroom_bench_{}_{tag}", std::process::id());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        ScratchDatabase { admin, name, url }
    }

    /// A server process (pool, migrations, event feed) on this database.
    pub async fn process(&self, configure: impl FnOnce(&mut Config)) -> AppState {
        let mut config = Config::for_database(&self.url);
        configure(&mut config);
        AppState::from_connection(db::connect(&config).await.expect("connect"), config)
            .await
            .expect("migrate")
    }

    pub async fn drop(self) {
        let sql = format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name);
        self.admin.execute_unprepared(&sql).await.ok();
    }
}

/// One location sold by one channel; returns (location id, channel id).
pub async fn one_location_shop(db: &Database) -> (i32, i32) {
    let location = catalog::create_location(db, Name::parse("Berlin", "name").unwrap())
        .await
        .unwrap()
        .id;
    let channel = catalog::create_channel(db, Name::parse("Web", "name").unwrap())
        .await
        .unwrap()
        .id;
    let mapping = ChannelMapping {
        sales_channel_id: channel,
        stock_location_id: location,
        priority: 0,
    };
    catalog::map_channel_location(db, &mapping).await.unwrap();
    (location, channel)
}

/// Creates `sku`; returns it.
pub async fn item(db: &Database, sku: &str) -> Sku {
    let sku = Sku::parse(sku).unwrap();
    catalog::create_item(db, sku.clone(), Name::parse("Bench item", "title").unwrap())
        .await
        .unwrap();
    sku
}

/// An order of one unit of `sku`.
pub fn one_unit_order(payment_intent: &str, channel: i32, sku: &Sku) -> PlaceOrder {
    PlaceOrder {
        payment_intent_id: PaymentIntentId::parse(payment_intent).unwrap(),
        sales_channel_id: channel,
        shipping_option_id: None,
        reservation_key: None,
        lines: vec![LineRequest {
            sku: sku.clone(),
            quantity: Quantity::parse(1).unwrap(),
        }],
    }
}

/// Sets `sku`'s level at `location` (creating it if needed).
pub async fn set_level(db: &Database, sku: &Sku, location: i32, quantity: i32, allow_backorder: bool) {
    let cmd = SetStockLevel::unguarded(sku.clone(), location, quantity, allow_backorder);
    stock::set_stock_level(db, &cmd).await.unwrap();
}
