//! Typed values parsed once at the edge ("parse, don't validate"): once a resolver or the
//! webhook holds a `Sku` or a `Quantity`, the domain code trusts it without checking again.

use std::fmt;

use crate::error::{Error, Result};

/// Largest quantity on one order or reservation line; keeps every sum far from `i32::MAX`.
pub const MAX_LINE_QUANTITY: i32 = 1_000_000;
/// Largest absolute stock level an admin may set or reach by adjustment.
pub const MAX_STOCK: i32 = 1_000_000_000;

/// A stock-keeping unit code: 1–100 visible characters, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sku(String);

impl Sku {
    /// Checks and wraps a sku as typed by a client.
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.is_empty() || raw.chars().count() > 100 {
            return Err(Error::bad_input("sku must be 1 to 100 characters"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::bad_input(format!("sku {raw:?} must not contain whitespace")));
        }
        Ok(Sku(raw.to_owned()))
    }

    /// The sku as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A positive quantity of one order or reservation line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i32);

impl Quantity {
    /// Checks that a line quantity is in `1..=MAX_LINE_QUANTITY`.
    pub fn parse(raw: i32) -> Result<Self> {
        if raw <= 0 {
            return Err(Error::bad_input(format!("quantity must be positive, got {raw}")));
        }
        if raw > MAX_LINE_QUANTITY {
            return Err(Error::bad_input(format!(
                "quantity must be at most {MAX_LINE_QUANTITY}"
            )));
        }
        Ok(Quantity(raw))
    }

    /// The number of units.
    pub fn get(self) -> i32 {
        self.0
    }
}

/// A human-readable name or title: trimmed, 1–255 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Trims and checks a name; `what` names the field in the error.
    pub fn parse(raw: &str, what: &str) -> Result<Self> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.chars().count() > 255 {
            return Err(Error::bad_input(format!("{what} must be 1 to 255 characters")));
        }
        Ok(Name(trimmed.to_owned()))
    }

    /// Takes the checked string.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An idempotency key from outside: 1–255 visible characters without whitespace.
fn parse_key(raw: &str, what: &str) -> Result<String> {
    if raw.is_empty() || raw.len() > 255 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::bad_input(format!(
            "{what} must be 1 to 255 characters without whitespace"
        )));
    }
    Ok(raw.to_owned())
}

/// A Stripe PaymentIntent id (or any caller's idempotency key for an order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntentId(String);

impl PaymentIntentId {
    /// Checks and wraps a PaymentIntent id.
    pub fn parse(raw: &str) -> Result<Self> {
        parse_key(raw, "paymentIntentId").map(PaymentIntentId)
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key a checkout gives its reservation (idempotency, and how an order commits it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationKey(String);

impl ReservationKey {
    /// Checks and wraps a reservation key.
    pub fn parse(raw: &str) -> Result<Self> {
        parse_key(raw, "reservation key").map(ReservationKey)
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Most lines one order or reservation may have.
pub const MAX_LINES: usize = 100;

/// Refuses `lines` unless there are 1 to [`MAX_LINES`]; `what` ("an order") names the request.
pub fn check_line_count(lines: &[LineRequest], what: &str) -> Result<()> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(Error::bad_input(format!("{what} needs 1 to {MAX_LINES} lines")));
    }
    Ok(())
}

/// One requested line of an order or reservation.
#[derive(Debug, Clone)]
pub struct LineRequest {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// Checks that an absolute stock level is within `±MAX_STOCK`.
pub fn check_stock_bounds(quantity: i64, what: &str) -> Result<i32> {
    if quantity.abs() > i64::from(MAX_STOCK) {
        return Err(Error::bad_input(format!("{what} must be within ±{MAX_STOCK}")));
    }
    Ok(quantity as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_reject_blank_and_whitespace() {
        assert!(Sku::parse("A-1").is_ok());
        assert_eq!(Sku::parse("").unwrap_err().code(), "BAD_USER_INPUT");
        assert_eq!(Sku::parse("A 1").unwrap_err().code(), "BAD_USER_INPUT");
        assert_eq!(Sku::parse(&"x".repeat(101)).unwrap_err().code(), "BAD_USER_INPUT");
    }

    #[test]
    fn quantities_must_be_positive_and_bounded() {
        assert_eq!(Quantity::parse(3).unwrap().get(), 3);
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-1).is_err());
        assert!(Quantity::parse(MAX_LINE_QUANTITY + 1).is_err());
    }

    #[test]
    fn names_are_trimmed() {
        assert_eq!(Name::parse("  Berlin ", "name").unwrap().into_inner(), "Berlin");
        assert!(Name::parse("   ", "name").is_err());
    }
}
