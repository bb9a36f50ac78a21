//! Prometheus metrics, served at `GET /metrics` in the text format.
//!
//! Counters and histograms are recorded with the `metrics` crate's macros where things
//! happen (orders, webhook deliveries, lock waits); gauges of state (the pool, subscribers)
//! are read when scraped. The Prometheus recorder is installed once per process, on first
//! use, and every series is described and registered then, so a scraper (and an alert on
//! `rate()`) sees each one from the first scrape, not only after the first event of its kind.
//!
//! Every label has a bounded set of values: error codes, fixed outcomes, and GraphQL
//! operation names capped at [`MAX_OPERATION_NAMES`] per process.

use std::{
    collections::HashSet,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::Error;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const ORDERS: &str = "stockroom_orders_total";
const WEBHOOK_DELIVERIES: &str = "stockroom_webhook_deliveries_total";
const TRANSACTION_RETRIES: &str = "stockroom_transaction_retries_total";
const LOCK_TIMEOUTS: &str = "stockroom_lock_timeouts_total";
const LOCK_WAIT: &str = "stockroom_lock_wait_seconds";
const RATE_LIMITED: &str = "stockroom_rate_limited_total";
const RESERVATIONS: &str = "stockroom_reservations_total";
const COMBINED_BATCH: &str = "stockroom_combined_batch_size";
const AVAILABILITY_BATCH: &str = "stockroom_availability_batch_size";
const GRAPHQL_DURATION: &str = "stockroom_graphql_request_duration_seconds";
const REFUNDS: &str = "stockroom_refunds_total";
const REFUNDS_PENDING: &str = "stockroom_refunds_pending";
const REFUNDS_FAILED: &str = "stockroom_refunds_failed";
const POOL_CONNECTIONS: &str = "stockroom_db_pool_connections";
const POOL_MAX: &str = "stockroom_db_pool_max_connections";
const POOL_WAITING: &str = "stockroom_db_pool_waiting";
const SUBSCRIBERS: &str = "stockroom_event_subscribers";
const FEED_DELAY: &str = "stockroom_event_feed_delay_seconds";
const FEED_POSITION: &str = "stockroom_event_feed_position";

/// Every kind of write the combiner batches.
const COMBINED_WRITES: &[&str] = &["order", "reservation"];

/// Every error code an order can fail (or be rejected) with.
const ORDER_ERRORS: &[&str] = &[
    "OUT_OF_STOCK",
    "LOCATION_UNMAPPED",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "LOCK_TIMEOUT",
    "INTERNAL",
];

/// Every result [`webhook`] records.
const WEBHOOK_RESULTS: &[&str] = &["processed", "ignored", "refused", "deferred", "failed"];

/// Distinct GraphQL operation names one process labels its latency with; later names are
/// counted as `other`, so callers cannot grow the series without bound.
pub const MAX_OPERATION_NAMES: usize = 100;

/// Longer operation names are counted as `other`.
const MAX_OPERATION_NAME_LENGTH: usize = 64;

/// Histogram buckets for durations, in seconds: 1 ms to 10 s.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram buckets for the combined batch size (the combiner's cap is 128).
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

fn describe() {
    metrics::describe_counter!(
        ORDERS,
        "Order requests by outcome (placed, repeat, rejected: stored REJECTED, failed: \
         answered with an error) and reason (the error code, or none)."
    );
    for outcome in ["placed", "repeat"] {
        metrics::counter!(ORDERS, "outcome" => outcome, "reason" => "none").increment(0);
    }
    for reason in ORDER_ERRORS {
        metrics::counter!(ORDERS, "outcome" => "failed", "reason" => *reason).increment(0);
        metrics::counter!(ORDERS, "outcome" => "rejected", "reason" => *reason).increment(0);
    }
    metrics::describe_counter!(
        RATE_LIMITED,
        "Requests without a valid API key refused with 429 by the per-address rate limit."
    );
    metrics::counter!(RATE_LIMITED).increment(0);
    metrics::describe_counter!(
        RESERVATIONS,
        "Reservation requests by outcome (held, or an error code); repeats of a key count as held."
    );
    metrics::counter!(RESERVATIONS, "outcome" => "held").increment(0);
    metrics::describe_counter!(
        WEBHOOK_DELIVERIES,
        "Stripe webhook deliveries by event type (unverified when the signature failed) and result."
    );
    for result in WEBHOOK_RESULTS {
        metrics::counter!(WEBHOOK_DELIVERIES, "type" => webhook_type(result), "result" => *result).increment(0);
    }
    metrics::describe_counter!(
        TRANSACTION_RETRIES,
        "Write transactions retried after a deadlock or serialization failure."
    );
    metrics::counter!(TRANSACTION_RETRIES).increment(0);
    metrics::describe_counter!(
        LOCK_TIMEOUTS,
        "Write transactions that gave up waiting for a lock (LOCK_TIMEOUT)."
    );
    metrics::counter!(LOCK_TIMEOUTS).increment(0);
    metrics::describe_histogram!(
        LOCK_WAIT,
        metrics::Unit::Seconds,
        "Time to lock the stock levels a write changes (mostly waiting for other writers)."
    );
    let _ = metrics::histogram!(LOCK_WAIT);
    metrics::describe_histogram!(
        COMBINED_BATCH,
        "Writes (orders or reservations) combined into one transaction (group commit)."
    );
    for write in COMBINED_WRITES {
        let _ = metrics::histogram!(COMBINED_BATCH, "write" => *write);
    }
    metrics::describe_histogram!(
        AVAILABILITY_BATCH,
        "Storefront availability reads answered by one shared statement."
    );
    let _ = metrics::histogram!(AVAILABILITY_BATCH);
    metrics::describe_histogram!(
        GRAPHQL_DURATION,
        metrics::Unit::Seconds,
        "GraphQL requests over HTTP by operation name and outcome (ok, or the first error's code)."
    );
    metrics::describe_counter!(
        REFUNDS,
        "Refund calls to Stripe for rejected orders by result (requested, failed)."
    );
    for result in ["requested", "failed"] {
        metrics::counter!(REFUNDS, "result" => result).increment(0);
    }
    metrics::describe_gauge!(
        REFUNDS_PENDING,
        "Rejected orders waiting for their first refund call (as of the last refund sweep)."
    );
    metrics::describe_gauge!(
        REFUNDS_FAILED,
        "Rejected orders whose last refund call failed and that have no refund (last sweep); \
         past 3 days they are no longer retried and need a person."
    );
    metrics::gauge!(REFUNDS_PENDING).set(0.0);
    metrics::gauge!(REFUNDS_FAILED).set(0.0);
    metrics::describe_gauge!(POOL_CONNECTIONS, "Pooled database connections by state (idle, in_use).");
    metrics::describe_gauge!(POOL_MAX, "The pool's maximum size (STOCKROOM_DB_POOL_SIZE).");
    metrics::describe_gauge!(POOL_WAITING, "Write transactions waiting for a pooled connection.");
    metrics::gauge!(POOL_WAITING).set(0.0);
    metrics::describe_gauge!(SUBSCRIBERS, "Open backorderEvents subscriptions in this process.");
    metrics::describe_histogram!(
        FEED_DELAY,
        metrics::Unit::Seconds,
        "From an event's commit to this process's feed handing it to subscribers."
    );
    let _ = metrics::histogram!(FEED_DELAY);
    metrics::describe_gauge!(
        FEED_POSITION,
        "The newest event id this process's feed has delivered (compare across processes)."
    );
}

/// The process's Prometheus recorder, installed on first call.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|builder| builder.set_buckets_for_metric(Matcher::Full(COMBINED_BATCH.into()), BATCH_SIZES))
            .and_then(|builder| builder.set_buckets_for_metric(Matcher::Full(AVAILABILITY_BATCH.into()), BATCH_SIZES))
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will stay empty");
        }
        describe();
        handle
    })
}

