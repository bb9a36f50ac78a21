//! What happened minute by minute over the last hour or so, for the admin page's chart:
//! orders placed, out-of-stock refusals, backorders.
//!
//! Placed orders and backorder events are counted from their own tables. A refusal stores
//! nothing (the order was never made), so each process counts its refusals in memory and
//! adds the count to the shared per-minute `refusal_tally` every [`FLUSH_INTERVAL`] and
//! before it answers `activity`. One write per process per interval, whatever the rush:
//! the refusals of a sold-out drop never queue on that row. A process killed between two
//! flushes loses its last few seconds of refusals; `/metrics` counts them exactly.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::{inventory_event, orders, orders::OrderStatus, refusal_tally};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseBackend, EntityTrait, IdenStatic, QueryFilter, QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, OnConflict, SimpleExpr},
};

use crate::{
    db::Database,
    error::{Error, Result},
};

/// How often a process adds its refusals to the shared tally.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// The longest window `activity` covers: one day.
pub const MAX_MINUTES: i32 = 24 * 60;

/// Refusals this process counted for one database, not yet added to its tally.
#[derive(Debug, Default)]
pub struct Refusals {
    unflushed: AtomicU64,
}

impl Refusals {
    /// Counts an order that `reason` refused, if it was refused for lack of stock (by
    /// `placeOrder`, or stored REJECTED): the one home of what the chart calls a refusal.
    pub fn count(&self, reason: &Error) {
        if let Error::OutOfStock { .. } = reason {
            self.unflushed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Adds this process's uncounted refusals to the current minute of the tally.
pub async fn flush(db: &Database) -> Result<()> {
    let db = db.clone();
    // In a task of its own: a caller that goes away mid-write (a client hanging up on
    // `activity`) must not take the count it swapped out with it.
    tokio::spawn(async move { flush_now(&db).await })
        .await
        .map_err(|err| Error::Internal(format!("the activity flush panicked: {err}")))?
}

async fn flush_now(db: &Database) -> Result<()> {
    let unflushed = &db.refusals().unflushed;
    let refusals = unflushed.swap(0, Ordering::Relaxed);
    if refusals == 0 {
        return Ok(());
    }
    let tally = refusal_tally::ActiveModel {
        minute: Set(Utc::now().timestamp().div_euclid(60)),
        refusals: Set(refusals as i64),
    };
    let sum = Expr::col((refusal_tally::Entity, refusal_tally::Column::Refusals))
        .add(Expr::col((Alias::new("excluded"), refusal_tally::Column::Refusals)));
    let added = refusal_tally::Entity::insert(tally)
        .on_conflict(
            OnConflict::column(refusal_tally::Column::Minute)
                .value(refusal_tally::Column::Refusals, sum)
                .to_owned(),
        )
        .exec_without_returning(db.conn())
        .await;
    if let Err(err) = added {
        // Kept for the next flush rather than lost.
        unflushed.fetch_add(refusals, Ordering::Relaxed);
        return Err(err.into());
    }
    Ok(())
}

/// One minute of activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minute {
    pub start: DateTime<Utc>,
    pub orders_placed: i64,
    pub out_of_stock_refusals: i64,
    pub backorders: i64,
}

/// The last `minutes` minutes, oldest first, the current (partial) minute last; minutes
/// with nothing in them included.
pub async fn last_minutes(db: &Database, minutes: i32) -> Result<Vec<Minute>> {
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(Error::bad_input(format!("minutes must be between 1 and {MAX_MINUTES}")));
    }
    if let Err(err) = flush(db).await {
        // The tally is then a few refusals short until the next flush: still worth showing.
        tracing::warn!(error = %err, "could not add this process's refusals to the activity tally");
    }
    let now = Utc::now().timestamp().div_euclid(60);
    let first = now - i64::from(minutes) + 1;
    let since = DateTime::from_timestamp(first * 60, 0).unwrap_or_default();
    let conn = db.conn();
    let bucket = |column: &str| minute_of(conn.get_database_backend(), column);

    let placed_minute = bucket(orders::Column::CreatedAt.as_str());
    let placed: Vec<(i64, i64)> = orders::Entity::find()
        .select_only()
        .column_as(placed_minute.clone(), "minute")
        .column_as(orders::Column::Id.count(), "n")
        .filter(orders::Column::Status.eq(OrderStatus::Placed))
        .filter(orders::Column::CreatedAt.gte(since))
        .group_by(placed_minute)
        .into_tuple()
        .all(conn)
        .await?;
    let event_minute = bucket(inventory_event::Column::OccurredAt.as_str());
    let backordered: Vec<(i64, i64)> = inventory_event::Entity::find()
        .select_only()
        .column_as(event_minute.clone(), "minute")
        .column_as(inventory_event::Column::Id.count(), "n")
        .filter(inventory_event::Column::OccurredAt.gte(since))
        .group_by(event_minute)
        .into_tuple()
        .all(conn)
        .await?;
    let refused = refusal_tally::Entity::find()
        .filter(refusal_tally::Column::Minute.gte(first))
        .all(conn)
        .await?;

    let mut series: Vec<Minute> = (first..=now)
        .map(|minute| Minute {
            start: DateTime::from_timestamp(minute * 60, 0).unwrap_or_default(),
            orders_placed: 0,
            out_of_stock_refusals: 0,
            backorders: 0,
        })
        .collect();
    let mut add = |minute: i64, count: i64, field: fn(&mut Minute) -> &mut i64| {
        let slot = usize::try_from(minute - first)
            .ok()
            .and_then(|index| series.get_mut(index));
        if let Some(slot) = slot {
            *field(slot) += count;
        }
    };
    for (minute, count) in placed {
        add(minute, count, |m| &mut m.orders_placed);
    }
    for (minute, count) in backordered {
        add(minute, count, |m| &mut m.backorders);
    }
    for tally in refused {
        add(tally.minute, tally.refusals, |m| &mut m.out_of_stock_refusals);
    }
    Ok(series)
}

/// Minutes since the Unix epoch of the timestamp column `column` (of the one table
/// queried), computed by the database.
fn minute_of(backend: DatabaseBackend, column: &str) -> SimpleExpr {
    match backend {
        DatabaseBackend::Postgres => {
            Expr::cust(format!("CAST(FLOOR(EXTRACT(EPOCH FROM \"{column}\") / 60) AS BIGINT)"))
        }
        // SQLite holds timestamps as text, "2026-11-23T10:00:00.5+00:00" (always UTC): its
        // date functions read the first 19 characters.
        _ => Expr::cust(format!(
            "CAST(strftime('%s', substr(\"{column}\", 1, 19)) AS INTEGER) / 60"
        )),
    }
}
