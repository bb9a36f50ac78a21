//! Prometheus metrics, served at `GET /metrics` in the text format.
//!
//! Counters are recorded with the `metrics` crate's macros where things happen (orders,
//! webhook deliveries, transaction retries); the Prometheus recorder is installed once per
//! process, on first use.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first call.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will stay empty");
        }
        handle
    })
}

/// Counts an order request by outcome: `placed`, `repeat` (idempotent replay), `rejected`,
/// or the error code it failed with.
pub fn order(outcome: &'static str) {
    metrics::counter!("stockroom_orders_total", "outcome" => outcome).increment(1);
}

/// Counts a Stripe webhook delivery by how it was answered.
pub fn webhook(result: &'static str) {
    metrics::counter!("stockroom_webhook_deliveries_total", "result" => result).increment(1);
}

/// Counts a write transaction retried after a deadlock or serialization failure.
pub fn transaction_retry() {
    metrics::counter!("stockroom_transaction_retries_total").increment(1);
}
