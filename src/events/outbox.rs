//! Appending to the outbox with ids that are a usable cursor.
//!
//! A process's own feed is woken after a commit only if events were appended since the
//! transaction began ([`AppendMark`]): most writes store none, and a read of the outbox
//! after every commit cost a flash sale a database backend's worth of CPU.
//!
//! A reader resumes "after id N", so ids must be strictly increasing in *commit* order. A
//! plain serial is not: a transaction that took id 7 may commit after one that took id 8,
//! and a reader that already saw 8 would miss 7 forever. So ids come from the single
//! `event_sequence` row, incremented by an `UPDATE` as the last statement before commit.
//! The `UPDATE` holds that row's lock until the transaction ends, so the next transaction
//! can only take its ids after this one has committed (or rolled back, in which case its
//! increment is undone too and no gap appears). Ids are therefore also dense: a reader
//! that sees id N+2 after N knows it missed N+1. Only transactions that emit events touch
//! the row, and only for the moment between their last write and their commit.
//!
//! Deadlock-free: the sequence row is always the last lock a transaction takes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::Utc;
use entity::{event_sequence, inventory_event};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, EntityTrait, QueryFilter, Statement,
    sea_query::{Expr, ExprTrait},
};

use crate::error::{Error, Result};

/// The PostgreSQL channel on which committed events are announced (a wake-up hint only:
/// the payload is the newest id, readers always read the table).
pub const NOTIFY_CHANNEL: &str = "stockroom_inventory_events";

/// Whether commits are announced with `NOTIFY` (`STOCKROOM_EVENT_NOTIFY`). It describes
/// the database engine, which is one for every connection of the process, and it is
/// decided in the transactions of every write path; so it is set once, at start.
static ANNOUNCE_WITH_NOTIFY: AtomicBool = AtomicBool::new(true);

/// How many times this process has appended events (see [`AppendMark`]).
static APPENDS: AtomicU64 = AtomicU64::new(0);

/// A point to ask later whether any transaction of this process appended events since.
#[derive(Debug, Clone, Copy)]
pub struct AppendMark(u64);

impl AppendMark {
    /// Marks this moment; take it once the transaction has begun.
    pub fn now() -> Self {
        AppendMark(APPENDS.load(Ordering::Acquire))
    }

    /// Whether events were appended since the mark (by this transaction or by another one:
    /// the feed is then woken for nothing, which costs one read and misses nothing).
    pub fn moved(self) -> bool {
        APPENDS.load(Ordering::Acquire) != self.0
    }
}

/// Sets `STOCKROOM_EVENT_NOTIFY` for this process, before any write.
pub fn announce_with_notify(enabled: bool) {
    ANNOUNCE_WITH_NOTIFY.store(enabled, Ordering::Relaxed);
}

/// The event type of a line that took a level's free stock below zero.
pub const BACKORDERED: &str = "inventory.backordered";

/// An `inventory.backordered` event to store.
#[derive(Debug, Clone)]
pub struct Backordered {
    pub sku: String,
    pub stock_location_id: i32,
    pub order_id: i32,
    /// Units ordered on the line.
    pub quantity: i32,
    /// The level's stock after the order.
    pub stocked_quantity: i32,
    /// Units of the line not covered by stock.
    pub backordered_quantity: i32,
}

/// Stores `events` with the next ids. Call it as the last write of the transaction.
pub async fn append(txn: &DatabaseTransaction, events: Vec<Backordered>) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let count = events.len() as i64;
    let sequence = event_sequence::Entity::update_many()
        .col_expr(
            event_sequence::Column::LastValue,
            Expr::col(event_sequence::Column::LastValue).add(count),
        )
        .filter(event_sequence::Column::Id.eq(1))
        .exec_with_returning(txn)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the event_sequence row is missing".into()))?;
    let first_id = sequence.last_value - count + 1;
    let occurred_at = Utc::now();
    let rows = events
        .into_iter()
        .zip(first_id..)
        .map(|(event, id)| inventory_event::ActiveModel {
            id: Set(id),
            event_type: Set(BACKORDERED.to_owned()),
            sku: Set(event.sku),
            stock_location_id: Set(event.stock_location_id),
            order_id: Set(event.order_id),
            quantity: Set(event.quantity),
            stocked_quantity: Set(event.stocked_quantity),
            backordered_quantity: Set(event.backordered_quantity),
            occurred_at: Set(occurred_at),
        });
    inventory_event::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    if txn.get_database_backend() == DatabaseBackend::Postgres && ANNOUNCE_WITH_NOTIFY.load(Ordering::Relaxed) {
        // Delivered by PostgreSQL only when (and if) this transaction commits.
        let notify = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [NOTIFY_CHANNEL.into(), sequence.last_value.to_string().into()],
        );
        txn.execute_raw(notify).await?;
    }
    APPENDS.fetch_add(1, Ordering::Release);
    Ok(())
}
