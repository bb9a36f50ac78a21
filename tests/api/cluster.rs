//! Three `stockroom` processes on one PostgreSQL, clients spread round-robin: they must
//! behave exactly as one process would.

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use serde_json::json;
use stockroom_test_support::{
    database::{EmptyDatabase, scalar},
    fixtures::{PLACE_ORDER, PLACE_ORDER_ID, place_order_variables},
    invariants::assert_nothing_half_written,
    process::{SPAWNED_ADMIN_KEY, Server, free_addr},
    ws::WsClient,
};

use crate::{
    STOCKROOM,
    operations::{Http, code, event_id, eventually, open_shop, order_lines},
    stripe_webhook::paid,
};

const BUYERS: usize = 50;
const UNITS: i32 = 10;

#[tokio::test]
async fn three_processes_sell_the_last_units_once_make_one_order_per_payment_and_feed_every_subscriber() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let mut servers = futures_util::future::join_all(
        addrs
            .iter()
            .map(|addr| Server::start_shop(STOCKROOM, &database.url, addr, &[])),
    )
    .await;
    let clients: Vec<Http> = servers.iter().map(Http::new).collect();
    let channel = open_shop(&clients[0], UNITS).await;
    let mut subscribers = Vec::new();
    for server in &servers {
        let mut subscriber = WsClient::connect(server.socket_addr(), Some(SPAWNED_ADMIN_KEY))
            .await
            .unwrap();
        subscriber.subscribe("feed", json!({ "after": "0" })).await;
        subscribers.push(subscriber);
    }

    // 50 buyers of the last 10 units, spread over the three processes, started together.
    let start = Arc::new(tokio::sync::Barrier::new(BUYERS));
    let buyers = (0..BUYERS).map(|buyer| {
        let (client, start) = (clients[buyer % 3].clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            let variables =
                json!({ "pi": format!("pi_buyer_{buyer}"), "c": channel.to_string(), "lines": order_lines() });
            loop {
                let (status, body) = client.gql(PLACE_ORDER, variables.clone()).await.unwrap();
                match code(&body) {
                    "" => return body["data"]["placeOrder"]["status"] == "PLACED",
                    "OUT_OF_STOCK" => return false,
                    "LOCK_TIMEOUT" => continue,
                    other => panic!("{other}: {status} {body}"),
                }
            }
        })
    });
    let placed = futures_util::future::join_all(buyers)
        .await
        .into_iter()
        .filter(|placed| *placed.as_ref().unwrap())
        .count();
    assert_eq!(placed, UNITS as usize, "exactly the units there were");

    // One payment's webhook delivered to all three at once: one order.
    let backorder_only = r#"[{"sku":"BACK","quantity":1}]"#;
    let payload = paid("evt_everywhere", "pi_everywhere", channel, backorder_only);
    let answers = futures_util::future::join_all(clients.iter().map(|client| client.webhook(&payload))).await;
    for answer in answers {
        assert_eq!(answer.unwrap().0, 200);
    }

    // Every subscriber, whatever its process, gets every event once, in order.
    let conn = sea_orm::Database::connect(&database.url).await.unwrap();
    assert_eq!(
        scalar(
            &conn,
            "SELECT COUNT(*) FROM orders WHERE payment_intent_id = 'pi_everywhere'"
        )
        .await,
        1
    );
    let events = scalar(&conn, "SELECT COUNT(*) FROM inventory_event").await;
    assert_eq!(
        events,
        UNITS as i64 + 1,
        "one backorder per placed order, and the webhook's"
    );
    for subscriber in &mut subscribers {
        for expected in 1..=events {
            assert_eq!(event_id(&subscriber.next_event("feed").await), expected);
        }
    }

    // One process dies and comes back; its subscriber resumes from its cursor, and sees
    // the next event, placed through another process, once.
    let restarted = servers.remove(2);
    restarted.kill().await;
    servers.push(Server::start_shop(STOCKROOM, &database.url, &addrs[2], &[]).await);
    let mut resumed = WsClient::connect(servers[2].socket_addr(), Some(SPAWNED_ADMIN_KEY))
        .await
        .unwrap();
    resumed.subscribe("feed", json!({ "after": events.to_string() })).await;
    let payload = paid("evt_after_restart", "pi_after_restart", channel, backorder_only);
    assert_eq!(clients[0].webhook(&payload).await.unwrap().0, 200);
    assert_eq!(event_id(&resumed.next_event("feed").await), events + 1);
    for subscriber in &mut subscribers[..2] {
        assert_eq!(event_id(&subscriber.next_event("feed").await), events + 1);
    }
    assert_nothing_half_written(&conn).await;
    conn.close().await.ok();
}

