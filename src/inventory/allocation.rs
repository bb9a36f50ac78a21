//! Which location serves each order line: a pure function over levels already read and
//! locked, so the placement rules are unit-tested without a database.
//!
//! The rules (contract, "Placement rules"): candidates come in preference order (the
//! shipping option's location first, then the channel's locations by priority), and only
//! candidates with a level for the sku count. A line takes the first candidate whose
//! `stocked - reserved >= quantity`; failing that, the first candidate that allows
//! backorder; failing that the whole order is `OUT_OF_STOCK`. A line is never split.
//! Lines are decided in order, each seeing what the earlier lines of the same order took.
//!
//! [`free_units`] is the one rule for "units free at a level"; placement, reservations,
//! `InventoryLevel.available` and storefront `availability` all go through it.

use std::collections::HashMap;

use sea_orm::DatabaseBackend;

use super::values::{MAX_STOCK, Quantity, Sku};
use crate::error::{Error, Result};

/// Units of a level free to sell or hold: on hand minus what live reservations hold.
/// `lapsed` is the part of `reserved` that belongs to reservations already past their
/// deadline: they hold nothing any more, even before the sweep marks them EXPIRED.
/// Computed in `i64`: `stocked - reserved` of two `i32`s can leave the `i32` range.
pub fn free_units(stocked: i32, reserved: i32, lapsed: i32) -> i64 {
    i64::from(stocked) - (i64::from(reserved) - i64::from(lapsed))
}

/// [`available_units`] as a SQL expression over the given column expressions, for
/// statements that sum it in the database (storefront `availability`). Kept here, beside
/// the Rust form, and tested against it, so the rule has one home.
pub fn available_units_sql(backend: DatabaseBackend, stocked: &str, reserved: &str, lapsed: &str) -> String {
    let greatest = match backend {
        DatabaseBackend::Sqlite => "MAX",
        _ => "GREATEST",
    };
    format!("{greatest}(CAST({stocked} AS BIGINT) - (CAST({reserved} AS BIGINT) - CAST({lapsed} AS BIGINT)), 0)")
}

/// What a storefront or dashboard shows as available: free units, never negative.
pub fn available_units(stocked: i32, reserved: i32, lapsed: i32) -> i32 {
    // Both operands are within ±MAX_STOCK, so the clamped value fits an i32.
    free_units(stocked, reserved, lapsed).clamp(0, i64::from(i32::MAX)) as i32
}

/// A level that may serve a line, as read under lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub level_id: i32,
    pub stock_location_id: i32,
    /// Units free at the level (see [`free_units`]).
    pub free: i64,
    pub allow_backorder: bool,
}

/// One line to allocate and its candidates, preferred first.
#[derive(Debug, Clone)]
pub struct LineCandidates {
    pub sku: Sku,
    pub quantity: Quantity,
    pub candidates: Vec<Candidate>,
}

/// The decision for one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub level_id: i32,
    pub stock_location_id: i32,
    pub quantity: i32,
    /// Units of the line not covered by free stock (`stocked - reserved`) at that level.
    pub backordered_quantity: i32,
}

