use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, body::Body, http::Request, routing::post};
use serde_json::{Value, json};
use stockroom::Config;
use stockroom_test_support::{
    app::TestApp,
    chaos::ChaosProxy,
    racing::{on_each_backend_with, race},
};
use stripe_webhook::Webhook;
use tokio::net::TcpListener;

const SECRET: &str = "whsec_test_current";
const OLD_SECRET: &str = "whsec_test_previous";

fn with_webhook_secrets(config: &mut Config) {
    config.stripe_webhook_secret = vec![SECRET.parse().unwrap(), OLD_SECRET.parse().unwrap()];
}

/// A `payment_intent.succeeded` event as Stripe sends it, for `payment_intent` with `metadata`.
fn event(event_id: &str, event_type: &str, payment_intent: &str, metadata: Value) -> String {
    let mut event: Value = serde_json::from_str(include_str!("fixtures/payment_intent_succeeded.json")).unwrap();
    event["id"] = json!(event_id);
    event["type"] = json!(event_type);
    event["created"] = json!(chrono::Utc::now().timestamp());
    event["data"]["object"]["id"] = json!(payment_intent);
    event["data"]["object"]["metadata"] = metadata;
    event.to_string()
}

/// A `payment_intent.succeeded` for a checkout of `lines` (JSON) through `channel`.
pub(crate) fn paid(event_id: &str, payment_intent: &str, channel: i32, lines: &str) -> String {
    event(
        event_id,
        "payment_intent.succeeded",
        payment_intent,
        checkout(channel, lines),
    )
}

fn checkout(channel: i32, lines: &str) -> Value {
    json!({ "sales_channel_id": channel.to_string(), "lines": lines })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Delivers `payload` with the given `Stripe-Signature` header (if any); returns the status.
async fn deliver(app: &TestApp, payload: impl Into<Body>, signature: Option<String>) -> u16 {
    let mut request = Request::post("/webhooks/stripe").header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    app.client().send(request.body(payload.into()).unwrap()).await.0
}

/// Delivers `payload` signed exactly as Stripe signs it, with `secret`.
async fn deliver_signed(app: &TestApp, payload: &str, secret: &str) -> u16 {
    deliver(
        app,
        payload.to_owned(),
        Some(Webhook::generate_test_header(payload, secret, Some(now()))),
    )
    .await
}

async fn order_status(app: &TestApp, payment_intent: &str) -> Value {
    let query = "query($pi: String!) { orderByPaymentIntent(paymentIntentId: $pi) {
        status rejectionReason refundId refundError lines { sku quantity } } }";
    app.gql(query, json!({ "pi": payment_intent })).await.data()["orderByPaymentIntent"].clone()
}

/// The one-location shop with `A-1` stocked `stock`; returns (location, channel).
async fn shop(app: &TestApp, stock: i32) -> (i32, i32) {
    let (location, channel) = app.one_location_shop().await;
    app.item("A-1").level(location, stock).await;
    (location, channel)
}

