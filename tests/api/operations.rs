//! What an operator relies on, proven against the spawned binary: `kill -9` under load
//! loses nothing and half-writes nothing, a database outage fails fast and heals by itself,
//! SIGTERM drains, hostile requests stay cheap, and the logs and metrics say what happened.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use stockroom_test_support::{
    database::{EmptyDatabase, SqliteFile, scalar},
    fixtures::PLACE_ORDER,
    invariants::assert_nothing_half_written,
    process::{SPAWNED_ADMIN_KEY, Server, WEBHOOK_SECRET, free_addr},
    ws::WsClient,
};
use stripe_webhook::Webhook;

use crate::{STOCKROOM, stripe_webhook::paid};

/// Bound on anything a test waits for, so a broken server fails the test instead of hanging it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// A client of one spawned server's address, which survives the server's restarts.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: String,
}

/// What a request got back: status and JSON body (or text as a JSON string).
type Answer = (u16, Value);

impl Http {
    pub(crate) fn new(server: &Server) -> Http {
        Http {
            client: reqwest::Client::builder().timeout(PATIENCE).build().unwrap(),
            base: server.url(),
        }
    }

    /// A GraphQL request with the admin key; `Err` when no HTTP answer came back.
    pub(crate) async fn gql(&self, query: &str, variables: Value) -> Result<Answer, reqwest::Error> {
        self.post_graphql(
            json!({ "query": query, "variables": variables }),
            Some(SPAWNED_ADMIN_KEY),
        )
        .await
    }

    /// `placeOrder` of [`order_lines`] for `payment_intent` through `channel`, with the admin key.
    pub(crate) async fn place_order(&self, payment_intent: &str, channel: i32) -> Result<Answer, reqwest::Error> {
        let variables = json!({ "pi": payment_intent, "c": channel.to_string(), "lines": order_lines() });
        self.gql(PLACE_ORDER, variables).await
    }

    async fn post_graphql(&self, body: Value, key: Option<&str>) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        answer(request.send().await?).await
    }

    /// Delivers a Stripe event signed with the server's secret.
    pub(crate) async fn webhook(&self, payload: &str) -> Result<Answer, reqwest::Error> {
        let signature = Webhook::generate_test_header(payload, WEBHOOK_SECRET, Some(chrono::Utc::now().timestamp()));
        let response = self
            .client
            .post(format!("{}/webhooks/stripe", self.base))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(payload.to_owned())
            .send()
            .await?;
        answer(response).await
    }

    /// The data of a GraphQL request that must succeed.
    pub(crate) async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.gql(query, variables).await.expect("the server answers");
        assert!(status == 200 && body["errors"].is_null(), "{status}: {body}");
        body["data"].clone()
    }
}

async fn answer(response: reqwest::Response) -> Result<Answer, reqwest::Error> {
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// A body short enough for a failure message (hostile requests echo huge inputs).
fn brief(body: &Value) -> String {
    body.to_string().chars().take(300).collect()
}

pub(crate) fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or_default()
}

/// One location, one channel; `HOT` with `hot` units (no backorder) and `BACK` with none
/// but backorder allowed, so that every order of `BACK` writes an event. Returns the channel.
pub(crate) async fn open_shop(http: &Http, hot: i32) -> i32 {
    let id = |data: &Value, field: &str| data[field]["id"].as_str().unwrap().to_owned();
    let location = id(
        &http
            .data(
                "mutation { createStockLocation(input: { name: \"Depot\" }) { id } }",
                json!({}),
            )
            .await,
        "createStockLocation",
    );
    let channel = id(
        &http
            .data(
                "mutation { createSalesChannel(input: { name: \"Web\" }) { id } }",
                json!({}),
            )
            .await,
        "createSalesChannel",
    );
    http.data(
        "mutation($c: ID!, $l: ID!) { mapSalesChannelLocation(input: { salesChannelId: $c, stockLocationId: $l, priority: 0 }) { id } }",
        json!({ "c": channel, "l": location }),
    )
    .await;
    for (sku, stock, backorder) in [("HOT", hot, false), ("BACK", 0, true)] {
        http.data(
            "mutation($sku: String!) { createInventoryItem(input: { sku: $sku, title: $sku }) { id } }",
            json!({ "sku": sku }),
        )
        .await;
        http.data(
            "mutation($sku: String!, $l: ID!, $n: Int!, $b: Boolean!) {
                setStockLevel(input: { sku: $sku, stockLocationId: $l, stockedQuantity: $n, allowBackorder: $b }) { version } }",
            json!({ "sku": sku, "l": location, "n": stock, "b": backorder }),
        )
        .await;
    }
    channel.parse().unwrap()
}

