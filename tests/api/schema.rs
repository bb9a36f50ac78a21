use axum::{body::Body, http::Request};
use serde_json::json;
use stockroom_test_support::{
    app::{APP_ADMIN_KEY, TestApp},
    chaos::ChaosProxy,
    fixtures::{PLACE_ORDER_ID, place_order_variables},
    racing::on_each_backend,
};

#[test]
fn schema_file_matches_the_served_schema() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).expect("schema.graphql exists");
    assert!(
        committed == stockroom::graphql::sdl(),
        "schema.graphql is out of date: run `cargo run -q -- schema > schema.graphql`"
    );
}

#[tokio::test]
async fn overly_deep_queries_are_refused() {
    on_each_backend(|app| async move {
        let deep = format!(
            "{{ stockLocations {} name {} }}",
            "{ levels { location ".repeat(9),
            "} } ".repeat(9)
        );
        let response = app.gql(&deep, json!({})).await;
        let message = response.0["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("nested too deep"),
            "expected a depth error, got {}",
            response.0
        );
    })
    .await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    on_each_backend(|app| async move {
        let (status, _) = app
            .client()
            .send(Request::get("/health").body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, 200);
        let (status, _) = app
            .client()
            .send(Request::get("/ready").body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, 200);
        let (status, body) = app
            .client()
            .send(
                Request::get("/graphql")
                    .header("accept", "text/html")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, 200);
        assert!(
            String::from_utf8_lossy(&body).contains("graphiql"),
            "GraphiQL page expected"
        );
    })
    .await;
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_format() {
    on_each_backend(|app| async move {
        let (location, channel) = app.one_location_shop().await;
        app.item("M-1").level(location, 1).await;
        let variables = place_order_variables("pi_metrics", channel, &[("M-1", 1)]);
        app.gql(PLACE_ORDER_ID, variables).await.data();
        let (status, body) = app
            .client()
            .send(Request::get("/metrics").body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("stockroom_orders_total{outcome=\"placed\",reason=\"none\"}"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn queries_work_over_get_but_mutations_need_post() {
    on_each_backend(|app| async move {
        let get = |query: &str| {
            let uri = format!("/graphql?query={}", query.replace(' ', "%20").replace('"', "%22"));
            Request::get(uri)
                .header("authorization", format!("Bearer {APP_ADMIN_KEY}"))
                .body(Body::empty())
                .unwrap()
        };
        let (status, body) = app.client().send(get("{ stockLocations { id } }")).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let (status, _) = app
            .client()
            .send(get("mutation { createStockLocation(input: { name: \"X\" }) { id } }"))
            .await;
        assert_eq!(status, 405);
        // The same with a document the server has kept parsed from an earlier POST.
        let create = "mutation Create($n: String!) { createStockLocation(input: { name: $n }) { id } }";
        let posted = app.client().gql(create, serde_json::json!({ "n": "Kept" })).await;
        assert!(posted.data()["createStockLocation"]["id"].is_string(), "{posted:?}");
        let uri = format!(
            "{}&variables=%7B%22n%22%3A%22Y%22%7D",
            get(create).uri().to_string().replace('$', "%24")
        );
        let request = Request::get(uri)
            .header("authorization", format!("Bearer {APP_ADMIN_KEY}"))
            .body(Body::empty())
            .unwrap();
        let (status, _) = app.client().send(request).await;
        assert_eq!(status, 405);
        assert_eq!(app.count("stock_location").await, 1);
    })
    .await;
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let proxy = ChaosProxy::start().await;
    let Some(app) = TestApp::postgres_through(&proxy, |config| config.db_acquire_timeout_ms = 500).await else {
        return;
    };
    let ready = || Request::get("/ready").body(Body::empty()).unwrap();
    assert_eq!(app.client().send(ready()).await.0, 200);
    proxy.break_database();
    assert_eq!(app.client().send(ready()).await.0, 503);
    let query = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {APP_ADMIN_KEY}"))
        .body(Body::from(json!({ "query": "{ stockLocations { id } }" }).to_string()))
        .unwrap();
    let (status, body) = app.client().send(query).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["errors"][0]["extensions"]["code"]),
        (503, &json!("LOCK_TIMEOUT")),
        "an outage is a 503: {body}"
    );
    proxy.restore_database();
    assert_eq!(app.client().send(ready()).await.0, 200);
    assert_eq!(
        app.client()
            .send(Request::get("/health").body(Body::empty()).unwrap())
            .await
            .0,
        200
    );
}
