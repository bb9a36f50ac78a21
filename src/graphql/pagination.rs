//! Relay cursor connections with opaque cursors, shared by every paginated field.
//!
//! A cursor is the base64 of the row's id; clients must treat it as opaque. Pages hold
//! at most `MAX_PAGE_SIZE` rows; one extra row is fetched to know whether more follow.

use async_graphql::{
    OutputType,
    connection::{Connection, Edge},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};

use crate::error::{Error, Result};

/// The largest `first` a client may ask for.
pub const MAX_PAGE_SIZE: i32 = 100;

/// A validated `first` / `after` pair.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Rows to return.
    pub size: u64,
    /// Only rows strictly beyond this id (in the listing's order).
    pub after: Option<i64>,
}

impl Page {
    /// Checks `first` (1..=100) and decodes `after`.
    pub fn parse(first: i32, after: Option<&str>) -> Result<Self> {
        if !(1..=MAX_PAGE_SIZE).contains(&first) {
            return Err(Error::bad_input(format!("first must be between 1 and {MAX_PAGE_SIZE}")));
        }
        let after = after.map(decode_cursor).transpose()?;
        Ok(Page {
            size: first as u64,
            after,
        })
    }

    /// How many rows to fetch: one more than the page, to learn if there is a next page.
    pub fn fetch_limit(&self) -> u64 {
        self.size + 1
    }

    /// Reads this page of `query`, a listing ordered by its `id` column in `order`; the
    /// cursor continues in that order. Feed the rows to [`Self::connection`].
    pub async fn rows<E: EntityTrait>(
        &self,
        query: Select<E>,
        id: impl ColumnTrait,
        order: Listing,
        conn: &impl ConnectionTrait,
    ) -> Result<Vec<E::Model>> {
        let query = match order {
            Listing::OldestFirst => query.order_by_asc(id),
            Listing::NewestFirst => query.order_by_desc(id),
        };
        let query = match (self.after, order) {
            (None, _) => query,
            (Some(after), Listing::OldestFirst) => query.filter(id.gt(after)),
            (Some(after), Listing::NewestFirst) => query.filter(id.lt(after)),
        };
        Ok(query.limit(self.fetch_limit()).all(conn).await?)
    }

    /// Builds the connection from up to `fetch_limit()` rows in listing order.
    pub fn connection<N: OutputType>(&self, mut rows: Vec<N>, id_of: impl Fn(&N) -> i64) -> Connection<String, N> {
        let has_next = rows.len() as u64 > self.size;
        rows.truncate(self.size as usize);
        let mut connection = Connection::new(self.after.is_some(), has_next);
        connection.edges.extend(
            rows.into_iter()
                .map(|node| Edge::new(encode_cursor(id_of(&node)), node)),
        );
        connection
    }
}

/// The order of a listing, by row id (which is creation order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    OldestFirst,
    NewestFirst,
}

impl Listing {
    /// From a field's `newestFirst` argument.
    pub fn newest_first(newest_first: bool) -> Listing {
        if newest_first {
            Listing::NewestFirst
        } else {
            Listing::OldestFirst
        }
    }
}

/// The opaque cursor for a row id.
pub fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("cursor:{id}"))
}

fn decode_cursor(cursor: &str) -> Result<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("cursor:").and_then(|id| id.parse().ok()))
        .ok_or_else(|| Error::bad_input(format!("invalid cursor {cursor:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert_eq!(decode_cursor("not-a-cursor").unwrap_err().code(), "BAD_USER_INPUT");
    }

    #[test]
    fn page_size_is_bounded() {
        assert!(Page::parse(100, None).is_ok());
        assert!(Page::parse(101, None).is_err());
        assert!(Page::parse(0, None).is_err());
    }
}