/// The lines of every order in these tests: one `HOT`, one `BACK`.
pub(crate) fn order_lines() -> Value {
    json!([{ "sku": "HOT", "quantity": 1 }, { "sku": "BACK", "quantity": 1 }])
}

const ORDER_LINES_METADATA: &str = r#"[{"sku":"HOT","quantity":1},{"sku":"BACK","quantity":1}]"#;

/// How one client's PaymentIntent ended, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// `placeOrder` answered with this order: id and status (a PaymentIntent that the
    /// webhook rejected first answers with its REJECTED order).
    Placed(String, String),
    /// `placeOrder` answered OUT_OF_STOCK.
    OutOfStock,
    /// The webhook answered 200: an order (PLACED or REJECTED) exists.
    Accepted,
}

/// Sends `placeOrder` until it gets a verdict, through outages and restarts.
async fn place_until_answered(http: &Http, payment_intent: &str, channel: i32) -> Seen {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{payment_intent}: no verdict in time"
        );
        match http.place_order(payment_intent, channel).await {
            Ok((_, body)) if body["data"]["placeOrder"]["id"].is_string() => {
                let order = &body["data"]["placeOrder"];
                return Seen::Placed(
                    order["id"].as_str().unwrap().into(),
                    order["status"].as_str().unwrap().into(),
                );
            }
            Ok((_, body)) if code(&body) == "OUT_OF_STOCK" => return Seen::OutOfStock,
            Ok((_, body)) if code(&body) == "LOCK_TIMEOUT" => {}
            Ok((status, body)) if status < 500 => {
                panic!("{payment_intent}: unexpected answer {status} {}", brief(&body))
            }
            // 5xx, or no answer at all: the server is down or restarting.
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Delivers the PaymentIntent's event until the webhook answers 200.
async fn deliver_until_accepted(http: &Http, event_id: &str, payment_intent: &str, channel: i32) -> Seen {
    let payload = paid(event_id, payment_intent, channel, ORDER_LINES_METADATA);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{payment_intent}: webhook not accepted in time"
        );
        match http.webhook(&payload).await {
            Ok((200, _)) => return Seen::Accepted,
            Ok((503, _)) | Err(_) => {}
            Ok((status, body)) => panic!("{payment_intent}: webhook answered {status} {}", brief(&body)),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_order_and_half_writes_nothing() {
    const ROUNDS: usize = 5;
    const CLIENTS: usize = 12;
    const PER_CLIENT: usize = 45;
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let addr = free_addr();
    let mut server = Server::start_shop(STOCKROOM, &database.url, &addr, &[]).await;
    let http = Http::new(&server);
    let channel = open_shop(&http, 400).await;

    let answered = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<BTreeMap<String, Vec<Seen>>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (http, answered, seen) = (http.clone(), answered.clone(), seen.clone());
            tokio::spawn(async move {
                for n in 0..PER_CLIENT {
                    let payment_intent = format!("pi_crash_{client}_{n}");
                    // A third by placeOrder, a third by webhook (each event delivered
                    // twice), a third by both at once: duplicates across both paths.
                    let verdicts = match n % 3 {
                        0 => vec![place_until_answered(&http, &payment_intent, channel).await],
                        1 => {
                            let event = format!("evt_{payment_intent}");
                            let (a, b) = tokio::join!(
                                deliver_until_accepted(&http, &event, &payment_intent, channel),
                                deliver_until_accepted(&http, &event, &payment_intent, channel),
                            );
                            vec![a, b]
                        }
                        _ => {
                            let event = format!("evt_{payment_intent}");
                            let (a, b) = tokio::join!(
                                place_until_answered(&http, &payment_intent, channel),
                                deliver_until_accepted(&http, &event, &payment_intent, channel),
                            );
                            vec![a, b]
                        }
                    };
                    seen.lock().unwrap().insert(payment_intent, verdicts);
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Kill at spread-out points of the load, restarting on the same address each time.
    let total = CLIENTS * PER_CLIENT;
    for round in 1..=ROUNDS {
        let kill_at = total * round / (ROUNDS + 2);
        while answered.load(Ordering::SeqCst) < kill_at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill().await;
        server = Server::start_shop(STOCKROOM, &database.url, &addr, &[]).await;
    }
    for client in clients {
        client.await.unwrap();
    }

    let conn = sea_orm::Database::connect(&database.url).await.unwrap();
    let orders: HashMap<String, (String, String)> = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT payment_intent_id, CAST(id AS TEXT) AS id, CAST(status AS TEXT) AS status FROM orders",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            (
                row.try_get::<String>("", "payment_intent_id").unwrap(),
                (row.try_get("", "id").unwrap(), row.try_get("", "status").unwrap()),
            )
        })
        .collect();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), total);
    let mut placed = 0;
    for (payment_intent, verdicts) in &seen {
        let order = orders.get(payment_intent);
        for verdict in verdicts {
            match verdict {
                Seen::Placed(id, status) => {
                    assert_eq!(
                        order,
                        Some(&(id.clone(), status.clone())),
                        "{payment_intent}: the order a client saw"
                    );
                }
                Seen::Accepted => assert!(order.is_some(), "{payment_intent}: accepted by the webhook, no order"),
                Seen::OutOfStock => {
                    assert!(
                        order.is_none_or(|(_, status)| status == "REJECTED"),
                        "{payment_intent}: refused, yet {order:?}"
                    );
                }
            }
        }
        placed += usize::from(order.is_some_and(|(_, status)| status == "PLACED"));
    }
    assert_nothing_half_written(&conn).await;
    let hot_left = scalar(&conn, "SELECT CAST(stocked_quantity AS BIGINT) FROM inventory_level l JOIN inventory_item i ON i.id = l.inventory_item_id WHERE i.sku = 'HOT'").await;
    assert_eq!(hot_left, 400 - placed as i64, "HOT units taken = placed orders");
    eprintln!(
        "kill -9: {ROUNDS} rounds, {total} PaymentIntents, {placed} placed, {} events, invariants hold",
        scalar(&conn, "SELECT COUNT(*) FROM inventory_event").await
    );
    conn.close().await.ok();
}