/// Counts a placed order (`created`: new, else an idempotent repeat).
pub fn order_placed(created: bool) {
    let outcome = if created { "placed" } else { "repeat" };
    metrics::counter!(ORDERS, "outcome" => outcome, "reason" => "none").increment(1);
}

/// Counts an order request answered with an error.
pub fn order_failed(err: &Error) {
    metrics::counter!(ORDERS, "outcome" => "failed", "reason" => err.code()).increment(1);
}

/// Counts an order stored REJECTED (a paid order that could not be placed), by its code.
pub fn order_rejected(code: &'static str) {
    metrics::counter!(ORDERS, "outcome" => "rejected", "reason" => code).increment(1);
}

/// Counts a request refused by the anonymous rate limit.
pub fn rate_limited() {
    metrics::counter!(RATE_LIMITED).increment(1);
}

/// Counts a reservation request by outcome: `held` or the error code it failed with.
pub fn reservation(outcome: &'static str) {
    metrics::counter!(RESERVATIONS, "outcome" => outcome).increment(1);
}

/// The event type label of a webhook delivery with `result`: only `payment_intent.succeeded`
/// is named (every other type is `other`), and a refused delivery was never read.
fn webhook_type(result: &str) -> &'static str {
    match result {
        "refused" => "unverified",
        "ignored" => "other",
        _ => "payment_intent.succeeded",
    }
}