/// Decides every line, or fails the whole order.
///
/// A backorder may take a level's free stock down to `-MAX_STOCK` and no further (the
/// same bound an admin's `setStockLevel` has): past that the line is `OUT_OF_STOCK`, so no
/// order or hold can push a level out of the range its columns and sums are checked for.
pub fn allocate(lines: &[LineCandidates]) -> Result<Vec<Allocation>> {
    // Free stock per level as earlier lines of this order consume it.
    let mut free: HashMap<i32, i64> = HashMap::new();
    let mut decisions = Vec::with_capacity(lines.len());
    for line in lines {
        if line.candidates.is_empty() {
            return Err(Error::LocationUnmapped(format!(
                "no location of this sales channel stocks sku {}",
                line.sku
            )));
        }
        let quantity = i64::from(line.quantity.get());
        let free_at = |free: &HashMap<i32, i64>, candidate: &Candidate| {
            free.get(&candidate.level_id).copied().unwrap_or(candidate.free)
        };
        let chosen = line
            .candidates
            .iter()
            .find(|candidate| free_at(&free, candidate) >= quantity)
            .or_else(|| {
                line.candidates.iter().find(|candidate| {
                    candidate.allow_backorder && free_at(&free, candidate) - quantity >= -i64::from(MAX_STOCK)
                })
            })
            .ok_or_else(|| Error::OutOfStock {
                sku: line.sku.to_string(),
            })?;
        let before = free_at(&free, chosen);
        let covered = before.clamp(0, quantity);
        free.insert(chosen.level_id, before - quantity);
        decisions.push(Allocation {
            level_id: chosen.level_id,
            stock_location_id: chosen.stock_location_id,
            quantity: line.quantity.get(),
            backordered_quantity: (quantity - covered) as i32,
        });
    }
    Ok(decisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(level_id: i32, stocked: i32, reserved: i32, allow_backorder: bool) -> Candidate {
        Candidate {
            level_id,
            stock_location_id: level_id * 10,
            free: free_units(stocked, reserved, 0),
            allow_backorder,
        }
    }

    fn line(sku: &str, quantity: i32, candidates: Vec<Candidate>) -> LineCandidates {
        LineCandidates {
            sku: Sku::parse(sku).unwrap(),
            quantity: Quantity::parse(quantity).unwrap(),
            candidates,
        }
    }

    fn chosen(allocations: &[Allocation]) -> Vec<(i32, i32)> {
        allocations
            .iter()
            .map(|a| (a.level_id, a.backordered_quantity))
            .collect()
    }

    #[test]
    fn the_first_candidate_with_enough_free_stock_wins() {
        let lines = [line(
            "A",
            3,
            vec![level(1, 2, 0, true), level(2, 5, 3, false), level(3, 3, 0, false)],
        )];
        assert_eq!(chosen(&allocate(&lines).unwrap()), [(3, 0)]);
    }

    #[test]
    fn without_enough_stock_the_first_backorderable_candidate_takes_it() {
        let lines = [line(
            "A",
            4,
            vec![level(1, 1, 0, false), level(2, 1, 0, true), level(3, 0, 0, true)],
        )];
        assert_eq!(chosen(&allocate(&lines).unwrap()), [(2, 3)]);
    }

    #[test]
    fn already_backordered_stock_backorders_the_whole_line() {
        let lines = [line("A", 2, vec![level(1, -3, 0, true)])];
        assert_eq!(chosen(&allocate(&lines).unwrap()), [(1, 2)]);
    }

    #[test]
    fn reserved_units_are_not_free() {
        let lines = [line("A", 2, vec![level(1, 3, 2, false)])];
        assert_eq!(allocate(&lines).unwrap_err().code(), "OUT_OF_STOCK");
    }

    #[test]
    fn out_of_stock_names_the_sku_and_fails_the_whole_order() {
        let lines = [
            line("A", 1, vec![level(1, 5, 0, false)]),
            line("B", 2, vec![level(2, 1, 0, false)]),
        ];
        match allocate(&lines) {
            Err(Error::OutOfStock { sku }) => assert_eq!(sku, "B"),
            other => panic!("expected OUT_OF_STOCK, got {other:?}"),
        }
    }

    #[test]
    fn a_sku_no_candidate_stocks_is_unmapped() {
        assert_eq!(
            allocate(&[line("A", 1, vec![])]).unwrap_err().code(),
            "LOCATION_UNMAPPED"
        );
    }

    #[test]
    fn later_lines_see_what_earlier_lines_took() {
        let shared = vec![level(1, 3, 0, false), level(2, 5, 0, false)];
        let lines = [line("A", 2, shared.clone()), line("A", 2, shared)];
        assert_eq!(chosen(&allocate(&lines).unwrap()), [(1, 0), (2, 0)]);
    }

    #[test]
    fn backorders_stop_at_the_stock_bound() {
        let deep = line("A", 2, vec![level(1, -MAX_STOCK + 1, 0, true)]);
        assert_eq!(allocate(&[deep]).unwrap_err().code(), "OUT_OF_STOCK");
        let edge = line("A", 1, vec![level(1, -MAX_STOCK + 1, 0, true)]);
        assert_eq!(chosen(&allocate(&[edge]).unwrap()), [(1, 1)]);
    }

    #[test]
    fn free_units_never_wrap_and_lapsed_holds_are_free() {
        assert_eq!(free_units(-MAX_STOCK, MAX_STOCK, 0), -2 * i64::from(MAX_STOCK));
        assert_eq!(available_units(-MAX_STOCK, MAX_STOCK, 0), 0);
        assert_eq!(available_units(10, 7, 5), 8);
        assert_eq!(available_units(MAX_STOCK, 0, 0), MAX_STOCK);
    }

    #[test]
    fn a_line_is_never_split_across_locations() {
        let lines = [line("A", 4, vec![level(1, 2, 0, false), level(2, 2, 0, false)])];
        assert_eq!(allocate(&lines).unwrap_err().code(), "OUT_OF_STOCK");
    }
}
