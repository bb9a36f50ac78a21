//! `TestApp`: the real router on a fresh, throw-away database, plus fixture builders and
//! invariant checks. Every test runs through [`on_each_backend`], once on SQLite and once
//! on PostgreSQL (`TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! Without a reachable PostgreSQL the PostgreSQL half is skipped loudly, unless `CI` is
//! set: then it fails.

use std::{
    collections::HashMap,
    future::{Future, IntoFuture},
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use axum::{Router, body::Body, http::Request};
use entity::{inventory_level, stock_movement};
use http_body_util::BodyExt;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, Statement};
use serde_json::{Value, json};
use stockroom::{
    AppState, Config,
    db::{self, Database},
    inventory::{
        catalog::{self, ChannelMapping},
        stock::{self, SetStockLevel},
        values::{Name, Sku},
    },
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Barrier,
};

/// The admin key every test app accepts (registered as `STOCKROOM_ADMIN_KEY`).
pub const ADMIN_KEY: &str = "srk_test_admin_key_0123456789";

/// Which engine a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A throw-away database, removed when dropped (also when the test panics).
enum TestDatabase {
    Sqlite(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self {
            TestDatabase::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    std::fs::remove_file(file).ok();
                }
            }
            TestDatabase::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs outside any async context we could borrow, so the DROP gets
                // its own thread and runtime.
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            admin.execute_unprepared(&sql).await.ok();
                        }
                    });
                })
                .join()
                .ok();
            }
        }
    }
}

/// Sends GraphQL requests through the real router; cheap to clone into racing tasks.
#[derive(Clone)]
pub struct Client {
    router: Router,
    key: Option<String>,
}

/// A GraphQL response body.
#[derive(Debug, Clone)]
pub struct Gql(pub Value);

impl Gql {
    /// `data`, asserting there were no errors.
    pub fn data(&self) -> &Value {
        assert!(self.0.get("errors").is_none(), "unexpected GraphQL errors: {}", self.0);
        &self.0["data"]
    }

    /// The first error's `extensions.code`, if any.
    pub fn error_code(&self) -> Option<&str> {
        self.0["errors"][0]["extensions"]["code"].as_str()
    }

    /// The first error's extensions, asserting there is an error.
    pub fn error_extensions(&self) -> &Value {
        assert!(self.0.get("errors").is_some(), "expected an error, got {}", self.0);
        &self.0["errors"][0]["extensions"]
    }
}

impl Client {
    /// The same client without an admin key.
    pub fn anonymous(&self) -> Client {
        Client {
            router: self.router.clone(),
            key: None,
        }
    }

    /// The same client presenting `key`.
    pub fn with_key(&self, key: &str) -> Client {
        Client {
            router: self.router.clone(),
            key: Some(key.to_owned()),
        }
    }

    /// Sends a raw HTTP request; returns the whole response.
    pub async fn respond(&self, request: Request<Body>) -> axum::response::Response {
        use tower::ServiceExt;
        self.router.clone().oneshot(request).await.expect("router never fails")
    }

    /// Sends a raw HTTP request; returns status and body.
    pub async fn send(&self, request: Request<Body>) -> (u16, axum::body::Bytes) {
        let response = self.respond(request).await;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        (status, body)
    }

    /// Runs a GraphQL operation over HTTP POST.
    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        let mut request = Request::post("/graphql").header("content-type", "application/json");
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, body) = self.send(request.body(Body::from(body)).unwrap()).await;
        assert_eq!(
            status,
            200,
            "GraphQL answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Gql(serde_json::from_slice(&body).expect("GraphQL answers JSON"))
    }
}

