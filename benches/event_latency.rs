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
use sea_orm::ConnectionTrait;
use serde_json::json;
use stockroom::{
    AppState, Config,
    auth::Caller,
    db,
    inventory::{
        catalog::{self, ChannelMapping},
        placement::{self, LineRequest, PlaceOrder},
        stock::{self, SetStockLevel},
        values::{Name, PaymentIntentId, Quantity, Sku},
    },
};

const SUBSCRIBERS: usize = 200;
const EVENTS: usize = 100;

async fn process(url: &str) -> AppState {
    let config = Config::for_database(url);
    AppState::from_connection(db::connect(&config).await.expect("connect"), config)
        .await
        .expect("migrate")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let admin_url =
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = sea_orm::Database::connect(&admin_url)
        .await
        .expect("PostgreSQL at TEST_DATABASE_URL");
    let name = format!("stockroom_bench_{}", std::process::id());
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);

    let a = process(&url).await;
    let b = process(&url).await;
    let location = catalog::create_location(&a.db, Name::parse("Berlin", "name").unwrap())
        .await
        .unwrap();
    let channel = catalog::create_channel(&a.db, Name::parse("Web", "name").unwrap())
        .await
        .unwrap();
    let mapping = ChannelMapping {
        sales_channel_id: channel.id,
        stock_location_id: location.id,
        priority: 0,
    };
    catalog::map_channel_location(&a.db, &mapping).await.unwrap();
    let sku = Sku::parse("BENCH").unwrap();
    catalog::create_item(&a.db, sku.clone(), Name::parse("Bench", "title").unwrap())
        .await
        .unwrap();
    let level = SetStockLevel {
        sku: sku.clone(),
        stock_location_id: location.id,
        stocked_quantity: 0,
        allow_backorder: Some(true),
        expected_version: None,
    };
    stock::set_stock_level(&a.db, &level).await.unwrap();

    let schema = stockroom::graphql::build_schema(b.clone());
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let request = async_graphql::Request::new("subscription { backorderEvents(after: \"0\") { id sku orderId backorderedQuantity location { name } } }")
                .variables(async_graphql::Variables::from_json(json!({})))
                .data(Caller::Admin);
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
        let order = PlaceOrder {
            payment_intent_id: PaymentIntentId::parse(&format!("pi_bench_{index}")).unwrap(),
            sales_channel_id: channel.id,
            shipping_option_id: None,
            reservation_key: None,
            lines: vec![LineRequest {
                sku: sku.clone(),
                quantity: Quantity::parse(1).unwrap(),
            }],
        };
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
    admin
        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .ok();
}
