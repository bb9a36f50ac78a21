//! What must hold after any run, however the requests raced or the processes died: the
//! ledger adds up to the levels ([`assert_ledger_matches_levels`]), and no order is half
//! written ([`assert_nothing_half_written`]).

use std::collections::HashMap;

use entity::{inventory_level, stock_movement};
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};

use crate::{app::TestApp, database::scalar};

/// Asserts the ledger invariant for every level: the quantity before the first
/// movement plus all deltas equals the current quantity (stocked and reserved), and
/// each movement's `*_after` continues from the previous one.
pub async fn assert_ledger_matches_levels(conn: &DatabaseConnection) {
    let levels = inventory_level::Entity::find().all(conn).await.unwrap();
    let movements = stock_movement::Entity::find()
        .order_by_asc(stock_movement::Column::Id)
        .all(conn)
        .await
        .unwrap();
    let mut by_level: HashMap<i32, Vec<&stock_movement::Model>> = HashMap::new();
    for movement in &movements {
        by_level.entry(movement.inventory_level_id).or_default().push(movement);
    }
    for level in &levels {
        let moves = by_level.get(&level.id).map(Vec::as_slice).unwrap_or_default();
        let first = moves.first().expect("every level has at least its creating movement");
        let mut stocked = first.stocked_after - first.delta;
        let mut reserved = first.reserved_after - first.reserved_delta;
        for movement in moves {
            stocked += movement.delta;
            reserved += movement.reserved_delta;
            assert_eq!(
                stocked, movement.stocked_after,
                "ledger chain broken at movement {}",
                movement.id
            );
            assert_eq!(
                reserved, movement.reserved_after,
                "ledger chain broken at movement {}",
                movement.id
            );
        }
        assert_eq!(
            stocked, level.stocked_quantity,
            "ledger sum != stocked for level {}",
            level.id
        );
        assert_eq!(
            reserved, level.reserved_quantity,
            "ledger sum != reserved for level {}",
            level.id
        );
    }
}

/// Every order is whole: a PLACED one has its lines, a ledger movement per unit taken and
/// an event per backordered line; a REJECTED one moved nothing. No PaymentIntent has two
/// orders, the ledger sums to the levels, and event ids have no gaps.
pub async fn assert_nothing_half_written(conn: &DatabaseConnection) {
    for (what, sql) in [
        (
            "placed orders without lines",
            "SELECT COUNT(*) FROM orders o WHERE o.status = 'PLACED'
             AND NOT EXISTS (SELECT 1 FROM order_line l WHERE l.order_id = o.id)",
        ),
        (
            "placed orders whose ledger does not match their lines",
            "SELECT COUNT(*) FROM orders o WHERE o.status = 'PLACED' AND
             (SELECT COALESCE(SUM(-m.delta), 0) FROM stock_movement m WHERE m.order_id = o.id)
             <> (SELECT COALESCE(SUM(l.quantity), 0) FROM order_line l WHERE l.order_id = o.id)",
        ),
        (
            "rejected orders that moved stock or wrote events",
            "SELECT COUNT(*) FROM orders o WHERE o.status = 'REJECTED' AND
             (EXISTS (SELECT 1 FROM stock_movement m WHERE m.order_id = o.id)
              OR EXISTS (SELECT 1 FROM inventory_event e WHERE e.order_id = o.id))",
        ),
        (
            "orders whose events do not match their backordered lines",
            "SELECT COUNT(*) FROM orders o WHERE
             (SELECT COUNT(*) FROM inventory_event e WHERE e.order_id = o.id)
             <> (SELECT COUNT(*) FROM order_line l WHERE l.order_id = o.id AND l.backordered_quantity > 0)",
        ),
        (
            "PaymentIntents with more than one order",
            "SELECT COUNT(*) FROM (SELECT payment_intent_id FROM orders GROUP BY payment_intent_id HAVING COUNT(*) > 1) d",
        ),
        (
            "gaps in the event ids",
            "SELECT COALESCE(MAX(id), 0) - COUNT(*) FROM inventory_event",
        ),
    ] {
        assert_eq!(scalar(conn, sql).await, 0, "{what}");
    }
    assert_ledger_matches_levels(conn).await;
}

impl TestApp {
    /// See [`assert_ledger_matches_levels`].
    pub async fn assert_ledger_matches_levels(&self) {
        assert_ledger_matches_levels(self.db().conn()).await;
    }
}