#[tokio::test]
async fn a_paid_checkout_becomes_one_order_even_when_delivered_ten_times_at_once() {
    on_each_backend_with(with_webhook_secrets, |app| async move {
        let (location, channel) = shop(&app, 5).await;
        let payload = paid("evt_1", "pi_1", channel, r#"[{"sku":"A-1","quantity":2}]"#);
        let app = Arc::new(app);
        let statuses = race(10, |_| {
            let (app, payload) = (app.clone(), payload.clone());
            async move { deliver_signed(&app, &payload, SECRET).await }
        })
        .await;
        assert_eq!(statuses, [200; 10]);
        assert_eq!(app.count("orders").await, 1);
        assert_eq!(app.count("stripe_event").await, 1);
        assert_eq!(app.level("A-1", location).await.stocked_quantity, 3);
        assert_eq!(order_status(&app, "pi_1").await["status"], "PLACED");
    })
    .await;
}

#[tokio::test]
async fn five_different_events_for_one_payment_intent_make_one_order() {
    on_each_backend_with(with_webhook_secrets, |app| async move {
        let (location, channel) = shop(&app, 5).await;
        for index in 0..5 {
            let payload = paid(
                &format!("evt_{index}"),
                "pi_1",
                channel,
                r#"[{"sku":"A-1","quantity":1}]"#,
            );
            assert_eq!(deliver_signed(&app, &payload, SECRET).await, 200);
        }
        assert_eq!(app.count("orders").await, 1);
        assert_eq!(app.level("A-1", location).await.stocked_quantity, 4);
    })
    .await;
}

#[tokio::test]
async fn unsigned_stale_or_tampered_deliveries_are_refused_and_store_nothing() {
    on_each_backend_with(with_webhook_secrets, |app| async move {
        let (_, channel) = shop(&app, 5).await;
        let payload = paid("evt_1", "pi_1", channel, r#"[{"sku":"A-1","quantity":1}]"#);
        let sign = |body: &str, secret: &str, at: i64| Some(Webhook::generate_test_header(body, secret, Some(at)));
        let valid = sign(&payload, SECRET, now()).unwrap();
        let timestamp_only = valid.split(',').next().unwrap().to_owned();
        let tampered = payload.replace("\"quantity\\\":1", "\"quantity\\\":9");
        assert_ne!(tampered, payload);
        let cases: Vec<(&str, String, Option<String>)> = vec![
            ("wrong secret", payload.clone(), sign(&payload, "whsec_wrong", now())),
            ("no header", payload.clone(), None),
            ("header without v1", payload.clone(), Some(timestamp_only)),
            ("10 minutes old", payload.clone(), sign(&payload, SECRET, now() - 600)),
            ("10 minutes ahead", payload.clone(), sign(&payload, SECRET, now() + 600)),
            ("changed after signing", tampered, Some(valid.clone())),
            ("not JSON", "not json".into(), sign("not json", SECRET, now())),
            ("empty body", String::new(), sign("", SECRET, now())),
        ];
        for (case, body, signature) in cases {
            let status = deliver(&app, body, signature).await;
            assert_eq!(status, 400, "{case}");
        }
        let huge = "x".repeat(2 * 1024 * 1024);
        let status = deliver(&app, huge.clone(), sign(&huge, SECRET, now())).await;
        assert_eq!(status, 413, "a 2 MiB body is too large");
        assert_eq!(app.count("orders").await, 0);
        assert_eq!(app.count("stripe_event").await, 0);
    })
    .await;
}

#[tokio::test]
async fn the_previous_secret_of_a_rotation_is_still_accepted() {
    on_each_backend_with(with_webhook_secrets, |app| async move {
        let (_, channel) = shop(&app, 5).await;
        let payload = paid("evt_1", "pi_1", channel, r#"[{"sku":"A-1","quantity":1}]"#);
        assert_eq!(deliver_signed(&app, &payload, OLD_SECRET).await, 200);
        assert_eq!(order_status(&app, "pi_1").await["status"], "PLACED");
    })
    .await;
}

#[tokio::test]
async fn other_event_types_are_acknowledged_and_ignored() {
    on_each_backend_with(with_webhook_secrets, |app| async move {
        let (_, channel) = shop(&app, 5).await;
        let payload = event(
            "evt_1",
            "payment_intent.created",
            "pi_1",
            checkout(channel, r#"[{"sku":"A-1","quantity":1}]"#),
        );
        assert_eq!(deliver_signed(&app, &payload, SECRET).await, 200);
        assert_eq!(app.count("orders").await, 0);
    })
    .await;
}

/// A stand-in for the Stripe API's `POST /v1/refunds`, counting what it is asked.
struct FakeStripe {
    base_url: String,
    refund_requests: Arc<Mutex<Vec<(String, String)>>>,
    failing: Arc<AtomicBool>,
}

impl FakeStripe {
    async fn start(fail: bool) -> FakeStripe {
        let refund_requests: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let requests = refund_requests.clone();
        let failing = Arc::new(AtomicBool::new(fail));
        let fails = failing.clone();
        let app = Router::new().route(
            "/v1/refunds",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let (requests, fails) = (requests.clone(), fails.clone());
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    requests.lock().unwrap().push((key.to_owned(), body.clone()));
                    if fails.load(Ordering::SeqCst) {
                        let error =
                            json!({ "error": { "type": "api_error", "message": "Stripe is having a bad day" } });
                        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(error));
                    }
                    let refund = json!({
                        "id": "re_3QxYzAbCdEfGhIjK0uVwXyZa", "object": "refund", "amount": 4990,
                        "balance_transaction": "txn_3QxYzAbCdEfGhIjK0bCdEfGh", "charge": "ch_3QxYzAbCdEfGhIjK0nOpQrSt",
                        "created": 1795000100, "currency": "eur", "destination_details": null, "metadata": {},
                        "payment_intent": "pi_1", "reason": null, "receipt_number": null,
                        "source_transfer_reversal": null, "status": "succeeded", "transfer_reversal": null
                    });
                    (axum::http::StatusCode::OK, axum::Json(refund))
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakeStripe {
            base_url,
            refund_requests,
            failing,
        }
    }

    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.refund_requests.lock().unwrap().clone()
    }
}

fn with_refunds_at(stripe: &FakeStripe) -> impl Fn(&mut Config) + use<> {
    let base = stripe.base_url.clone();
    move |config: &mut Config| {
        with_webhook_secrets(config);
        config.stripe_secret_key = Some("sk_test_fake".parse().unwrap());
        config.stripe_api_base = Some(base.clone());
    }
}

#[tokio::test]
async fn an_unplaceable_payment_is_rejected_and_refunded_exactly_once() {
    let stripe = FakeStripe::start(false).await;
    on_each_backend_with(with_refunds_at(&stripe), |app| {
        let stripe = &stripe;
        async move {
            let before = stripe.requests().len();
            let (location, channel) = shop(&app, 1).await;
            let payload = paid("evt_1", "pi_1", channel, r#"[{"sku":"A-1","quantity":3}]"#);
            for _ in 0..3 {
                assert_eq!(deliver_signed(&app, &payload, SECRET).await, 200);
            }
            let other_event = paid("evt_2", "pi_1", channel, r#"[{"sku":"A-1","quantity":3}]"#);
            assert_eq!(deliver_signed(&app, &other_event, SECRET).await, 200);

            let order = order_status(&app, "pi_1").await;
            assert_eq!(order["status"], "REJECTED");
            assert!(
                order["rejectionReason"]
                    .as_str()
                    .unwrap()
                    .contains("not enough stock for sku A-1"),
                "{order}"
            );
            assert_eq!(order["lines"], json!([{ "sku": "A-1", "quantity": 3 }]));
            assert_eq!(order["refundId"], "re_3QxYzAbCdEfGhIjK0uVwXyZa");
            assert_eq!(app.level("A-1", location).await.stocked_quantity, 1, "stock unchanged");
            let requests = stripe.requests()[before..].to_vec();
            assert_eq!(
                requests.len(),
                1,
                "one refund request per rejected PaymentIntent: {requests:?}"
            );
            assert_eq!(requests[0].0, "stockroom-refund-pi_1");
            assert!(requests[0].1.contains("payment_intent=pi_1"), "{}", requests[0].1);
        }
    })
    .await;
}

#[tokio::test]
async fn a_failed_refund_is_recorded_and_retried_until_stripe_accepts_it() {
    let stripe = FakeStripe::start(true).await;
    on_each_backend_with(with_refunds_at(&stripe), |app| {
        let stripe = &stripe;
        async move {
            stripe.set_failing(true);
            let before = stripe.requests().len();
            let payload = event("evt_1", "payment_intent.succeeded", "pi_1", json!({ "lines": "[]" }));
            assert_eq!(
                deliver_signed(&app, &payload, SECRET).await,
                200,
                "a failed refund still answers 200"
            );
            let order = order_status(&app, "pi_1").await;
            assert_eq!(order["status"], "REJECTED");
            assert!(
                order["rejectionReason"]
                    .as_str()
                    .unwrap()
                    .contains("sales_channel_id is missing"),
                "{order}"
            );
            assert!(
                order["refundError"].as_str().unwrap().contains("refund request failed"),
                "{order}"
            );
            assert_eq!(order["refundId"], Value::Null);

            stripe.set_failing(false);
            let retry = || stockroom::stripe::payments::retry_refunds(app.db(), &app.state().refunds);
            assert_eq!(retry().await.unwrap(), Some(1));
            let order = order_status(&app, "pi_1").await;
            assert_eq!(order["refundId"], "re_3QxYzAbCdEfGhIjK0uVwXyZa");
            assert_eq!(order["refundError"], Value::Null);
            assert_eq!(retry().await.unwrap(), Some(0), "nothing left to retry");
            let keys: Vec<String> = stripe.requests()[before..].iter().map(|(key, _)| key.clone()).collect();
            assert_eq!(
                keys,
                ["stockroom-refund-pi_1", "stockroom-refund-pi_1"],
                "one idempotency key throughout"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_database_outage_answers_503_and_the_retry_places_the_order_once() {
    let proxy = ChaosProxy::start().await;
    let configure = |config: &mut Config| {
        with_webhook_secrets(config);
        config.db_acquire_timeout_ms = 500;
    };
    let Some(app) = TestApp::postgres_through(&proxy, configure).await else {
        return;
    };
    let (location, channel) = shop(&app, 5).await;
    let payload = paid("evt_1", "pi_1", channel, r#"[{"sku":"A-1","quantity":2}]"#);

    proxy.break_database();
    assert_eq!(deliver_signed(&app, &payload, SECRET).await, 503);
    proxy.restore_database();

    assert_eq!(deliver_signed(&app, &payload, SECRET).await, 200);
    assert_eq!(deliver_signed(&app, &payload, SECRET).await, 200);
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.level("A-1", location).await.stocked_quantity, 3);
}

#[tokio::test]
async fn a_payment_with_a_reservation_key_commits_the_checkouts_reservation() {
    on_each_backend_with(with_webhook_secrets, |app| async move {
        let (location, channel) = shop(&app, 3).await;
        let reserve = "mutation($c: ID!) { reserveStock(input: { key: \"cart-9\", salesChannelId: $c,
            lines: [{ sku: \"A-1\", quantity: 3 }] }) { id } }";
        let held = app.gql(reserve, json!({ "c": channel.to_string() })).await;
        let id = held.data()["reserveStock"]["id"].clone();
        let mut metadata = checkout(channel, r#"[{"sku":"A-1","quantity":3}]"#);
        metadata["reservation_key"] = json!("cart-9");
        let payload = event("evt_1", "payment_intent.succeeded", "pi_1", metadata);
        assert_eq!(deliver_signed(&app, &payload, SECRET).await, 200);
        assert_eq!(order_status(&app, "pi_1").await["status"], "PLACED");
        let level = app.level("A-1", location).await;
        assert_eq!((level.stocked_quantity, level.reserved_quantity), (0, 0));
        let status = app
            .gql(
                "query($id: ID!) { reservation(id: $id) { status } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(status.data()["reservation"]["status"], "COMMITTED");
    })
    .await;
}

#[tokio::test]
async fn a_signed_event_the_stripe_sdk_cannot_parse_still_places_the_order() {
    on_each_backend_with(with_webhook_secrets, |app| async move {
        let (location, channel) = shop(&app, 5).await;
        let mut trimmed: Value =
            serde_json::from_str(&paid("evt_1", "pi_1", channel, r#"[{"sku":"A-1","quantity":2}]"#)).unwrap();
        // Fields async-stripe's typed PaymentIntent requires; an API version without them
        // (or a hand-made test event) must not cost a paid order.
        for field in ["amount", "amount_capturable", "currency", "status"] {
            trimmed["data"]["object"].as_object_mut().unwrap().remove(field);
        }
        trimmed.as_object_mut().unwrap().remove("livemode");
        let payload = trimmed.to_string();
        assert!(Webhook::insecure(&payload).is_err(), "the SDK's typed parse refuses it");
        assert_eq!(deliver_signed(&app, &payload, SECRET).await, 200);
        assert_eq!(order_status(&app, "pi_1").await["status"], "PLACED");
        assert_eq!(app.level("A-1", location).await.stocked_quantity, 3);
    })
    .await;
}

#[tokio::test]
async fn a_stored_refund_id_is_never_overwritten_by_a_late_failure() {
    use stockroom::inventory::{
        orders::{self, RejectedOrder},
        values::PaymentIntentId,
    };
    on_each_backend_with(with_webhook_secrets, |app| async move {
        let rejected = RejectedOrder {
            payment_intent_id: PaymentIntentId::parse("pi_1").unwrap(),
            sales_channel_id: None,
            shipping_option_id: None,
            lines: Vec::new(),
            reservation_key: None,
            reason: stockroom::error::Error::bad_input("metadata.lines is missing"),
        };
        let order = app
            .db()
            .write(&rejected, |txn, rejected| {
                Box::pin(orders::reject_order_in(txn, rejected))
            })
            .await
            .unwrap()
            .order;
        // Two processes retry the same refund; one succeeds, the other's attempt fails late.
        orders::record_refund(app.db(), order.id, &Ok("re_1".into()))
            .await
            .unwrap();
        orders::record_refund(app.db(), order.id, &Err("connection reset".into()))
            .await
            .unwrap();
        let order = order_status(&app, "pi_1").await;
        assert_eq!(
            (&order["refundId"], &order["refundError"]),
            (&json!("re_1"), &Value::Null)
        );
    })
    .await;
}

#[tokio::test]
async fn a_rejected_paid_order_releases_its_checkouts_reservation() {
    on_each_backend_with(with_webhook_secrets, |app| async move {
        let (location, channel) = shop(&app, 3).await;
        let reserve = "mutation($c: ID!) { reserveStock(input: { key: \"cart-9\", salesChannelId: $c,
            lines: [{ sku: \"A-1\", quantity: 2 }] }) { id } }";
        let held = app.gql(reserve, json!({ "c": channel.to_string() })).await;
        let id = held.data()["reserveStock"]["id"].clone();
        // The checkout paid for a sku that no longer exists: the order cannot be placed.
        let mut metadata = checkout(channel, r#"[{"sku":"A-1","quantity":2},{"sku":"GONE","quantity":1}]"#);
        metadata["reservation_key"] = json!("cart-9");
        let payload = event("evt_1", "payment_intent.succeeded", "pi_1", metadata);
        assert_eq!(deliver_signed(&app, &payload, SECRET).await, 200);
        assert_eq!(order_status(&app, "pi_1").await["status"], "REJECTED");
        let status = app
            .gql(
                "query($id: ID!) { reservation(id: $id) { status } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(status.data()["reservation"]["status"], "RELEASED");
        let level = app.level("A-1", location).await;
        assert_eq!((level.stocked_quantity, level.reserved_quantity), (3, 0));
        app.assert_ledger_matches_levels().await;
    })
    .await;
}
