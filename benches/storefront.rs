//! Storefront `availability` under load, beside the bare statement, and during a flash sale.
//!
//! 1. 1, 10 and 250 skus per call at 16 and 64 clients through `POST /graphql` (the release
//!    binary on PostgreSQL, 250 items at 2 mapped locations), and beside each, in the same
//!    run, one prepared statement answering the same question through sqlx on the same
//!    database.
//! 2. The mixed rush: 64 clients ordering one hot sku alone, then the same while 64 other
//!    clients read `availability` for that sku. Reports both sides' throughput and p99, and
//!    checks that no read ever showed more than was unsold: every read ≤ the stock before
//!    the first order, and, read after read from one client, never increasing (nothing is
//!    restocked). Stops loudly if a read breaks that.
//!
//! The clients share the machine with the server, so they are kept lean
//! (`load::Connection`: one connection each, bodies serialized once), and the readers get
//! a thread of their own, as shoppers on other machines would.
//!
//! ```sh
//! cargo bench --bench storefront                         # PostgreSQL at TEST_DATABASE_URL
//! STOREFRONT_MIXED_ONLY=1 cargo bench --bench storefront # only part 2, BENCHMARKS.md untouched
//! ```

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

use sea_orm::sqlx::{self, PgPool, postgres::PgPoolOptions};
use serde_json::json;
use stockroom_test_support::{
    database::ScratchDatabase,
    fixtures::{PLACE_ORDER_ID, place_order_variables},
    load::{
        self, Run, drive, graphql_body, graphql_outcome, http_item, http_shop, open_connections, start_server,
        write_benchmarks_section,
    },
};

const ITEMS: usize = 250;
const HOT_STOCK: i64 = 50_000_000;

const AVAILABILITY: &str = "query($c: ID!, $s: [String!]!) {
    availability(salesChannelId: $c, skus: $s) { sku available inStock backorderable } }";

/// The storefront's question as one prepared statement, for the "bare" column.
const BARE: &str = "SELECT i.sku, SUM(GREATEST(l.stocked_quantity - l.reserved_quantity, 0)) AS available,
        BOOL_OR(l.allow_backorder) AS backorderable
    FROM sales_channel_location m
    JOIN inventory_level l ON l.stock_location_id = m.stock_location_id
    JOIN inventory_item i ON i.id = l.inventory_item_id
    WHERE m.sales_channel_id = $1 AND i.sku = ANY($2)
    GROUP BY i.sku";

/// Two locations, one channel, `ITEMS` items with a level at each, and `HOT`; returns the
/// channel id.
async fn shop(http: &reqwest::Client, url: &str) -> String {
    let (channel, locations) = http_shop(http, url, &["Berlin", "Hamburg"]).await;
    for index in 0..ITEMS {
        let quantity = 100 + index as i64;
        let levels: Vec<(&str, i64)> = locations.iter().map(|location| (location.as_str(), quantity)).collect();
        http_item(http, url, &format!("SF-{index}"), &levels).await;
    }
    http_item(http, url, "HOT", &[(&locations[0], HOT_STOCK)]).await;
    channel
}

fn skus(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("SF-{index}")).collect()
}

async fn run_availability(url: &str, channel: &str, count: usize, clients: usize) -> Run {
    let connections = open_connections(url, clients).await;
    let body = graphql_body(AVAILABILITY, &json!({ "c": channel, "s": skus(count) }));
    drive(clients, load::seconds_each(5), move |client, _| {
        let (connections, body) = (connections.clone(), body.clone());
        async move {
            let answer = connections[client].lock().await.post(body).await?;
            graphql_outcome(&answer)
        }
    })
    .await
}

async fn run_bare(pool: &PgPool, channel: i32, count: usize, clients: usize) -> Run {
    let (pool, skus) = (pool.clone(), skus(count));
    drive(clients, load::seconds_each(5), move |_, _| {
        let (pool, skus) = (pool.clone(), skus.clone());
        async move {
            sqlx::query(BARE)
                .bind(channel)
                .bind(&skus)
                .fetch_all(&pool)
                .await
                .map(|_| ())
                .map_err(|err| err.to_string())
        }
    })
    .await
}

async fn run_flash_sale(url: &str, channel: &str, tag: &'static str) -> Run {
    let connections = open_connections(url, 64).await;
    let channel = channel.to_owned();
    drive(64, load::seconds_each(5), move |client, n| {
        let (connections, channel) = (connections.clone(), channel.clone());
        async move {
            let variables = place_order_variables(&format!("pi_{tag}_{client}_{n}"), channel, &[("HOT", 1)]);
            let answer = connections[client]
                .lock()
                .await
                .post(graphql_body(PLACE_ORDER_ID, &variables))
                .await?;
            graphql_outcome(&answer)
        }
    })
    .await
}

