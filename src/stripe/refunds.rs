//! Refunds of rejected orders through the Stripe API (async-stripe), enabled by
//! `STRIPE_SECRET_KEY`. The idempotency key is derived from the PaymentIntent, so even a
//! repeated request cannot refund twice on Stripe's side.

use stripe::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_core::refund::CreateRefund;

use crate::config::Config;

/// The refund client, or nothing when refunds are not configured.
#[derive(Clone, Debug, Default)]
pub struct Refunds {
    client: Option<stripe::Client>,
}

impl Refunds {
    /// A client for `STRIPE_SECRET_KEY` at `STRIPE_API_BASE` (or Stripe's API), if a key is set.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let Some(key) = &config.stripe_secret_key else {
            return Ok(Refunds::default());
        };
        let mut builder = stripe::ClientBuilder::new(key.expose());
        if let Some(base) = &config.stripe_api_base {
            builder = builder.url(base.clone());
        }
        Ok(Refunds {
            client: Some(builder.build()?),
        })
    }

    /// Whether a Stripe key is configured.
    pub fn is_enabled(&self) -> bool {
        self.client.is_some()
    }

    /// Requests a full refund of `payment_intent_id`: the refund id, or why it failed.
    /// `None` when refunds are not configured.
    pub async fn refund(&self, payment_intent_id: &str) -> Option<Result<String, String>> {
        let client = self.client.as_ref()?;
        let outcome = async {
            let key =
                IdempotencyKey::new(format!("stockroom-refund-{payment_intent_id}")).map_err(|err| err.to_string())?;
            let refund = CreateRefund::new()
                .payment_intent(payment_intent_id)
                .customize()
                .request_strategy(RequestStrategy::Idempotent(key))
                .send(client)
                .await
                .map_err(|err| format!("refund request failed: {err}"))?;
            Ok(refund.id.as_str().to_owned())
        }
        .await;
        match &outcome {
            Ok(_) => crate::metrics::refund("requested"),
            Err(error) => {
                crate::metrics::refund("failed");
                tracing::warn!(payment_intent_id, error, "refund of a rejected order failed");
            }
        }
        Some(outcome)
    }
}
