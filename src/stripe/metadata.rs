//! The order a checkout describes in its PaymentIntent's `metadata`:
//! `sales_channel_id` (required), `shipping_option_id`, `reservation_key` (optional) and
//! `lines` (required, a JSON string `[{"sku":"A-1","quantity":2}]`).
//!
//! Anything missing or malformed becomes a [`RejectedOrder`] with a reason a person can
//! act on; the money was taken, so the order is kept (as REJECTED), not dropped.

use std::collections::HashMap;

use serde::Deserialize;

use crate::inventory::{
    orders::RejectedOrder,
    placement::PlaceOrder,
    values::{LineRequest, PaymentIntentId, Quantity, ReservationKey, Sku},
};

#[derive(Deserialize)]
struct RawLine {
    sku: String,
    quantity: i64,
}

fn parse_id(metadata: &HashMap<String, String>, key: &str) -> Result<Option<i32>, String> {
    match metadata.get(key).map(|value| value.trim()) {
        None | Some("") => Ok(None),
        Some(value) => value
            .parse()
            .map(Some)
            .map_err(|_| format!("metadata.{key} {value:?} is not an id")),
    }
}

fn parse_lines(metadata: &HashMap<String, String>) -> Result<Vec<LineRequest>, String> {
    let raw = metadata.get("lines").ok_or("metadata.lines is missing")?;
    let lines: Vec<RawLine> = serde_json::from_str(raw)
        .map_err(|err| format!("metadata.lines is not a JSON list of {{sku, quantity}}: {err}"))?;
    lines
        .into_iter()
        .map(|line| {
            let quantity =
                i32::try_from(line.quantity).map_err(|_| format!("quantity {} is out of range", line.quantity))?;
            Ok(LineRequest {
                sku: Sku::parse(&line.sku).map_err(|err| err.to_string())?,
                quantity: Quantity::parse(quantity).map_err(|err| err.to_string())?,
            })
        })
        .collect()
}

/// Reads the order for `payment_intent_id` out of its metadata.
pub fn order_from_metadata(
    payment_intent_id: PaymentIntentId,
    metadata: &HashMap<String, String>,
) -> Result<PlaceOrder, RejectedOrder> {
    let sales_channel_id = parse_id(metadata, "sales_channel_id");
    let shipping_option_id = parse_id(metadata, "shipping_option_id");
    let lines = parse_lines(metadata);
    // A malformed key names no reservation: placed as if none was given.
    let reservation_key = metadata
        .get("reservation_key")
        .and_then(|key| ReservationKey::parse(key).ok());
    let rejected = |reason: String| RejectedOrder {
        payment_intent_id: payment_intent_id.clone(),
        sales_channel_id: sales_channel_id.clone().ok().flatten(),
        shipping_option_id: shipping_option_id.clone().ok().flatten(),
        lines: lines.clone().unwrap_or_default(),
        reservation_key: reservation_key.clone(),
        reason: crate::error::Error::BadUserInput(reason),
    };
    let order = (|| {
        let sales_channel_id = sales_channel_id
            .clone()?
            .ok_or("metadata.sales_channel_id is missing")?;
        let order = PlaceOrder {
            payment_intent_id: payment_intent_id.clone(),
            sales_channel_id,
            shipping_option_id: shipping_option_id.clone()?,
            reservation_key: reservation_key.clone(),
            lines: lines.clone()?,
        };
        order.validate().map_err(|err| err.to_string())?;
        Ok::<_, String>(order)
    })();
    order.map_err(rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn pi() -> PaymentIntentId {
        PaymentIntentId::parse("pi_123").unwrap()
    }

    #[test]
    fn a_complete_checkout_becomes_an_order() {
        let order = order_from_metadata(
            pi(),
            &metadata(&[
                ("sales_channel_id", "3"),
                ("shipping_option_id", "7"),
                ("lines", r#"[{"sku":"A-1","quantity":2},{"sku":"B-2","quantity":1}]"#),
            ]),
        )
        .unwrap();
        assert_eq!((order.sales_channel_id, order.shipping_option_id), (3, Some(7)));
        let lines: Vec<_> = order
            .lines
            .iter()
            .map(|line| (line.sku.to_string(), line.quantity.get()))
            .collect();
        assert_eq!(lines, [("A-1".to_string(), 2), ("B-2".to_string(), 1)]);
    }

    #[test]
    fn broken_metadata_is_rejected_with_a_reason_and_what_could_be_read() {
        let cases = [
            (
                metadata(&[("lines", r#"[{"sku":"A-1","quantity":1}]"#)]),
                "sales_channel_id is missing",
            ),
            (metadata(&[("sales_channel_id", "x"), ("lines", "[]")]), "not an id"),
            (metadata(&[("sales_channel_id", "1")]), "lines is missing"),
            (
                metadata(&[("sales_channel_id", "1"), ("lines", "{oops")]),
                "not a JSON list",
            ),
            (
                metadata(&[("sales_channel_id", "1"), ("lines", r#"[{"sku":"A-1","quantity":0}]"#)]),
                "positive",
            ),
            (
                metadata(&[("sales_channel_id", "1"), ("lines", "[]")]),
                "1 to 100 lines",
            ),
        ];
        for (metadata, expected) in cases {
            let rejected = order_from_metadata(pi(), &metadata).unwrap_err();
            assert!(
                rejected.reason.to_string().contains(expected),
                "{:?} should mention {expected:?}",
                rejected.reason
            );
        }
        let rejected =
            order_from_metadata(pi(), &metadata(&[("lines", r#"[{"sku":"A-1","quantity":1}]"#)])).unwrap_err();
        assert_eq!(rejected.lines.len(), 1, "readable lines are kept on the rejected order");
    }
}
