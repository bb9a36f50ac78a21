use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{Client, Gql, TestApp, on_each_backend, race};

const RESERVE: &str = "mutation($key: String!, $c: ID!, $s: ID, $lines: [OrderLineInput!]!, $ttl: Int) {
    reserveStock(input: { key: $key, salesChannelId: $c, shippingOptionId: $s, lines: $lines, ttlSeconds: $ttl }) {
        id key status lines { sku quantity location { name } } } }";
const RELEASE: &str = "mutation($id: ID!) { releaseReservation(id: $id) { id status } }";
const PLACE: &str = "mutation($pi: String!, $c: ID!, $s: ID, $key: String, $lines: [OrderLineInput!]!) {
    placeOrder(input: { paymentIntentId: $pi, salesChannelId: $c, shippingOptionId: $s, reservationKey: $key, lines: $lines }) {
        id status lines { sku quantity backorderedQuantity location { name } } } }";
const AVAILABILITY: &str = "query($c: ID!) { availability(salesChannelId: $c, skus: [\"R-1\"]) { available } }";

fn lines(quantity: i32) -> Value {
    json!([{ "sku": "R-1", "quantity": quantity }])
}

async fn reserve(client: &Client, key: &str, channel: i32, quantity: i32) -> Gql {
    let variables = json!({ "key": key, "c": channel.to_string(), "lines": lines(quantity) });
    client.gql(RESERVE, variables).await
}

async fn place(client: &Client, pi: &str, channel: i32, key: Option<&str>, quantity: i32) -> Gql {
    let variables = json!({ "pi": pi, "c": channel.to_string(), "key": key, "lines": lines(quantity) });
    client.gql(PLACE, variables).await
}

async fn available(app: &TestApp, channel: i32) -> i64 {
    let response = app
        .client()
        .anonymous()
        .gql(AVAILABILITY, json!({ "c": channel.to_string() }))
        .await;
    response.data()["availability"][0]["available"].as_i64().unwrap()
}

/// `R-1` stocked `stock` at one location sold by one channel; returns (location, channel).
async fn shop(app: &TestApp, stock: i32) -> (i32, i32) {
    let location = app.location("Berlin").await;
    let channel = app.channel("Web", &[(location, 0)]).await;
    app.item("R-1").level(location, stock).await;
    (location, channel)
}