const RESERVE: &str = "mutation($key: String!, $c: ID!, $ttl: Int!) {
    reserveStock(input: { key: $key, salesChannelId: $c, ttlSeconds: $ttl, lines: [{ sku: \"HOT\", quantity: 1 }] }) { id } }";
const RELEASE: &str = "mutation($id: ID!) { releaseReservation(id: $id) { status } }";

/// Held units (20, all reserved on process A) are fought over across the cluster: orders
/// with the keys go through B, releases of some of the same reservations through C at the
/// same instant, buyers without a key everywhere, and five reservations lapse and are left
/// to whichever process's sweep comes first. Each reservation ends in exactly one state,
/// and the stock adds up.
#[tokio::test]
async fn a_reservation_made_on_one_process_has_one_outcome_whichever_process_commits_releases_or_expires_it() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let servers = futures_util::future::join_all(
        addrs
            .iter()
            .map(|addr| Server::start_shop(STOCKROOM, &database.url, addr, &[])),
    )
    .await;
    let [a, b, c]: [Http; 3] = std::array::from_fn(|index| Http::new(&servers[index]));
    let channel = open_shop(&a, 20).await.to_string();
    let mut reservations = Vec::new();
    for index in 0..20 {
        // r15..r19 lapse after one second; the others outlive the test.
        let ttl = if index < 15 { 600 } else { 1 };
        let data = a
            .data(RESERVE, json!({ "key": format!("r{index}"), "c": channel, "ttl": ttl }))
            .await;
        reservations.push(data["reserveStock"]["id"].as_str().unwrap().to_owned());
    }
    let conn = sea_orm::Database::connect(&database.url).await.unwrap();
    eventually("r15..r19 are past their deadline", || async {
        scalar(&conn, "SELECT COUNT(*) FROM reservation WHERE expires_at < now()").await == 5
    })
    .await;

    let writers = 20 + 5 + BUYERS;
    let start = Arc::new(tokio::sync::Barrier::new(writers));
    let mut tasks = Vec::new();
    for index in 0..20 {
        let (b, start, channel) = (b.clone(), start.clone(), channel.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let variables = json!({
                "pi": format!("pi_r{index}"), "c": channel, "key": format!("r{index}"),
                "lines": [{ "sku": "HOT", "quantity": 1 }]
            });
            let (status, body) = b.gql(PLACE_ORDER_ID, variables).await.unwrap();
            (format!("order r{index}"), status, code(&body).to_owned())
        }));
    }
    for (index, id) in reservations.iter().enumerate().take(15).skip(10) {
        let (c, start, id) = (c.clone(), start.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let (status, body) = c.gql(RELEASE, json!({ "id": id })).await.unwrap();
            (format!("release r{index}"), status, code(&body).to_owned())
        }));
    }
    let clients = [a.clone(), b.clone(), c.clone()];
    for buyer in 0..BUYERS {
        let (client, start, channel) = (clients[buyer % 3].clone(), start.clone(), channel.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let variables = place_order_variables(&format!("pi_walk_in_{buyer}"), channel, &[("HOT", 1)]);
            let (status, body) = client.gql(PLACE_ORDER_ID, variables).await.unwrap();
            (format!("walk-in {buyer}"), status, code(&body).to_owned())
        }));
    }
    let mut answers = std::collections::HashMap::new();
    for task in tasks {
        let (who, status, code) = task.await.unwrap();
        assert!(
            matches!(code.as_str(), "" | "OUT_OF_STOCK" | "CONFLICT" | "BAD_USER_INPUT"),
            "{who}: {status} {code}"
        );
        answers.insert(who, code);
    }

    // The five lapsed ones are swept by some process (every 5 s, one process per round).
    eventually("every lapsed reservation is swept", || async {
        scalar(&conn, "SELECT COUNT(*) FROM reservation WHERE status = 'EXPIRED'").await == 5
    })
    .await;
    let count = |sql: String| {
        let conn = conn.clone();
        async move { scalar(&conn, &sql).await }
    };
    for index in 0..20 {
        let status =
            |state: &str| format!("SELECT COUNT(*) FROM reservation WHERE key = 'r{index}' AND status = '{state}'");
        let linked = count(format!(
            "SELECT COUNT(*) FROM orders o JOIN reservation r ON r.id = o.reservation_id WHERE r.key = 'r{index}'"
        ))
        .await;
        let committed = count(status("COMMITTED")).await;
        assert_eq!(linked, committed, "r{index}: an order is linked iff it was committed");
        match index {
            0..10 => {
                assert_eq!(committed, 1, "r{index}: its held unit went to its own order");
                assert_eq!(answers[&format!("order r{index}")], "");
            }
            10..15 => {
                let released = count(status("RELEASED")).await;
                assert_eq!(committed + released, 1, "r{index}: committed or released, not both");
                let release_succeeded = answers[&format!("release r{index}")].is_empty();
                assert_eq!(release_succeeded, released == 1, "r{index}: the release's answer tells");
            }
            _ => assert_eq!(count(status("EXPIRED")).await, 1, "r{index}: lapsed, never committed"),
        }
    }
    let placed = count("SELECT COUNT(*) FROM orders WHERE status = 'PLACED'".into()).await;
    let answered_placed = answers
        .iter()
        .filter(|(who, code)| !who.starts_with("release") && code.is_empty())
        .count() as i64;
    assert_eq!(placed, answered_placed, "every PLACED answer is an order, and no other");
    assert!(placed <= 20, "never more than the 20 units: {placed}");
    assert_eq!(
        count("SELECT stocked_quantity::bigint FROM inventory_level l JOIN inventory_item i ON i.id = l.inventory_item_id WHERE i.sku = 'HOT'".into()).await,
        20 - placed
    );
    assert_eq!(
        count("SELECT SUM(reserved_quantity)::bigint FROM inventory_level".into()).await,
        0,
        "nothing stays held once every reservation has ended"
    );
    assert_nothing_half_written(&conn).await;
    conn.close().await.ok();
}

