//! Holds that no longer hold: units still counted in `reserved_quantity` by reservations
//! past their deadline, which the sweep has not given back yet. Every reader of free
//! stock subtracts them (see `allocation::free_units`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{reservation, reservation::ReservationStatus, reservation_line};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Query};

use crate::error::Result;

/// Units per level still counted in `reserved_quantity` by ACTIVE reservations that are
/// past their deadline at `now`: they hold nothing any more, the sweep just has not run
/// yet. `except` (the reservations being committed) are never lapsed to their own orders.
pub async fn overdue_holds(
    conn: &impl ConnectionTrait,
    level_ids: impl IntoIterator<Item = i32>,
    now: DateTime<Utc>,
    except: &[i32],
) -> Result<HashMap<i32, i32>> {
    let mut overdue = Query::select()
        .column(reservation::Column::Id)
        .from(reservation::Entity)
        .and_where(reservation::Column::Status.eq(ReservationStatus::Active))
        .and_where(reservation::Column::ExpiresAt.lte(now))
        .to_owned();
    if !except.is_empty() {
        overdue.and_where(reservation::Column::Id.is_not_in(except.iter().copied()));
    }
    let lines = reservation_line::Entity::find()
        .filter(reservation_line::Column::InventoryLevelId.is_in(level_ids))
        .filter(reservation_line::Column::ReservationId.in_subquery(overdue))
        .all(conn)
        .await?;
    let mut held: HashMap<i32, i32> = HashMap::new();
    for line in lines {
        *held.entry(line.inventory_level_id).or_default() += line.quantity;
    }
    Ok(held)
}

/// [`overdue_holds`] of one level as a SQL expression, for statements that work out free
/// stock in the database (storefront `availability`): `level_id` and `now` are SQL
/// expressions. Written here, beside the query form, so the rule for "lapsed" has one home.
pub fn lapsed_units_sql(level_id: &str, now: &str) -> String {
    format!(
        "COALESCE((SELECT SUM(rl.quantity) FROM reservation_line rl \
         JOIN reservation r ON r.id = rl.reservation_id \
         WHERE rl.inventory_level_id = {level_id} AND r.status = 'ACTIVE' AND r.expires_at <= {now}), 0)"
    )
}
