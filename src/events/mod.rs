//! Inventory events (`inventory.backordered`): written to the outbox table in the same
//! transaction as the stock change that caused them, so an event exists if and only if
//! its change committed.

pub mod outbox;