/// `STOCKROOM_EVENT_NOTIFY=0`, as on an engine without LISTEN/NOTIFY: events committed
/// through one process reach subscribers of another by the outbox poll alone, and no
/// process sends a notification.
#[tokio::test]
async fn without_notify_events_cross_processes_by_polling_alone() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let polling_only = [("STOCKROOM_EVENT_NOTIFY", "0"), ("STOCKROOM_EVENT_POLL_MS", "50")];
    let a = Server::start_shop(STOCKROOM, &database.url, &free_addr(), &polling_only).await;
    let b = Server::start_shop(STOCKROOM, &database.url, &free_addr(), &polling_only).await;
    let channel = open_shop(&Http::new(&a), 1).await;
    let pool = sea_orm::Database::connect(&database.url).await.unwrap();
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool.get_postgres_connection_pool())
        .await
        .unwrap();
    listener.listen("stockroom_inventory_events").await.unwrap();
    let mut subscriber = WsClient::connect(b.socket_addr(), Some(SPAWNED_ADMIN_KEY))
        .await
        .unwrap();
    subscriber.subscribe("feed", json!({ "after": "0" })).await;

    let backorder_only = r#"[{"sku":"BACK","quantity":1}]"#;
    for (number, payment) in ["pi_polled_1", "pi_polled_2"].into_iter().enumerate() {
        let payload = paid(&format!("evt_{payment}"), payment, channel, backorder_only);
        assert_eq!(Http::new(&a).webhook(&payload).await.unwrap().0, 200);
        let event = tokio::time::timeout(crate::operations::PATIENCE, subscriber.next_event("feed"))
            .await
            .expect("the event arrives by the poll");
        assert_eq!(event_id(&event), number as i64 + 1);
    }

    // Notifications arrive in commit order: had a process announced its commits, the first
    // one this listener gets would be that, not the test's own, sent after them.
    pool.execute_unprepared("NOTIFY stockroom_inventory_events, 'from the test'")
        .await
        .unwrap();
    let first = tokio::time::timeout(crate::operations::PATIENCE, listener.recv())
        .await
        .expect("the test's own notification arrives")
        .unwrap();
    assert_eq!(first.payload(), "from the test");
    // Closing the pool waits for every connection, the listener's included.
    drop(listener);
    pool.close().await.ok();
}
