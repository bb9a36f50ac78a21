//! Group commit under a rush: concurrent orders combined into one transaction must each
//! keep every guarantee a lone order has.

use std::{collections::HashSet, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, Statement, TransactionTrait};
use serde_json::{Value, json};

use stockroom::inventory::combiner::{Combinable, Combiner};
use stockroom_test_support::{
    app::{Client, Gql, TestApp},
    database::Backend,
    fixtures::PLACE_ORDER,
    racing::{on_each_backend, race},
};

async fn place(client: &Client, pi: &str, channel: i32, lines: Value) -> Gql {
    client
        .gql(
            PLACE_ORDER,
            json!({ "pi": pi, "c": channel.to_string(), "lines": lines }),
        )
        .await
}

const RESERVE: &str = "mutation($key: String!, $c: ID!, $lines: [OrderLineInput!]!) {
    reserveStock(input: { key: $key, salesChannelId: $c, lines: $lines }) { id key status } }";

fn units(sku: &str, quantity: i32) -> Value {
    json!([{ "sku": sku, "quantity": quantity }])
}

/// The one-location shop with `HOT` stocked `stock`; returns (location, channel).
async fn hot_shop(app: &TestApp, stock: i32, backorder: bool) -> (i32, i32) {
    let (location, channel) = app.one_location_shop().await;
    if backorder {
        app.item("HOT").backorder_level(location, stock).await;
    } else {
        app.item("HOT").level(location, stock).await;
    }
    (location, channel)
}

/// Holds the write path still: SQLite's write lock, and on PostgreSQL the level's row
/// lock. Orders that arrive meanwhile pile up in the placement queue.
async fn block_writes(app: &TestApp, level_id: i32) -> DatabaseTransaction {
    let blocker = app.db().begin_write().await.unwrap();
    if app.backend == Backend::Postgres {
        blocker
            .execute_unprepared(&format!(
                "SELECT id FROM inventory_level WHERE id = {level_id} FOR UPDATE"
            ))
            .await
            .unwrap();
    }
    blocker
}

/// Waits until `queued` writes wait in `combiner`'s queues and `in_flight` are in a
/// transaction.
async fn until_combining<W: Combinable>(combiner: &Combiner<W>, queued: usize, in_flight: usize) {
    for _ in 0..2000 {
        if combiner.queued() == queued && combiner.in_flight() == in_flight {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "{} queued and {} in flight, expected {queued} and {in_flight}",
        combiner.queued(),
        combiner.in_flight()
    );
}

async fn until_placing(app: &TestApp, queued: usize, in_flight: usize) {
    until_combining(&app.state().placements, queued, in_flight).await;
}

/// Sends each of `requests` in its own task, the first alone: once it is in flight (held
/// up by the blocked writes), the rest are sent and wait in `combiner`'s queue behind it.
async fn queue_behind_one<W, F, Fut>(
    combiner: &Combiner<W>,
    requests: &[(String, Value)],
    send: F,
) -> Vec<tokio::task::JoinHandle<Gql>>
where
    W: Combinable,
    F: Fn(String, Value) -> Fut,
    Fut: Future<Output = Gql> + Send + 'static,
{
    let spawn = |(id, lines): (String, Value)| tokio::spawn(send(id, lines));
    let mut tasks = vec![spawn(requests[0].clone())];
    until_combining(combiner, 0, 1).await;
    tasks.extend(requests[1..].iter().cloned().map(spawn));
    until_combining(combiner, requests.len() - 1, 1).await;
    tasks
}

/// Queues `requests` as orders of `channel` behind the first (see [`queue_behind_one`]).
async fn orders_behind_one(
    app: &TestApp,
    channel: i32,
    requests: &[(String, Value)],
) -> Vec<tokio::task::JoinHandle<Gql>> {
    let client = app.client().clone();
    queue_behind_one(&app.state().placements, requests, move |pi, lines| {
        let client = client.clone();
        async move { place(&client, &pi, channel, lines).await }
    })
    .await
}

/// Checks the answers to a batch built like the batch tests': `{prefix}unknown` names an
/// unknown sku, `{prefix}greedy` asks for more than there is, `{prefix}dup` was sent
/// `copies` times, everyone else asked for one unit. Returns the ids that succeeded.
fn batch_verdicts<'a>(
    requests: &'a [(String, Value)],
    results: &[Gql],
    prefix: &str,
    mutation: &str,
    copies: usize,
) -> HashSet<&'a str> {
    let verdicts = |id: &str| -> Vec<&Gql> {
        requests
            .iter()
            .zip(results)
            .filter(|((request, _), _)| request == id)
            .map(|(_, result)| result)
            .collect()
    };
    let (unknown, greedy, dup) = (
        format!("{prefix}unknown"),
        format!("{prefix}greedy"),
        format!("{prefix}dup"),
    );
    assert_eq!(verdicts(&unknown)[0].error_code(), Some("NOT_FOUND"));
    assert_eq!(verdicts(&greedy)[0].error_code(), Some("OUT_OF_STOCK"));
    let dup_ids: HashSet<String> = verdicts(&dup)
        .iter()
        .filter(|result| result.error_code().is_none())
        .map(|result| result.data()[mutation]["id"].to_string())
        .collect();
    let dup_refused = verdicts(&dup)
        .iter()
        .filter(|result| result.error_code().is_some())
        .count();
    assert!(
        (dup_ids.len() == 1 && dup_refused == 0) || (dup_ids.is_empty() && dup_refused == copies),
        "{copies} copies of {dup} answer alike: {dup_ids:?}, {dup_refused} refused"
    );
    let succeeded: HashSet<&str> = requests
        .iter()
        .zip(results)
        .filter(|(_, result)| result.error_code().is_none())
        .map(|((id, _), _)| id.as_str())
        .collect();
    for ((id, _), result) in requests.iter().zip(results) {
        if !succeeded.contains(id.as_str()) && *id != unknown {
            assert_eq!(result.error_code(), Some("OUT_OF_STOCK"), "{id}: {}", result.0);
        }
    }
    succeeded
}

