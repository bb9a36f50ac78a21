//! `POST /webhooks/stripe`: verify, then hand `payment_intent.succeeded` to [`payments`].
//!
//! Answers: 400 for anything not signed by a configured secret (and nothing is stored;
//! neither the secret nor the body is logged), 200 once the event is processed or known,
//! 503 when a retry could succeed (lock timeout, database unavailable) or no secret is
//! configured, so Stripe delivers again later.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

use super::{
    metadata::order_from_metadata,
    payments::{self, StripeEvent},
    signature,
};
use crate::{AppState, inventory::values::PaymentIntentId};

/// Largest webhook body accepted; Stripe's events are far smaller.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The axum handler.
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if state.config.stripe_webhook_secret.is_empty() {
        tracing::error!("a Stripe webhook arrived but STRIPE_WEBHOOK_SECRET is not set");
        return (StatusCode::SERVICE_UNAVAILABLE, "webhook secret not configured").into_response();
    }
    let header = headers.get("stripe-signature").and_then(|value| value.to_str().ok());
    let event = match signature::verify(&body, header, &state.config.stripe_webhook_secret) {
        Ok(event) => event,
        Err(refused) => {
            tracing::warn!(%refused, "refused a Stripe webhook delivery");
            crate::metrics::webhook("refused");
            return (StatusCode::BAD_REQUEST, refused.to_string()).into_response();
        }
    };
    if event.event_type != "payment_intent.succeeded" {
        tracing::debug!(event_id = %event.id, event_type = %event.event_type, "ignoring Stripe event");
        crate::metrics::webhook("ignored");
        return StatusCode::OK.into_response();
    }
    let intent = event.data.object;
    let stripe_event = StripeEvent {
        id: event.id,
        event_type: event.event_type,
        payment_intent_id: intent.id.clone(),
    };
    let order = match PaymentIntentId::parse(&intent.id) {
        Ok(payment_intent_id) => order_from_metadata(payment_intent_id, &intent.metadata),
        Err(_) => {
            return (StatusCode::BAD_REQUEST, "PaymentIntent id is malformed").into_response();
        }
    };
    match payments::payment_succeeded(&state.db, &state.refunds, &stripe_event, order).await {
        Ok(outcome) => {
            tracing::debug!(event_id = %stripe_event.id, ?outcome, "processed Stripe event");
            crate::metrics::webhook("processed");
            StatusCode::OK.into_response()
        }
        Err(err) if err.is_transient() => {
            tracing::warn!(event_id = %stripe_event.id, %err, "Stripe event deferred; Stripe will retry");
            crate::metrics::webhook("deferred");
            (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response()
        }
        Err(err) => {
            tracing::error!(event_id = %stripe_event.id, %err, "Stripe event failed");
            crate::metrics::webhook("failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