/// Cuts every connection to the test database and refuses new ones until `restore`.
struct Outage {
    admin: DatabaseConnection,
    name: String,
}

impl Outage {
    async fn begin(database: &EmptyDatabase) -> Outage {
        let (admin, name) = admin_connection(database).await;
        for sql in [
            format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
            format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
        ] {
            admin.execute_unprepared(&sql).await.unwrap();
        }
        Outage { admin, name }
    }

    async fn end(self) {
        self.admin
            .execute_unprepared(&format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true", self.name))
            .await
            .unwrap();
        self.admin.close().await.ok();
    }
}

/// Polls `check` until it holds; fails the test, naming `what`, after [`PATIENCE`].
pub(crate) async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_ready(server: &Server, status: u16) {
    eventually(&format!("/ready says {status}"), || async {
        server.get("/ready").await.0 == status
    })
    .await;
}

pub(crate) fn event_id(event: &Value) -> i64 {
    event["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_database_outage_fails_requests_fast_and_the_server_heals_by_itself() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let bounds = [
        ("STOCKROOM_DB_ACQUIRE_TIMEOUT_MS", "1000"),
        ("STOCKROOM_LOCK_TIMEOUT_MS", "1000"),
    ];
    let server = Server::start_shop(STOCKROOM, &database.url, &free_addr(), &bounds).await;
    let http = Http::new(&server);
    let channel = open_shop(&http, 100).await;
    let mut subscriber = WsClient::connect(server.socket_addr(), Some(SPAWNED_ADMIN_KEY))
        .await
        .unwrap();
    // From the start of the log: the subscription may start after the first commit.
    subscriber.subscribe("feed", json!({ "after": "0" })).await;
    assert!(matches!(
        place_until_answered(&http, "pi_before", channel).await,
        Seen::Placed(..)
    ));
    let first = event_id(&subscriber.next_event("feed").await);

    let outage = Outage::begin(&database).await;
    wait_for_ready(&server, 503).await;
    // Bounded by the settings (1 s to get a connection): well inside the client's patience.
    let (status, body) = tokio::time::timeout(Duration::from_secs(15), http.place_order("pi_during", channel))
        .await
        .expect("a request during the outage is answered, not left hanging")
        .unwrap();
    assert_eq!(code(&body), "LOCK_TIMEOUT", "{status}: {body}");
    assert!(
        body["errors"][0]["message"].as_str().unwrap().contains("unavailable"),
        "{body}"
    );
    let payload = paid("evt_during", "pi_during_webhook", channel, ORDER_LINES_METADATA);
    let (status, _) = tokio::time::timeout(Duration::from_secs(15), http.webhook(&payload))
        .await
        .expect("the webhook is answered during the outage")
        .unwrap();
    assert_eq!(status, 503, "Stripe must retry a delivery that met the outage");
    assert_eq!(server.get("/health").await.0, 200, "the process itself is alive");

    outage.end().await;
    wait_for_ready(&server, 200).await;
    assert!(matches!(
        place_until_answered(&http, "pi_after", channel).await,
        Seen::Placed(..)
    ));
    assert_eq!(
        deliver_until_accepted(&http, "evt_during", "pi_during_webhook", channel).await,
        Seen::Accepted
    );
    // The subscription opened before the outage carries on: the next events, no gap, no repeat.
    assert_eq!(event_id(&subscriber.next_event("feed").await), first + 1);
    assert_eq!(event_id(&subscriber.next_event("feed").await), first + 2);

    let conn = sea_orm::Database::connect(&database.url).await.unwrap();
    assert_eq!(
        scalar(
            &conn,
            "SELECT COUNT(*) FROM orders WHERE payment_intent_id = 'pi_during'"
        )
        .await,
        0
    );
    assert_nothing_half_written(&conn).await;
    conn.close().await.ok();
}

/// A connection to the server's `postgres` database beside `database`, and the name of
/// `database`: for what a test does to the test database from outside.
async fn admin_connection(database: &EmptyDatabase) -> (DatabaseConnection, String) {
    let (base, name) = database.url.rsplit_once('/').unwrap();
    let admin = sea_orm::Database::connect(format!("{base}/postgres")).await.unwrap();
    (admin, name.to_owned())
}

/// Ends every session of the test database, as a database restart or a proxy would; the
/// server's pools keep the cut connections until they try them.
async fn cut_connections(database: &EmptyDatabase) {
    let (admin, name) = admin_connection(database).await;
    let sessions = format!("FROM pg_stat_activity WHERE datname = '{name}'");
    let terminated = scalar(&admin, &format!("SELECT COUNT(pg_terminate_backend(pid)) {sessions}")).await;
    assert!(terminated > 0, "the server's pools held connections");
    eventually("the cut sessions are gone", || async {
        scalar(&admin, &format!("SELECT COUNT(*) {sessions}")).await == 0
    })
    .await;
    admin.close().await.ok();
}

/// A shop on a spawned server with one order placed, so that every pool holds a
/// connection; its client and channel.
async fn shop_with_an_order(database: &EmptyDatabase) -> (Server, Http, i32) {
    let server = Server::start_shop(STOCKROOM, &database.url, &free_addr(), &[]).await;
    let http = Http::new(&server);
    let channel = open_shop(&http, 100).await;
    let (_, body) = http.place_order("pi_before", channel).await.unwrap();
    assert!(body["data"]["placeOrder"]["id"].is_string(), "{body}");
    (server, http, channel)
}

#[tokio::test]
async fn connections_cut_while_idle_are_replaced_before_a_request_meets_them() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let (_server, http, channel) = shop_with_an_order(&database).await;
    cut_connections(&database).await;
    // Idle past the pools' threshold (`db::PING_IF_IDLE_FOR`, 1 s): the next checkout pings.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // The first try, not a retry: each cut connection is found and replaced at checkout.
    let (status, body) = http.place_order("pi_after", channel).await.unwrap();
    assert_eq!(status, 200);
    assert!(body["data"]["placeOrder"]["id"].is_string(), "{body}");
    let (status, body) = http.gql("{ stockLocations { id } }", json!({})).await.unwrap();
    assert_eq!(status, 200);
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn connections_cut_in_steady_use_fail_at_most_one_request_then_are_replaced() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let (_server, http, channel) = shop_with_an_order(&database).await;
    let list = || {
        let http = http.clone();
        async move { http.gql("{ stockLocations { id } }", json!({})).await.unwrap() }
    };
    // Concurrent queries, so that the query pool holds several connections, all in use
    // a moment ago (its pool hands them out in turn).
    for (status, body) in futures_util::future::join_all((0..8).map(|_| list())).await {
        assert_eq!(status, 200, "{body}");
    }
    cut_connections(&database).await;

