//! The real `stockroom` binary, spawned as an operator would start it: start-up checks,
//! several processes starting together, what `/metrics` shows from the first scrape.

use std::{
    path::PathBuf,
    process::{Output, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
};

use crate::helpers::EmptyDatabase;

/// How long a process may take to migrate, seed and start listening.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// A running `stockroom` process, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    /// What it printed at start-up: up to its "serving" line, and the line about keys after it.
    banner: Vec<String>,
}

fn command(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockroom"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("STOCKROOM_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

impl Server {
    /// Starts the binary with `envs` and waits until it listens.
    async fn start(database_url: &str, envs: &[(&str, &str)]) -> Server {
        let mut child = command(database_url)
            .envs(envs.iter().copied())
            .spawn()
            .expect("spawn stockroom");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        let serving = tokio::time::timeout(START_PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                banner.push(line.clone());
                if let Some(rest) = line.split("http://").nth(1) {
                    banner.extend(lines.next_line().await.unwrap());
                    return Some(rest.trim_end_matches("/graphql").to_owned());
                }
            }
            None
        })
        .await
        .expect("the server started in time");
        let Some(addr) = serving else {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).await.ok();
            panic!("the server exited before serving: {banner:?}\n{stderr}");
        };
        // Keep reading what it prints, so that it never writes into a full or closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("stockroom: {line}");
            }
        });
        Server { child, addr, banner }
    }

    /// `GET path` over plain HTTP/1.1: status and body.
    async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr)
            .await
            .unwrap_or_else(|err| panic!("{} refused a connection ({err}); see its stderr above", self.addr));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.start_kill().ok();
    }
}

/// A throw-away SQLite file (removed when dropped).
struct SqliteFile(PathBuf);

impl SqliteFile {
    fn new() -> SqliteFile {
        SqliteFile(std::env::temp_dir().join(format!("stockroom_proc_{}.sqlite", uuid::Uuid::new_v4().simple())))
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.display())
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.0.clone().into_os_string();
            file.push(suffix);
            std::fs::remove_file(file).ok();
        }
    }
}

#[tokio::test]
async fn every_metric_series_exists_from_the_first_scrape() {
    let file = SqliteFile::new();
    let server = Server::start(&file.url(), &[("STOCKROOM_DEMO", "0")]).await;
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "stockroom_orders_total{outcome=\"placed\"} 0",
        "stockroom_orders_total{outcome=\"rejected\"} 0",
        "stockroom_orders_total{outcome=\"OUT_OF_STOCK\"} 0",
        "stockroom_webhook_deliveries_total{result=\"processed\"} 0",
        "stockroom_webhook_deliveries_total{result=\"refused\"} 0",
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
        let Output { status, stderr, .. } = command(&file.url()).env(variable, value).output().await.unwrap();
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
    let servers = futures_util::future::join_all((0..3).map(|_| Server::start(&database.url, &[]))).await;
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
