//! Stockroom: a GraphQL backend for commerce inventory that never oversells.
//!
//! The crate's map:
//! - [`config`]: every setting (flag, env var, default); [`error`]: the one error type.
//! - [`db`]: connecting, migrating, and the one way to run a write transaction.
//! - [`inventory`]: the domain — catalog, stock edits, the ledger, availability.
//! - [`graphql`]: the schema, by domain; [`http`]: the axum router around it.
//! - [`stripe`]: the webhook that turns payments into orders, and refunds.
//! - [`auth`]: hashed admin API keys; [`demo`]: the data a fresh `cargo run` starts with.

pub mod activity;
pub mod auth;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod inventory;
pub mod metrics;
pub mod stripe;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use config::Config;
use db::Database;

/// What every request handler shares: the database and the settings.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Database,
    /// The database GraphQL queries read through (see `graphql::query_threads`).
    pub query_db: Database,
    pub config: Arc<Config>,
    pub refunds: stripe::refunds::Refunds,
    pub events: events::EventHub,
    /// This process's placement queues (group commit; see `inventory::combiner`).
    pub placements: inventory::combiner::Combiner<inventory::placement::PlaceOrder>,
    /// This process's reservation queues, combined the same way.
    pub reservations: inventory::combiner::Combiner<inventory::reservations::ReserveStock>,
    /// This process's storefront reads, sharing statements (see `inventory::availability`).
    pub availability: Arc<inventory::availability::Reads>,
    /// API key verdicts, cached briefly (see `auth`).
    pub keys: auth::Keys,
    /// Cancelled when the process begins to stop: subscriptions complete, `/ready` fails.
    pub stopping: CancellationToken,
    /// Open WebSocket connections, which the HTTP server's own drain does not wait for.
    pub sockets: TaskTracker,
}

impl AppState {
    /// Connects to `config.database_url` and prepares the database (see [`AppState::from_connection`]).
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let conn = db::connect(&config).await.context("connecting to the database")?;
        Self::from_connection(conn, config).await
    }

    /// Migrates an open pool and registers `STOCKROOM_ADMIN_KEY` if set.
    pub async fn from_connection(conn: DatabaseConnection, config: Config) -> anyhow::Result<Self> {
        let db = Database::new(conn);
        db.migrate().await.context("applying migrations")?;
        if let Some(key) = &config.admin_key {
            auth::register_key(&db, "STOCKROOM_ADMIN_KEY", key.expose())
                .await
                .context("registering STOCKROOM_ADMIN_KEY")?;
        }
        let refunds = stripe::refunds::Refunds::from_config(&config).context("building the Stripe client")?;
        let events = events::EventHub::start(&db, Duration::from_millis(config.event_poll_ms), config.event_notify)
            .await
            .context("starting the event feed")?;
        let combined = inventory::combiner::database(&db, &config)
            .await
            .context("connecting the combined writes' pool")?;
        let query_db = graphql::query_threads::database(&db, &config)
            .await
            .context("connecting the queries' pool")?;
        Ok(AppState {
            placements: inventory::combiner::Combiner::new(combined.clone(), config.placement_lanes as usize),
            reservations: inventory::combiner::Combiner::new(combined, config.placement_lanes as usize),
            keys: auth::Keys::new(db.clone(), config.key_cache()),
            availability: Arc::default(),
            stopping: CancellationToken::new(),
            sockets: TaskTracker::new(),
            db,
            query_db,
            config: Arc::new(config),
            refunds,
            events,
        })
    }
}

