use std::collections::HashMap;

use entity::{inventory_event, inventory_level, order_line, stock_movement};
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, TransactionTrait};
use serde_json::{Value, json};
use stockroom_test_support::{
    app::{Client, Gql, TestApp},
    fixtures::PLACE_ORDER,
    racing::{on_each_backend, race},
};

/// Places an order of `lines` (sku, quantity) through `channel`.
async fn place(
    client: &Client,
    payment_intent: &str,
    channel: i32,
    shipping: Option<i32>,
    lines: &[(&str, i32)],
) -> Gql {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity }))
        .collect();
    let variables = json!({
        "pi": payment_intent, "c": channel.to_string(), "s": shipping.map(|id| id.to_string()), "lines": lines
    });
    client.gql(PLACE_ORDER, variables).await
}

/// The one-location shop, with `sku` stocked there.
async fn one_location_shop(app: &TestApp, sku: &str, stock: i32, backorder: bool) -> (i32, i32) {
    let (location, channel) = app.one_location_shop().await;
    let item = app.item(sku);
    if backorder {
        item.backorder_level(location, stock).await
    } else {
        item.level(location, stock).await
    };
    (location, channel)
}

/// `tasks` concurrent orders of `quantity` units of `sku`, each with its own PaymentIntent.
async fn race_orders(app: &TestApp, tasks: usize, channel: i32, sku: &'static str, quantity: i32) -> Vec<Gql> {
    let client = app.client().clone();
    race(tasks, |index| {
        let client = client.clone();
        async move { place(&client, &format!("pi_race_{index}"), channel, None, &[(sku, quantity)]).await }
    })
    .await
}

fn count_placed(results: &[Gql]) -> usize {
    results.iter().filter(|result| result.error_code().is_none()).count()
}

/// Asserts every result is a placed order or an `OUT_OF_STOCK` naming `sku`.
fn assert_placed_or_out_of_stock(results: &[Gql], sku: &str) {
    for result in results {
        if result.error_code().is_some() {
            assert_eq!(result.error_code(), Some("OUT_OF_STOCK"), "{}", result.0);
            assert_eq!(result.error_extensions()["sku"], sku);
        } else {
            assert_eq!(result.data()["placeOrder"]["status"], "PLACED");
        }
    }
}

