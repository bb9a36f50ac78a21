//! The flash sale, measured: the release `stockroom` binary on PostgreSQL, driven over
//! `POST /graphql` by a real HTTP client, beside the bare SQL of one order at the same
//! concurrency, in the same run.
//!
//! Scenarios: (a) one hot sku, (b) 64 skus, (c) two-line orders over 4 hot skus. For each
//! concurrency (1, 4, 16, 64, 128 clients) it prints orders/s, p50/p95/p99, errors by
//! code and the ratio to the bare SQL (insert order, `FOR UPDATE` the level, guarded
//! update, insert line, insert ledger row, through sqlx); beside them the naive
//! read-then-write (read stock, write `stock - 1` back) and the units it oversold. After
//! each scenario it checks the invariants (units taken == order lines == ledger units, one
//! order per PaymentIntent) and stops loudly if one breaks. The table goes into
//! `BENCHMARKS.md` and a chart into `docs/flash_sale.svg`.
//!
//! ```sh
//! cargo bench --bench flash_sale                  # PostgreSQL at TEST_DATABASE_URL
//! SECONDS_EACH=3 CLIENTS="1 16 64" cargo bench --bench flash_sale
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};
use sea_orm::sqlx::{self, PgPool, Row as _, postgres::PgPoolOptions};
use serde_json::{Value, json};
use stockroom_test_support::{
    database::ScratchDatabase,
    fixtures::PLACE_ORDER_ID,
    load::{Run, drive, http_item, http_shop, seconds_each, start_server, try_gql, write_benchmarks_section},
};

const STOCK: i32 = 100_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    HotSku,
    ManySkus,
    TwoLines,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::HotSku => "one hot sku",
            Scenario::ManySkus => "64 skus",
            Scenario::TwoLines => "two-line orders, 4 hot skus",
        }
    }

    fn skus(self) -> usize {
        match self {
            Scenario::HotSku => 1,
            Scenario::ManySkus => 64,
            Scenario::TwoLines => 4,
        }
    }

    /// The lines of the `n`th order: (sku index, quantity).
    fn lines(self, n: u64) -> Vec<usize> {
        match self {
            Scenario::HotSku => vec![0],
            Scenario::ManySkus => vec![(n.wrapping_mul(2_654_435_761) % 64) as usize],
            Scenario::TwoLines => vec![(n % 4) as usize, ((n + 1) % 4) as usize],
        }
    }
}

/// A location, a channel and `skus` items with ample stock; returns the channel id.
async fn shop(http: &reqwest::Client, url: &str, skus: usize) -> String {
    let (channel, locations) = http_shop(http, url, &["Hot"]).await;
    for sku in 0..skus {
        http_item(http, url, &format!("FLASH-{sku}"), &[(&locations[0], i64::from(STOCK))]).await;
    }
    channel
}

/// `clients` HTTP clients placing orders for `duration`.
async fn run_http(url: &str, channel: &str, scenario: Scenario, clients: usize, duration: Duration, tag: &str) -> Run {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let (url, channel, tag) = (url.to_owned(), channel.to_owned(), tag.to_owned());
    drive(clients, duration, move |client, n| {
        let (http, url, channel, tag) = (http.clone(), url.clone(), channel.clone(), tag.clone());
        async move {
            let lines: Vec<Value> = scenario
                .lines(client as u64 * 1_000_000_007 + n)
                .into_iter()
                .map(|sku| json!({ "sku": format!("FLASH-{sku}"), "quantity": 1 }))
                .collect();
            let variables = json!({ "pi": format!("pi_{tag}_{client}_{n}"), "c": channel, "lines": lines });
            try_gql(&http, &url, PLACE_ORDER_ID, variables).await.map(|_| ())
        }
    })
    .await
}

/// The bare SQL of one order per transaction (what `../shared/bench/place.sql` runs).
async fn run_bare(pool: &PgPool, scenario: Scenario, clients: usize, duration: Duration) -> Run {
    let pool = pool.clone();
    let run = Instant::now();
    drive(clients, duration, move |client, n| {
        let pool = pool.clone();
        async move {
            let mut levels: Vec<i64> = scenario
                .lines(client as u64 * 1_000_000_007 + n)
                .into_iter()
                .map(|sku| sku as i64 + 1)
                .collect();
            levels.sort_unstable();
            let mut txn = pool.begin().await.map_err(|err| err.to_string())?;
            let order: i64 =
                sqlx::query_scalar("INSERT INTO orders(payment_intent_id, status) VALUES ($1, 'PLACED') RETURNING id")
                    .bind(format!("pi_bare_{client}_{n}_{}", run.elapsed().as_nanos()))
                    .fetch_one(&mut *txn)
                    .await
                    .map_err(|err| err.to_string())?;
            for level in levels {
                let row = sqlx::query("SELECT stocked, version FROM levels WHERE id = $1 FOR UPDATE")
                    .bind(level)
                    .fetch_one(&mut *txn)
                    .await
                    .map_err(|err| err.to_string())?;
                let (stocked, version): (i32, i32) = (row.get(0), row.get(1));
                sqlx::query(
                    "UPDATE levels SET stocked = stocked - 1, version = version + 1 WHERE id = $1 AND version = $2",
                )
                .bind(level)
                .bind(version)
                .execute(&mut *txn)
                .await
                .map_err(|err| err.to_string())?;
                sqlx::query("INSERT INTO lines(order_id, level_id, quantity) VALUES ($1, $2, 1)")
                    .bind(order)
                    .bind(level)
                    .execute(&mut *txn)
                    .await
                    .map_err(|err| err.to_string())?;
                sqlx::query("INSERT INTO ledger(level_id, delta, order_id, resulting) VALUES ($1, -1, $2, $3)")
                    .bind(level)
                    .bind(order)
                    .bind(stocked - 1)
                    .execute(&mut *txn)
                    .await
                    .map_err(|err| err.to_string())?;
            }
            txn.commit().await.map_err(|err| err.to_string())
        }
    })
    .await
}

