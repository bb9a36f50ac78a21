//! Prometheus metrics, served at `GET /metrics` in the text format.
//!
//! Counters are recorded with the `metrics` crate's macros where things happen (orders,
//! webhook deliveries, transaction retries); the Prometheus recorder is installed once per
//! process, on first use, and every series is described and registered at 0 then, so a
//! scraper (and an alert on `rate()`) sees each one from the first scrape, not only after
//! the first event of its kind.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const ORDERS: &str = "stockroom_orders_total";
const WEBHOOK_DELIVERIES: &str = "stockroom_webhook_deliveries_total";
const TRANSACTION_RETRIES: &str = "stockroom_transaction_retries_total";
const RATE_LIMITED: &str = "stockroom_rate_limited_total";
const RESERVATIONS: &str = "stockroom_reservations_total";
const COMBINED_BATCH: &str = "stockroom_combined_batch_size";

/// Every kind of write the combiner batches.
const COMBINED_WRITES: &[&str] = &["order", "reservation"];

/// Every outcome [`order`] records: the successes, then every error code an order can fail with.
const ORDER_OUTCOMES: &[&str] = &[
    "placed",
    "repeat",
    "rejected",
    "OUT_OF_STOCK",
    "LOCATION_UNMAPPED",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "LOCK_TIMEOUT",
    "INTERNAL",
];

/// Every result [`webhook`] records.
const WEBHOOK_RESULTS: &[&str] = &["processed", "ignored", "refused", "deferred", "failed"];

fn describe() {
    metrics::describe_counter!(
        ORDERS,
        "Order requests by outcome (placed, repeat, rejected, or an error code)."
    );
    metrics::describe_counter!(
        RATE_LIMITED,
        "Requests without a valid API key refused with 429 by the per-address rate limit."
    );
    metrics::counter!(RATE_LIMITED).increment(0);
    metrics::describe_counter!(
        RESERVATIONS,
        "Reservation requests by outcome (held, or an error code); repeats of a key count as held."
    );
    metrics::describe_counter!(
        WEBHOOK_DELIVERIES,
        "Stripe webhook deliveries by how they were answered."
    );
    metrics::describe_counter!(
        TRANSACTION_RETRIES,
        "Write transactions retried after a deadlock or serialization failure."
    );
    for outcome in ORDER_OUTCOMES {
        metrics::counter!(ORDERS, "outcome" => *outcome).increment(0);
    }
    metrics::counter!(RESERVATIONS, "outcome" => "held").increment(0);
    for result in WEBHOOK_RESULTS {
        metrics::counter!(WEBHOOK_DELIVERIES, "result" => *result).increment(0);
    }
    metrics::counter!(TRANSACTION_RETRIES).increment(0);
    metrics::describe_histogram!(
        COMBINED_BATCH,
        "Writes (orders or reservations) combined into one transaction (group commit)."
    );
    // Registered, not observed: the series exist (empty) from the first scrape.
    for write in COMBINED_WRITES {
        let _ = metrics::histogram!(COMBINED_BATCH, "write" => *write);
    }
}

/// The process's Prometheus recorder, installed on first call.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will stay empty");
        }
        describe();
        handle
    })
}

/// Counts an order request by outcome: `placed`, `repeat` (idempotent replay), `rejected`,
/// or the error code it failed with.
pub fn order(outcome: &'static str) {
    metrics::counter!(ORDERS, "outcome" => outcome).increment(1);
}

/// Counts a request refused by the anonymous rate limit.
pub fn rate_limited() {
    metrics::counter!(RATE_LIMITED).increment(1);
}

/// Counts a reservation request by outcome: `held` or the error code it failed with.
pub fn reservation(outcome: &'static str) {
    metrics::counter!(RESERVATIONS, "outcome" => outcome).increment(1);
}

/// Counts a Stripe webhook delivery by how it was answered.
pub fn webhook(result: &'static str) {
    metrics::counter!(WEBHOOK_DELIVERIES, "result" => result).increment(1);
}

/// Counts a write transaction retried after a deadlock or serialization failure.
pub fn transaction_retry() {
    metrics::counter!(TRANSACTION_RETRIES).increment(1);
}

/// Records how many writes of one kind (`order`, `reservation`) one transaction combined.
pub fn combined_batch(write: &'static str, size: usize) {
    metrics::histogram!(COMBINED_BATCH, "write" => write).record(size as f64);
}
