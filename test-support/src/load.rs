//! Driving the real server under load, for the HTTP benches: spawn the release binary
//! ([`start_server`]), send GraphQL over HTTP, run many clients for a while and summarise
//! their latencies ([`drive`], [`Run`]), and write the results into `BENCHMARKS.md`.

use std::{
    collections::BTreeMap,
    future::Future,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::{process::Command, sync::Mutex};

use crate::process;

/// The admin key the server started by [`start_server`] accepts.
pub const BENCH_ADMIN_KEY: &str = "srk_http_bench_key";

/// What one measured run of many clients produced.
#[derive(Default, Clone)]
pub struct Run {
    pub per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Failed requests by error code.
    pub errors: BTreeMap<String, u64>,
}

impl Run {
    /// Errors as `CODE n, …`, or `0`.
    pub fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".to_owned();
        }
        let parts: Vec<String> = self.errors.iter().map(|(code, n)| format!("{code} {n}")).collect();
        parts.join(", ")
    }
}

/// The server under test: the release binary, on its own database; killed when dropped.
pub struct Server {
    _process: process::Server,
    /// `http://host:port/graphql`.
    pub url: String,
}

/// Starts `binary` (`env!("CARGO_BIN_EXE_stockroom")`) on `database_url` and waits until it
/// serves. It inherits the bench's environment and stderr.
pub async fn start_server(binary: &str, database_url: &str) -> Server {
    let mut command = Command::new(binary);
    command
        .env("DATABASE_URL", database_url)
        .env("STOCKROOM_ADDR", "127.0.0.1:0")
        .env("STOCKROOM_ADMIN_KEY", BENCH_ADMIN_KEY)
        .env("STOCKROOM_DEMO", "0")
        // The benches' anonymous readers are many clients on one address: unlimited.
        .env("STOCKROOM_ANONYMOUS_RATE", "0")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let process = process::Server::spawn(command).await;
    Server {
        url: format!("{}/graphql", process.url()),
        _process: process,
    }
}

/// Sends one GraphQL request as admin; returns the response body.
pub async fn gql(http: &reqwest::Client, url: &str, query: &str, variables: Value) -> Value {
    http.post(url)
        .bearer_auth(BENCH_ADMIN_KEY)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

/// Sends one GraphQL request; `Ok` or the error code it failed with.
pub async fn try_gql(http: &reqwest::Client, url: &str, query: &str, variables: Value) -> Result<Value, String> {
    let answer = http
        .post(url)
        .bearer_auth(BENCH_ADMIN_KEY)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|_| "HTTP".to_owned())?;
    let body: Value = answer.json().await.map_err(|_| "UNREADABLE".to_owned())?;
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => Err(code.to_owned()),
        None => Ok(body),
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Runs `clients` loops for `duration`, each calling `request(client, n)` with its own
/// counter `n`; `Ok` counts as done, `Err(code)` as an error. Returns throughput and
/// latency of the done and failed calls together.
pub async fn drive<F, Fut>(clients: usize, duration: Duration, request: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let merged = Arc::new(Mutex::new((new_histogram(), 0u64, BTreeMap::<String, u64>::new())));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (merged, request) = (merged.clone(), request.clone());
            tokio::spawn(async move {
                let mut histogram = new_histogram();
                let (mut done, mut errors) = (0u64, BTreeMap::<String, u64>::new());
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let began = Instant::now();
                    let outcome = request(client, n).await;
                    histogram.saturating_record(began.elapsed().as_micros() as u64);
                    match outcome {
                        Ok(()) => done += 1,
                        Err(code) => *errors.entry(code).or_default() += 1,
                    }
                }
                let mut merged = merged.lock().await;
                merged.0.add(&histogram).ok();
                merged.1 += done;
                for (code, count) in errors {
                    *merged.2.entry(code).or_default() += count;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    let elapsed = start.elapsed();
    let merged = merged.lock().await;
    let ms = |q: f64| merged.0.value_at_quantile(q) as f64 / 1000.0;
    Run {
        per_s: merged.1 as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(0.50),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
        errors: merged.2.clone(),
    }
}

/// Replaces the section of the workspace's `BENCHMARKS.md` between `<!-- {name}:begin -->`
/// and `<!-- {name}:end -->` with `content` (or appends it).
pub fn write_benchmarks_section(name: &str, content: &str) {
    // This crate lives one directory below the workspace root.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md");
    let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{begin}\n{content}\n{end}");
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(start), Some(stop)) => format!("{}{section}{}", &current[..start], &current[stop + end.len()..]),
        _ => format!("{}\n\n{section}\n", current.trim_end()),
    };
    std::fs::write(path, updated).expect("write BENCHMARKS.md");
}

/// Seconds per measured cell (`SECONDS_EACH`, default `default`).
pub fn seconds_each(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("SECONDS_EACH")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// Creates `locations` (by name) and one channel selling from them, preferred in that
/// order, through the API; returns (channel id, location ids).
pub async fn http_shop(http: &reqwest::Client, url: &str, locations: &[&str]) -> (String, Vec<String>) {
    let id = |v: &Value, field: &str| v["data"][field]["id"].as_str().expect("an id").to_owned();
    let mut location_ids = Vec::new();
    for name in locations {
        let created = gql(
            http,
            url,
            "mutation($n: String!) { createStockLocation(input: { name: $n }) { id } }",
            json!({ "n": name }),
        )
        .await;
        location_ids.push(id(&created, "createStockLocation"));
    }
    let created = gql(
        http,
        url,
        "mutation { createSalesChannel(input: { name: \"Web\" }) { id } }",
        json!({}),
    )
    .await;
    let channel = id(&created, "createSalesChannel");
    for (priority, location) in location_ids.iter().enumerate() {
        gql(
            http,
            url,
            "mutation($c: ID!, $l: ID!, $p: Int!) { mapSalesChannelLocation(input: { salesChannelId: $c, stockLocationId: $l, priority: $p }) { id } }",
            json!({ "c": channel, "l": location, "p": priority }),
        )
        .await;
    }
    (channel, location_ids)
}

/// Creates `sku` through the API with the given stock at each location.
pub async fn http_item(http: &reqwest::Client, url: &str, sku: &str, levels: &[(&str, i64)]) {
    gql(
        http,
        url,
        "mutation($s: String!) { createInventoryItem(input: { sku: $s, title: \"Bench item\" }) { id } }",
        json!({ "s": sku }),
    )
    .await;
    for (location, quantity) in levels {
        gql(
            http,
            url,
            "mutation($s: String!, $l: ID!, $q: Int!) { setStockLevel(input: { sku: $s, stockLocationId: $l, stockedQuantity: $q }) { version } }",
            json!({ "s": sku, "l": location, "q": quantity }),
        )
        .await;
    }
}