    // At once, on connections used a moment ago: the first request may meet the cut. If it
    // does, it is a transient "unavailable" (retry), never INTERNAL, and it tells the pools
    // that every connection released before it is suspect: the rest find each cut
    // connection pinged and replaced.
    let mut failed = 0;
    for _ in 0..8 {
        let (status, body) = list().await;
        if body["errors"].is_null() {
            continue;
        }
        failed += 1;
        assert_eq!(code(&body), "LOCK_TIMEOUT", "{status}: {body}");
        assert!(
            body["errors"][0]["message"].as_str().unwrap().contains("unavailable"),
            "{body}"
        );
    }
    assert!(failed <= 1, "{failed} queries met a cut connection");
    let (status, body) = http.place_order("pi_after", channel).await.unwrap();
    assert_eq!(status, 200);
    assert!(body["data"]["placeOrder"]["id"].is_string(), "{body}");
}

/// Holds every stock level's row lock in a transaction of its own until dropped or
/// released, so that a placement waits in the middle of its transaction.
async fn lock_all_levels(database: &EmptyDatabase) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let conn = sea_orm::Database::connect(&database.url).await.unwrap();
    let txn = conn.begin().await.unwrap();
    txn.execute_unprepared("SELECT id FROM inventory_level FOR UPDATE")
        .await
        .unwrap();
    txn
}

