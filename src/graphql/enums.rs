//! The GraphQL faces of the entities' enums: the entities stay plain data, and the schema
//! names and describes these here (each converts to and from its entity enum).

use async_graphql::Enum;
use entity::{orders, reservation, stock_movement};

/// Whether an order took stock or was turned down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "orders::OrderStatus")]
pub enum OrderStatus {
    Placed,
    Rejected,
}

/// Life cycle of a reservation; only ACTIVE ones hold stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "reservation::ReservationStatus")]
pub enum ReservationStatus {
    Active,
    Released,
    Committed,
    Expired,
}

/// Why a level changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "StockMovementReason", remote = "stock_movement::MovementReason")]
pub enum MovementReason {
    Set,
    Adjustment,
    Order,
    Reservation,
    Release,
    Commit,
    Expiry,
}
