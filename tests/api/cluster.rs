//! Three `stockroom` processes on one PostgreSQL, clients spread round-robin: they must
//! behave exactly as one process would.

use std::sync::Arc;

use serde_json::json;

use crate::{
    helpers::EmptyDatabase,
    operations::{Http, PLACE, assert_nothing_half_written, code, event_id, open_shop, order_lines, scalar},
    server::{ADMIN_KEY, Server, free_addr},
    stripe_webhook::paid,
    ws::WsClient,
};

const BUYERS: usize = 50;
const UNITS: i32 = 10;

#[tokio::test]
async fn three_processes_sell_the_last_units_once_make_one_order_per_payment_and_feed_every_subscriber() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let mut servers =
        futures_util::future::join_all(addrs.iter().map(|addr| Server::start_shop(&database.url, addr, &[]))).await;
    let clients: Vec<Http> = servers.iter().map(Http::new).collect();
    let channel = open_shop(&clients[0], UNITS).await;
    let mut subscribers = Vec::new();
    for server in &servers {
        let mut subscriber = WsClient::connect(server.socket_addr(), Some(ADMIN_KEY)).await.unwrap();
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
                let (status, body) = client.gql(PLACE, variables.clone()).await.unwrap();
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
    servers.push(Server::start_shop(&database.url, &addrs[2], &[]).await);
    let mut resumed = WsClient::connect(servers[2].socket_addr(), Some(ADMIN_KEY))
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
