//! Verifying a webhook delivery with async-stripe's `Webhook::construct_event`: HMAC-SHA256
//! of `"{t}.{raw body}"`, any `v1` may match, constant-time comparison, ±300 s tolerance,
//! then the typed parse. We only add what it lacks: several secrets during a rotation.

use stripe_webhook::{Event, Webhook, WebhookError};

use crate::config::Secret;

/// Why a delivery was refused (answered 400; nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    #[error("no valid signature for any configured secret")]
    BadSignature,
    #[error("signature timestamp outside the 300 s tolerance")]
    StaleTimestamp,
    #[error("body is not a Stripe event")]
    NotAnEvent,
}

/// Checks `payload` against every secret and parses it; the first secret that signs it wins.
pub fn verify(payload: &str, header: Option<&str>, secrets: &[Secret]) -> Result<Event, Refused> {
    let header = header.ok_or(Refused::MissingHeader)?;
    let mut refusal = Refused::BadSignature;
    for secret in secrets {
        match Webhook::construct_event(payload, header, secret.expose()) {
            Ok(event) => return Ok(event),
            // The signature matched this secret, so no other secret can do better.
            Err(WebhookError::BadTimestamp(_)) => return Err(Refused::StaleTimestamp),
            Err(WebhookError::BadParse(_)) => return Err(Refused::NotAnEvent),
            Err(WebhookError::BadHeader(_) | WebhookError::BadSignature | WebhookError::BadKey) => {
                refusal = Refused::BadSignature;
            }
        }
    }
    Err(refusal)
}
