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

use std::{
    collections::{HashMap, HashSet},
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, PoisonError},
};

use futures_util::FutureExt as _;
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};
use tokio::sync::oneshot;

use super::{allocation::available_units_sql, holds, values::Sku};
use crate::{
    db::{self, Database},
    error::{Error, Result},
};

/// Most skus one availability call may ask for.
pub const MAX_SKUS: usize = 250;

/// Availability of one sku in one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuAvailability {
    pub sku: String,
    /// Units that can be sold now (never negative).
    pub available: i32,
    pub in_stock: bool,
    /// True if any of the channel's levels for this sku allows backorder.
    pub backorderable: bool,
}

/// The statement for `skus` skus. Bind parameters: the channel, then (SQLite only) the
/// clock, then the skus: on PostgreSQL one text array whatever its length (one prepared
/// statement, answered through the unique index on `sku`), on SQLite `skus` parameters.
/// PostgreSQL's `now()` is the statement's own transaction start.
fn statement(backend: DatabaseBackend, skus: usize) -> String {
    let (channel, now, asked) = match backend {
        DatabaseBackend::Postgres => ("$1".to_owned(), "now()".to_owned(), "= ANY($2)".to_owned()),
        // Numbered, because the channel is used twice and the clock comes first in the text.
        _ => {
            let sku_list = (3..3 + skus).map(|n| format!("?{n}")).collect::<Vec<_>>().join(", ");
            ("?1".to_owned(), "?2".to_owned(), format!("IN ({sku_list})"))
        }
    };
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
         WHERE m.sales_channel_id = {channel} AND i.sku {asked}
         GROUP BY i.sku
         UNION ALL
         SELECT NULL, NULL, NULL FROM sales_channel WHERE id = {channel}"
    )
}

/// Units available and whether any level allows backorder, per known sku.
type Totals = HashMap<String, (i64, bool)>;

/// Availability of `skus` (in the order asked) through `channel_id`'s mapped locations,
/// by one statement of its own. The server answers through [`Reads`], which shares one
/// statement between concurrent callers.
pub async fn for_channel(db: &Database, channel_id: i32, skus: &[String]) -> Result<Vec<SkuAvailability>> {
    check_size(skus)?;
    let asked: Vec<&str> = skus.iter().map(String::as_str).collect();
    let totals = totals(db, channel_id, &asked).await?;
    Ok(answer(skus, &totals))
}

fn check_size(skus: &[String]) -> Result<()> {
    if skus.len() > MAX_SKUS {
        return Err(Error::bad_input(format!("at most {MAX_SKUS} skus per call")));
    }
    Ok(())
}

/// The one statement: totals of the known skus among `skus`, or NOT_FOUND for an unknown
/// channel.
async fn totals(db: &Database, channel_id: i32, skus: &[&str]) -> Result<Totals> {
    let conn = db.conn();
    let backend = db.backend();
    // A malformed sku cannot name an item: it is simply unknown, like any other.
    let valid: Vec<&str> = skus.iter().copied().filter(|sku| Sku::parse(sku).is_ok()).collect();
    let mut values: Vec<Value> = vec![channel_id.into()];
    let sql = if backend == DatabaseBackend::Postgres {
        let asked: Vec<String> = valid.iter().map(|&sku| sku.to_owned()).collect();
        values.push(asked.into());
        statement(backend, valid.len())
    } else {
        values.push(db::now(conn).await?.into());
        // Padded to a power of two by repeating the last sku: a dozen statement texts in
        // all, each prepared once per pooled connection, rather than one per length.
        let slots = valid.len().max(1).next_power_of_two();
        let padding = valid
            .last()
            .map_or(Value::from(None::<String>), |&sku| Value::from(sku));
        values.extend(valid.iter().map(|&sku| Value::from(sku)));
        values.resize(values.len() + slots - valid.len(), padding);
        statement(backend, slots)
    };
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut channel_found = false;
    let mut totals = Totals::new();
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
    Ok(totals)
}

/// The answer to one caller, in the order it asked; unknown skus are 0 / false / false.
fn answer(skus: &[String], totals: &Totals) -> Vec<SkuAvailability> {
    skus.iter()
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
        .collect()
}

/// Most skus one shared statement asks for; callers beyond wait for the next one.
const MAX_SHARED_SKUS: usize = 1_000;

/// Most reads one shared statement answers: bounds the work done under the queue's lock.
const MAX_SHARED_READS: usize = 256;

/// Storefront reads, shared: while a statement for a channel runs, the reads that arrive
/// for that channel wait, and the next statement answers all of them at once. During a
/// drop, when every shopper looks at the same product, the database answers a handful of
/// statements instead of one per page view, and the reads take at most one pooled
/// connection per channel away from the orders.
///
/// Still strongly consistent: a read is answered only by a statement that *began after
/// the read arrived*, so it sees every order committed before it was asked (never an
/// older snapshot, as joining a statement already running would give).
#[derive(Debug, Default)]
pub struct Reads {
    channels: Mutex<HashMap<i32, Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    skus: Vec<String>,
    reply: oneshot::Sender<Result<Vec<SkuAvailability>>>,
}