/// Waits until some connection of the test database waits for a row lock.
async fn wait_for_lock_waiter(database: &EmptyDatabase) {
    let (admin, name) = admin_connection(database).await;
    let sql = format!("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{name}' AND wait_event_type = 'Lock'");
    eventually("the placement waits for the lock", || async {
        scalar(&admin, &sql).await > 0
    })
    .await;
    admin.close().await.ok();
}

/// Places an order for `payment_intent` that waits, mid-transaction, on every level's row
/// lock, held by the returned transaction; the task answers once the lock is let go.
async fn place_behind_a_held_lock(
    database: &EmptyDatabase,
    http: &Http,
    channel: i32,
    payment_intent: &str,
) -> (
    sea_orm::DatabaseTransaction,
    tokio::task::JoinHandle<Result<Answer, reqwest::Error>>,
) {
    let held = lock_all_levels(database).await;
    let placing = tokio::spawn({
        let (http, payment_intent) = (http.clone(), payment_intent.to_owned());
        async move { http.place_order(&payment_intent, channel).await }
    });
    wait_for_lock_waiter(database).await;
    (held, placing)
}

#[tokio::test]
async fn sigterm_finishes_work_in_flight_completes_subscriptions_and_exits_0() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let settings = [
        ("STOCKROOM_LOCK_TIMEOUT_MS", "60000"),
        ("STOCKROOM_SHUTDOWN_GRACE_MS", "60000"),
    ];
    let mut server = Server::start_shop(STOCKROOM, &database.url, &free_addr(), &settings).await;
    let http = Http::new(&server);
    let channel = open_shop(&http, 100).await;
    let mut subscriber = WsClient::connect(server.socket_addr(), Some(SPAWNED_ADMIN_KEY))
        .await
        .unwrap();
    subscriber.subscribe("feed", json!({})).await;

    let (held, in_flight) = place_behind_a_held_lock(&database, &http, channel, "pi_in_flight").await;
    server.terminate();

    // The subscription ends properly (`complete`, then a close frame), though a placement
    // is still running.
    let complete = subscriber.receive().await.expect("a message before the close");
    assert_eq!(complete, json!({ "type": "complete", "id": "feed" }));
    assert_eq!(subscriber.receive().await, None, "then the socket is closed");
    // No new connections once the signal arrived.
    eventually("new connections are refused", || async {
        tokio::net::TcpStream::connect(&server.addr).await.is_err()
    })
    .await;

    held.commit().await.unwrap();
    let (status, body) = in_flight.await.unwrap().expect("the request in flight got its answer");
    assert!(body["data"]["placeOrder"]["id"].is_string(), "{status}: {body}");
    let exit = server.exit_status(PATIENCE).await;
    assert!(exit.success(), "drained within the grace period, so exit 0: {exit}");
    let conn = sea_orm::Database::connect(&database.url).await.unwrap();
    assert_eq!(
        scalar(
            &conn,
            "SELECT COUNT(*) FROM orders WHERE payment_intent_id = 'pi_in_flight'"
        )
        .await,
        1
    );
    assert_nothing_half_written(&conn).await;
    conn.close().await.ok();
}

