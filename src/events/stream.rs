//! One subscriber's stream of events: no gap and no duplicate at the hand-over from
//! replay to live, and none when it falls behind.
//!
//! It subscribes to the live feed *first*, then replays the table after its cursor, then
//! takes live events, skipping ids it already has. Outbox ids are dense (no gaps, see
//! `outbox`), so a live event that is not exactly `cursor + 1` means something was
//! missed — the buffer overflowed, or the feed ran ahead of the replay — and the stream
//! goes back to the table from its cursor. A slow subscriber therefore never slows the
//! others or the order path; it just reads more from the table.

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::hub::{Committed, EventHub, PAGE, SharedEvent, events_after, latest_id};
use crate::error::Error;

/// What a subscriber wants to see.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub sku: Option<String>,
    pub stock_location_id: Option<i32>,
}

impl Filter {
    fn matches(&self, committed: &Committed) -> bool {
        let event = &committed.event;
        self.sku.as_ref().is_none_or(|sku| *sku == event.sku)
            && self
                .stock_location_id
                .is_none_or(|location| location == event.stock_location_id)
    }
}

/// Events after `after` (or from now, if `None`) that match `filter`, then live ones.
pub fn subscribe(hub: EventHub, after: Option<i64>, filter: Filter) -> impl Stream<Item = Result<SharedEvent, Error>> {
    async_stream::try_stream! {
        let mut live = hub.subscribe();
        let mut cursor = match after {
            Some(after) => after,
            None => latest_id(hub.conn()).await?,
        };
        loop {
            // Replay (or catch up) from the table.
            loop {
                let page = events_after(hub.conn(), cursor, PAGE).await?;
                let full_page = page.len() as u64 == PAGE;
                for event in page {
                    cursor = event.event.id;
                    if filter.matches(&event) {
                        yield std::sync::Arc::new(event);
                    }
                }
                if !full_page {
                    break;
                }
            }
            // Live, until a gap or a lag sends us back to the table.
            loop {
                match live.recv().await {
                    Ok(event) if event.event.id <= cursor => continue,
                    Ok(event) if event.event.id == cursor + 1 => {
                        cursor = event.event.id;
                        if filter.matches(&event) {
                            yield event;
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}
