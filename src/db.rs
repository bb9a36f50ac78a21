//! Connecting to the database and running write transactions the same safe way everywhere.
//!
//! Every write path goes through [`Database::write`]: one transaction, a bounded lock
//! wait, and a bounded retry when PostgreSQL reports a deadlock or serialization failure.
//!
//! - PostgreSQL: READ COMMITTED plus explicit row locks (`SELECT … FOR UPDATE`) and
//!   version-guarded `UPDATE`s; `lock_timeout` bounds every lock wait (also the wait on a
//!   unique index entry that a concurrent transaction has inserted but not committed).
//! - SQLite: no row locks exist, so a write transaction starts with `BEGIN IMMEDIATE`,
//!   which takes the database's write lock up front. Two writers can then never both read
//!   a level and both write it; `busy_timeout` bounds the wait. WAL lets readers carry on.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use migration::MigratorTrait;
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};
use tokio::sync::Notify;

use crate::{
    config::Config,
    error::{Error, Result},
};

/// How often a transaction that hit a deadlock or serialization failure is tried again.
const MAX_ATTEMPTS: u32 = 5;

/// How long a starting process waits for another one's migrations.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(600);

/// Advisory-lock keys (PostgreSQL) of the start-up steps several processes may race on.
const MIGRATION_LOCK: i64 = 0x5354_4f43_4b00_0001;
/// Advisory-lock key taken by the demo seeding (like the migrations' own), so that
/// processes started together seed once.
pub const SEED_LOCK: i64 = 0x5354_4f43_4b00_0002;
/// Held by the process running a round of the reservation sweep (see [`Database::unless_running_elsewhere`]).
pub const RESERVATION_SWEEP_LOCK: i64 = 0x5354_4f43_4b00_0003;
/// Held by the process running a round of refund retries.
pub const REFUND_RETRY_LOCK: i64 = 0x5354_4f43_4b00_0004;

/// A boxed future borrowing a transaction, as taken by [`Database::write`].
pub type TxnFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

/// The connection pool and the rules for writing through it.
#[derive(Clone, Debug)]
pub struct Database {
    conn: DatabaseConnection,
    new_events: Arc<Notify>,
    refusals: Arc<crate::activity::Refusals>,
}

/// The database's clock: `now()` on PostgreSQL, which is the start of the current
/// transaction, so one transaction decides every deadline against one instant, and every
/// process (whatever its own clock says) against the same clock. SQLite runs in-process
/// on one machine, so the process clock is that machine's one clock.
///
/// Every decision about expiry (placement, reservations, availability, the sweep) takes
/// its `now` here, once per transaction.
pub async fn now(conn: &impl ConnectionTrait) -> Result<DateTime<Utc>> {
    if conn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(Utc::now());
    }
    let row = conn
        .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, "SELECT now() AS now"))
        .await?
        .ok_or_else(|| Error::Internal("SELECT now() returned no row".into()))?;
    Ok(row.try_get::<DateTime<Utc>>("", "now")?)
}

/// The transaction's `now` ([`now`]), read from the database at most once and only if
/// something asks: a placement that meets no reservation never needs it.
#[derive(Debug, Default)]
pub struct Clock(Option<DateTime<Utc>>);

impl Clock {
    /// The transaction's `now`, read on first use.
    pub async fn now(&mut self, conn: &impl ConnectionTrait) -> Result<DateTime<Utc>> {
        match self.0 {
            Some(now) => Ok(now),
            None => {
                let now = now(conn).await?;
                self.0 = Some(now);
                Ok(now)
            }
        }
    }
}

/// Takes the PostgreSQL advisory lock `key` until the transaction ends.
async fn advisory_lock(txn: &DatabaseTransaction, key: i64) -> Result<(), DbErr> {
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({key})"))
        .await
        .map(|_| ())
}

/// A pooled connection idle for this long is pinged before it is handed out.
///
/// Why not on every checkout: a ping is a round trip per transaction, one in eleven of a
/// hot sku's combined transaction (one at a time per lane, see `inventory::combiner`) and
/// of a lone order (BENCHMARKS.md, the yardstick at one client: 0.52-0.55 of the bare SQL
/// with it, 0.60-0.62 without). A connection in steady use has just answered;
/// one that a restart, a proxy or a firewall cut while it sat idle is caught here before a
/// request fails on it. One cut while in use fails its transaction with a transient error
/// (the client retries with the same idempotency key), and from then on every connection
/// released before that failure is pinged too ([`connection_failed`]).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// When this process last saw a database connection fail: milliseconds since [`epoch`],
/// plus one (0: never).
static LAST_CONNECTION_FAILURE: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Records that a connection failed (a lost session, a refused connect): from now on,
/// every pooled connection released before this moment is pinged at its next checkout,
/// however briefly it sat idle. What cut one (a restart, a proxy) has likely cut them
/// all, and without this each connection in steady use would fail one request, or one
/// combined batch and then its one-by-one retry, before the pool noticed. Process-wide:
/// every pool talks to the same server.
pub fn connection_failed() {
    let now = epoch().elapsed().as_millis() as u64 + 1;
    LAST_CONNECTION_FAILURE.fetch_max(now, Ordering::Relaxed);
}

