//! What a storefront may show: units available per sku over a channel's locations.
//!
//! A read, not a promise: placement re-checks under row locks. Levels are summed as
//! each level's `available` ([`available_units_sql`], the SQL form of the one rule every
//! reader uses), so one backordered location never hides stock at another, and the
//! result is never negative.
//!
//! One statement answers the whole question (items ⋈ levels ⋈ the channel's mappings,
//! minus lapsed holds, grouped by sku): it is the read storefronts make on every page, and
//! hardest exactly while a drop sells out. It reads one committed state (one statement is
//! one snapshot), so it never shows more than was unsold at that moment. A sentinel row
//! says whether the channel exists, so an unknown channel costs no second round trip.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};

use super::{allocation::available_units_sql, holds, values::Sku};
use crate::{
    db::{self, Database},
    error::{Error, Result},
};

/// Most skus one availability call may ask for.
pub const MAX_SKUS: usize = 250;

/// Availability of one sku in one channel.
#[derive(Debug, Clone, PartialEq, Eq, async_graphql::SimpleObject)]
pub struct SkuAvailability {
    pub sku: String,
    /// Units that can be sold now (never negative).
    pub available: i32,
    pub in_stock: bool,
    /// True if any of the channel's levels for this sku allows backorder.
    pub backorderable: bool,
}

/// The statement for `skus` skus. Bind parameters: the channel, then (SQLite only) the
/// clock, then the skus. PostgreSQL's `now()` is the statement's own transaction start.
fn statement(backend: DatabaseBackend, skus: usize) -> String {
    let placeholder = |n: usize| match backend {
        DatabaseBackend::Postgres => format!("${n}"),
        // Numbered, because the channel is used twice and the clock comes first in the text.
        _ => format!("?{n}"),
    };
    let channel = placeholder(1);
    let (now, first_sku) = match backend {
        DatabaseBackend::Postgres => ("now()".to_owned(), 2),
        _ => (placeholder(2), 3),
    };
    let sku_list = (first_sku..first_sku + skus)
        .map(placeholder)
        .collect::<Vec<_>>()
        .join(", ");
    // Lapsed holds are only looked up for levels that hold anything.
    let lapsed = format!(
        "CASE WHEN l.reserved_quantity = 0 THEN 0 ELSE {} END",
        holds::lapsed_units_sql("l.id", &now)
    );
    let available = available_units_sql(backend, "l.stocked_quantity", "l.reserved_quantity", &lapsed);
    let any_backorder = match backend {
        DatabaseBackend::Postgres => "BOOL_OR(l.allow_backorder)",
        _ => "MAX(l.allow_backorder)",
    };
    format!(
        "SELECT i.sku AS sku, CAST(SUM({available}) AS BIGINT) AS available, {any_backorder} AS backorderable
         FROM sales_channel_location m
         JOIN inventory_level l ON l.stock_location_id = m.stock_location_id
         JOIN inventory_item i ON i.id = l.inventory_item_id
         WHERE m.sales_channel_id = {channel} AND i.sku IN ({sku_list})
         GROUP BY i.sku
         UNION ALL
         SELECT NULL, NULL, NULL FROM sales_channel WHERE id = {channel}"
    )
}

/// Availability of `skus` (in the order asked) through `channel_id`'s mapped locations.
pub async fn for_channel(db: &Database, channel_id: i32, skus: &[String]) -> Result<Vec<SkuAvailability>> {
    if skus.len() > MAX_SKUS {
        return Err(Error::bad_input(format!("at most {MAX_SKUS} skus per call")));
    }
    let conn = db.conn();
    let backend = db.backend();
    // A malformed sku cannot name an item: it is simply unknown, like any other.
    let valid: Vec<&String> = skus.iter().filter(|sku| Sku::parse(sku).is_ok()).collect();
    let mut values: Vec<Value> = vec![channel_id.into()];
    if backend != DatabaseBackend::Postgres {
        values.push(db::now(conn).await?.into());
    }
    values.extend(valid.iter().map(|sku| Value::from(sku.as_str())));
    if valid.is_empty() {
        values.push(Value::from(None::<String>));
    }
    let sql = statement(backend, valid.len().max(1));
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut channel_found = false;
    let mut totals: HashMap<String, (i64, bool)> = HashMap::new();
    for row in rows {
        match row.try_get::<Option<String>>("", "sku")? {
            None => channel_found = true,
            Some(sku) => {
                let available = row.try_get::<Option<i64>>("", "available")?.unwrap_or_default();
                let backorderable = row.try_get::<Option<bool>>("", "backorderable")?.unwrap_or_default();
                totals.insert(sku, (available, backorderable));
            }
        }
    }
    if !channel_found {
        return Err(Error::not_found(format!("sales channel {channel_id}")));
    }
    Ok(skus
        .iter()
        .map(|sku| {
            let (available, backorderable) = totals.get(sku.as_str()).copied().unwrap_or_default();
            let available = i32::try_from(available).unwrap_or(i32::MAX);
            SkuAvailability {
                sku: sku.clone(),
                available,
                in_stock: available > 0,
                backorderable,
            }
        })
        .collect())
}