/// Runs the server until Ctrl-C or SIGTERM: migrations, demo data on a new database, then HTTP.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let state = AppState::connect(config).await?;
    let demo_key = if state.config.demo && demo::seed_if_empty(&state.db).await? {
        let name = inventory::values::Name::parse("demo", "name")?;
        Some(auth::create_key(&state.db, name, auth::Role::Admin).await?.secret)
    } else {
        None
    };
    let listener = TcpListener::bind(state.config.addr)
        .await
        .with_context(|| format!("binding {}", state.config.addr))?;
    let addr = listener.local_addr()?;
    println!("Stockroom is serving GraphQL (GraphiQL in a browser) at http://{addr}/graphql");
    match demo_key {
        Some(key) => println!(
            "Demo data loaded. Admin key, shown only now: {key}\n\
             In GraphiQL, add the header {{\"Authorization\": \"Bearer {key}\"}}"
        ),
        None => {
            println!("Admin keys: STOCKROOM_ADMIN_KEY, or `stockroom api-key create --name <name>`")
        }
    }
    println!("Admin page: http://{addr}/admin");
    tokio::spawn(sweep_reservations(state.db.clone()));
    tokio::spawn(flush_activity(state.db.clone()));
    tokio::spawn(retry_refunds(state.clone()));
    let stopping = state.stopping.clone();
    let sockets = state.sockets.clone();
    let db = state.db.clone();
    let grace = state.config.shutdown_grace();
    tokio::spawn({
        let stopping = stopping.clone();
        async move {
            shutdown_signal().await;
            stopping.cancel();
        }
    });
    // The peer's address, for the anonymous rate limit.
    let app = http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // On the signal the listener closes; requests in flight finish on their connections,
    // subscriptions complete and their sockets close (see `http::graphql_ws`).
    let drained = async {
        axum::serve(listener, app)
            .with_graceful_shutdown(stopping.clone().cancelled_owned())
            .await
            .context("serving HTTP")?;
        sockets.close();
        sockets.wait().await;
        anyhow::Ok(())
    };
    let grace_over = async {
        stopping.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        drained = drained => {
            if let Err(err) = activity::flush(&db).await {
                tracing::warn!(error = %err, "the last refusals could not be added to the activity tally");
            }
            tracing::info!("drained; stopped");
            drained
        }
        () = grace_over => {
            // Logged as well as returned: with JSON logs, this is the record collectors see.
            let message = format!(
                "requests were still in flight {} ms after the stop signal (STOCKROOM_SHUTDOWN_GRACE_MS); stopped anyway",
                grace.as_millis()
            );
            tracing::error!("{message}");
            anyhow::bail!(message)
        }
    }
}

/// Ctrl-C, or SIGTERM from a process manager: stop accepting, finish requests in flight.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stop signal received; draining");
}

/// How often this process looks for reservations past their deadline.
const RESERVATION_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Marks overdue reservations EXPIRED and frees their stock, forever. Of several
/// processes one sweeps per round; each reservation is re-checked under its row lock anyway.
async fn sweep_reservations(db: Database) {
    loop {
        tokio::time::sleep(RESERVATION_SWEEP_INTERVAL).await;
        match inventory::reservations::expire_overdue(&db).await {
            Ok(None | Some(0)) => {}
            Ok(Some(expired)) => tracing::info!(expired, "expired overdue reservations"),
            Err(err) => tracing::warn!(error = %err, "reservation sweep failed; will retry"),
        }
    }
}

/// Adds this process's out-of-stock refusals to the shared per-minute tally, forever.
async fn flush_activity(db: Database) {
    loop {
        tokio::time::sleep(activity::FLUSH_INTERVAL).await;
        if let Err(err) = activity::flush(&db).await {
            tracing::warn!(error = %err, "could not add refusals to the activity tally; will retry");
        }
    }
}

/// How often this process retries refunds of rejected orders that have none yet.
const REFUND_RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// Retries missing refunds forever (see `stripe::payments::retry_refunds`), from the
/// start: the backlog gauges are right from the first minute.
async fn retry_refunds(state: AppState) {
    loop {
        if let Err(err) = stripe::payments::retry_refunds(&state.db, &state.refunds).await {
            tracing::warn!(error = %err, "refund retry failed; will try again");
        }
        tokio::time::sleep(REFUND_RETRY_INTERVAL).await;
    }
}
