//! The inventory domain: what Stockroom knows and the rules for changing it.
//!
//! GraphQL resolvers and the Stripe webhook parse their input into the typed values of
//! [`values`] and call one function here; they hold no business rules. Every function that
//! writes runs in one transaction through [`crate::db::Database::write`].

pub mod allocation;
pub mod availability;
pub mod catalog;
pub mod combiner;
pub mod holds;
pub mod ledger;
pub mod levels;
pub mod lookup;
pub mod orders;
pub mod placement;
pub mod planning;
pub mod reservations;
pub mod stock;
pub mod values;
