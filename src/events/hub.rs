//! The per-process event feed: reads committed events from the outbox and fans them out
//! to local subscribers through a bounded broadcast channel.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use entity::{inventory_event, stock_location};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{
    ColumnTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::{Notify, broadcast};

use super::outbox::NOTIFY_CHANNEL;
use crate::db::Database;

/// How long to wait before reopening a failed `LISTEN` connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Events buffered per subscriber; a subscriber further behind catches up from the table.
const LIVE_BUFFER: usize = 1024;
/// Rows read from the outbox per query.
pub const PAGE: u64 = 500;

/// A committed event, shared by every subscriber that receives it.
pub type SharedEvent = Arc<Committed>;

/// Handle on this process's feed.
#[derive(Clone, Debug)]
pub struct EventHub {
    live: broadcast::Sender<SharedEvent>,
    conn: DatabaseConnection,
}

impl EventHub {
    /// Starts the feed (and on PostgreSQL the `LISTEN` connection) for `db`.
    ///
    /// The feed's starting point is read before this returns: every event committed later
    /// is broadcast, and every subscriber (all created later) replays the earlier ones from
    /// the table. Reading it inside the spawned task instead would let an event commit in
    /// between and be broadcast to nobody.
    /// `notify` is `STOCKROOM_EVENT_NOTIFY`: without it, other processes' events arrive
    /// by the poll alone.
    pub async fn start(db: &Database, poll_interval: Duration, notify: bool) -> Result<EventHub, DbErr> {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let wake = db.new_events();
        let start_after = latest_id(db.conn()).await?;
        super::outbox::announce_with_notify(notify);
        if notify && db.backend() == DatabaseBackend::Postgres {
            tokio::spawn(listen(db.conn().clone(), wake.clone()));
        }
        tokio::spawn(feed(db.conn().clone(), start_after, poll_interval, wake, live.clone()));
        Ok(EventHub {
            live,
            conn: db.conn().clone(),
        })
    }

    /// Live events from now on (call before replaying, so nothing falls in between).
    pub fn subscribe(&self) -> broadcast::Receiver<SharedEvent> {
        self.live.subscribe()
    }

    /// How many subscriptions of this process are listening.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }

    /// The pool, for replays.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }
}

/// A committed event with its stock location, read once and shared by every subscriber:
/// resolving `location` then costs no query (and no DataLoader wait) per event.
#[derive(Debug, Clone)]
pub struct Committed {
    pub event: inventory_event::Model,
    pub location: stock_location::Model,
}

/// Stored events with id > `after`, oldest first, at most `limit`, with their locations.
pub async fn events_after(conn: &DatabaseConnection, after: i64, limit: u64) -> Result<Vec<Committed>, DbErr> {
    events_between(conn, after, None, limit, false).await
}

/// Up to `limit` stored events with `after < id < before`, oldest or newest first. Newest
/// first is what a reader shows as "recent" before following the feed from the newest id.
pub async fn events_between(
    conn: &DatabaseConnection,
    after: i64,
    before: Option<i64>,
    limit: u64,
    newest_first: bool,
) -> Result<Vec<Committed>, DbErr> {
    let mut query = inventory_event::Entity::find().filter(inventory_event::Column::Id.gt(after));
    if let Some(before) = before {
        query = query.filter(inventory_event::Column::Id.lt(before));
    }
    query = if newest_first {
        query.order_by_desc(inventory_event::Column::Id)
    } else {
        query.order_by_asc(inventory_event::Column::Id)
    };
    let events = query.limit(limit).all(conn).await?;
    with_locations(conn, events).await
}

async fn with_locations(
    conn: &DatabaseConnection,
    events: Vec<inventory_event::Model>,
) -> Result<Vec<Committed>, DbErr> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let location_ids: HashSet<i32> = events.iter().map(|event| event.stock_location_id).collect();
    let locations: HashMap<i32, stock_location::Model> = stock_location::Entity::find()
        .filter(stock_location::Column::Id.is_in(location_ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|location| (location.id, location))
        .collect();
    events
        .into_iter()
        .map(|event| {
            let location = locations.get(&event.stock_location_id).cloned().ok_or_else(|| {
                DbErr::RecordNotFound(format!(
                    "stock location {} of event {}",
                    event.stock_location_id, event.id
                ))
            })?;
            Ok(Committed { event, location })
        })
        .collect()
}

/// The newest stored event id (0 if none).
pub async fn latest_id(conn: &DatabaseConnection) -> Result<i64, DbErr> {
    let newest = inventory_event::Entity::find()
        .order_by_desc(inventory_event::Column::Id)
        .one(conn)
        .await?;
    Ok(newest.map_or(0, |event| event.id))
}

/// Reads new events whenever woken (or every `poll_interval`) and broadcasts them.
async fn feed(
    conn: DatabaseConnection,
    mut last: i64,
    poll_interval: Duration,
    wake: Arc<Notify>,
    live: broadcast::Sender<SharedEvent>,
) {
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(poll_interval) => {}
        }
        loop {
            match events_after(&conn, last, PAGE).await {
                Ok(events) => {
                    let full_page = events.len() as u64 == PAGE;
                    let now = chrono::Utc::now();
                    for event in events {
                        last = event.event.id;
                        let after_commit = (now - event.event.occurred_at).to_std().unwrap_or_default();
                        crate::metrics::event_delivered(last, after_commit);
                        // No receiver is fine; a lagging one catches up from the table.
                        live.send(Arc::new(event)).ok();
                    }
                    if !full_page {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "event feed could not read the outbox; will retry");
                    break;
                }
            }
        }
    }
}

/// Holds one `LISTEN` connection and turns notifications into wake-ups of the feed. After
/// the connection drops (and sqlx re-establishes it), it wakes the feed too: anything
/// committed while nobody listened is then read from the table.
async fn listen(conn: DatabaseConnection, wake: Arc<Notify>) {
    let pool = conn.get_postgres_connection_pool().clone();
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open the LISTEN connection; retrying");
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(NOTIFY_CHANNEL).await {
            tracing::warn!(error = %err, "LISTEN failed; retrying");
            tokio::time::sleep(RECONNECT_DELAY).await;
            continue;
        }
        wake.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake.notify_one(),
                Ok(None) => {
                    tracing::info!("LISTEN connection was lost and re-established; catching up");
                    wake.notify_one();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "LISTEN connection failed; reconnecting");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    break;
                }
            }
        }
    }
}
