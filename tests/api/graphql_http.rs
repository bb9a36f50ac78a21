//! GraphQL over HTTP: request limits, content types, and graphql-http's conformance audit.

use axum::{body::Body, http::Request};
use serde_json::{Value, json};
use stockroom_test_support::{
    app::TestApp,
    node::{node_tool_installed, run_node},
    racing::on_each_backend_with,
};

fn post(body: impl Into<Body>, content_type: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/graphql");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.body(body.into()).unwrap()
}

fn json_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(bytes)))
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413_before_parsing() {
    let app = TestApp::sqlite_with(|config| config.max_body_bytes = 4096).await;
    let client = app.client().anonymous();
    let padding = " ".repeat(8 * 1024);
    let body = format!(r#"{{"query":"{{ __typename }}"{padding}}}"#);
    let (status, answer) = client.send(post(body, Some("application/json"))).await;
    assert_eq!(status, 413);
    assert!(
        json_body(&answer)["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("STOCKROOM_MAX_BODY_BYTES")
    );
    let (status, _) = client
        .send(post(r#"{"query":"{ __typename }"}"#, Some("application/json")))
        .await;
    assert_eq!(status, 200, "a body within the limit is served");

    // The default limit (1 MiB) holds without any setting.
    let app = TestApp::sqlite_with(|_| {}).await;
    let huge = format!(
        r#"{{"query":"{{ __typename }}","x":"{}"}}"#,
        "x".repeat(8 * 1024 * 1024)
    );
    let (status, _) = app
        .client()
        .anonymous()
        .send(post(huge, Some("application/json")))
        .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn only_json_bodies_are_read() {
    let app = TestApp::sqlite_with(|_| {}).await;
    let client = app.client().anonymous();
    let query = r#"{"query":"{ __typename }"}"#;
    let multipart = "multipart/form-data; boundary=x";
    for content_type in [None, Some("text/plain"), Some(multipart), Some("application/graphql")] {
        let (status, _) = client.send(post(query, content_type)).await;
        assert_eq!(status, 415, "{content_type:?}");
    }
    let (status, answer) = client.send(post(query, Some("Application/JSON; charset=utf-8"))).await;
    assert_eq!(
        (status, json_body(&answer)),
        (200, json!({ "data": { "__typename": "Query" } }))
    );
    let (status, _) = client
        .send(post(r#"[{"query":"{ __typename }"}]"#, Some("application/json")))
        .await;
    assert_eq!(status, 400, "batches are refused");
}

#[tokio::test]
async fn a_request_costs_in_proportion_to_its_lists_so_a_thousand_aliased_checks_are_refused_unrun() {
    // The event feed's poll would count among the statements; nothing here wakes it.
    let no_feed_poll = |config: &mut stockroom::config::Config| config.event_poll_ms = 600_000;
    on_each_backend_with(no_feed_poll, |app| async move {
        let (_, channel) = app.one_location_shop().await;
        let skus: Vec<String> = (0..250).map(|index| format!("SKU-{index}")).collect();
        let one = "query($c: ID!, $s: [String!]!) { availability(salesChannelId: $c, skus: $s) { sku available inStock backorderable } }";
        let variables = json!({ "c": channel.to_string(), "s": skus });
        let client = app.client().anonymous();
        assert_eq!(
            client.gql(one, variables.clone()).await.data()["availability"].as_array().unwrap().len(),
            250,
            "one full-size check is fine"
        );
        let fields: String = (0..1000)
            .map(|index| format!("a{index}: availability(salesChannelId: $c, skus: $s) {{ available }} "))
            .collect();
        let flood = format!("query($c: ID!, $s: [String!]!) {{ {fields} }}");
        let before = app.statements_run();
        let refused = client.gql(&flood, variables).await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"), "{}", refused.0);
        assert!(refused.0["errors"][0]["message"].as_str().unwrap().contains("complex"));
        assert!(refused.0.get("data").is_none(), "it never ran");
        assert_eq!(app.statements_run(), before, "not one lookup was made");
    })
    .await;
}

/// Runs graphql-http's server audit (`tests/http-audit`, installed by `.ci/run` with `npm
/// ci`) against the real server on a socket.
#[tokio::test]
async fn the_graphql_over_http_audit_passes_every_case() {
    let audit_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/http-audit");
    let installed = std::path::Path::new(audit_dir)
        .join("node_modules/graphql-http")
        .exists();
    if !node_tool_installed(installed, "graphql-http", "npm ci --prefix tests/http-audit") {
        return;
    }
    let app = TestApp::sqlite_with(|_| {}).await;
    let addr = app.listen().await;
    let url = format!("http://{addr}/graphql");
    let output = run_node(format!("{audit_dir}/audit.mjs"), vec![url], Vec::new()).await;
    assert!(
        output.status.success(),
        "audit crashed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let failures: Vec<&Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|result| result["status"] != "ok")
        .collect();
    eprintln!("graphql-http audit: {}", report["counts"]);
    for failure in &failures {
        eprintln!("  {} {}: {}", failure["status"], failure["name"], failure["reason"]);
    }
    assert_eq!(report["counts"]["error"], 0, "MUST failures");
    assert_eq!(report["counts"]["warn"], 0, "SHOULD failures");
    assert!(failures.is_empty(), "every MAY passes too (61 of 61 when written)");
}