/// The naive read-then-write on a level of `units` stock, each client buying until it
/// reads zero: returns the units sold beyond the stock (lost updates).
async fn run_naive(pool: &PgPool, clients: usize, units: i32) -> i64 {
    sqlx::query("UPDATE levels SET stocked = $1 WHERE id = 1000")
        .bind(units)
        .execute(pool)
        .await
        .expect("reset");
    let sold = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (pool, sold) = (pool.clone(), sold.clone());
            tokio::spawn(async move {
                loop {
                    let stocked: i32 = sqlx::query_scalar("SELECT stocked FROM levels WHERE id = 1000")
                        .fetch_one(&pool)
                        .await
                        .expect("read");
                    if stocked < 1 {
                        return;
                    }
                    sqlx::query("UPDATE levels SET stocked = $1 WHERE id = 1000")
                        .bind(stocked - 1)
                        .execute(&pool)
                        .await
                        .expect("write");
                    sold.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("naive task");
    }
    sold.load(std::sync::atomic::Ordering::SeqCst) - i64::from(units)
}

async fn bare_schema(pool: &PgPool) {
    for statement in [
        "CREATE TABLE levels (id bigint PRIMARY KEY, stocked int NOT NULL, version int NOT NULL DEFAULT 1)",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, payment_intent_id text NOT NULL UNIQUE, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE lines (id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders(id), level_id bigint NOT NULL REFERENCES levels(id), quantity int NOT NULL)",
        "CREATE TABLE ledger (id bigserial PRIMARY KEY, level_id bigint NOT NULL REFERENCES levels(id), delta int NOT NULL, order_id bigint REFERENCES orders(id), resulting int NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
        "INSERT INTO levels(id, stocked) SELECT g, 100000000 FROM generate_series(1, 1000) g",
    ] {
        sqlx::query(statement).execute(pool).await.expect("bare schema");
    }
}

/// Units taken, order lines and ledger units on Stockroom's database must agree, and no
/// PaymentIntent may have two orders. Panics (loudly) if not.
async fn check_invariants(pool: &PgPool) -> String {
    let number = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.expect(sql) };
    let taken = number("SELECT COALESCE(SUM(100000000 - stocked_quantity), 0)::bigint FROM inventory_level").await;
    let lines = number("SELECT COALESCE(SUM(quantity), 0)::bigint FROM order_line").await;
    let ledger = number("SELECT COALESCE(-SUM(delta), 0)::bigint FROM stock_movement WHERE reason = 'ORDER'").await;
    let orders = number("SELECT COUNT(*) FROM orders").await;
    let intents = number("SELECT COUNT(DISTINCT payment_intent_id) FROM orders").await;
    let negative = number("SELECT COUNT(*) FROM inventory_level WHERE stocked_quantity < 0").await;
    assert!(
        taken == lines && lines == ledger && orders == intents && negative == 0,
        "INVARIANT BROKEN: taken {taken}, order lines {lines}, ledger {ledger}, orders {orders}, PaymentIntents {intents}, negative levels {negative}"
    );
    format!(
        "units taken {taken} = order lines {lines} = ledger units {ledger}; {orders} orders, one per PaymentIntent; no oversell"
    )
}

struct Cell {
    scenario: Scenario,
    clients: usize,
    ours: Run,
    bare: Run,
    naive_oversold: Option<i64>,
}

#[tokio::main]
async fn main() {
    let duration = seconds_each(5);
    let seconds = duration.as_secs();
    let clients: Vec<usize> = std::env::var("CLIENTS")
        .ok()
        .map(|list| list.split_whitespace().filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16, 64, 128]);
    let scenarios = [Scenario::HotSku, Scenario::ManySkus, Scenario::TwoLines];

    let bare_db = ScratchDatabase::create_named("bare").await;
    // PostgreSQL allows 100 connections by default, and the server under test holds 20:
    // above 64 clients the bare SQL's clients queue for a connection, as behind a pooler.
    let bare = PgPoolOptions::new()
        .max_connections(64)
        .acquire_timeout(Duration::from_secs(300))
        .connect(&bare_db.url)
        .await
        .expect("bare pool");
    bare_schema(&bare).await;

    let progress = ProgressBar::new((scenarios.len() * clients.len()) as u64);
    progress.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("template"));
    let mut rows = Vec::new();
    let mut checks = Vec::new();
    for scenario in scenarios {
        let db = ScratchDatabase::create_named(&format!("{scenario:?}").to_lowercase()).await;
        let server = start_server(env!("CARGO_BIN_EXE_stockroom"), &db.url).await;
        let url = server.url.clone();
        let http = reqwest::Client::new();
        let channel = shop(&http, &url, scenario.skus()).await;
        for &c in &clients {
            progress.set_message(format!("{}, {c} clients", scenario.name()));
            let ours = run_http(&url, &channel, scenario, c, duration, &format!("{c}")).await;
            let bare_run = run_bare(&bare, scenario, c, duration).await;
            let naive_oversold = if scenario == Scenario::HotSku {
                Some(run_naive(&bare, c, 100).await)
            } else {
                None
            };
            rows.push(Cell {
                scenario,
                clients: c,
                ours,
                bare: bare_run,
                naive_oversold,
            });
            progress.inc(1);
        }
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&db.url)
            .await
            .expect("check pool");
        checks.push(format!("{}: {}", scenario.name(), check_invariants(&pool).await));
        pool.close().await;
        drop(server);
        db.drop().await;
    }
    progress.finish_and_clear();
    bare.close().await;
    bare_db.drop().await;

    let table = render(&rows, &checks, seconds);
    println!("{table}");
    write_benchmarks_section(
        "flash_sale",
        &format!("{table}\n![orders/s and p99 against clients](docs/flash_sale.svg)"),
    );
    chart(&rows, "docs/flash_sale.svg");
    println!("chart: docs/flash_sale.svg");
}

