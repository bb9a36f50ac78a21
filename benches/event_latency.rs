//! Commit → subscriber latency of backorder events, across two server processes.
//!
//! Process A places 100 orders that each backorder one unit (one event each); process B
//! (its own pool, feed and LISTEN connection, on the same PostgreSQL database) serves 200
//! subscriptions. For every event and subscriber, latency = the moment B's subscriber has
//! the event minus the moment A's `place_order` returned (its commit done). Run:
//!
//! ```sh
//! cargo bench --bench event_latency   # needs PostgreSQL at TEST_DATABASE_URL
//! ```

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use stockroom::{
    auth::{Caller, Role},
    inventory::placement,
};
use stockroom_test_support::{database::ScratchDatabase, fixtures};

const SUBSCRIBERS: usize = 200;
const EVENTS: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let scratch = ScratchDatabase::create().await;
    let a = scratch.process(|_| {}).await;
    let b = scratch.process(|_| {}).await;
    let (location, channel) = fixtures::one_location_shop(&a.db).await;
    let sku = fixtures::item(&a.db, "BENCH").await;
    fixtures::set_level(&a.db, &sku, location, 0, true).await;

    let watcher = stockroom::inventory::values::Name::parse("bench watcher", "name").unwrap();
    let watcher = stockroom::auth::create_key(&a.db, watcher, Role::Read)
        .await
        .unwrap()
        .key;
    let schema = stockroom::graphql::build_schema(b.clone());
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let request = async_graphql::Request::new("subscription { backorderEvents(after: \"0\") { id sku orderId backorderedQuantity location { name } } }")
                .variables(async_graphql::Variables::from_json(json!({})))
                .data(Caller::Key { id: watcher.id, role: watcher.role });
            let stream = schema.execute_stream(request);
            tokio::spawn(async move {
                stream
                    .take(EVENTS)
                    .map(|_| Instant::now())
                    .collect::<Vec<Instant>>()
                    .await
            })
        })
        .collect();

    let mut committed = Vec::with_capacity(EVENTS);
    for index in 0..EVENTS {
        let order = fixtures::one_unit_order(&format!("pi_bench_{index}"), channel, &sku);
        placement::place_order(&a.db, &order).await.unwrap();
        committed.push(Instant::now());
        // Spread the orders out a little, as real traffic is, instead of one burst.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut latencies = Vec::with_capacity(SUBSCRIBERS * EVENTS);
    for subscriber in subscribers {
        let received = subscriber.await.unwrap();
        assert_eq!(received.len(), EVENTS, "every subscriber gets every event");
        latencies.extend(
            received
                .iter()
                .zip(&committed)
                .map(|(got, sent)| got.saturating_duration_since(*sent)),
        );
    }
    latencies.sort();
    println!(
        "{SUBSCRIBERS} subscribers on process B x {EVENTS} events committed by process A: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    drop((a, b, schema));
    scratch.drop().await;
}
