//! The app under test, in-process: the real router on a fresh, throw-away database
//! ([`TestApp`]), and the client that sends it GraphQL and raw HTTP ([`Client`], [`Gql`]).
//! Fixture builders on [`TestApp`] are in [`crate::fixtures`], its invariant checks in
//! [`crate::invariants`].

use std::{
    any::Any,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{Router, body::Body, http::Request};
use entity::inventory_level;
use http_body_util::BodyExt;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use stockroom::{
    AppState, Config,
    db::{self, Database},
    inventory::values::Sku,
};
use tokio::net::TcpListener;

use crate::{
    chaos::ChaosProxy,
    database::{Backend, EmptyDatabase, SqliteFile, postgres_address, scalar},
};

/// The admin key every test app accepts (registered as `STOCKROOM_ADMIN_KEY`).
pub const APP_ADMIN_KEY: &str = "srk_test_admin_key_0123456789";

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
    /// The throw-away database ([`SqliteFile`] or [`EmptyDatabase`]), removed once the
    /// last process on it is dropped.
    database: Arc<dyn Any + Send + Sync>,
}

impl TestApp {
    async fn start(
        backend: Backend,
        url: &str,
        database: Arc<dyn Any + Send + Sync>,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
        tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(filter)
            .try_init()
            .ok();
        let mut config = Config::for_database(url);
        config.admin_key = Some(APP_ADMIN_KEY.parse().unwrap());
        // Tests send many anonymous requests from one (in-process) address; the tests of
        // the limit itself turn it back on.
        config.anonymous_rate = 0;
        configure(&mut config);
        let mut conn = db::connect(&config).await.expect("connect");
        let statements = Arc::new(AtomicUsize::new(0));
        let count = |counter: Arc<AtomicUsize>| {
            move |info: &sea_orm::metric::Info<'_>| {
                if std::env::var_os("SHOW_SQL").is_some() {
                    eprintln!("SQL: {}", info.statement);
                }
                counter.fetch_add(1, Ordering::SeqCst);
            }
        };
        conn.set_metric_callback(count(statements.clone()));
        let mut state = AppState::from_connection(conn, config).await.expect("migrate");
        // Queries read through a pool of their own on PostgreSQL (on SQLite a handle on
        // the request pool, made before: either way counted once, by this callback).
        state.query_db.set_metric_callback(count(statements.clone()));
        let router = stockroom::http::router(state.clone());
        TestApp {
            backend,
            state,
            client: Client {
                router,
                key: Some(APP_ADMIN_KEY.to_owned()),
            },
            statements,
            database,
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
                key: Some(APP_ADMIN_KEY.to_owned()),
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
        let file = SqliteFile::named("stockroom_test");
        let url = file.url();
        TestApp::start(Backend::Sqlite, &url, Arc::new(file), configure).await
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
        let database = EmptyDatabase::postgres().await?;
        let url = match proxy {
            Some(proxy) => database.url.replace(&postgres_address(), &proxy.to_string()),
            None => database.url.clone(),
        };
        Some(TestApp::start(Backend::Postgres, &url, Arc::new(database), configure).await)
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

    /// SQL statements run so far through the app's request and query pools (on PostgreSQL,
    /// combined placements and reservations go through a pool of their own and are not
    /// counted).
    pub fn statements_run(&self) -> usize {
        self.statements.load(Ordering::SeqCst)
    }

    /// Runs a GraphQL operation as admin.
    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        self.client.gql(query, variables).await
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

    /// Counts rows of a table (`table` may go on with a `WHERE`).
    pub async fn count(&self, table: &str) -> i64 {
        scalar(self.db().conn(), &format!("SELECT COUNT(*) FROM {table}")).await
    }
}
