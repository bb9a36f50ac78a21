//! Integration tests: the real router on fresh SQLite and PostgreSQL databases.
//!
//! One test binary with a module per capability, rather than one binary per file: each
//! binary links the whole dependency tree, and on a 2-core machine that link is the
//! slowest part of `cargo test`.
//!
//! What the tests share with each other and with the benches (the app under test, its
//! databases, fixtures, racing, invariants, the spawned binary, a WebSocket client) is the
//! `stockroom-test-support` crate (`test-support/`).

/// The binary under test, for the tests that spawn it as an operator would.
const STOCKROOM: &str = env!("CARGO_BIN_EXE_stockroom");

mod access;
mod admin;
mod catalog;
mod cluster;
mod events;
mod flash_sale;
mod graphql_http;
mod migrations;
mod n_plus_one;
mod operations;
mod placement;
mod process;
mod reservations;
mod schema;
mod stock_levels;
mod storefront;
mod stripe_webhook;