fn render(rows: &[Cell], checks: &[String], seconds: u64) -> String {
    let mut out = format!(
        "Run of {} ({seconds} s per cell, `cargo bench --bench flash_sale`):\n\n\
         | scenario | clients | Stockroom orders/s | p50 / p95 / p99 ms | errors | bare SQL orders/s | bare p99 ms | ratio | naive read-then-write oversold |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    for row in rows {
        let errors = row.ours.errors_text();
        out += &format!(
            "| {} | {} | {:.0} | {:.1} / {:.1} / {:.1} | {} | {:.0} | {:.1} | {:.2} | {} |\n",
            row.scenario.name(),
            row.clients,
            row.ours.per_s,
            row.ours.p50_ms,
            row.ours.p95_ms,
            row.ours.p99_ms,
            errors,
            row.bare.per_s,
            row.bare.p99_ms,
            row.ours.per_s / row.bare.per_s,
            row.naive_oversold.map_or("–".to_owned(), |n| format!("{n} of 100")),
        );
    }
    out += "\nInvariants after each scenario:\n";
    for check in checks {
        out += &format!("- {check}\n");
    }
    out
}

/// Orders/s and p99 against clients, Stockroom beside the bare SQL, one hot sku.
fn chart(rows: &[Cell], file: &str) {
    use plotters::prelude::*;
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let root = SVGBackend::new(&path, (960, 420)).into_drawing_area();
    root.fill(&WHITE).expect("fill");
    let (left, right) = root.split_horizontally(480);
    let hot: Vec<&Cell> = rows.iter().filter(|row| row.scenario == Scenario::HotSku).collect();
    let max_clients = hot.iter().map(|row| row.clients).max().unwrap_or(1) as f64;
    let series = |pick: &dyn Fn(&Cell) -> f64| -> Vec<(f64, f64)> {
        hot.iter().map(|row| (row.clients as f64, pick(row))).collect()
    };
    for (area, title, ours, bare) in [
        (
            &left,
            "one hot sku: orders/s",
            series(&|r| r.ours.per_s),
            series(&|r| r.bare.per_s),
        ),
        (
            &right,
            "one hot sku: p99 ms",
            series(&|r| r.ours.p99_ms),
            series(&|r| r.bare.p99_ms),
        ),
    ] {
        let top = ours.iter().chain(&bare).map(|(_, y)| *y).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..max_clients * 1.05, 0.0..top)
            .expect("chart");
        chart.configure_mesh().x_desc("clients").draw().expect("mesh");
        chart
            .draw_series(LineSeries::new(ours.clone(), BLUE.stroke_width(2)))
            .expect("ours")
            .label("Stockroom (HTTP + GraphQL)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart
            .draw_series(LineSeries::new(bare.clone(), RED.stroke_width(2)))
            .expect("bare")
            .label("bare SQL, one order per transaction")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart
            .draw_series(ours.iter().map(|p| Circle::new(*p, 3, BLUE.filled())))
            .expect("points");
        chart
            .draw_series(bare.iter().map(|p| Circle::new(*p, 3, RED.filled())))
            .expect("points");
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .expect("legend");
    }
    root.present().expect("write the chart");
}