/// 64 readers of `HOT`'s availability; each checks its reads never rise and never exceed
/// the stock before the sale. Returns the run and how many reads broke that.
async fn run_readers(url: &str, channel: &str) -> (Run, u64) {
    #[derive(serde::Deserialize)]
    struct Reply {
        data: Option<Data>,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        availability: Vec<Availability>,
    }
    #[derive(serde::Deserialize)]
    struct Availability {
        available: i64,
    }
    let connections = open_connections(url, 64).await;
    let body = graphql_body(AVAILABILITY, &json!({ "c": channel, "s": ["HOT"] }));
    let last_seen: Arc<Vec<AtomicI64>> = Arc::new((0..64).map(|_| AtomicI64::new(HOT_STOCK)).collect());
    let broken = Arc::new(AtomicU64::new(0));
    let (seen, bad) = (last_seen.clone(), broken.clone());
    let run = drive(64, load::seconds_each(5), move |client, _| {
        let (connections, body, seen, bad) = (connections.clone(), body.clone(), seen.clone(), bad.clone());
        async move {
            let answer = connections[client].lock().await.post(body).await?;
            graphql_outcome(&answer)?;
            let available = serde_json::from_slice::<Reply>(&answer)
                .ok()
                .and_then(|reply| reply.data)
                .and_then(|data| data.availability.first().map(|sku| sku.available))
                .unwrap_or(i64::MAX);
            let before = seen[client].swap(available, Ordering::SeqCst);
            if available > before || available > HOT_STOCK {
                bad.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
    })
    .await;
    (run, broken.load(Ordering::SeqCst))
}

#[tokio::main]
async fn main() {
    let db = ScratchDatabase::create_named("storefront").await;
    let server = start_server(env!("CARGO_BIN_EXE_stockroom"), &db.url).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(200)
        .build()
        .expect("client");
    let channel = shop(&http, &server.url).await;
    let pool = PgPoolOptions::new()
        .max_connections(64)
        .connect(&db.url)
        .await
        .expect("pool");
    let channel_id: i32 = channel.parse().expect("an integer id");

    let mut table = format!(
        "Run of {} (`cargo bench --bench storefront`; {} s per cell):\n\n\
         | skus per call | clients | Stockroom req/s | p50 / p99 ms | errors | bare statement req/s | bare p99 ms | ratio |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        load::seconds_each(5).as_secs()
    );
    // Part 2 alone, for working on it: a partial table is not written to BENCHMARKS.md.
    let mixed_only = std::env::var_os("STOREFRONT_MIXED_ONLY").is_some();
    let counts: &[usize] = if mixed_only { &[] } else { &[1, 10, 250] };
    for &count in counts {
        for clients in [16, 64] {
            eprintln!("availability: {count} skus, {clients} clients");
            let ours = run_availability(&server.url, &channel, count, clients).await;
            let bare = run_bare(&pool, channel_id, count, clients).await;
            table += &format!(
                "| {count} | {clients} | {:.0} | {:.1} / {:.1} | {} | {:.0} | {:.1} | {:.2} |\n",
                ours.per_s,
                ours.p50_ms,
                ours.p99_ms,
                ours.errors_text(),
                bare.per_s,
                bare.p99_ms,
                ours.per_s / bare.per_s
            );
        }
    }

    if mixed_only {
        // As the table would have: the query pool open and every cache warm, so the rush
        // measures a running server, not its first seconds.
        run_availability(&server.url, &channel, 1, 64).await;
    }
    // The bare statement's connections are not needed from here on, and would crowd the
    // server's pools out of a default `max_connections` of 100.
    pool.close().await;
    eprintln!("mixed rush: the flash sale alone");
    let alone = run_flash_sale(&server.url, &channel, "alone").await;
    eprintln!("mixed rush: the flash sale with 64 readers");
    // The readers are other shoppers on other machines: they get a client thread of their
    // own, so the orders' clients never queue behind theirs in the bench's own scheduler.
    let readers = {
        let (url, channel) = (server.url.clone(), channel.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("the readers' runtime");
            runtime.block_on(run_readers(&url, &channel))
        })
    };
    let sale = run_flash_sale(&server.url, &channel, "mixed").await;
    let (readers, broken) = readers.join().expect("the readers' thread");
    table += &format!(
        "\nMixed rush (one hot sku; 64 clients ordering, and 64 others reading its availability):\n\n\
         | | orders/s | order p99 ms | reads/s | read p99 ms | reads above the unsold stock |\n\
         | --- | --- | --- | --- | --- | --- |\n\
         | flash sale alone | {:.0} | {:.1} | – | – | – |\n\
         | flash sale + readers | {:.0} ({:.0}% of alone) | {:.1} | {:.0} | {:.1} | {broken} |\n",
        alone.per_s,
        alone.p99_ms,
        sale.per_s,
        100.0 * sale.per_s / alone.per_s,
        sale.p99_ms,
        readers.per_s,
        readers.p99_ms,
    );
    println!("{table}");
    assert_eq!(broken, 0, "a storefront read showed more units than were unsold");
    if !mixed_only {
        write_benchmarks_section("storefront", &table);
    }
    drop(server);
    db.drop().await;
}