/// Moves a reservation's deadline into the past, as if its time had run out.
async fn let_expire(app: &TestApp, key: &str) {
    let sql = format!("UPDATE reservation SET expires_at = '2000-01-01T00:00:00+00:00' WHERE key = '{key}'");
    app.db()
        .conn()
        .execute_raw(Statement::from_string(app.db().backend(), sql))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reservation_holds_stock_until_released_and_repeats_are_idempotent() {
    on_each_backend(|app| async move {
        let (location, channel) = shop(&app, 5).await;
        let held = reserve(app.client(), "cart-1", channel, 3).await;
        assert_eq!(
            held.data()["reserveStock"]["lines"],
            json!([{ "sku": "R-1", "quantity": 3, "location": { "name": "Berlin" } }])
        );
        let again = reserve(app.client(), "cart-1", channel, 3).await;
        assert_eq!(again.data()["reserveStock"]["id"], held.data()["reserveStock"]["id"]);
        let level = app.level("R-1", location).await;
        assert_eq!((level.stocked_quantity, level.reserved_quantity), (5, 3));
        assert_eq!(available(&app, channel).await, 2);

        let too_many = place(app.client(), "pi_1", channel, None, 3).await;
        assert_eq!(
            too_many.error_code(),
            Some("OUT_OF_STOCK"),
            "held units are not for sale"
        );

        let id = held.data()["reserveStock"]["id"].clone();
        for _ in 0..2 {
            let released = app.gql(RELEASE, json!({ "id": id })).await;
            assert_eq!(released.data()["releaseReservation"]["status"], "RELEASED");
        }
        assert_eq!(app.level("R-1", location).await.reserved_quantity, 0);
        assert_eq!(available(&app, channel).await, 5);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn placing_an_order_with_the_key_commits_the_reservation_at_its_location() {
    on_each_backend(|app| async move {
        let near = app.location("Near").await;
        let far = app.location("Far").await;
        let channel = app.channel("Web", &[(near, 0), (far, 1)]).await;
        let ship_far = app.shipping_option("From Far", far).await;
        app.item("R-1").level(near, 3).level(far, 3).await;
        let held = reserve(app.client(), "cart-1", channel, 2).await;
        let id = held.data()["reserveStock"]["id"].clone();

        let variables = json!({ "pi": "pi_1", "c": channel.to_string(), "s": ship_far.to_string(), "key": "cart-1", "lines": lines(2) });
        let order = app.gql(PLACE, variables).await;
        assert_eq!(order.data()["placeOrder"]["lines"][0]["location"]["name"], "Near", "the held level is used");
        let level = app.level("R-1", near).await;
        assert_eq!((level.stocked_quantity, level.reserved_quantity), (1, 0));
        let status = app.gql("query($id: ID!) { reservation(id: $id) { status } }", json!({ "id": id })).await;
        assert_eq!(status.data()["reservation"]["status"], "COMMITTED");
        let release = app.gql(RELEASE, json!({ "id": id })).await;
        assert_eq!(release.error_code(), Some("BAD_USER_INPUT"));
        assert_eq!(app.count("stock_movement WHERE reason = 'COMMIT'").await, 1);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn an_expired_reservation_holds_nothing_even_before_the_sweep() {
    on_each_backend(|app| async move {
        let (location, channel) = shop(&app, 5).await;
        reserve(app.client(), "cart-old", channel, 4).await.data();
        let_expire(&app, "cart-old").await;
        assert_eq!(available(&app, channel).await, 5);
        let status = app
            .gql("{ reservations { edges { node { status } } } }", json!({}))
            .await;
        assert_eq!(status.data()["reservations"]["edges"][0]["node"]["status"], "EXPIRED");

        // Its key is now just unknown: the order is placed as if it had none.
        let order = place(app.client(), "pi_1", channel, Some("cart-old"), 5).await;
        assert_eq!(order.data()["placeOrder"]["status"], "PLACED");
        let level = app.level("R-1", location).await;
        assert_eq!(
            (level.stocked_quantity, level.reserved_quantity),
            (0, 4),
            "not swept yet"
        );

        let expired = stockroom::inventory::reservations::expire_overdue(app.db())
            .await
            .unwrap();
        assert_eq!(expired, 1);
        assert_eq!(
            stockroom::inventory::reservations::expire_overdue(app.db())
                .await
                .unwrap(),
            0
        );
        assert_eq!(app.level("R-1", location).await.reserved_quantity, 0);
        assert_eq!(app.count("stock_movement WHERE reason = 'EXPIRY'").await, 1);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn twenty_concurrent_reservations_for_ten_units_hold_exactly_ten() {
    on_each_backend(|app| async move {
        let (location, channel) = shop(&app, 10).await;
        let client = app.client().clone();
        let results = race(20, |index| {
            let client = client.clone();
            async move { reserve(&client, &format!("cart-{index}"), channel, 1).await }
        })
        .await;
        let held = results.iter().filter(|result| result.error_code().is_none()).count();
        let refused = results
            .iter()
            .filter(|result| result.error_code() == Some("OUT_OF_STOCK"))
            .count();
        assert_eq!((held, refused), (10, 10));
        assert_eq!(app.level("R-1", location).await.reserved_quantity, 10);
        assert_eq!(available(&app, channel).await, 0);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn bad_reservation_requests_fail_with_contract_codes() {
    on_each_backend(|app| async move {
        let (_, channel) = shop(&app, 5).await;
        let zero = reserve(app.client(), "cart-1", channel, 0).await;
        assert_eq!(zero.error_code(), Some("BAD_USER_INPUT"));
        let ttl = app
            .gql(
                RESERVE,
                json!({ "key": "cart-2", "c": channel.to_string(), "lines": lines(1), "ttl": 0 }),
            )
            .await;
        assert_eq!(ttl.error_code(), Some("BAD_USER_INPUT"));
        let unknown_channel = reserve(app.client(), "cart-3", 999, 1).await;
        assert_eq!(unknown_channel.error_code(), Some("NOT_FOUND"));
        let release = app.gql(RELEASE, json!({ "id": "999" })).await;
        assert_eq!(release.error_code(), Some("NOT_FOUND"));
        let missing = app.gql("{ reservation(id: \"999\") { id } }", json!({})).await;
        assert_eq!(missing.data()["reservation"], Value::Null);
        assert_eq!(app.count("reservation").await, 0);
    })
    .await;
}

#[tokio::test]
async fn commits_and_releases_racing_on_the_same_reservations_leave_consistent_stock() {
    on_each_backend(|app| async move {
        let (location, channel) = shop(&app, 30).await;
        let mut ids = Vec::new();
        for index in 0..15 {
            let held = reserve(app.client(), &format!("cart-{index}"), channel, 2).await;
            ids.push(held.data()["reserveStock"]["id"].clone());
        }
        assert_eq!(app.level("R-1", location).await.reserved_quantity, 30);
        let client = app.client().clone();
        let results = race(30, |task| {
            let (client, id) = (client.clone(), ids[task / 2].clone());
            async move {
                let index = task / 2;
                if task % 2 == 0 {
                    place(
                        &client,
                        &format!("pi_{index}"),
                        channel,
                        Some(&format!("cart-{index}")),
                        2,
                    )
                    .await
                } else {
                    client.gql(RELEASE, json!({ "id": id })).await
                }
            }
        })
        .await;
        for (task, result) in results.iter().enumerate() {
            let code = result.error_code();
            // An order commits its reservation or, once that is released, needs free stock;
            // a release either wins or finds the reservation committed.
            let expected = if task % 2 == 0 {
                [None, Some("OUT_OF_STOCK")]
            } else {
                [None, Some("BAD_USER_INPUT")]
            };
            assert!(expected.contains(&code), "task {task}: {}", result.0);
        }
        let placed = results
            .iter()
            .step_by(2)
            .filter(|result| result.error_code().is_none())
            .count() as i32;
        let level = app.level("R-1", location).await;
        assert_eq!(level.reserved_quantity, 0, "every hold was committed or released");
        assert_eq!(level.stocked_quantity, 30 - 2 * placed);
        // A release that lost found its reservation committed; one that won freed the units
        // for any order (its own then placed from free stock, uncommitted).
        let refused_releases = results
            .iter()
            .skip(1)
            .step_by(2)
            .filter(|result| result.error_code().is_some())
            .count();
        assert_eq!(
            app.count("reservation WHERE status = 'COMMITTED'").await,
            refused_releases as i64
        );
        assert_eq!(
            app.count("reservation WHERE status = 'RELEASED'").await,
            15 - refused_releases as i64
        );
        app.assert_ledger_matches_levels().await;
    })
    .await;
}