/// The app under test.
pub struct TestApp {
    pub backend: Backend,
    state: AppState,
    client: Client,
    statements: Arc<AtomicUsize>,
    database: Arc<TestDatabase>,
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `host:port` of the test PostgreSQL server, as written in its URL.
fn postgres_address() -> String {
    let url = admin_url();
    let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let after_user = after_scheme.rsplit_once('@').map_or(after_scheme, |(_, rest)| rest);
    after_user.split('/').next().unwrap_or(after_user).to_owned()
}

/// A TCP proxy in front of PostgreSQL that a test can switch off, to prove the app
/// survives a database outage (after crates.io's `ChaosProxy`).
pub struct ChaosProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl ChaosProxy {
    /// Starts a proxy to the test PostgreSQL server, passing traffic.
    pub async fn start() -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = postgres_address();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropping the socket refuses the connection
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        tokio::io::copy_bidirectional(&mut client, &mut server).await.ok();
                    }
                });
                accept_connections.lock().unwrap().push(task.abort_handle());
            }
        });
        ChaosProxy { addr, up, connections }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn break_database(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore_database(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A fresh PostgreSQL database with nothing in it (not even migrations), dropped with
/// this value: for tests that start server processes themselves.
pub struct EmptyDatabase {
    pub url: String,
    database: TestDatabase,
}

impl EmptyDatabase {
    /// Creates it, or `None` (loudly) if PostgreSQL is unreachable; under `CI`, panics.
    pub async fn postgres() -> Option<EmptyDatabase> {
        let admin_url = admin_url();
        let admin = match sea_orm::Database::connect(&admin_url).await {
            Ok(admin) => admin,
            Err(err) if std::env::var_os("CI").is_some() => {
                panic!("CI is set but PostgreSQL at {admin_url} is unreachable: {err}")
            }
            Err(err) => {
                eprintln!(
                    "\n!!!!! PostgreSQL at {admin_url} is unreachable ({err}).\n\
                     !!!!! SKIPPING the PostgreSQL half of this test. Set TEST_DATABASE_URL or start PostgreSQL.\n"
                );
                return None;
            }
        };
        let name = unique_name();
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create database");
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("TEST_DATABASE_URL has a database path");
        let url = format!("{base}/{name}");
        let database = TestDatabase::Postgres { admin_url, name };
        Some(EmptyDatabase { url, database })
    }
}

fn unique_name() -> String {
    format!("stockroom_test_{}", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    async fn start(
        backend: Backend,
        url: &str,
        database: TestDatabase,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
        tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(filter)
            .try_init()
            .ok();
        let mut config = Config::for_database(url);
        config.admin_key = Some(ADMIN_KEY.parse().unwrap());
        // Tests send many anonymous requests from one (in-process) address; the tests of
        // the limit itself turn it back on.
        config.anonymous_rate = 0;
        configure(&mut config);
        let mut conn = db::connect(&config).await.expect("connect");
        let statements = Arc::new(AtomicUsize::new(0));
        let counter = statements.clone();
        conn.set_metric_callback(move |info| {
            if std::env::var_os("SHOW_SQL").is_some() {
                eprintln!("SQL: {}", info.statement);
            }
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let state = AppState::from_connection(conn, config).await.expect("migrate");
        let router = stockroom::http::router(state.clone());
        TestApp {
            backend,
            state,
            client: Client {
                router,
                key: Some(ADMIN_KEY.to_owned()),
            },
            statements,
            database: Arc::new(database),
        }
    }

    /// A second server process on the same database: its own pool, event feed and router,
    /// with this one's settings changed by `configure`.
    pub async fn another_process(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = (*self.state.config).clone();
        configure(&mut config);
        let conn = db::connect(&config).await.expect("connect");
        let state = AppState::from_connection(conn, config).await.expect("migrate");
        let router = stockroom::http::router(state.clone());
        TestApp {
            backend: self.backend,
            state,
            client: Client {
                router,
                key: Some(ADMIN_KEY.to_owned()),
            },
            statements: Arc::default(),
            database: self.database.clone(),
        }
    }

    /// Serves the app on a real socket (for WebSocket clients); returns its address.
    pub async fn listen(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.client.router.clone();
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        addr
    }

    /// The app's schema, for driving many subscriptions without sockets.
    pub fn schema(&self) -> stockroom::graphql::StockroomSchema {
        stockroom::graphql::build_schema(self.state.clone())
    }

    /// A fresh SQLite file in the temp directory, with settings changed by `configure`.
    pub async fn sqlite_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let path = std::env::temp_dir().join(format!("{}.sqlite", unique_name()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        TestApp::start(Backend::Sqlite, &url, TestDatabase::Sqlite(path), configure).await
    }

    /// A fresh PostgreSQL database with settings changed by `configure`, or `None`
    /// (loudly) if PostgreSQL is unreachable.
    pub async fn postgres_with(configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
        TestApp::postgres_via(None, configure).await
    }

    /// A fresh PostgreSQL database that the app reaches through `proxy` (so the test can
    /// cut the app off from its database), or `None` if PostgreSQL is unreachable.
    pub async fn postgres_through(proxy: &ChaosProxy, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
        TestApp::postgres_via(Some(proxy.addr), configure).await
    }

    async fn postgres_via(proxy: Option<SocketAddr>, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let EmptyDatabase { url, database } = EmptyDatabase::postgres().await?;
        let url = match proxy {
            Some(proxy) => url.replace(&postgres_address(), &proxy.to_string()),
            None => url,
        };
        Some(TestApp::start(Backend::Postgres, &url, database, configure).await)
    }

    /// The HTTP client for this app (admin by default).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The app's shared state (database, settings, Stripe client, event hub).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The domain-level handle on the database.
    pub fn db(&self) -> &Database {
        &self.state.db
    }

    /// SQL statements run so far through the app's pool.
    pub fn statements_run(&self) -> usize {
        self.statements.load(Ordering::SeqCst)
    }

    /// Runs a GraphQL operation as admin.
    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        self.client.gql(query, variables).await
    }

    /// Creates a stock location; returns its id.
    pub async fn location(&self, name: &str) -> i32 {
        catalog::create_location(self.db(), Name::parse(name, "name").unwrap())
            .await
            .unwrap()
            .id
    }

    /// Creates a channel mapped to `locations` as (location id, priority); returns its id.
    pub async fn channel(&self, name: &str, locations: &[(i32, i32)]) -> i32 {
        let channel = catalog::create_channel(self.db(), Name::parse(name, "name").unwrap())
            .await
            .unwrap();
        for &(stock_location_id, priority) in locations {
            let mapping = ChannelMapping {
                sales_channel_id: channel.id,
                stock_location_id,
                priority,
            };
            catalog::map_channel_location(self.db(), &mapping).await.unwrap();
        }
        channel.id
    }

    /// Creates a shipping option at `location`; returns its id.
    pub async fn shipping_option(&self, name: &str, location: i32) -> i32 {
        let name = Name::parse(name, "name").unwrap();
        catalog::create_shipping_option(self.db(), name, location)
            .await
            .unwrap()
            .id
    }

    /// Starts building an item: `app.item("A-1").level(loc, 5).backorder_level(other, 0).await`.
    pub fn item<'a>(&'a self, sku: &str) -> ItemBuilder<'a> {
        ItemBuilder {
            app: self,
            sku: sku.to_owned(),
            levels: Vec::new(),
        }
    }

    /// The level of `sku` at `location`.
    pub async fn level(&self, sku: &str, location: i32) -> inventory_level::Model {
        let item = stockroom::inventory::lookup::item_by_sku(self.db().conn(), &Sku::parse(sku).unwrap())
            .await
            .unwrap();
        inventory_level::Entity::find()
            .all(self.db().conn())
            .await
            .unwrap()
            .into_iter()
            .find(|level| level.inventory_item_id == item.id && level.stock_location_id == location)
            .expect("level exists")
    }

    /// Counts rows of a table.
    pub async fn count(&self, table: &str) -> i64 {
        let backend = self.db().backend();
        let row = self
            .db()
            .conn()
            .query_one_raw(Statement::from_string(
                backend,
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    /// See [`assert_ledger_matches_levels`].
    pub async fn assert_ledger_matches_levels(&self) {
        assert_ledger_matches_levels(self.db().conn()).await;
    }
}

/// Asserts the ledger invariant for every level: the quantity before the first
/// movement plus all deltas equals the current quantity (stocked and reserved), and
/// each movement's `*_after` continues from the previous one.
pub async fn assert_ledger_matches_levels(conn: &sea_orm::DatabaseConnection) {
    let levels = inventory_level::Entity::find().all(conn).await.unwrap();
    let movements = stock_movement::Entity::find()
        .order_by_asc(stock_movement::Column::Id)
        .all(conn)
        .await
        .unwrap();
    let mut by_level: HashMap<i32, Vec<&stock_movement::Model>> = HashMap::new();
    for movement in &movements {
        by_level.entry(movement.inventory_level_id).or_default().push(movement);
    }
    for level in &levels {
        let moves = by_level.get(&level.id).map(Vec::as_slice).unwrap_or_default();
        let first = moves.first().expect("every level has at least its creating movement");
        let mut stocked = first.stocked_after - first.delta;
        let mut reserved = first.reserved_after - first.reserved_delta;
        for movement in moves {
            stocked += movement.delta;
            reserved += movement.reserved_delta;
            assert_eq!(
                stocked, movement.stocked_after,
                "ledger chain broken at movement {}",
                movement.id
            );
            assert_eq!(
                reserved, movement.reserved_after,
                "ledger chain broken at movement {}",
                movement.id
            );
        }
        assert_eq!(
            stocked, level.stocked_quantity,
            "ledger sum != stocked for level {}",
            level.id
        );
        assert_eq!(
            reserved, level.reserved_quantity,
            "ledger sum != reserved for level {}",
            level.id
        );
    }
}

/// Builds an inventory item with levels; `.await` creates it and returns the item id.
pub struct ItemBuilder<'a> {
    app: &'a TestApp,
    sku: String,
    levels: Vec<(i32, i32, bool)>,
}

impl<'a> ItemBuilder<'a> {
    /// A level at `location` with `quantity` units, no backorder.
    pub fn level(mut self, location: i32, quantity: i32) -> Self {
        self.levels.push((location, quantity, false));
        self
    }

    /// A level at `location` with `quantity` units that allows backorder.
    pub fn backorder_level(mut self, location: i32, quantity: i32) -> Self {
        self.levels.push((location, quantity, true));
        self
    }
}

impl<'a> IntoFuture for ItemBuilder<'a> {
    type Output = i32;
    type IntoFuture = Pin<Box<dyn Future<Output = i32> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let sku = Sku::parse(&self.sku).unwrap();
            let title = Name::parse(&format!("Item {}", self.sku), "title").unwrap();
            let item = catalog::create_item(self.app.db(), sku.clone(), title).await.unwrap();
            for (stock_location_id, stocked_quantity, allow_backorder) in self.levels {
                let cmd = SetStockLevel::unguarded(sku.clone(), stock_location_id, stocked_quantity, allow_backorder);
                stock::set_stock_level(self.app.db(), &cmd).await.unwrap();
            }
            item.id
        })
    }
}

/// Runs `test` on a fresh SQLite app, then on a fresh PostgreSQL app.
pub async fn on_each_backend<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    on_each_backend_with(|_| {}, test).await
}

/// Like [`on_each_backend`], with the apps' settings changed by `configure`.
pub async fn on_each_backend_with<F, Fut>(configure: impl Fn(&mut Config), test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    eprintln!("--- on SQLite");
    test(TestApp::sqlite_with(&configure).await).await;
    if let Some(app) = TestApp::postgres_with(&configure).await {
        eprintln!("--- on PostgreSQL");
        test(app).await;
    }
}

/// Starts `tasks` copies of `task` at the same moment (behind a barrier) and collects
/// their results in task order.
pub async fn race<T, F, Fut>(tasks: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|index| {
            let barrier = barrier.clone();
            let work = task(index);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for handle in handles {
        results.push(handle.await.expect("racing task panicked"));
    }
    results
}

/// Whether a Node.js tool a test drives is installed. If not, the test is skipped loudly,
/// or, under `CI`, fails with how to install it.
pub fn node_tool_installed(installed: bool, what: &str, install: &str) -> bool {
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {what} is not installed: {install}"
        );
        eprintln!("\n!!!!! {what} is not installed: SKIPPING its test. Run `{install}`.\n");
    }
    installed
}

/// Runs `node <script>` with `args` and `envs` off the async runtime; its output.
pub async fn run_node(script: String, args: Vec<String>, envs: Vec<(&'static str, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .args(args)
            .envs(envs)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap()
}
