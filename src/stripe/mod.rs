//! Stripe: `POST /webhooks/stripe` turns `payment_intent.succeeded` events into orders,
//! exactly once, and refunds the ones that cannot be placed.
//!
//! - [`signature`]: verifying `Stripe-Signature` against one or more secrets.
//! - [`metadata`]: reading the order out of the PaymentIntent's metadata.
//! - [`payments`]: the exactly-once processing (event id stored with its effect).
//! - [`refunds`]: the Stripe API client for refunds of rejected orders.
//! - [`webhook`]: the HTTP handler tying these together.

pub mod metadata;
pub mod payments;
pub mod refunds;
pub mod signature;
pub mod webhook;
