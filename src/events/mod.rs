//! Inventory events (`inventory.backordered`), from the transaction that caused them to
//! every subscriber of every server process, with nothing lost and nothing doubled.
//!
//! - [`outbox`]: events are rows written in the same transaction as the stock change,
//!   with ids that follow commit order and have no gaps. The table is the truth.
//! - [`hub`]: one feed per process reads new rows from the table and broadcasts them to
//!   local subscribers. It is woken by this process's own commits that stored events, by
//!   PostgreSQL `NOTIFY` from other processes (one `LISTEN` connection per process), and
//!   by a short poll — so a lost notification or a dropped listener only delays, never
//!   loses.
//! - [`stream`]: one subscriber's stream: replay from the table after its cursor, then
//!   live events, falling back to the table whenever it lags or sees a gap.

pub mod hub;
pub mod outbox;
pub mod stream;

pub use hub::EventHub;