/// Counts a Stripe webhook delivery by how it was answered.
pub fn webhook(result: &'static str) {
    metrics::counter!(WEBHOOK_DELIVERIES, "type" => webhook_type(result), "result" => result).increment(1);
}

/// Counts a write transaction retried after a deadlock or serialization failure.
pub fn transaction_retry() {
    metrics::counter!(TRANSACTION_RETRIES).increment(1);
}

/// Counts a write transaction that ran out of lock wait.
pub fn lock_timeout() {
    metrics::counter!(LOCK_TIMEOUTS).increment(1);
}

/// Records how long locking a write's stock levels took.
pub fn lock_wait(waited: Duration) {
    metrics::histogram!(LOCK_WAIT).record(waited.as_secs_f64());
}

/// Records how many writes of one kind (`order`, `reservation`) one transaction combined.
pub fn combined_batch(write: &'static str, size: usize) {
    metrics::histogram!(COMBINED_BATCH, "write" => write).record(size as f64);
}

/// Records how many availability reads one statement answered.
pub fn availability_batch(size: usize) {
    metrics::histogram!(AVAILABILITY_BATCH).record(size as f64);
}

/// The names already used as `operation` labels (see [`MAX_OPERATION_NAMES`]).
static OPERATION_NAMES: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The `operation` label for a GraphQL request named `name`.
fn operation_label(name: Option<&str>) -> String {
    let Some(name) = name else {
        return "unnamed".to_owned();
    };
    if name.len() > MAX_OPERATION_NAME_LENGTH {
        return "other".to_owned();
    }
    let mut names = OPERATION_NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    if names.contains(name) || names.len() < MAX_OPERATION_NAMES && names.insert(name.to_owned()) {
        name.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Records a GraphQL request's latency by operation name and outcome (`ok`, or the first
/// error's `extensions.code`).
pub fn graphql_request(operation: Option<&str>, outcome: &str, took: Duration) {
    let outcome = match outcome {
        "ok" => "ok",
        code => crate::error::known_code(code).unwrap_or("other"),
    };
    metrics::histogram!(GRAPHQL_DURATION, "operation" => operation_label(operation), "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// Counts a refund call by result (`requested` or `failed`).
pub fn refund(result: &'static str) {
    metrics::counter!(REFUNDS, "result" => result).increment(1);
}

/// Sets the refund backlog gauges (from the refund sweep).
pub fn refund_backlog(pending: u64, failed: u64) {
    metrics::gauge!(REFUNDS_PENDING).set(pending as f64);
    metrics::gauge!(REFUNDS_FAILED).set(failed as f64);
}

/// The state of the connection pool, set when `/metrics` is scraped.
pub fn pool(max: u32, open: u32, idle: usize) {
    metrics::gauge!(POOL_MAX).set(f64::from(max));
    metrics::gauge!(POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use").set(f64::from(open).max(idle as f64) - idle as f64);
}

/// A write transaction waiting for a pooled connection, counted until dropped (also when
/// the request is cancelled while it waits).
pub struct PoolWait(());

impl PoolWait {
    pub fn start() -> PoolWait {
        metrics::gauge!(POOL_WAITING).increment(1.0);
        PoolWait(())
    }
}

impl Drop for PoolWait {
    fn drop(&mut self) {
        metrics::gauge!(POOL_WAITING).decrement(1.0);
    }
}

/// The number of open subscriptions, set when `/metrics` is scraped.
pub fn subscribers(count: usize) {
    metrics::gauge!(SUBSCRIBERS).set(count as f64);
}

/// An event handed to this process's subscribers: its id and how long after its commit.
pub fn event_delivered(id: i64, after_commit: Duration) {
    metrics::histogram!(FEED_DELAY).record(after_commit.as_secs_f64());
    metrics::gauge!(FEED_POSITION).set(id as f64);
}
