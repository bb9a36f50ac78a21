//! Verifying a webhook delivery: HMAC-SHA256 of `"{t}.{raw body}"` under every configured
//! secret (several during a rotation), any `v1` may match, constant-time comparison,
//! ±300 s tolerance; then a tolerant read of the few fields Stockroom needs.
//!
//! Why not async-stripe's `Webhook::construct_event`: it verifies and then parses the
//! whole event into its typed `Event` in one call, and that parse fails on any event whose
//! object lacks a field the SDK declares required (an API version newer or older than the
//! SDK's, a trimmed test event). A correctly signed `payment_intent.succeeded` refused
//! with 400 means a paid PaymentIntent with no order, no REJECTED record and no refund,
//! and Stripe disables an endpoint that keeps failing. So the signature is checked here
//! and only `id`, `type`, `data.object.id` and `data.object.metadata` are read.

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::Secret;

/// How far the signed timestamp may be from now (Stripe's own default), in seconds.
const TOLERANCE_SECS: u64 = 300;

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

/// The part of a Stripe event Stockroom uses; every other field is ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: EnvelopeData,
}

/// `data` of an event.
#[derive(Debug, Clone, Deserialize)]
pub struct EnvelopeData {
    pub object: EnvelopeObject,
}

/// `data.object` of an event: for `payment_intent.*`, the PaymentIntent.
#[derive(Debug, Clone, Deserialize)]
pub struct EnvelopeObject {
    pub id: String,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

/// Checks `payload` against every secret, then reads its envelope.
pub fn verify(payload: &[u8], header: Option<&str>, secrets: &[Secret]) -> Result<Envelope, Refused> {
    verify_at(payload, header, secrets, chrono::Utc::now().timestamp())
}

/// [`verify`] as of the unix time `now`.
pub fn verify_at(payload: &[u8], header: Option<&str>, secrets: &[Secret], now: i64) -> Result<Envelope, Refused> {
    let header = header.ok_or(Refused::MissingHeader)?;
    let (timestamp, signatures) = parse_header(header).ok_or(Refused::BadSignature)?;
    let prefix = format!("{timestamp}.");
    let signed = secrets.iter().any(|secret| {
        let Ok(mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
            return false;
        };
        let mac = mac.chain_update(prefix.as_bytes()).chain_update(payload);
        signatures
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok())
    });
    if !signed {
        return Err(Refused::BadSignature);
    }
    // Checked after the signature, so "stale" only ever describes a genuine delivery.
    if now.abs_diff(timestamp) > TOLERANCE_SECS {
        return Err(Refused::StaleTimestamp);
    }
    serde_json::from_slice(payload).map_err(|_| Refused::NotAnEvent)
}

/// `t=<unix>,v1=<hex>[,v1=<hex>…]`; other schemes (`v0`) are ignored. `None` without a
/// timestamp or without any readable `v1`.
fn parse_header(header: &str) -> Option<(i64, Vec<Vec<u8>>)> {
    let (mut timestamp, mut signatures) = (None, Vec::new());
    for pair in header.split(',') {
        match pair.trim().split_once('=')? {
            ("t", value) => timestamp = Some(value.parse::<i64>().ok()?),
            ("v1", value) => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    if signatures.is_empty() {
        return None;
    }
    Some((timestamp?, signatures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Vec<Secret> {
        vec!["whsec_a".parse().unwrap(), "whsec_b".parse().unwrap()]
    }

    fn sign(payload: &str, secret: &str, t: i64) -> String {
        stripe_webhook::Webhook::generate_test_header(payload, secret, Some(t))
    }

    const EVENT: &str =
        r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","metadata":{"a":"b"}}}}"#;

    #[test]
    fn a_delivery_signed_by_any_secret_is_read_tolerantly() {
        for secret in ["whsec_a", "whsec_b"] {
            let envelope = verify_at(EVENT.as_bytes(), Some(&sign(EVENT, secret, 1000)), &secrets(), 1000).unwrap();
            assert_eq!(
                (envelope.id.as_str(), envelope.data.object.id.as_str()),
                ("evt_1", "pi_1")
            );
            assert_eq!(envelope.data.object.metadata["a"], "b");
        }
    }

    #[test]
    fn refusals_say_why() {
        let header = sign(EVENT, "whsec_a", 1000);
        let check = |payload: &str, header: Option<&str>, now| verify_at(payload.as_bytes(), header, &secrets(), now);
        assert_eq!(check(EVENT, None, 1000).unwrap_err(), Refused::MissingHeader);
        assert_eq!(check(EVENT, Some("t=1000"), 1000).unwrap_err(), Refused::BadSignature);
        assert_eq!(
            check(EVENT, Some(&sign(EVENT, "whsec_other", 1000)), 1000).unwrap_err(),
            Refused::BadSignature
        );
        assert_eq!(check(EVENT, Some(&header), 1301).unwrap_err(), Refused::StaleTimestamp);
        assert_eq!(check(EVENT, Some(&header), 1300).map(|e| e.id).unwrap(), "evt_1");
        let not_json = "{oops";
        assert_eq!(
            check(not_json, Some(&sign(not_json, "whsec_a", 1000)), 1000).unwrap_err(),
            Refused::NotAnEvent
        );
        let no_object = r#"{"id":"evt_1","type":"x","data":{}}"#;
        assert_eq!(
            check(no_object, Some(&sign(no_object, "whsec_a", 1000)), 1000).unwrap_err(),
            Refused::NotAnEvent
        );
    }
}
