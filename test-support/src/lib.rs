//! What Stockroom's integration tests (`tests/api`) and benches (`benches/`) share, one
//! module per job:
//!
//! - [`database`]: which engine, and a throw-away database per test or bench run;
//!   PostgreSQL unreachable means a loud skip, or a failure under `CI`.
//! - [`app`]: the real router in-process on such a database, and its GraphQL client.
//! - [`fixtures`]: the one-location shop, items and levels, orders, the `placeOrder` text.
//! - [`racing`]: every test on each engine, and tasks started at one instant.
//! - [`invariants`]: what must hold after any run (the ledger, whole orders).
//! - [`chaos`]: a proxy that cuts the app off from PostgreSQL.
//! - [`process`]: the real binary, spawned as an operator starts it.
//! - [`ws`]: a graphql-transport-ws client.
//! - [`load`]: many HTTP clients against a spawned server, and their latencies (benches).
//! - [`node`]: Node.js tools some tests drive.

pub mod app;
pub mod chaos;
pub mod database;
pub mod fixtures;
pub mod invariants;
pub mod load;
pub mod node;
pub mod process;
pub mod racing;
pub mod ws;
