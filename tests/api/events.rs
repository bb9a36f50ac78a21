use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use stockroom::{
    auth::{Caller, Role},
    events::outbox::{self, Backordered},
};
use stockroom_test_support::{
    app::{APP_ADMIN_KEY, Client, TestApp},
    fixtures::{PLACE_ORDER_ID, place_order_variables},
    racing::{on_each_backend, on_each_backend_with},
    ws::{PATIENCE, SUBSCRIBE, WsClient},
};

/// The one-location shop, `BACK` stocked `stock` there with backorder allowed.
async fn backorder_shop(app: &TestApp, stock: i32) -> i32 {
    let (location, channel) = app.one_location_shop().await;
    app.item("BACK").backorder_level(location, stock).await;
    channel
}

async fn order_one(client: &Client, payment_intent: &str, channel: i32) -> String {
    let placed = client
        .gql(
            PLACE_ORDER_ID,
            place_order_variables(payment_intent, channel, &[("BACK", 1)]),
        )
        .await;
    placed.data()["placeOrder"]["id"].as_str().unwrap().to_owned()
}

fn event_id(event: &Value) -> i64 {
    event["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn backorders_reach_a_websocket_subscriber_in_order_and_once() {
    on_each_backend(|app| async move {
        let channel = backorder_shop(&app, 1).await;
        let mut ws = WsClient::connect(app.listen().await, Some(APP_ADMIN_KEY))
            .await
            .unwrap();
        ws.subscribe("s1", json!({ "after": "0" })).await;
        let mut order_ids = Vec::new();
        for index in 0..5 {
            order_ids.push(order_one(app.client(), &format!("pi_{index}"), channel).await);
        }
        let mut events = Vec::new();
        for _ in 0..4 {
            events.push(ws.next_event("s1").await);
        }
        let ids: Vec<i64> = events.iter().map(event_id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let ordered: Vec<&str> = events.iter().map(|event| event["orderId"].as_str().unwrap()).collect();
        assert_eq!(
            ordered,
            order_ids[1..].iter().map(String::as_str).collect::<Vec<_>>(),
            "the first order was in stock"
        );
        assert_eq!(
            events[0],
            json!({ "id": "1", "sku": "BACK", "orderId": order_ids[1], "quantity": 1, "stockedQuantity": -1,
                    "backorderedQuantity": 1, "location": { "name": "Berlin" } })
        );
        // One more: the stream continues with the next id, nothing repeated in between.
        order_one(app.client(), "pi_5", channel).await;
        assert_eq!(event_id(&ws.next_event("s1").await), 5);
        ws.complete("s1").await;
    })
    .await;
}

#[tokio::test]
async fn a_resumed_subscription_replays_then_goes_live_without_duplicates() {
    on_each_backend(|app| async move {
        let channel = backorder_shop(&app, 0).await;
        for index in 0..3 {
            order_one(app.client(), &format!("pi_{index}"), channel).await;
        }
        let mut ws = WsClient::connect(app.listen().await, Some(APP_ADMIN_KEY))
            .await
            .unwrap();
        ws.subscribe("resume", json!({ "after": "2" })).await;
        assert_eq!(event_id(&ws.next_event("resume").await), 3, "replayed from the table");
        for index in 3..5 {
            order_one(app.client(), &format!("pi_{index}"), channel).await;
        }
        assert_eq!(event_id(&ws.next_event("resume").await), 4);
        assert_eq!(event_id(&ws.next_event("resume").await), 5);

        let stored = app.gql("{ backorderEvents(after: \"3\") { id } }", json!({})).await;
        assert_eq!(stored.data()["backorderEvents"], json!([{ "id": "4" }, { "id": "5" }]));
    })
    .await;
}

#[tokio::test]
async fn subscriptions_without_a_valid_admin_key_are_refused() {
    on_each_backend(|app| async move {
        let addr = app.listen().await;
        assert!(WsClient::connect(addr, None).await.is_err());
        assert!(WsClient::connect(addr, Some("srk_wrong")).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_revoked_keys_subscriptions_are_completed_and_checkout_keys_may_not_subscribe() {
    on_each_backend(|app| async move {
        let channel = backorder_shop(&app, 0).await;
        let create = "mutation($role: ApiKeyRole!) { createApiKey(input: { name: \"watcher\", role: $role }) { secret apiKey { id } } }";
        let key = |role: &'static str| {
            let app = &app;
            async move {
                let created = app.gql(create, json!({ "role": role })).await;
                let created = created.data()["createApiKey"].clone();
                (created["apiKey"]["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
            }
        };
        let (watcher_id, watcher) = key("READ").await;
        let (_, checkout) = key("CHECKOUT").await;
        let addr = app.listen().await;

        let mut refused = WsClient::connect(addr, Some(&checkout)).await.unwrap();
        refused.subscribe("s", json!({})).await;
        let answer = refused.receive().await.expect("an answer");
        assert_eq!(answer["type"], "next", "{answer}");
        assert_eq!(answer["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{answer}");

        let mut ws = WsClient::connect(addr, Some(&watcher)).await.unwrap();
        // From cursor 0: the event arrives whether the subscription is live before the
        // order commits or not.
        ws.subscribe("s", json!({ "after": "0" })).await;
        order_one(app.client(), "pi_seen", channel).await;
        assert_eq!(ws.next_event("s").await["quantity"], 1);
        app.gql(
            "mutation($id: ID!) { revokeApiKey(input: { id: $id }) { id } }",
            json!({ "id": watcher_id }),
        )
        .await
        .data();
        let closing = ws.receive().await.expect("the server answers");
        assert_eq!(closing["type"], "complete", "{closing}");
        assert_eq!(closing["id"], "s");
        // The connection stays open, but nothing more runs on the revoked key.
        ws.send(json!({ "id": "q", "type": "subscribe", "payload": { "query": "{ order(id: \"999999\") { id } }" } }))
            .await;
        let answer = ws.receive().await.expect("an answer");
        assert_eq!(answer["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{answer}");
        assert!(WsClient::connect(addr, Some(&watcher)).await.is_err(), "nor can it connect again");
    })
    .await;
}

#[tokio::test]
async fn two_hundred_subscribers_each_receive_all_hundred_events_in_order() {
    on_each_backend(|app| async move {
        let channel = backorder_shop(&app, 0).await;
        let schema = app.schema();
        let subscribers: Vec<_> = (0..200)
            .map(|_| {
                let request = async_graphql::Request::new(SUBSCRIBE)
                    .variables(async_graphql::Variables::from_json(json!({ "after": "0" })))
                    .data(Caller::Key {
                        id: 1,
                        role: Role::Admin,
                    });
                let stream = schema.execute_stream(request);
                tokio::spawn(async move {
                    let responses: Vec<async_graphql::Response> =
                        tokio::time::timeout(PATIENCE, stream.take(100).collect())
                            .await
                            .expect("all 100 events in time");
                    responses
                        .into_iter()
                        .map(|response| {
                            assert!(response.errors.is_empty(), "{:?}", response.errors);
                            let data = response.data.into_json().unwrap();
                            data["backorderEvents"]["id"].as_str().unwrap().parse::<i64>().unwrap()
                        })
                        .collect::<Vec<i64>>()
                })
            })
            .collect();
        for index in 0..100 {
            order_one(app.client(), &format!("pi_{index}"), channel).await;
        }
        let expected: Vec<i64> = (1..=100).collect();
        for subscriber in subscribers {
            assert_eq!(subscriber.await.unwrap(), expected);
        }
    })
    .await;
}

/// Neither a poll (not within the test's patience) nor `NOTIFY` can deliver here: only the
/// wake-up of the process's own feed after a commit that stored events. Commits that
/// store none (the first order, in stock) do not wake it.
#[tokio::test]
async fn a_commit_that_stored_events_wakes_its_own_process_feed() {
    let no_poll_no_notify = |config: &mut stockroom::config::Config| {
        config.event_poll_ms = 3_600_000;
        config.event_notify = false;
    };
    on_each_backend_with(no_poll_no_notify, |app| async move {
        let channel = backorder_shop(&app, 1).await;
        let mut ws = WsClient::connect(app.listen().await, Some(APP_ADMIN_KEY))
            .await
            .unwrap();
        ws.subscribe("own", json!({ "after": "0" })).await;
        order_one(app.client(), "pi_in_stock", channel).await;
        let backordered = order_one(app.client(), "pi_backordered", channel).await;
        let event = ws.next_event("own").await;
        assert_eq!(
            (event_id(&event), event["orderId"].as_str()),
            (1, Some(backordered.as_str()))
        );
    })
    .await;
}

/// Process A with a backorderable `BACK`, and a WebSocket subscriber (from the first event)
/// on a second process B that never polls: B delivers only what LISTEN/NOTIFY, or its
/// catch-up after a reconnect, brings it.
async fn subscriber_on_another_process() -> Option<(TestApp, TestApp, i32, WsClient)> {
    let process_a = TestApp::postgres_with(|_| {}).await?;
    let process_b = process_a
        .another_process(|config| config.event_poll_ms = 3_600_000)
        .await;
    let channel = backorder_shop(&process_a, 0).await;
    let mut ws = WsClient::connect(process_b.listen().await, Some(APP_ADMIN_KEY))
        .await
        .unwrap();
    ws.subscribe("b", json!({ "after": "0" })).await;
    Some((process_a, process_b, channel, ws))
}

#[tokio::test]
async fn an_order_placed_through_one_process_reaches_a_subscriber_of_another() {
    let Some((process_a, _process_b, channel, mut ws)) = subscriber_on_another_process().await else {
        return;
    };
    let order = order_one(process_a.client(), "pi_a", channel).await;
    let event = ws.next_event("b").await;
    assert_eq!(event["orderId"], order.as_str());
}

#[tokio::test]
async fn subscribers_miss_nothing_when_their_listen_connection_is_killed() {
    let Some((process_a, _process_b, channel, mut ws)) = subscriber_on_another_process().await else {
        return;
    };
    order_one(process_a.client(), "pi_0", channel).await;
    assert_eq!(event_id(&ws.next_event("b").await), 1);

    let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = current_database() AND query ILIKE 'LISTEN%'";
    let killed = process_a
        .db()
        .conn()
        .query_all_raw(Statement::from_string(process_a.db().backend(), terminate));
    assert_eq!(killed.await.unwrap().len(), 2, "one LISTEN connection per process");

    for index in 1..4 {
        order_one(process_a.client(), &format!("pi_{index}"), channel).await;
    }
    for expected in 2..=4 {
        assert_eq!(event_id(&ws.next_event("b").await), expected);
    }
}

#[tokio::test]
async fn event_ids_follow_commit_order_when_a_commit_is_delayed() {
    let Some(app) = TestApp::postgres_with(|_| {}).await else {
        return;
    };
    let channel = backorder_shop(&app, 0).await;
    let location = app.gql("{ stockLocations { id } }", json!({})).await.data()["stockLocations"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let first_order: i32 = order_one(app.client(), "pi_first", channel).await.parse().unwrap();
    assert_eq!(app.count("inventory_event").await, 1);

    // A transaction that stored its event (id 2) but has not committed yet.
    let slow = app.db().begin_write().await.unwrap();
    let event = Backordered {
        sku: "BACK".into(),
        stock_location_id: location,
        order_id: first_order,
        quantity: 1,
        stocked_quantity: -1,
        backordered_quantity: 1,
    };
    outbox::append(&slow, vec![event]).await.unwrap();

    // An order that starts later must wait: its ids may only be taken after that commit.
    let client = app.client().clone();
    let later = tokio::spawn(async move { order_one(&client, "pi_later", channel).await });
    let waiting =
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    loop {
        let row = app
            .db()
            .conn()
            .query_one_raw(Statement::from_string(app.db().backend(), waiting))
            .await
            .unwrap();
        if row.unwrap().try_get::<i64>("", "n").unwrap() > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(!later.is_finished());
    let visible = app.gql("{ backorderEvents(after: \"1\") { id } }", json!({})).await;
    assert_eq!(
        visible.data()["backorderEvents"],
        json!([]),
        "nothing uncommitted is visible"
    );

    slow.commit().await.unwrap();
    let later_order = later.await.unwrap();
    let events = app
        .gql("{ backorderEvents(after: \"1\") { id orderId } }", json!({}))
        .await;
    assert_eq!(
        events.data()["backorderEvents"],
        json!([{ "id": "2", "orderId": first_order.to_string() }, { "id": "3", "orderId": later_order }])
    );
}

#[tokio::test]
async fn a_subscription_filtered_by_sku_sees_only_that_skus_events() {
    on_each_backend(|app| async move {
        let (location, channel) = app.one_location_shop().await;
        app.item("BACK").backorder_level(location, 0).await;
        app.item("OTHER").backorder_level(location, 0).await;
        let request = async_graphql::Request::new(SUBSCRIBE)
            .variables(async_graphql::Variables::from_json(
                json!({ "after": "0", "sku": "OTHER" }),
            ))
            .data(Caller::Key {
                id: 1,
                role: Role::Admin,
            });
        let stream = app.schema().execute_stream(request);
        let other = |payment_intent: &str| place_order_variables(payment_intent, channel, &[("OTHER", 2)]);
        order_one(app.client(), "pi_back_1", channel).await;
        app.gql(PLACE_ORDER_ID, other("pi_other_1")).await.data();
        order_one(app.client(), "pi_back_2", channel).await;
        app.gql(PLACE_ORDER_ID, other("pi_other_2")).await.data();
        let events: Vec<Value> = tokio::time::timeout(PATIENCE, stream.take(2).collect::<Vec<_>>())
            .await
            .expect("both OTHER events in time")
            .into_iter()
            .map(|response| response.data.into_json().unwrap()["backorderEvents"].clone())
            .collect();
        let seen: Vec<(&str, &str)> = events
            .iter()
            .map(|event| (event["id"].as_str().unwrap(), event["sku"].as_str().unwrap()))
            .collect();
        assert_eq!(seen, [("2", "OTHER"), ("4", "OTHER")]);
    })
    .await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_the_live_buffer_catches_up_from_the_table() {
    on_each_backend(|app| async move {
        let channel = backorder_shop(&app, 0).await;
        let order: i32 = order_one(app.client(), "pi_0", channel).await.parse().unwrap();
        let request = async_graphql::Request::new(SUBSCRIBE)
            .variables(async_graphql::Variables::from_json(json!({ "after": "0" })))
            .data(Caller::Key {
                id: 1,
                role: Role::Admin,
            });
        let mut stream = app.schema().execute_stream(request);
        let first = tokio::time::timeout(PATIENCE, stream.next()).await.unwrap().unwrap();
        assert!(first.errors.is_empty(), "{:?}", first.errors);

        // More events in one commit than the live buffer holds, while nobody reads.
        let burst = 1_500;
        let location = app.level("BACK", 1).await.stock_location_id;
        let txn = app.db().begin_write().await.unwrap();
        let event = Backordered {
            sku: "BACK".into(),
            stock_location_id: location,
            order_id: order,
            quantity: 1,
            stocked_quantity: -1,
            backordered_quantity: 1,
        };
        outbox::append(&txn, vec![event; burst]).await.unwrap();
        txn.commit().await.unwrap();

        let ids: Vec<i64> = tokio::time::timeout(PATIENCE, stream.take(burst).collect::<Vec<_>>())
            .await
            .expect("the whole burst in time")
            .into_iter()
            .map(|response| {
                response.data.into_json().unwrap()["backorderEvents"]["id"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, (2..=1 + burst as i64).collect::<Vec<_>>());
    })
    .await;
}