impl Reads {
    /// Availability of `skus` (in the order asked) through `channel_id`'s locations.
    pub async fn read(
        self: &Arc<Self>,
        db: &Database,
        channel_id: i32,
        skus: Vec<String>,
    ) -> Result<Vec<SkuAvailability>> {
        check_size(&skus)?;
        let (reply, answered) = oneshot::channel();
        let start_reader = {
            let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
            // No entry: no statement is running for this channel, so this read starts one.
            let start_reader = !channels.contains_key(&channel_id);
            channels
                .entry(channel_id)
                .or_default()
                .waiting
                .push(Waiting { skus, reply });
            start_reader
        };
        if start_reader {
            // A task of its own: the statement answers every read waiting on it, even if
            // the one that started it goes away.
            tokio::spawn(self.clone().serve(db.clone(), channel_id));
        }
        answered
            .await
            .map_err(|_| Error::Internal("an availability read went unanswered".into()))?
    }

    /// Runs statements for `channel_id` until no read is waiting.
    async fn serve(self: Arc<Self>, db: Database, channel_id: i32) {
        loop {
            let batch = {
                let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(queue) = channels.get_mut(&channel_id) else {
                    return;
                };
                if queue.waiting.is_empty() {
                    channels.remove(&channel_id);
                    return;
                }
                take_batch(&mut queue.waiting)
            };
            let asked: Vec<&str> = batch.skus.iter().map(String::as_str).collect();
            // A panic must not leave the channel marked as served with nobody serving it:
            // every later read would wait forever. Its reads get an error instead.
            let totals = AssertUnwindSafe(totals(&db, channel_id, &asked))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(Error::Internal("an availability statement panicked".into())));
            crate::metrics::availability_batch(batch.reads.len());
            for waiting in batch.reads {
                let answered = totals
                    .as_ref()
                    .map(|totals| answer(&waiting.skus, totals))
                    .map_err(Clone::clone);
                // The caller may have gone away; the others still get theirs.
                waiting.reply.send(answered).ok();
            }
        }
    }
}

/// Reads answered by one statement, and the skus it asks for (each once).
struct Batch {
    reads: Vec<Waiting>,
    skus: Vec<String>,
}

/// The longest run of waiting reads whose skus, together, fit one statement (at least one
/// read). Skus are counted once however many reads ask for them: shoppers looking at the
/// same category page share one statement, whatever its length.
fn take_batch(waiting: &mut Vec<Waiting>) -> Batch {
    let mut skus: HashSet<&str> = HashSet::new();
    let mut fitting = 0;
    for read in waiting.iter().take(MAX_SHARED_READS) {
        let new: HashSet<&str> = read
            .skus
            .iter()
            .map(String::as_str)
            .filter(|sku| !skus.contains(sku))
            .collect();
        if fitting > 0 && skus.len() + new.len() > MAX_SHARED_SKUS {
            break;
        }
        skus.extend(new);
        fitting += 1;
    }
    let skus = skus.into_iter().map(str::to_owned).collect();
    Batch {
        reads: waiting.drain(..fitting).collect(),
        skus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(lists: &[Vec<String>]) -> Vec<Waiting> {
        lists
            .iter()
            .map(|skus| Waiting {
                skus: skus.clone(),
                reply: oneshot::channel().0,
            })
            .collect()
    }

    fn skus(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|index| format!("{prefix}-{index}")).collect()
    }

    #[test]
    fn a_batch_counts_each_sku_once_however_many_reads_ask_for_it() {
        // Twenty shoppers on one 250-sku page: one statement for all of them.
        let mut waiting = reads(&vec![skus("PAGE", MAX_SKUS); 20]);
        assert_eq!(take_batch(&mut waiting).reads.len(), 20);
        assert!(waiting.is_empty());

        // Distinct pages fill a statement up to its limit; the rest wait for the next.
        let mut waiting = reads(&[skus("A", 400), skus("B", 400), skus("A", 250), skus("C", 400)]);
        assert_eq!(take_batch(&mut waiting).reads.len(), 3);
        assert_eq!(waiting.len(), 1);
        assert_eq!(take_batch(&mut waiting).reads.len(), 1);

        // However few skus they ask for, a statement answers a bounded number of reads.
        let mut waiting = reads(&vec![skus("ONE", 1); MAX_SHARED_READS + 10]);
        assert_eq!(take_batch(&mut waiting).reads.len(), MAX_SHARED_READS);
        assert_eq!(waiting.len(), 10);
    }
}
