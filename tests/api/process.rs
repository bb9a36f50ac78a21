//! The real `stockroom` binary, spawned as an operator would start it: start-up checks,
//! several processes starting together, what `/metrics` shows from the first scrape.

use std::process::Output;

use stockroom_test_support::{
    database::{EmptyDatabase, SqliteFile},
    process::{Server, command},
};

use crate::STOCKROOM;

#[tokio::test]
async fn every_metric_series_exists_from_the_first_scrape() {
    let file = SqliteFile::new();
    let server = Server::start(STOCKROOM, &file.url(), &[("STOCKROOM_DEMO", "0")]).await;
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "stockroom_orders_total{outcome=\"placed\",reason=\"none\"} 0",
        "stockroom_orders_total{outcome=\"rejected\",reason=\"OUT_OF_STOCK\"} 0",
        "stockroom_orders_total{outcome=\"failed\",reason=\"OUT_OF_STOCK\"} 0",
        "stockroom_webhook_deliveries_total{type=\"payment_intent.succeeded\",result=\"processed\"} 0",
        "stockroom_webhook_deliveries_total{type=\"unverified\",result=\"refused\"} 0",
        "stockroom_refunds_total{result=\"failed\"} 0",
        "stockroom_lock_timeouts_total 0",
        "stockroom_transaction_retries_total 0",
        "# HELP stockroom_orders_total",
    ] {
        assert!(metrics.contains(series), "{series:?} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn settings_that_would_disable_their_own_bound_stop_the_start_with_a_clear_message() {
    let file = SqliteFile::new();
    for (variable, value) in [("STOCKROOM_LOCK_TIMEOUT_MS", "0"), ("STOCKROOM_EVENT_POLL_MS", "0")] {
        let Output { status, stderr, .. } = command(STOCKROOM, &file.url())
            .env(variable, value)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&stderr);
        assert!(!status.success(), "{variable}={value} started");
        assert!(stderr.contains("not in"), "{variable}: {stderr}");
        assert!(
            stderr.contains(variable) || stderr.contains("-ms"),
            "{variable}: {stderr}"
        );
    }
}

#[tokio::test]
async fn three_processes_started_together_on_an_empty_postgres_all_serve_and_seed_once() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let servers = futures_util::future::join_all((0..3).map(|_| Server::start(STOCKROOM, &database.url, &[]))).await;
    for server in &servers {
        assert_eq!(server.get("/ready").await.0, 200);
    }
    let seeded = servers
        .iter()
        .filter(|server| server.banner.iter().any(|line| line.contains("Demo data loaded")))
        .count();
    assert_eq!(seeded, 1, "exactly one process seeded the demo data");
    let admin = sea_orm::Database::connect(&database.url).await.unwrap();
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(entity::stock_location::Entity::find().count(&admin).await.unwrap(), 2);
    assert_eq!(entity::inventory_item::Entity::find().count(&admin).await.unwrap(), 3);
    admin.close().await.ok();
    drop(servers);
}

#[tokio::test]
async fn migrate_applies_the_migrations_apart_from_the_start_and_can_be_repeated() {
    let file = SqliteFile::new();
    for _ in 0..2 {
        let Output { status, stderr, .. } = command(STOCKROOM, &file.url()).arg("migrate").output().await.unwrap();
        assert!(status.success(), "{}", String::from_utf8_lossy(&stderr));
        assert!(String::from_utf8_lossy(&stderr).contains("up to date"));
    }
    let conn = sea_orm::Database::connect(file.url()).await.unwrap();
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        entity::api_key::Entity::find().count(&conn).await.unwrap(),
        0,
        "the tables exist"
    );
    conn.close().await.ok();
}
