use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use serde_json::{Value, json};
use stockroom_test_support::{
    app::{Client, Gql, TestApp},
    fixtures::PLACE_ORDER,
    racing::{on_each_backend, race},
};

const RESERVE: &str = "mutation($key: String!, $c: ID!, $s: ID, $lines: [OrderLineInput!]!, $ttl: Int) {
    reserveStock(input: { key: $key, salesChannelId: $c, shippingOptionId: $s, lines: $lines, ttlSeconds: $ttl }) {
        id key status lines { sku quantity location { name } } } }";
const RELEASE: &str = "mutation($id: ID!) { releaseReservation(id: $id) { id status } }";
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
    client.gql(PLACE_ORDER, variables).await
}

async fn available(app: &TestApp, channel: i32) -> i64 {
    let response = app
        .client()
        .anonymous()
        .gql(AVAILABILITY, json!({ "c": channel.to_string() }))
        .await;
    response.data()["availability"][0]["available"].as_i64().unwrap()
}

/// The one-location shop with `R-1` stocked `stock`; returns (location, channel).
async fn shop(app: &TestApp, stock: i32) -> (i32, i32) {
    let (location, channel) = app.one_location_shop().await;
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
        let order = app.gql(PLACE_ORDER, variables).await;
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
        assert_eq!(expired, Some(1));
        assert_eq!(
            stockroom::inventory::reservations::expire_overdue(app.db())
                .await
                .unwrap(),
            Some(0)
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

/// Waits until PostgreSQL shows a backend waiting for a lock (the order under test).
async fn until_a_lock_is_awaited(app: &TestApp) {
    let sql =
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    for _ in 0..500 {
        let row = app
            .db()
            .conn()
            .query_one_raw(Statement::from_string(app.db().backend(), sql))
            .await
            .unwrap()
            .unwrap();
        if row.try_get::<i64>("", "n").unwrap() > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the order never waited for the level's lock");
}

/// Waits until the database's clock has passed the deadline of reservation `key`.
async fn until_expired(app: &TestApp, key: &str) {
    let sql = format!("SELECT COUNT(*) AS n FROM reservation WHERE key = '{key}' AND expires_at <= now()");
    for _ in 0..1000 {
        let row = app
            .db()
            .conn()
            .query_one_raw(Statement::from_string(app.db().backend(), sql.clone()))
            .await
            .unwrap()
            .unwrap();
        if row.try_get::<i64>("", "n").unwrap() == 1 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("reservation {key} never expired");
}

/// Reserve k1 (5, ttl 2 s) and k2 (5) of 10; an order commits k1 for 10 units, but the
/// level's row lock is held elsewhere until k1's deadline has passed. The order must
/// count k1's hold once: 5 of its own plus 0 free (k2 holds the rest).
async fn commit_a_hold_that_expires_while_waiting_for_the_lock(backorder: bool) {
    let Some(app) = TestApp::postgres_with(|_| {}).await else {
        return;
    };
    let (location, channel) = app.one_location_shop().await;
    if backorder {
        app.item("R-1").backorder_level(location, 10).await;
    } else {
        app.item("R-1").level(location, 10).await;
    }
    let k1 = json!({ "key": "k1", "c": channel.to_string(), "lines": lines(5), "ttl": 2 });
    app.gql(RESERVE, k1).await.data();
    reserve(app.client(), "k2", channel, 5).await.data();
    let level_id = app.level("R-1", location).await.id;

    let blocker = app.db().conn().begin().await.unwrap();
    blocker
        .execute_unprepared(&format!(
            "SELECT id FROM inventory_level WHERE id = {level_id} FOR UPDATE"
        ))
        .await
        .unwrap();
    let client = app.client().clone();
    let order = tokio::spawn(async move { place(&client, "pi_k1", channel, Some("k1"), 10).await });
    until_a_lock_is_awaited(&app).await;
    until_expired(&app, "k1").await;
    blocker.rollback().await.unwrap();
    let order = order.await.unwrap();

    if backorder {
        let line = &order.data()["placeOrder"]["lines"][0];
        assert_eq!(line["backorderedQuantity"], 5, "5 of its own, 0 free: {}", order.0);
        assert_eq!(app.count("inventory_event").await, 1, "one backorder event");
        let level = app.level("R-1", location).await;
        assert_eq!((level.stocked_quantity, level.reserved_quantity), (0, 5));
    } else {
        assert_eq!(order.error_code(), Some("OUT_OF_STOCK"), "{}", order.0);
        let level = app.level("R-1", location).await;
        assert_eq!((level.stocked_quantity, level.reserved_quantity), (10, 10));
    }
    let k2 = place(app.client(), "pi_k2", channel, Some("k2"), 5).await;
    assert_eq!(
        k2.data()["placeOrder"]["status"],
        "PLACED",
        "k2's units were never sold"
    );
    app.assert_ledger_matches_levels().await;
}

#[tokio::test]
async fn a_hold_that_expires_while_its_order_waits_is_counted_once() {
    commit_a_hold_that_expires_while_waiting_for_the_lock(false).await;
}

#[tokio::test]
async fn a_hold_that_expires_while_its_backordering_order_waits_stores_its_backorder() {
    commit_a_hold_that_expires_while_waiting_for_the_lock(true).await;
}

#[tokio::test]
async fn a_reservation_holding_one_sku_at_two_levels_commits_from_both() {
    for backorder_at_first in [false, true] {
        on_each_backend(|app| async move {
            let first = app.location("First").await;
            let second = app.location("Second").await;
            let channel = app.channel("Web", &[(first, 0), (second, 1)]).await;
            if backorder_at_first {
                app.item("R-1").backorder_level(first, 2).level(second, 3).await;
            } else {
                app.item("R-1").level(first, 2).level(second, 3).await;
            }
            let two_lines = json!([{ "sku": "R-1", "quantity": 2 }, { "sku": "R-1", "quantity": 3 }]);
            let held = app
                .gql(
                    RESERVE,
                    json!({ "key": "cart", "c": channel.to_string(), "lines": two_lines }),
                )
                .await;
            let held_at: Vec<&Value> = held.data()["reserveStock"]["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|line| &line["location"]["name"])
                .collect();
            assert_eq!(held_at, [&json!("First"), &json!("Second")]);

            let variables = json!({ "pi": "pi_1", "c": channel.to_string(), "key": "cart", "lines": two_lines });
            let order = app.gql(PLACE_ORDER, variables).await;
            assert_eq!(
                order.data()["placeOrder"]["lines"],
                json!([
                    { "sku": "R-1", "quantity": 2, "backorderedQuantity": 0, "location": { "name": "First" } },
                    { "sku": "R-1", "quantity": 3, "backorderedQuantity": 0, "location": { "name": "Second" } },
                ])
            );
            for location in [first, second] {
                let level = app.level("R-1", location).await;
                assert_eq!((level.stocked_quantity, level.reserved_quantity), (0, 0));
            }
            assert_eq!(app.count("inventory_event").await, 0, "nothing was backordered");
            assert_eq!(app.count("reservation WHERE status = 'COMMITTED'").await, 1);
            app.assert_ledger_matches_levels().await;
        })
        .await;
    }
}

#[tokio::test]
async fn a_reservation_key_from_another_channel_is_no_key() {
    on_each_backend(|app| async move {
        let web_location = app.location("Web store").await;
        let shop_location = app.location("Shop floor").await;
        let web = app.channel("Web", &[(web_location, 0)]).await;
        let counter = app.channel("Counter", &[(shop_location, 0)]).await;
        app.item("R-1").level(web_location, 5).level(shop_location, 5).await;
        reserve(app.client(), "counter-cart", counter, 2).await.data();

        let order = place(app.client(), "pi_1", web, Some("counter-cart"), 2).await;
        assert_eq!(order.data()["placeOrder"]["lines"][0]["location"]["name"], "Web store");
        let held = app.level("R-1", shop_location).await;
        assert_eq!(
            (held.stocked_quantity, held.reserved_quantity),
            (5, 2),
            "the counter's hold is untouched"
        );
        assert_eq!(app.count("reservation WHERE status = 'ACTIVE'").await, 1);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn a_levels_available_and_the_storefronts_availability_follow_one_rule() {
    on_each_backend(|app| async move {
        let (_, channel) = shop(&app, 5).await;
        reserve(app.client(), "cart-live", channel, 1).await.data();
        reserve(app.client(), "cart-lapsed", channel, 3).await.data();
        let_expire(&app, "cart-lapsed").await;
        let level = app
            .gql(
                "{ inventoryItem(sku: \"R-1\") { levels { reservedQuantity available } } }",
                json!({}),
            )
            .await;
        let level = &level.data()["inventoryItem"]["levels"][0];
        assert_eq!(level["reservedQuantity"], 4, "the stored counter, until the sweep");
        assert_eq!(level["available"], 4, "a lapsed hold holds nothing");
        assert_eq!(available(&app, channel).await, 4);
    })
    .await;
}

#[tokio::test]
async fn one_process_sweeps_at_a_time_and_the_others_skip_the_round() {
    let Some(app) = TestApp::postgres_with(|_| {}).await else {
        return;
    };
    let other = app.another_process(|_| {}).await;
    let (location, channel) = shop(&app, 5).await;
    reserve(app.client(), "cart-swept", channel, 4).await.data();
    let_expire(&app, "cart-swept").await;
    let expire = stockroom::inventory::reservations::expire_overdue;

    // A sweeper elsewhere holds the round's lock: this process skips, touching nothing.
    let elsewhere = app.db().conn().begin().await.unwrap();
    let lock = format!(
        "SELECT pg_advisory_xact_lock({})",
        stockroom::db::RESERVATION_SWEEP_LOCK
    );
    elsewhere.execute_unprepared(&lock).await.unwrap();
    assert_eq!(expire(app.db()).await.unwrap(), None);
    assert_eq!(expire(other.db()).await.unwrap(), None);
    assert_eq!(app.level("R-1", location).await.reserved_quantity, 4, "still held");
    elsewhere.rollback().await.unwrap();

    // Two processes sweeping at once: the reservation expires exactly once.
    let (a, b) = tokio::join!(expire(app.db()), expire(other.db()));
    let swept: usize = [a.unwrap(), b.unwrap()].into_iter().flatten().sum();
    assert_eq!(swept, 1);
    assert_eq!(app.count("stock_movement WHERE reason = 'EXPIRY'").await, 1);
    assert_eq!(app.level("R-1", location).await.reserved_quantity, 0);
    app.assert_ledger_matches_levels().await;
}
