//! Order placement under contention, on PostgreSQL.
//!
//! 1. "The last ten units": 50 shoppers race (barrier start) for 10 units, 20 runs —
//!    how many orders are placed (must be 10 every run) and how long the race takes.
//! 2. Throughput: 2,000 single-line orders by 50 concurrent clients over 20 skus at one
//!    location (plenty of stock) — orders per second and latency percentiles.
//!
//! ```sh
//! cargo bench --bench placement   # needs PostgreSQL at TEST_DATABASE_URL
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use stockroom::inventory::placement;
use stockroom_test_support::{
    database::ScratchDatabase,
    fixtures::{self, one_unit_order, set_level},
    racing::race,
};

const SHOPPERS: usize = 50;

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let scratch = ScratchDatabase::create().await;
    let app = scratch.process(|config| config.db_pool_size = 50).await;
    let db = Arc::new(app.db.clone());
    let (location, channel) = fixtures::one_location_shop(&db).await;

    // 1. The last ten units.
    let last = fixtures::item(&db, "LAST-10").await;
    let mut placed_per_run = Vec::new();
    let mut race_times = Vec::new();
    for run in 0..20 {
        set_level(&db, &last, location, 10, false).await;
        let started = Instant::now();
        let shoppers = race(SHOPPERS, |shopper| {
            let (db, sku) = (db.clone(), last.clone());
            async move {
                placement::place_order(&db, &one_unit_order(&format!("pi_last_{run}_{shopper}"), channel, &sku))
                    .await
                    .is_ok()
            }
        })
        .await;
        let placed = shoppers.into_iter().filter(|placed| *placed).count();
        race_times.push(started.elapsed());
        placed_per_run.push(placed);
    }
    race_times.sort();
    println!(
        "last ten units, {SHOPPERS} shoppers, 20 runs: placed per run {placed_per_run:?}; race took p50 {:.1} ms, max {:.1} ms",
        millis(race_times[race_times.len() / 2]),
        millis(*race_times.last().unwrap()),
    );

    // 2. Throughput over 20 skus.
    let mut skus = Vec::new();
    for index in 0..20 {
        skus.push(fixtures::item(&db, &format!("T-{index:02}")).await);
    }
    for sku in &skus {
        set_level(&db, sku, location, 1_000_000, false).await;
    }
    let orders_per_client = 40;
    let started = Instant::now();
    let clients = race(SHOPPERS, |client| {
        let (db, skus) = (db.clone(), skus.clone());
        async move {
            let mut latencies = Vec::with_capacity(orders_per_client);
            for index in 0..orders_per_client {
                let sku = &skus[(client + index) % skus.len()];
                let begun = Instant::now();
                placement::place_order(&db, &one_unit_order(&format!("pi_tp_{client}_{index}"), channel, sku))
                    .await
                    .unwrap();
                latencies.push(begun.elapsed());
            }
            latencies
        }
    })
    .await;
    let mut latencies: Vec<Duration> = clients.into_iter().flatten().collect();
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "throughput: {} orders by {SHOPPERS} clients over {} skus in {:.2} s = {:.0} orders/s; latency p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        skus.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        millis(latencies[latencies.len() / 2]),
        millis(latencies[latencies.len() * 99 / 100]),
    );
    drop((app, db));
    scratch.drop().await;
}