#[tokio::test]
async fn a_drain_that_outlasts_the_grace_period_stops_anyway_and_says_so() {
    let Some(database) = EmptyDatabase::postgres().await else {
        return;
    };
    let settings = [
        ("STOCKROOM_LOCK_TIMEOUT_MS", "60000"),
        ("STOCKROOM_SHUTDOWN_GRACE_MS", "300"),
    ];
    let mut server = Server::start_shop(STOCKROOM, &database.url, &free_addr(), &settings).await;
    let http = Http::new(&server);
    let channel = open_shop(&http, 100).await;
    let (held, stuck) = place_behind_a_held_lock(&database, &http, channel, "pi_stuck").await;
    server.terminate();
    let exit = server.exit_status(PATIENCE).await;
    assert!(!exit.success(), "stopped with work in flight: not a clean exit");
    assert!(stuck.await.unwrap().is_err(), "the stuck request got no answer");
    held.rollback().await.unwrap();
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(logs.contains("STOCKROOM_SHUTDOWN_GRACE_MS"), "{logs}");
    let conn = sea_orm::Database::connect(&database.url).await.unwrap();
    assert_eq!(
        scalar(&conn, "SELECT COUNT(*) FROM orders").await,
        0,
        "the cut-off order left nothing"
    );
    conn.close().await.ok();
}

/// The database URLs to run a spawned-server test on: a SQLite file, and PostgreSQL if reachable.
async fn both_engines() -> Vec<(String, Box<dyn std::any::Any + Send>)> {
    let file = SqliteFile::new();
    let mut engines: Vec<(String, Box<dyn std::any::Any + Send>)> = vec![(file.url(), Box::new(file))];
    if let Some(database) = EmptyDatabase::postgres().await {
        engines.push((database.url.clone(), Box::new(database)));
    }
    engines
}

