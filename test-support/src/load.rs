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

/// One client's own keep-alive HTTP/1.1 connection to the server, sending prepared bodies:
/// the load of many clients at the cost of little more than the bytes sent, as `wrk`
/// makes it. On a machine shared with the server, a general-purpose client (connection
/// pool, header maps, a JSON tree per response) takes CPU the server then lacks, and the
/// bench would measure the client; so does one client's work queuing behind another's.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    /// Driven by the client's own task while it waits for an answer, not by a task of its
    /// own: no hand-over between tasks per request.
    connection: std::pin::Pin<Box<hyper::client::conn::http1::Connection<TcpIo, http_body_util::Full<bytes::Bytes>>>>,
    uri: hyper::Uri,
    host: hyper::header::HeaderValue,
    authorization: hyper::header::HeaderValue,
}

type TcpIo = hyper_util::rt::TokioIo<tokio::net::TcpStream>;

impl Connection {
    /// Opens a connection to `url` (`http://host:port/path`), sending [`BENCH_ADMIN_KEY`].
    pub async fn open(url: &str) -> Connection {
        let uri: hyper::Uri = url.parse().expect("a URL");
        let authority = uri.authority().expect("a URL with a host").as_str().to_owned();
        let stream = tokio::net::TcpStream::connect(&authority).await.expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        Connection {
            sender,
            connection: Box::pin(connection),
            host: authority.parse().expect("a header value"),
            uri,
            authorization: format!("Bearer {BENCH_ADMIN_KEY}").parse().expect("a header value"),
        }
    }

    /// Posts `body` (JSON) and returns the response body, or `HTTP` if the exchange failed.
    pub async fn post(&mut self, body: bytes::Bytes) -> Result<bytes::Bytes, String> {
        use http_body_util::BodyExt as _;
        use hyper::header;
        let request = hyper::Request::post(self.uri.clone())
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, self.authorization.clone())
            .body(http_body_util::Full::new(body))
            .expect("a request");
        let sender = &mut self.sender;
        let exchange = async move {
            let response = sender.send_request(request).await.ok()?;
            Some(response.into_body().collect().await.ok()?.to_bytes())
        };
        tokio::select! {
            answer = exchange => answer.ok_or_else(|| "HTTP".to_owned()),
            // The connection's future ends only when the connection does.
            _ = self.connection.as_mut() => Err("HTTP".to_owned()),
        }
    }
}

/// One [`Connection`] per client, each used by one client at a time.
pub type Connections = Arc<[Mutex<Connection>]>;

/// Opens `count` connections to `url`.
pub async fn open_connections(url: &str, count: usize) -> Connections {
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        connections.push(Mutex::new(Connection::open(url).await));
    }
    connections.into()
}

/// A GraphQL request body, serialized once.
pub fn graphql_body(query: &str, variables: &Value) -> bytes::Bytes {
    serde_json::to_vec(&json!({ "query": query, "variables": variables }))
        .expect("JSON")
        .into()
}

/// `Ok` for a GraphQL response body without errors, else its first error's code (`UNCODED`
/// if it has none, `UNREADABLE` if the body is not a GraphQL response); read without
/// building the body's JSON tree.
pub fn graphql_outcome(body: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(default)]
        errors: Vec<Error>,
    }
    #[derive(serde::Deserialize)]
    struct Error {
        extensions: Option<Extensions>,
    }
    #[derive(serde::Deserialize)]
    struct Extensions {
        code: Option<String>,
    }
    let reply: Reply = serde_json::from_slice(body).map_err(|_| "UNREADABLE".to_owned())?;
    match reply.errors.into_iter().next() {
        None => Ok(()),
        Some(error) => Err(error
            .extensions
            .and_then(|extensions| extensions.code)
            .unwrap_or_else(|| "UNCODED".to_owned())),
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