/// Whether a pooled connection idle for `idle_for` went back to its pool before (or in
/// the same millisecond as) the last failure [`connection_failed`] recorded.
fn released_before_last_failure(idle_for: Duration) -> bool {
    // Every checkout asks: in steady use (no failure ever), one atomic load.
    let last_failure = LAST_CONNECTION_FAILURE.load(Ordering::Relaxed);
    if last_failure == 0 {
        return false;
    }
    let released = epoch().elapsed().saturating_sub(idle_for).as_millis() as u64 + 1;
    released <= last_failure
}

/// Opens a pool for `config.database_url` (`sqlite://…` or `postgres://…`), tuned for this app.
pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbErr> {
    let lock_timeout = config.lock_timeout();
    let mut options = ConnectOptions::new(&config.database_url);
    options
        .max_connections(config.db_pool_size)
        .acquire_timeout(Duration::from_millis(config.db_acquire_timeout_ms))
        .sqlx_logging(false)
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .map_sqlx_postgres_before_acquire(|conn, meta| {
            Box::pin(async move {
                if released_before_last_failure(meta.idle_for) {
                    sea_orm::sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        // Set once per connection rather than by a statement in every transaction: every
        // lock wait is bounded, and every transaction is READ COMMITTED whatever the
        // server's default.
        .map_sqlx_postgres_opts(move |opts| {
            opts.options([
                ("lock_timeout", format!("{}ms", lock_timeout.as_millis())),
                ("default_transaction_isolation", "read committed".to_owned()),
            ])
        })
        .map_sqlx_sqlite_opts(move |opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(lock_timeout)
        });
    sea_orm::Database::connect(options).await
}

impl Database {
    /// Wraps a pool opened by [`connect`] (which bounds its lock waits).
    pub fn new(conn: DatabaseConnection) -> Self {
        Database {
            conn,
            new_events: Arc::new(Notify::new()),
            refusals: Arc::default(),
        }
    }

    /// The same database through another pool, `conn`: its commits that store events wake
    /// this one's event feed, and its refusals count in this one's tally.
    pub fn with_pool(&self, conn: DatabaseConnection) -> Self {
        Database {
            conn,
            new_events: self.new_events.clone(),
            refusals: self.refusals.clone(),
        }
    }

    /// The same database for work that runs on `runtime`'s threads (the combined writes',
    /// the queries'). On PostgreSQL, through a pool of `size` connections of its own,
    /// opened from a task of `runtime`: a connection's replies are taken up by the runtime
    /// that opened it, and work on other threads must not wait for that runtime to notice
    /// them. On SQLite, this very pool: sqlx drives SQLite connections from threads of its
    /// own, not from a reactor, and SQLite's write lock is the whole database's, so another
    /// pool would gain nothing (and for an in-memory database would be another, empty
    /// database).
    pub async fn for_runtime(
        &self,
        runtime: &tokio::runtime::Runtime,
        config: &Config,
        size: u32,
    ) -> Result<Database, DbErr> {
        if self.backend() != DatabaseBackend::Postgres {
            return Ok(self.clone());
        }
        let mut config = config.clone();
        config.db_pool_size = size;
        let conn = runtime
            .spawn(async move { connect(&config).await })
            .await
            .map_err(|err| DbErr::Custom(format!("opening a pool: {err}")))??;
        Ok(self.with_pool(conn))
    }

    /// Calls `callback` for every statement run through this handle on the pool (the tests
    /// count statements with it). Handles cloned before keep what they had.
    pub fn set_metric_callback<F>(&mut self, callback: F)
    where
        F: Fn(&sea_orm::metric::Info<'_>) + Send + Sync + 'static,
    {
        self.conn.set_metric_callback(callback);
    }

    /// The pool, for reads (and for `write`'s transactions).
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Signalled after a committed write that may have stored events: wakes this process's
    /// event feed at once.
    pub fn new_events(&self) -> Arc<Notify> {
        self.new_events.clone()
    }

    /// Out-of-stock refusals counted in this process, until added to the activity tally.
    pub fn refusals(&self) -> &crate::activity::Refusals {
        &self.refusals
    }

    /// The pool's maximum size, open connections and idle ones among them.
    pub fn pool_state(&self) -> (u32, u32, usize) {
        match self.backend() {
            DatabaseBackend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (pool.options().get_max_connections(), pool.size(), pool.num_idle())
            }
            _ => {
                let pool = self.conn.get_sqlite_connection_pool();
                (pool.options().get_max_connections(), pool.size(), pool.num_idle())
            }
        }
    }

    /// Which engine this is.
    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// Applies all pending migrations, once even when several processes start together.
    ///
    /// On PostgreSQL the migrations run in one transaction that first takes an advisory
    /// lock: the other processes wait for it, then find nothing pending. (DDL is
    /// transactional there, so a failed migration leaves nothing half-applied.) SQLite's
    /// migrations take the database's write lock by themselves.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        if self.backend() != DatabaseBackend::Postgres {
            return migration::Migrator::up(&self.conn, None).await;
        }
        let txn = self.conn.begin().await?;
        // The connection's `lock_timeout` is for requests; a process that starts while
        // another runs a long migration waits for it (up to MIGRATION_LOCK_WAIT), then finds
        // nothing left to do.
        txn.execute_unprepared(&format!(
            "SET LOCAL lock_timeout = '{}s'",
            MIGRATION_LOCK_WAIT.as_secs()
        ))
        .await?;
        advisory_lock(&txn, MIGRATION_LOCK).await?;
        migration::Migrator::up(&txn, None).await?;
        txn.commit().await
    }

    /// Runs `body` in one write transaction that holds the process-wide advisory lock
    /// `key` (PostgreSQL; SQLite's write transaction is exclusive anyway): for start-up
    /// work that several processes starting together must do only once.
    pub async fn write_exclusively<A, T, F>(&self, key: i64, args: &A, body: F) -> Result<T>
    where
        A: Sync + ?Sized,
        T: Send,
        F: for<'c> Fn(&'c DatabaseTransaction, &'c A) -> TxnFuture<'c, T> + Sync,
    {
        self.write(&(key, args, &body), |txn, (key, args, body)| {
            Box::pin(async move {
                if txn.get_database_backend() == DatabaseBackend::Postgres {
                    advisory_lock(txn, *key).await?;
                }
                body(txn, *args).await
            })
        })
        .await
    }

    /// Runs `work` unless another process is running the work named `key` at this moment,
    /// in which case it returns `None` at once: background rounds (the reservation sweep,
    /// refund retries) then cost one process's effort, not one per process, and never act
    /// twice at the same time.
    ///
    /// On PostgreSQL a transaction of its own holds `pg_try_advisory_xact_lock(key)` while
    /// `work` runs (on other connections); the lock goes with the transaction, also when
    /// the process dies. SQLite has one process: `work` always runs.
    pub async fn unless_running_elsewhere<T>(&self, key: i64, work: impl Future<Output = T>) -> Result<Option<T>> {
        if self.backend() != DatabaseBackend::Postgres {
            return Ok(Some(work.await));
        }
        let txn = self.conn.begin().await?;
        let held = txn
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                format!("SELECT pg_try_advisory_xact_lock({key}) AS held"),
            ))
            .await?
            .map(|row| row.try_get::<bool>("", "held"))
            .transpose()?
            .unwrap_or(false);
        if !held {
            txn.rollback().await.ok();
            return Ok(None);
        }
        let done = work.await;
        txn.rollback().await.ok();
        Ok(Some(done))
    }

    /// Opens a write transaction (see the module doc for what that means per engine).
    pub async fn begin_write(&self) -> Result<DatabaseTransaction> {
        let _waiting = crate::metrics::PoolWait::start();
        self.begin_write_unobserved().await
    }

    async fn begin_write_unobserved(&self) -> Result<DatabaseTransaction> {
        match self.backend() {
            DatabaseBackend::Sqlite => Ok(self
                .conn
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await?),
            // READ COMMITTED and `lock_timeout` come with the connection (see `connect`).
            _ => Ok(self.conn.begin().await?),
        }
    }

    /// Runs `body` in one write transaction and commits it if it returns `Ok`.
    ///
    /// A deadlock or serialization failure rolls back and runs `body` again from the start
    /// (at most `MAX_ATTEMPTS` times), so `body` must not have effects outside the
    /// transaction. Any other error rolls back and is returned.
    pub async fn write<A, T, F>(&self, args: &A, body: F) -> Result<T>
    where
        A: Sync + ?Sized,
        T: Send,
        F: for<'c> Fn(&'c DatabaseTransaction, &'c A) -> TxnFuture<'c, T>,
    {
        let mut attempt = 1;
        loop {
            let txn = self.begin_write().await?;
            let appends = crate::events::outbox::AppendMark::now();
            let outcome = match body(&txn, args).await {
                Ok(value) => {
                    let committed = txn.commit().await.map(|()| value).map_err(Error::from);
                    if committed.is_ok() && appends.moved() {
                        self.new_events.notify_one();
                    }
                    committed
                }
                Err(err) => {
                    txn.rollback().await.ok();
                    Err(err)
                }
            };
            match outcome {
                Err(Error::Contention) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, "transaction collided, retrying");
                    crate::metrics::transaction_retry();
                    let backoff_ms = rand::random_range(1..=10) * u64::from(attempt);
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    attempt += 1;
                }
                other => {
                    if let Err(Error::LockTimeout) = &other {
                        crate::metrics::lock_timeout();
                    }
                    return other;
                }
            }
        }
    }
}
