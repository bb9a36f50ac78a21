//! Three `stockroom` processes on one PostgreSQL, measured beside one.
//!
//! 1. **Flash sale**: one-unit orders of one hot sku over `POST /graphql`, `CLIENTS`
//!    clients (default 64) for `SECONDS_EACH` s, first all through one process, then spread
//!    round-robin over three; orders/s and latency of each, and the invariants after both
//!    (units taken == order lines == ledger units, one order per PaymentIntent).
//! 2. **Subscribers**: 1,000 `backorderEvents` subscriptions over graphql-transport-ws,
//!    spread over the three processes; 100 backordering orders placed one after another,
//!    round-robin through the three. Latency = the moment a subscriber has the event minus
//!    the moment the `placeOrder` that wrote it returned (its commit done); p50/p99/max
//!    over every (event, subscriber) pair.
//!
//! ```sh
//! cargo bench --bench cluster        # PostgreSQL at TEST_DATABASE_URL
//! ```

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use sea_orm::{ConnectionTrait as _, Statement};
use serde_json::{Value, json};
use stockroom_test_support::{
    database::ScratchDatabase,
    fixtures::{PLACE_ORDER_ID, place_order_variables},
    load::{
        BENCH_ADMIN_KEY, Run, drive, gql, http_item, http_shop, seconds_each, start_server, try_gql,
        write_benchmarks_section,
    },
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

const PROCESSES: usize = 3;
const SUBSCRIBERS: usize = 1000;
const EVENTS: usize = 100;
const STOCK: i64 = 100_000_000;

#[tokio::main]
async fn main() {
    let scratch = ScratchDatabase::create_named("cluster").await;
    // Started together, as a deployment would: migrations run once, in one of them.
    let servers = futures_util::future::join_all(
        (0..PROCESSES).map(|_| start_server(env!("CARGO_BIN_EXE_stockroom"), &scratch.url)),
    )
    .await;
    let urls: Vec<String> = servers.iter().map(|server| server.url.clone()).collect();
    let http = reqwest::Client::new();
    let (channel, locations) = http_shop(&http, &urls[0], &["Depot"]).await;
    http_item(&http, &urls[0], "HOT", &[(&locations[0], STOCK)]).await;
    gql(
        &http,
        &urls[0],
        "mutation { createInventoryItem(input: { sku: \"BACK\", title: \"Backordered\" }) { id } }",
        json!({}),
    )
    .await;
    gql(
        &http,
        &urls[0],
        "mutation($l: ID!) { setStockLevel(input: { sku: \"BACK\", stockLocationId: $l, stockedQuantity: 0, allowBackorder: true }) { version } }",
        json!({ "l": locations[0] }),
    )
    .await;

    let clients: usize = std::env::var("CLIENTS").ok().and_then(|c| c.parse().ok()).unwrap_or(64);
    let duration = seconds_each(8);
    let one = flash_sale(&http, &urls[..1], &channel, clients, duration, "one").await;
    let three = flash_sale(&http, &urls, &channel, clients, duration, "three").await;
    let conn = sea_orm::Database::connect(&scratch.url).await.unwrap();
    let (taken, lines, ledger, placed, payments) = invariants(&conn).await;
    assert!(
        taken == lines && lines == ledger && placed == payments,
        "invariant broken: taken {taken}, lines {lines}, ledger {ledger}, orders {placed}, PaymentIntents {payments}"
    );

    let latency = subscribers(&http, &urls, &channel).await;
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let table = format!(
        "| processes | clients | orders/s | p50 ms | p99 ms | errors |\n| --- | --- | --- | --- | --- | --- |\n{}\n{}\n\n\
         Invariants after both runs: {taken} units taken = {lines} order lines = {ledger} ledger units; \
         {placed} orders for {payments} PaymentIntents.\n\n\
         Commit → subscriber, {SUBSCRIBERS} subscribers over {PROCESSES} processes, {EVENTS} events \
         ({} deliveries): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms.",
        row(1, clients, &one),
        row(PROCESSES, clients, &three),
        latency.len(),
        ms(0.50),
        ms(0.99),
        latency.max() as f64 / 1000.0,
    );
    println!("{table}");
    write_benchmarks_section("cluster", &table);
    drop(servers);
    conn.close().await.ok();
    scratch.drop().await;
}

fn row(processes: usize, clients: usize, run: &Run) -> String {
    format!(
        "| {processes} | {clients} | {:.0} | {:.1} | {:.1} | {} |",
        run.per_s,
        run.p50_ms,
        run.p99_ms,
        run.errors_text()
    )
}

/// One-unit orders of `HOT` through `urls`, client `n` always through `urls[n % len]`.
async fn flash_sale(
    http: &reqwest::Client,
    urls: &[String],
    channel: &str,
    clients: usize,
    duration: Duration,
    tag: &'static str,
) -> Run {
    let (http, urls, channel) = (http.clone(), Arc::new(urls.to_vec()), channel.to_owned());
    let run = drive(clients, duration, move |client, n| {
        let (http, urls, channel) = (http.clone(), urls.clone(), channel.clone());
        async move {
            let variables = place_order_variables(&format!("pi_{tag}_{client}_{n}"), channel, &[("HOT", 1)]);
            try_gql(&http, &urls[client % urls.len()], PLACE_ORDER_ID, variables)
                .await
                .map(drop)
        }
    })
    .await;
    println!("{tag}: {:.0} orders/s, p99 {:.1} ms", run.per_s, run.p99_ms);
    run
}

async fn invariants(conn: &sea_orm::DatabaseConnection) -> (i64, i64, i64, i64, i64) {
    let row = conn
        .query_one_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!(
                "SELECT (SELECT SUM({STOCK} - stocked_quantity) FROM inventory_level l JOIN inventory_item i ON i.id = l.inventory_item_id WHERE i.sku = 'HOT')::bigint,
                        (SELECT COALESCE(SUM(quantity), 0) FROM order_line)::bigint,
                        (SELECT COALESCE(SUM(-delta), 0) FROM stock_movement WHERE order_id IS NOT NULL)::bigint,
                        (SELECT COUNT(*) FROM orders WHERE status = 'PLACED')::bigint,
                        (SELECT COUNT(DISTINCT payment_intent_id) FROM orders)::bigint"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    let get = |index| row.try_get_by_index::<i64>(index).unwrap();
    (get(0), get(1), get(2), get(3), get(4))
}

/// Opens the subscriptions, then places the backordering orders one at a time, each once
/// every subscriber has the previous one; returns the latency of every delivery (µs).
async fn subscribers(http: &reqwest::Client, urls: &[String], channel: &str) -> Histogram<u64> {
    // When each order's placeOrder returned, and when each subscriber had its event.
    let committed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let counted = Arc::new(tokio::sync::Notify::new());
    let after = {
        let conn = http.clone();
        let newest = gql(
            &conn,
            &urls[0],
            "{ backorderEvents(first: 1, newestFirst: true) { id } }",
            json!({}),
        )
        .await;
        newest["data"]["backorderEvents"][0]["id"]
            .as_str()
            .unwrap_or("0")
            .to_owned()
    };
    for subscriber in 0..SUBSCRIBERS {
        let addr = urls[subscriber % urls.len()]
            .trim_start_matches("http://")
            .trim_end_matches("/graphql")
            .to_owned();
        let (delivered, ready_tx, counted, after) =
            (delivered.clone(), ready_tx.clone(), counted.clone(), after.clone());
        tokio::spawn(async move {
            let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
            request
                .headers_mut()
                .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket");
            let send = |message: Value| Message::text(message.to_string());
            socket
                .send(send(
                    json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {BENCH_ADMIN_KEY}") } }),
                ))
                .await
                .unwrap();
            socket
                .send(send(json!({ "id": "1", "type": "subscribe", "payload": {
                    "query": "subscription($after: ID!) { backorderEvents(after: $after) { id orderId } }",
                    "variables": { "after": after } } })))
                .await
                .unwrap();
            ready_tx.send(()).await.unwrap();
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else { continue };
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "next" {
                    let order = message["payload"]["data"]["backorderEvents"]["orderId"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    delivered.lock().unwrap().push((order, Instant::now()));
                    counted.notify_one();
                }
            }
        });
    }
    for _ in 0..SUBSCRIBERS {
        ready_rx.recv().await.unwrap();
    }
    // A warm-up event: once every subscriber has it, every subscription is live.
    let mut expected = 0;
    for event in 0..=EVENTS {
        let url = &urls[event % urls.len()];
        let variables = place_order_variables(&format!("pi_feed_{event}"), channel, &[("BACK", 1)]);
        let answer = gql(http, url, PLACE_ORDER_ID, variables).await;
        let returned = Instant::now();
        let order = answer["data"]["placeOrder"]["id"].as_str().expect("placed").to_owned();
        committed.lock().unwrap().insert(order, returned);
        expected += SUBSCRIBERS;
        while delivered.lock().unwrap().len() < expected {
            tokio::time::timeout(Duration::from_secs(30), counted.notified())
                .await
                .expect("every subscriber gets every event");
        }
        if event == 0 {
            delivered.lock().unwrap().clear();
            committed.lock().unwrap().clear();
            expected = 0;
        }
    }
    let committed = committed.lock().unwrap();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for (order, at) in delivered.lock().unwrap().iter() {
        let since = at.saturating_duration_since(committed[order]);
        latency.saturating_record(since.as_micros().max(1) as u64);
    }
    latency
}