#[tokio::test]
async fn hostile_requests_get_clear_errors_while_orders_go_on() {
    for (url, _database) in both_engines().await {
        let server = Server::start_shop(STOCKROOM, &url, &free_addr(), &[]).await;
        let http = Http::new(&server);
        let channel = open_shop(&http, 1_000_000).await;
        let stop = Arc::new(AtomicBool::new(false));
        let shoppers: Vec<_> = (0..4)
            .map(|shopper| {
                let (http, stop) = (http.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut placed = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let pi = format!("pi_normal_{shopper}_{placed}");
                        let (status, body) = http.place_order(&pi, channel).await.unwrap();
                        assert!(body["data"]["placeOrder"]["id"].is_string(), "{status}: {body}");
                        placed += 1;
                    }
                    placed
                })
            })
            .collect();

        let huge = "x".repeat(200_000);
        let aliases: String = (0..10_000).map(|n| format!("a{n}: stockLocations {{ id }} ")).collect();
        let mut hostile: Vec<(&str, Value)> = vec![
            ("10,000 aliases", json!({ "query": format!("{{ {aliases} }}") })),
            (
                "a fragment cycle",
                json!({ "query": "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }" }),
            ),
            (
                "a wrong type",
                json!({ "query": PLACE_ORDER, "variables": { "pi": "pi_x", "c": channel.to_string(), "lines": [{ "sku": "HOT", "quantity": "ten" }] } }),
            ),
            (
                "a batch of 1,000 operations",
                Value::Array(vec![json!({ "query": "{ stockLocations { id } }" }); 1000]),
            ),
        ];
        let huge_inputs = [
            (
                "a huge sku",
                PLACE_ORDER,
                json!({ "pi": "pi_huge_sku", "c": channel.to_string(), "lines": [{ "sku": huge, "quantity": 1 }] }),
            ),
            (
                "a huge paymentIntentId",
                PLACE_ORDER,
                json!({ "pi": huge, "c": channel.to_string(), "lines": order_lines() }),
            ),
            (
                "a huge name",
                "mutation($n: String!) { createStockLocation(input: { name: $n }) { id } }",
                json!({ "n": huge }),
            ),
            (
                "a huge reservation key",
                "mutation($k: String!, $c: ID!) { reserveStock(input: { key: $k, salesChannelId: $c, lines: [{ sku: \"HOT\", quantity: 1 }] }) { id } }",
                json!({ "k": huge, "c": channel.to_string() }),
            ),
            (
                "a huge API key name",
                "mutation($n: String!) { createApiKey(input: { name: $n, role: READ }) { secret } }",
                json!({ "n": huge }),
            ),
        ];
        for (what, query, variables) in huge_inputs {
            hostile.push((what, json!({ "query": query, "variables": variables })));
        }
        for (what, body) in hostile {
            let (status, answer) = http.post_graphql(body, Some(SPAWNED_ADMIN_KEY)).await.unwrap();
            let brief = brief(&answer);
            assert!((200..500).contains(&status), "{what}: {status} {brief}");
            assert_eq!(code(&answer), "BAD_USER_INPUT", "{what}: {status} {brief}");
            assert!(
                answer["data"]
                    .as_object()
                    .is_none_or(|data| data.values().all(Value::is_null)),
                "{what}: {brief}"
            );
        }
        // A sku no item can have is simply unknown to a storefront, like any other.
        let unknown = http
            .data(
                "query($c: ID!, $s: [String!]!) { availability(salesChannelId: $c, skus: $s) { available } }",
                json!({ "c": channel.to_string(), "s": [huge] }),
            )
            .await;
        assert_eq!(unknown["availability"][0]["available"], 0);
        assert_eq!(server.get("/health").await.0, 200);
        stop.store(true, Ordering::SeqCst);
        let mut placed = 0;
        for shopper in shoppers {
            placed += shopper.await.unwrap();
        }
        assert!(placed > 0, "the normal load went on beside the hostile one");
        let locations = http.data("{ stockLocations { name } }", json!({})).await;
        assert_eq!(
            locations["stockLocations"].as_array().unwrap().len(),
            1,
            "nothing half-written"
        );
    }
}

