use serde_json::{Value, json};
use stockroom_test_support::{
    app::Gql,
    racing::{on_each_backend, race},
};

const SET_LEVEL: &str = "mutation($sku: String!, $l: ID!, $q: Int!, $b: Boolean, $v: Int) {
    setStockLevel(input: { sku: $sku, stockLocationId: $l, stockedQuantity: $q, allowBackorder: $b, expectedVersion: $v }) {
        stockedQuantity allowBackorder version } }";
const ADJUST: &str = "mutation($sku: String!, $l: ID!, $d: Int!, $r: String, $v: Int) {
    adjustStock(input: { sku: $sku, stockLocationId: $l, delta: $d, reason: $r, expectedVersion: $v }) {
        stockedQuantity version } }";
const MOVEMENTS: &str = "query($sku: String!, $l: ID) { stockMovements(sku: $sku, stockLocationId: $l) {
    edges { node { sku delta reservedDelta reason stockedAfter reservedAfter note location { name } } } } }";

fn movements(response: &Gql) -> Vec<Value> {
    response.data()["stockMovements"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

#[tokio::test]
async fn set_stock_level_creates_then_updates_under_the_version_rule() {
    on_each_backend(|app| async move {
        let location = app.location("Berlin").await.to_string();
        app.item("A-1").await;

        let stale_create = app
            .gql(SET_LEVEL, json!({ "sku": "A-1", "l": location, "q": 5, "v": 3 }))
            .await;
        assert_eq!(stale_create.error_code(), Some("VERSION_CONFLICT"));
        assert_eq!(stale_create.error_extensions()["currentVersion"], 0);

        let created = app
            .gql(SET_LEVEL, json!({ "sku": "A-1", "l": location, "q": 5, "v": 0 }))
            .await;
        assert_eq!(
            created.data()["setStockLevel"],
            json!({ "stockedQuantity": 5, "allowBackorder": false, "version": 1 })
        );

        let updated = app
            .gql(
                SET_LEVEL,
                json!({ "sku": "A-1", "l": location, "q": 8, "b": true, "v": 1 }),
            )
            .await;
        assert_eq!(
            updated.data()["setStockLevel"],
            json!({ "stockedQuantity": 8, "allowBackorder": true, "version": 2 })
        );

        let stale = app
            .gql(SET_LEVEL, json!({ "sku": "A-1", "l": location, "q": 100, "v": 1 }))
            .await;
        assert_eq!(stale.error_code(), Some("VERSION_CONFLICT"));
        assert_eq!(stale.error_extensions()["currentVersion"], 2);

        let unguarded = app
            .gql(SET_LEVEL, json!({ "sku": "A-1", "l": location, "q": -2 }))
            .await;
        assert_eq!(
            unguarded.data()["setStockLevel"],
            json!({ "stockedQuantity": -2, "allowBackorder": true, "version": 3 })
        );

        let ledger = app.gql(MOVEMENTS, json!({ "sku": "A-1", "l": location })).await;
        let deltas: Vec<_> = movements(&ledger)
            .iter()
            .map(|m| (m["reason"].clone(), m["delta"].clone(), m["stockedAfter"].clone()))
            .collect();
        assert_eq!(
            deltas,
            [
                (json!("SET"), json!(-10), json!(-2)),
                (json!("SET"), json!(3), json!(8)),
                (json!("SET"), json!(5), json!(5))
            ]
        );
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn adjust_stock_is_relative_versioned_and_noted_in_the_ledger() {
    on_each_backend(|app| async move {
        let berlin = app.location("Berlin").await;
        let location = berlin.to_string();
        app.item("A-1").level(berlin, 10).await;

        let adjusted = app
            .gql(
                ADJUST,
                json!({ "sku": "A-1", "l": location, "d": -3, "r": "damaged in transit", "v": 1 }),
            )
            .await;
        assert_eq!(
            adjusted.data()["adjustStock"],
            json!({ "stockedQuantity": 7, "version": 2 })
        );

        let stale = app
            .gql(ADJUST, json!({ "sku": "A-1", "l": location, "d": -1, "v": 1 }))
            .await;
        assert_eq!(stale.error_code(), Some("VERSION_CONFLICT"));
        assert_eq!(stale.error_extensions()["currentVersion"], 2);

        let too_much = app.gql(ADJUST, json!({ "sku": "A-1", "l": location, "d": -8 })).await;
        assert_eq!(too_much.error_code(), Some("BAD_USER_INPUT"), "{}", too_much.0);
        let zero = app.gql(ADJUST, json!({ "sku": "A-1", "l": location, "d": 0 })).await;
        assert_eq!(zero.error_code(), Some("BAD_USER_INPUT"));
        assert_eq!(app.level("A-1", berlin).await.stocked_quantity, 7);

        let ledger = app.gql(MOVEMENTS, json!({ "sku": "A-1" })).await;
        let newest = &movements(&ledger)[0];
        assert_eq!(
            newest,
            &json!({ "sku": "A-1", "delta": -3, "reservedDelta": 0, "reason": "ADJUSTMENT", "stockedAfter": 7,
                     "reservedAfter": 0, "note": "damaged in transit", "location": { "name": "Berlin" } })
        );
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn backordered_levels_are_listed_under_backorders() {
    on_each_backend(|app| async move {
        let berlin = app.location("Berlin").await;
        app.item("A-1").backorder_level(berlin, 1).await;
        app.item("B-1").level(berlin, 1).await;
        let adjusted = app
            .gql(ADJUST, json!({ "sku": "A-1", "l": berlin.to_string(), "d": -4 }))
            .await;
        assert_eq!(adjusted.data()["adjustStock"]["stockedQuantity"], -3);
        let backorders = app
            .gql(
                "{ backorders { edges { node { stockedQuantity available item { sku } } } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            backorders.data()["backorders"]["edges"],
            json!([{ "node": { "stockedQuantity": -3, "available": 0, "item": { "sku": "A-1" } } }])
        );
    })
    .await;
}

#[tokio::test]
async fn fifty_concurrent_adjustments_all_apply_exactly_once() {
    on_each_backend(|app| async move {
        let berlin = app.location("Berlin").await;
        app.item("A-1").level(berlin, 100).await;
        let client = app.client().clone();
        let results = race(50, |_| {
            let client = client.clone();
            async move {
                client
                    .gql(ADJUST, json!({ "sku": "A-1", "l": berlin.to_string(), "d": -1 }))
                    .await
            }
        })
        .await;
        for result in &results {
            result.data();
        }
        let level = app.level("A-1", berlin).await;
        assert_eq!(level.stocked_quantity, 50, "every one of the 50 decrements applies");
        assert_eq!(level.version, 51);
        let adjustments = app.count("stock_movement WHERE reason = 'ADJUSTMENT'").await;
        assert_eq!(adjustments, 50);
        app.assert_ledger_matches_levels().await;
        eprintln!(
            "{:?}: 50 concurrent adjustStock(-1): stock 100 -> {}, {adjustments} ledger rows",
            app.backend, level.stocked_quantity
        );
    })
    .await;
}

#[tokio::test]
async fn twenty_concurrent_sets_with_one_expected_version_yield_one_winner() {
    on_each_backend(|app| async move {
        let berlin = app.location("Berlin").await;
        app.item("A-1").level(berlin, 10).await;
        let client = app.client().clone();
        let results = race(20, |index| {
            let client = client.clone();
            async move {
                let variables = json!({ "sku": "A-1", "l": berlin.to_string(), "q": 100 + index as i32, "v": 1 });
                client.gql(SET_LEVEL, variables).await
            }
        })
        .await;
        let winners: Vec<_> = results.iter().filter(|r| r.error_code().is_none()).collect();
        let conflicts = results
            .iter()
            .filter(|r| r.error_code() == Some("VERSION_CONFLICT"))
            .count();
        assert_eq!(winners.len(), 1, "exactly one write wins: {results:?}");
        assert_eq!(conflicts, 19);
        let level = app.level("A-1", berlin).await;
        assert_eq!(level.version, 2);
        assert_eq!(
            json!(level.stocked_quantity),
            winners[0].data()["setStockLevel"]["stockedQuantity"]
        );
        assert_eq!(
            app.count("stock_movement").await,
            2,
            "the creating SET and the one winning SET"
        );
        app.assert_ledger_matches_levels().await;
    })
    .await;
}