#[tokio::test]
async fn the_last_unit_raced_by_fifty_orders_is_sold_once() {
    on_each_backend(|app| async move {
        let (location, channel) = one_location_shop(&app, "LAST-1", 1, false).await;
        let results = race_orders(&app, 50, channel, "LAST-1", 1).await;
        assert_placed_or_out_of_stock(&results, "LAST-1");
        let placed = count_placed(&results);
        let level = app.level("LAST-1", location).await;
        let order_movements = app.count("stock_movement WHERE reason = 'ORDER'").await;
        eprintln!(
            "{:?}: 50 orders for the last unit: {placed} placed, stock {}",
            app.backend, level.stocked_quantity
        );
        assert_eq!(placed, 1);
        assert_eq!(level.stocked_quantity, 0);
        assert_eq!(order_movements, 1);
        assert_eq!(app.count("orders").await, 1);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn twenty_units_raced_by_a_hundred_orders_sell_exactly_twenty() {
    on_each_backend(|app| async move {
        let (location, channel) = one_location_shop(&app, "TWENTY", 20, false).await;
        let results = race_orders(&app, 100, channel, "TWENTY", 1).await;
        assert_placed_or_out_of_stock(&results, "TWENTY");
        let placed = count_placed(&results);
        let stock = app.level("TWENTY", location).await.stocked_quantity;
        eprintln!(
            "{:?}: 100 orders for 20 units: {placed} placed, stock {stock}",
            app.backend
        );
        assert_eq!((placed, stock), (20, 0));
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn five_orders_of_three_against_ten_units_place_three_and_never_go_negative() {
    on_each_backend(|app| async move {
        let (location, channel) = one_location_shop(&app, "TEN", 10, false).await;
        let results = race_orders(&app, 5, channel, "TEN", 3).await;
        assert_placed_or_out_of_stock(&results, "TEN");
        let stock = app.level("TEN", location).await.stocked_quantity;
        assert_eq!((count_placed(&results), stock), (3, 1));
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn ten_orders_of_one_against_ten_units_all_place() {
    on_each_backend(|app| async move {
        let (location, channel) = one_location_shop(&app, "TEN", 10, false).await;
        let results = race_orders(&app, 10, channel, "TEN", 1).await;
        assert_eq!(count_placed(&results), 10, "{results:?}");
        assert_eq!(app.level("TEN", location).await.stocked_quantity, 0);
    })
    .await;
}

#[tokio::test]
async fn backorders_go_negative_and_store_an_event_per_line_below_zero() {
    on_each_backend(|app| async move {
        let (location, channel) = one_location_shop(&app, "BACK", 1, true).await;
        let results = race_orders(&app, 5, channel, "BACK", 1).await;
        assert_eq!(count_placed(&results), 5, "{results:?}");
        let backordered: i64 = results
            .iter()
            .map(|result| {
                result.data()["placeOrder"]["lines"][0]["backorderedQuantity"]
                    .as_i64()
                    .unwrap()
            })
            .sum();
        let level = app.level("BACK", location).await;
        assert_eq!((level.stocked_quantity, backordered), (-4, 4));
        let events = inventory_event::Entity::find()
            .order_by_asc(inventory_event::Column::Id)
            .all(app.db().conn())
            .await
            .unwrap();
        let ids: Vec<i64> = events.iter().map(|event| event.id).collect();
        assert_eq!(ids, [1, 2, 3, 4], "event ids are dense and ordered");
        let mut stocked_after: Vec<i32> = events.iter().map(|event| event.stocked_quantity).collect();
        stocked_after.sort();
        assert_eq!(stocked_after, [-4, -3, -2, -1]);
        assert!(
            events
                .iter()
                .all(|event| event.sku == "BACK" && event.backordered_quantity == 1)
        );
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn twenty_concurrent_placements_of_one_payment_intent_make_one_order() {
    on_each_backend(|app| async move {
        let (location, channel) = one_location_shop(&app, "IDEM", 50, false).await;
        let client = app.client().clone();
        let results = race(20, |_| {
            let client = client.clone();
            async move {
                loop {
                    let result = place(&client, "pi_same", channel, None, &[("IDEM", 2)]).await;
                    // A caller that timed out waiting for its twin retries, as a client would.
                    if result.error_code() != Some("LOCK_TIMEOUT") {
                        return result;
                    }
                }
            }
        })
        .await;
        let ids: Vec<&Value> = results
            .iter()
            .map(|result| &result.data()["placeOrder"]["id"])
            .collect();
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "every caller gets the same order: {ids:?}"
        );
        assert_eq!(app.count("orders").await, 1);
        assert_eq!(
            app.level("IDEM", location).await.stocked_quantity,
            48,
            "stock is taken once"
        );
        let again = place(app.client(), "pi_same", channel, None, &[("IDEM", 5)]).await;
        assert_eq!(&again.data()["placeOrder"]["id"], ids[0]);
        assert_eq!(
            app.level("IDEM", location).await.stocked_quantity,
            48,
            "a repeat never touches stock"
        );
    })
    .await;
}

#[tokio::test]
async fn two_line_orders_racing_in_opposite_line_order_never_deadlock() {
    on_each_backend(|app| async move {
        let (location, channel) = app.one_location_shop().await;
        app.item("LEFT").level(location, 100).await;
        app.item("RIGHT").level(location, 100).await;
        let client = app.client().clone();
        let results = race(40, |index| {
            let client = client.clone();
            let lines = if index % 2 == 0 {
                [("LEFT", 1), ("RIGHT", 1)]
            } else {
                [("RIGHT", 1), ("LEFT", 1)]
            };
            async move { place(&client, &format!("pi_pair_{index}"), channel, None, &lines).await }
        })
        .await;
        for result in &results {
            result.data();
        }
        assert_eq!(app.level("LEFT", location).await.stocked_quantity, 60);
        assert_eq!(app.level("RIGHT", location).await.stocked_quantity, 60);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

fn line_locations(result: &Gql) -> Vec<(String, String, i64)> {
    result.data()["placeOrder"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["sku"].as_str().unwrap().to_owned(),
                line["location"]["name"].as_str().unwrap().to_owned(),
                line["backorderedQuantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn locations_are_chosen_by_shipping_option_then_priority_then_backorder() {
    on_each_backend(|app| async move {
        let near = app.location("Near").await;
        let far = app.location("Far").await;
        let channel = app.channel("Web", &[(near, 0), (far, 1)]).await;
        let ship_far = app.shipping_option("From Far", far).await;
        app.item("BOTH").level(near, 5).level(far, 5).await;
        app.item("FAR-ONLY").level(near, 0).level(far, 5).await;
        app.item("NONE").backorder_level(near, 0).level(far, 1).await;

        let by_priority = place(app.client(), "pi_1", channel, None, &[("BOTH", 1)]).await;
        assert_eq!(line_locations(&by_priority), [("BOTH".into(), "Near".into(), 0)]);
        let by_shipping = place(app.client(), "pi_2", channel, Some(ship_far), &[("BOTH", 1)]).await;
        assert_eq!(line_locations(&by_shipping), [("BOTH".into(), "Far".into(), 0)]);
        let fallback = place(app.client(), "pi_3", channel, None, &[("FAR-ONLY", 2)]).await;
        assert_eq!(line_locations(&fallback), [("FAR-ONLY".into(), "Far".into(), 0)]);
        // Far has 1, not 2; Near allows backorder: the whole line backorders at Near.
        let backorder = place(app.client(), "pi_4", channel, Some(ship_far), &[("NONE", 2)]).await;
        assert_eq!(line_locations(&backorder), [("NONE".into(), "Near".into(), 2)]);
        assert_eq!(app.level("NONE", near).await.stocked_quantity, -2);
        assert_eq!(app.level("NONE", far).await.stocked_quantity, 1);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

/// Shipping option, lines, expected error code.
type Case = (Option<i32>, Vec<(&'static str, i32)>, &'static str);

#[tokio::test]
async fn unplaceable_orders_fail_with_the_contract_code_and_change_nothing() {
    on_each_backend(|app| async move {
        let mapped = app.location("Mapped").await;
        let unmapped = app.location("Unmapped").await;
        let channel = app.channel("Web", &[(mapped, 0)]).await;
        let ship_unmapped = app.shipping_option("From Unmapped", unmapped).await;
        app.item("HERE").level(mapped, 2).await;
        app.item("ELSEWHERE").level(unmapped, 50).await;
        let movements_before = app.count("stock_movement").await;

        let cases: [Case; 8] = [
            (None, vec![("ELSEWHERE", 1)], "LOCATION_UNMAPPED"),
            (Some(ship_unmapped), vec![("HERE", 1)], "LOCATION_UNMAPPED"),
            (None, vec![("HERE", 1), ("HERE", 2)], "OUT_OF_STOCK"),
            (None, vec![("HERE", 3)], "OUT_OF_STOCK"),
            (None, vec![("NOPE", 1)], "NOT_FOUND"),
            (Some(999), vec![("HERE", 1)], "NOT_FOUND"),
            (None, vec![("HERE", 0)], "BAD_USER_INPUT"),
            (None, vec![], "BAD_USER_INPUT"),
        ];
        for (index, (shipping, lines, code)) in cases.iter().enumerate() {
            let result = place(app.client(), &format!("pi_bad_{index}"), channel, *shipping, lines).await;
            assert_eq!(result.error_code(), Some(*code), "case {index}: {}", result.0);
        }
        let unknown_channel = place(app.client(), "pi_bad_channel", 999, None, &[("HERE", 1)]).await;
        assert_eq!(unknown_channel.error_code(), Some("NOT_FOUND"));
        let out_of_stock = place(app.client(), "pi_oos", channel, None, &[("HERE", 3)]).await;
        assert_eq!(out_of_stock.error_extensions()["sku"], "HERE");

        assert_eq!(app.count("orders").await, 0);
        assert_eq!(app.count("stock_movement").await, movements_before);
        assert_eq!(app.level("HERE", mapped).await.stocked_quantity, 2);
    })
    .await;
}

#[tokio::test]
async fn a_thousand_mixed_operations_keep_ledger_levels_and_orders_consistent() {
    on_each_backend(|app| async move {
        let near = app.location("Near").await;
        let far = app.location("Far").await;
        let channel = app.channel("Web", &[(near, 0), (far, 1)]).await;
        let skus = ["S-0", "S-1", "S-2", "S-3", "S-4"];
        for (index, sku) in skus.iter().enumerate() {
            if index % 2 == 0 {
                app.item(sku).level(near, 30).backorder_level(far, 10).await
            } else {
                app.item(sku).level(near, 30).level(far, 10).await
            };
        }
        let client = app.client().clone();
        let mut outcomes: HashMap<String, usize> = HashMap::new();
        for wave in 0..10 {
            let results = race(100, |task| {
                let client = client.clone();
                let op = wave * 100 + task;
                async move { storm_operation(&client, op, channel, [near, far], &skus).await }
            })
            .await;
            for result in results {
                let outcome = result.error_code().unwrap_or("OK").to_owned();
                *outcomes.entry(outcome).or_default() += 1;
            }
        }
        eprintln!("{:?}: 1000 mixed operations: {outcomes:?}", app.backend);
        let allowed = ["OK", "OUT_OF_STOCK", "VERSION_CONFLICT", "BAD_USER_INPUT"];
        assert!(
            outcomes.keys().all(|code| allowed.contains(&code.as_str())),
            "{outcomes:?}"
        );
        assert!(outcomes["OK"] > 500, "most operations succeed: {outcomes:?}");
        app.assert_ledger_matches_levels().await;
        assert_order_lines_match_order_movements(&app).await;
    })
    .await;
}

/// Operation `op` of the storm, chosen deterministically from its number.
async fn storm_operation(client: &Client, op: usize, channel: i32, locations: [i32; 2], skus: &[&str; 5]) -> Gql {
    let sku = skus[op % 5];
    let other = skus[(op / 5 + 1) % 5];
    let location = locations[op % 2].to_string();
    match op % 20 {
        0..=11 => {
            let lines = if op.is_multiple_of(3) {
                vec![(sku, 1 + (op % 4) as i32), (other, 1)]
            } else {
                vec![(sku, 1 + (op % 4) as i32)]
            };
            place(client, &format!("pi_storm_{op}"), channel, None, &lines).await
        }
        12..=16 => {
            let delta = if op.is_multiple_of(2) { 3 } else { -2 };
            let query = "mutation($sku: String!, $l: ID!, $d: Int!) { adjustStock(input: { sku: $sku, stockLocationId: $l, delta: $d }) { version } }";
            client
                .gql(query, json!({ "sku": sku, "l": location, "d": delta }))
                .await
        }
        _ => {
            let read = client
                .gql(
                    "query($sku: String!) { inventoryItem(sku: $sku) { levels { version location { id } } } }",
                    json!({ "sku": sku }),
                )
                .await;
            let version = read.data()["inventoryItem"]["levels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|level| level["location"]["id"] == location.as_str())
                .map(|level| level["version"].clone())
                .unwrap();
            let query = "mutation($sku: String!, $l: ID!, $v: Int) { setStockLevel(input: { sku: $sku, stockLocationId: $l, stockedQuantity: 25, expectedVersion: $v }) { version } }";
            client
                .gql(query, json!({ "sku": sku, "l": location, "v": version }))
                .await
        }
    }
}

/// Σ order-line quantities per level == −Σ ORDER ledger deltas per level.
async fn assert_order_lines_match_order_movements(app: &TestApp) {
    let conn = app.db().conn();
    let levels = inventory_level::Entity::find().all(conn).await.unwrap();
    let level_of: HashMap<(i32, i32), i32> = levels
        .iter()
        .map(|level| ((level.inventory_item_id, level.stock_location_id), level.id))
        .collect();
    let mut ordered: HashMap<i32, i64> = HashMap::new();
    for line in order_line::Entity::find().all(conn).await.unwrap() {
        let key = (line.inventory_item_id.unwrap(), line.stock_location_id.unwrap());
        *ordered.entry(level_of[&key]).or_default() += i64::from(line.quantity);
    }
    let mut taken: HashMap<i32, i64> = HashMap::new();
    for movement in stock_movement::Entity::find().all(conn).await.unwrap() {
        if movement.reason == stock_movement::MovementReason::Order {
            *taken.entry(movement.inventory_level_id).or_default() -= i64::from(movement.delta);
        }
    }
    assert_eq!(ordered, taken, "order lines and ORDER movements disagree");
}

#[tokio::test]
async fn a_lock_held_past_the_timeout_fails_with_lock_timeout_and_writes_nothing() {
    let Some(app) = TestApp::postgres_with(|config| config.lock_timeout_ms = 300).await else {
        return;
    };
    let (location, channel) = one_location_shop(&app, "HELD", 5, false).await;
    let level_id = app.level("HELD", location).await.id;
    let blocker = app.db().conn().begin().await.unwrap();
    blocker
        .execute_unprepared(&format!(
            "SELECT id FROM inventory_level WHERE id = {level_id} FOR UPDATE"
        ))
        .await
        .unwrap();

    let blocked = place(app.client(), "pi_held", channel, None, &[("HELD", 1)]).await;
    assert_eq!(blocked.error_code(), Some("LOCK_TIMEOUT"), "{}", blocked.0);
    blocker.rollback().await.unwrap();
    assert_eq!(app.count("orders").await, 0);
    assert_eq!(app.count("stock_movement WHERE reason = 'ORDER'").await, 0);

    let retried = place(app.client(), "pi_held", channel, None, &[("HELD", 1)]).await;
    assert_eq!(retried.data()["placeOrder"]["status"], "PLACED");
    assert_eq!(app.level("HELD", location).await.stocked_quantity, 4);
}

/// `lines` lines of `quantity` units of `sku` each.
fn many_lines(sku: &str, lines: usize, quantity: i32) -> Vec<(&str, i32)> {
    vec![(sku, quantity); lines]
}

#[tokio::test]
async fn backorders_and_holds_stop_at_the_stock_bound_with_a_clear_error() {
    on_each_backend(|app| async move {
        let max = stockroom::inventory::values::MAX_STOCK;
        let (location, channel) = one_location_shop(&app, "DEEP", 0, true).await;
        // 100 lines of a million units: 10^8 per order, so the bound (10^9) is reached on
        // the 11th order, long before the column's 2^31.
        let huge = many_lines("DEEP", 100, 1_000_000);
        let mut placed = 0;
        let refusal = loop {
            let order = place(app.client(), &format!("pi_deep_{placed}"), channel, None, &huge).await;
            match order.error_code() {
                None => placed += 1,
                Some(code) => break code.to_owned(),
            }
            assert!(placed <= 10, "orders went past the bound");
        };
        assert_eq!((placed, refusal.as_str()), (10, "OUT_OF_STOCK"));
        assert_eq!(app.level("DEEP", location).await.stocked_quantity, -max);

        let reserve = "mutation($key: String!, $c: ID!, $lines: [OrderLineInput!]!) {
            reserveStock(input: { key: $key, salesChannelId: $c, lines: $lines }) { id } }";
        let hold_location = app.location("Holds").await;
        let held_channel = app.channel("Holds", &[(hold_location, 0)]).await;
        app.item("HELD").backorder_level(hold_location, 0).await;
        let lines: Vec<Value> = (0..100)
            .map(|_| json!({ "sku": "HELD", "quantity": 1_000_000 }))
            .collect();
        let mut held = 0;
        let refusal = loop {
            let variables = json!({ "key": format!("cart-{held}"), "c": held_channel.to_string(), "lines": lines });
            let response = app.gql(reserve, variables).await;
            match response.error_code() {
                None => held += 1,
                Some(code) => break code.to_owned(),
            }
            assert!(held <= 10, "holds went past the bound");
        };
        assert_eq!((held, refusal.as_str()), (10, "OUT_OF_STOCK"));
        assert_eq!(app.level("HELD", hold_location).await.reserved_quantity, max);

        // Stock taken to the other end: `available` must neither wrap nor fail.
        let set = "mutation($l: ID!) { setStockLevel(input: { sku: \"HELD\", stockLocationId: $l,
            stockedQuantity: -1000000000, allowBackorder: true }) { stockedQuantity reservedQuantity available } }";
        let level = app.gql(set, json!({ "l": hold_location.to_string() })).await;
        assert_eq!(
            level.data()["setStockLevel"],
            json!({ "stockedQuantity": -max, "reservedQuantity": max, "available": 0 })
        );
        let storefront = app
            .client()
            .anonymous()
            .gql(
                "query($c: ID!) { availability(salesChannelId: $c, skus: [\"HELD\"]) { available backorderable } }",
                json!({ "c": held_channel.to_string() }),
            )
            .await;
        assert_eq!(
            storefront.data()["availability"][0],
            json!({ "available": 0, "backorderable": true })
        );
        app.assert_ledger_matches_levels().await;
    })
    .await;
}