/// Orders placed per PaymentIntent, from the table.
async fn orders_per_payment_intent(app: &TestApp) -> Vec<i64> {
    let rows = app
        .db()
        .conn()
        .query_all_raw(Statement::from_string(
            app.db().backend(),
            "SELECT COUNT(*) AS n FROM orders GROUP BY payment_intent_id",
        ))
        .await
        .unwrap();
    rows.iter().map(|row| row.try_get::<i64>("", "n").unwrap()).collect()
}

#[tokio::test]
async fn one_combined_batch_gives_each_order_its_own_verdict() {
    on_each_backend(|app| async move {
        let (location, channel) = hot_shop(&app, 10, false).await;
        let level_id = app.level("HOT", location).await.id;
        let blocker = block_writes(&app, level_id).await;
        // 12 one-unit buyers, the same PaymentIntent sent 5 times, one order naming an
        // unknown sku, one asking for more than there is: 19 orders, 18 of them queued
        // behind the first while the writes are held.
        let mut requests: Vec<(String, Value)> = (0..12).map(|i| (format!("pi_{i}"), units("HOT", 1))).collect();
        requests.extend((0..5).map(|_| ("pi_dup".to_owned(), units("HOT", 1))));
        requests.push((
            "pi_unknown".to_owned(),
            json!([{ "sku": "HOT", "quantity": 1 }, { "sku": "NOPE", "quantity": 1 }]),
        ));
        requests.push(("pi_greedy".to_owned(), units("HOT", 100)));
        let tasks = orders_behind_one(&app, channel, &requests).await;
        blocker.rollback().await.unwrap();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }

        let placed = batch_verdicts(&requests, &results, "pi_", "placeOrder", 5);
        assert_eq!(placed.len(), 10, "exactly the 10 units were sold: {placed:?}");
        assert_eq!(app.count("orders").await, 10, "failed orders leave no trace");
        assert!(orders_per_payment_intent(&app).await.iter().all(|n| *n == 1));
        let level = app.level("HOT", location).await;
        assert_eq!(level.stocked_quantity, 0);
        assert_eq!(
            level.version,
            1 + 10,
            "the version counts every order that changed the level"
        );
        assert_eq!(app.count("order_line").await, 10);
        assert_eq!(app.count("stock_movement WHERE reason = 'ORDER'").await, 10);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn combined_reservations_hold_the_last_units_once_each() {
    on_each_backend(|app| async move {
        let (location, channel) = hot_shop(&app, 10, false).await;
        let level_id = app.level("HOT", location).await.id;
        let blocker = block_writes(&app, level_id).await;
        // 12 one-unit carts, one key sent 4 times, one naming an unknown sku, one asking
        // for more than there is: 18 holds, 17 of them queued behind the first.
        let mut requests: Vec<(String, Value)> = (0..12).map(|i| (format!("cart-{i}"), units("HOT", 1))).collect();
        requests.extend((0..4).map(|_| ("cart-dup".to_owned(), units("HOT", 1))));
        requests.push((
            "cart-unknown".to_owned(),
            json!([{ "sku": "HOT", "quantity": 1 }, { "sku": "NOPE", "quantity": 1 }]),
        ));
        requests.push(("cart-greedy".to_owned(), units("HOT", 100)));
        let client = app.client().clone();
        let tasks = queue_behind_one(&app.state().reservations, &requests, move |key, lines| {
            let client = client.clone();
            async move {
                let variables = json!({ "key": key, "c": channel.to_string(), "lines": lines });
                client.gql(RESERVE, variables).await
            }
        })
        .await;
        blocker.rollback().await.unwrap();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }

        let held = batch_verdicts(&requests, &results, "cart-", "reserveStock", 4);
        assert_eq!(held.len(), 10, "exactly the 10 units were held: {held:?}");
        assert_eq!(app.count("reservation").await, 10, "failed holds leave no trace");
        assert_eq!(app.count("reservation_line").await, 10);
        let level = app.level("HOT", location).await;
        assert_eq!((level.stocked_quantity, level.reserved_quantity), (10, 10));
        assert_eq!(
            level.version,
            1 + 10,
            "the version counts every hold that changed the level"
        );
        assert_eq!(app.count("stock_movement WHERE reason = 'RESERVATION'").await, 10);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn combined_backorders_get_dense_events_in_order() {
    on_each_backend(|app| async move {
        let (location, channel) = hot_shop(&app, 5, true).await;
        let level_id = app.level("HOT", location).await.id;
        let blocker = block_writes(&app, level_id).await;
        let requests: Vec<(String, Value)> = (0..20).map(|i| (format!("pi_{i}"), units("HOT", 1))).collect();
        let tasks = orders_behind_one(&app, channel, &requests).await;
        blocker.rollback().await.unwrap();
        for task in tasks {
            task.await.unwrap().data();
        }
        let events = app
            .gql(
                "{ backorderEvents(first: 100) { id orderId stockedQuantity backorderedQuantity } }",
                json!({}),
            )
            .await;
        let events = events.data()["backorderEvents"].as_array().unwrap().clone();
        assert_eq!(events.len(), 15);
        let ids: Vec<i64> = events
            .iter()
            .map(|e| e["id"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ids, (1..=15).collect::<Vec<_>>(), "dense, from 1");
        let stocked: Vec<i64> = events.iter().map(|e| e["stockedQuantity"].as_i64().unwrap()).collect();
        assert_eq!(
            stocked,
            (1..=15).map(|n| -n).collect::<Vec<_>>(),
            "each event sees its own order's stock"
        );
        let order_ids: HashSet<&str> = events.iter().map(|e| e["orderId"].as_str().unwrap()).collect();
        assert_eq!(order_ids.len(), 15, "one event per backordering order");
        assert!(events.iter().all(|e| e["backorderedQuantity"] == 1));
        assert_eq!(app.level("HOT", location).await.stocked_quantity, -15);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

#[tokio::test]
async fn two_processes_combining_on_one_level_sell_each_unit_once() {
    on_each_backend(|app| async move {
        let (location, channel) = hot_shop(&app, 30, false).await;
        let other = app.another_process(|_| {}).await;
        let clients = [app.client().clone(), other.client().clone()];
        let results = race(80, |i| {
            let client = clients[i % 2].clone();
            async move { place(&client, &format!("pi_{i}"), channel, units("HOT", 1)).await }
        })
        .await;
        let placed = results.iter().filter(|result| result.error_code().is_none()).count();
        for result in &results {
            assert!(
                [None, Some("OUT_OF_STOCK")].contains(&result.error_code()),
                "{}",
                result.0
            );
        }
        assert_eq!(placed, 30);
        assert_eq!(app.count("orders").await, 30);
        assert_eq!(app.level("HOT", location).await.stocked_quantity, 0);
        app.assert_ledger_matches_levels().await;
    })
    .await;
}

/// A batch whose connection PostgreSQL terminates mid-transaction: its orders are placed
/// again one by one, and each exactly once.
#[tokio::test]
async fn a_batch_whose_transaction_is_killed_places_every_order_exactly_once() {
    let Some(app) = TestApp::postgres_with(|_| {}).await else {
        return;
    };
    let (location, channel) = hot_shop(&app, 100, false).await;
    let level_id = app.level("HOT", location).await.id;
    let conn = app.db().conn();
    let lock_waiters = |except: i32| {
        let sql = format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND pid <> {except}"
        );
        async move {
            conn.query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
                .await
                .unwrap()
                .iter()
                .map(|row| row.try_get::<i32>("", "pid").unwrap())
                .collect::<Vec<_>>()
        }
    };
    let first_blocker = block_writes(&app, level_id).await;
    // One order in flight, waiting on the lock; 10 more queued behind it.
    let requests: Vec<(String, Value)> = (0..11).map(|i| (format!("pi_{i}"), units("HOT", 1))).collect();
    let tasks = orders_behind_one(&app, channel, &requests).await;
    while lock_waiters(0).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A second holder queues on the row behind the first order, so the batch after it
    // will wait too: that is the transaction to kill.
    let second_blocker = app.db().conn().begin().await.unwrap();
    let second_pid: i32 = second_blocker
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT pg_backend_pid() AS pid",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "pid")
        .unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        second_blocker
            .execute_unprepared(&format!(
                "SELECT id FROM inventory_level WHERE id = {level_id} FOR UPDATE"
            ))
            .await
            .unwrap();
        released.await.ok();
        second_blocker.rollback().await.unwrap();
    });
    while !lock_waiters(0).await.contains(&second_pid) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first_blocker.rollback().await.unwrap();
    // The first order committed and the batch of ten took the queue: it now waits on the
    // second holder.
    until_placing(&app, 0, 10).await;
    let batch_pid = loop {
        if let Some(pid) = lock_waiters(second_pid).await.first() {
            break *pid;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    conn.execute_unprepared(&format!("SELECT pg_terminate_backend({batch_pid})"))
        .await
        .unwrap();
    release.send(()).unwrap();
    holder.await.unwrap();

    let mut failed = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if result.error_code().is_some() {
            failed.push(i);
        }
    }
    // A client whose order failed retries it with the same PaymentIntent.
    for i in failed {
        place(app.client(), &format!("pi_{i}"), channel, units("HOT", 1))
            .await
            .data();
    }
    assert_eq!(app.count("orders").await, 11);
    assert!(orders_per_payment_intent(&app).await.iter().all(|n| *n == 1));
    assert_eq!(app.level("HOT", location).await.stocked_quantity, 100 - 11);
    assert_eq!(app.count("stock_movement WHERE reason = 'ORDER'").await, 11);
    app.assert_ledger_matches_levels().await;
}

#[tokio::test]
async fn a_repeated_payment_intent_answers_with_its_order_whatever_else_it_names() {
    on_each_backend(|app| async move {
        let (location, channel) = hot_shop(&app, 5, false).await;
        let first = place(app.client(), "pi_1", channel, units("HOT", 2)).await;
        let again = place(
            app.client(),
            "pi_1",
            channel,
            json!([{ "sku": "HOT", "quantity": 1 }, { "sku": "NOPE", "quantity": 1 }]),
        )
        .await;
        assert_eq!(again.data()["placeOrder"]["id"], first.data()["placeOrder"]["id"]);
        assert_eq!(
            app.level("HOT", location).await.stocked_quantity,
            3,
            "stock was taken once"
        );
        assert_eq!(app.count("orders").await, 1);
    })
    .await;
}