/// `/metrics` parsed as Prometheus text: value of each sample by name and sorted labels.
async fn scrape(server: &Server) -> HashMap<String, f64> {
    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200);
    let parsed =
        prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("valid Prometheus text");
    parsed
        .samples
        .into_iter()
        .filter_map(|sample| {
            let mut labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(buckets) => {
                    // One entry per histogram: its total count (the +Inf bucket).
                    buckets.iter().map(|bucket| bucket.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => return None,
            };
            Some((format!("{}{{{}}}", sample.metric, labels.join(",")), value))
        })
        .collect()
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_what_happens() {
    let file = SqliteFile::new();
    let server = Server::start_shop(STOCKROOM, &file.url(), &free_addr(), &[]).await;
    let http = Http::new(&server);
    let channel = open_shop(&http, 1).await;
    let before = scrape(&server).await;
    assert!(matches!(
        place_until_answered(&http, "pi_metrics_1", channel).await,
        Seen::Placed(..)
    ));
    assert_eq!(
        place_until_answered(&http, "pi_metrics_2", channel).await,
        Seen::OutOfStock
    );
    assert_eq!(
        deliver_until_accepted(&http, "evt_m", "pi_metrics_3", channel).await,
        Seen::Accepted
    );
    let after = scrape(&server).await;
    let moved = |series: &str| {
        let value = |scrape: &HashMap<String, f64>| scrape.get(series).copied().unwrap_or(0.0);
        assert!(
            after.contains_key(series),
            "{series} missing; have {:?}",
            after.keys().collect::<Vec<_>>()
        );
        value(&after) - value(&before)
    };
    assert_eq!(moved("stockroom_orders_total{outcome=placed,reason=none}"), 1.0);
    assert_eq!(moved("stockroom_orders_total{outcome=failed,reason=OUT_OF_STOCK}"), 1.0);
    assert_eq!(
        moved("stockroom_orders_total{outcome=rejected,reason=OUT_OF_STOCK}"),
        1.0
    );
    assert_eq!(
        moved("stockroom_webhook_deliveries_total{result=processed,type=payment_intent.succeeded}"),
        1.0
    );
    assert_eq!(
        moved("stockroom_graphql_request_duration_seconds{operation=Place,outcome=ok}"),
        1.0
    );
    assert_eq!(
        moved("stockroom_graphql_request_duration_seconds{operation=Place,outcome=OUT_OF_STOCK}"),
        1.0
    );
    assert!(moved("stockroom_lock_wait_seconds{}") >= 2.0);
    assert!(moved("stockroom_combined_batch_size{write=order}") >= 1.0);
    assert!(
        moved("stockroom_event_feed_delay_seconds{}") >= 1.0,
        "the backorder reached the feed"
    );
    assert_eq!(after["stockroom_db_pool_max_connections{}"], 20.0);
    assert!(after.contains_key("stockroom_db_pool_connections{state=in_use}"));
    assert_eq!(after["stockroom_db_pool_waiting{}"], 0.0);
    assert_eq!(after["stockroom_event_subscribers{}"], 0.0);
    assert_eq!(after["stockroom_refunds_failed{}"], 0.0);
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_operation_and_never_the_key() {
    let file = SqliteFile::new();
    let logging = [("STOCKROOM_LOG_FORMAT", "json"), ("RUST_LOG", "info,tower_http=debug")];
    let server = Server::start_shop(STOCKROOM, &file.url(), &free_addr(), &logging).await;
    let client = reqwest::Client::new();
    let send = |request_id: Option<&str>| {
        let mut request = client
            .post(format!("{}/graphql", server.url()))
            .bearer_auth(SPAWNED_ADMIN_KEY)
            .header("content-type", "application/json")
            .body(json!({ "query": "query Stock { stockLocations { id } }" }).to_string());
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let given = send(Some("req-from-the-proxy")).await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "req-from-the-proxy", "echoed back");
    let made = send(None).await.unwrap();
    let made_id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        uuid::Uuid::parse_str(&made_id).is_ok(),
        "a new id when none was given: {made_id}"
    );

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let records: Vec<Value> = loop {
        let records: Vec<Value> = server
            .logs
            .lock()
            .unwrap()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}")))
            .collect();
        let about = |id: &str| records.iter().any(|record| record["span"]["request_id"] == id);
        if about("req-from-the-proxy") && about(&made_id) {
            break records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log record of the requests: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let record = records
        .iter()
        .find(|record| record["span"]["request_id"] == "req-from-the-proxy" && record["status"] == 200)
        .expect("the response's record");
    assert_eq!(record["span"]["operation"], "Stock", "{record}");
    assert!(
        record["level"].is_string() && record["timestamp"].is_string(),
        "{record}"
    );
    let everything = server.logs.lock().unwrap().join("\n");
    assert!(!everything.contains(SPAWNED_ADMIN_KEY), "a key reached the logs");
}
