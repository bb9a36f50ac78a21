//! The admin page and what it reads: assets served from the binary (nothing from another
//! origin), the fields written for it (search, newest first, recent events, activity), and
//! the page itself driven in headless Chromium (`tests/admin-e2e`).

use axum::{body::Body, http::Request};
use serde_json::json;
use stockroom_test_support::{
    app::TestApp,
    fixtures::{PLACE_ORDER_ID, place_order_variables},
    node::{node_tool_installed, run_node},
    racing::on_each_backend,
};

/// Every `src` and `href` of `html`.
fn linked_urls(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in html.match_indices(attribute) {
            let rest = &html[start + attribute.len()..];
            urls.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    urls
}

#[tokio::test]
async fn the_admin_page_and_graphiql_load_only_assets_served_by_the_binary() {
    let app = TestApp::sqlite_with(|_| {}).await;
    let client = app.client().anonymous();
    let page = |uri: &str, accept: &str| Request::get(uri).header("accept", accept).body(Body::empty()).unwrap();
    for (uri, accept) in [("/admin", "text/html"), ("/graphql", "text/html")] {
        let response = client.respond(page(uri, accept)).await;
        assert_eq!(response.status(), 200, "{uri}");
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(policy.contains("default-src 'self'"), "{uri}: {policy}");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        let urls = linked_urls(&html);
        assert!(
            urls.iter().any(|url| url.ends_with(".js")),
            "{uri} loads its script: {urls:?}"
        );
        for url in urls {
            let elsewhere = url.starts_with("//") || url.contains("://");
            assert!(!elsewhere, "{uri} links {url}, on another origin");
            if !url.starts_with("/admin/assets/") {
                continue; // a fragment, a data: URL, or a page of this server
            }
            let (status, asset) = client.send(page(&url, "*/*")).await;
            assert_eq!(status, 200, "{uri} links {url}");
            assert!(!asset.is_empty(), "{url} is empty");
        }
    }
    for outside in [
        "/admin/assets/../Cargo.toml",
        "/admin/assets/..%2FCargo.toml",
        "/admin/assets//etc/passwd",
    ] {
        let (status, _) = client.send(page(outside, "*/*")).await;
        assert_eq!(status, 404, "{outside}: only the assets directory is served");
    }

    // Unchanged assets revalidate with their content hash.
    let first = client.respond(page("/admin", "text/html")).await;
    let etag = first.headers()["etag"].clone();
    let again = Request::get("/admin")
        .header("if-none-match", etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(client.respond(again).await.status(), 304);
}

#[tokio::test]
async fn items_can_be_searched_by_sku_or_title_ignoring_case() {
    on_each_backend(|app| async move {
        let location = app.location("Depot").await;
        for sku in ["TEE-RED", "tee-blue", "MUG-100%", "MUG-100X"] {
            app.item(sku).level(location, 1).await;
        }
        let search = |text: &'static str| {
            let app = &app;
            async move {
                let found = app
                    .gql(
                        "query($s: String) { inventoryItems(search: $s) { edges { node { sku } } } }",
                        json!({ "s": text }),
                    )
                    .await;
                let mut skus: Vec<String> = found.data()["inventoryItems"]["edges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|edge| edge["node"]["sku"].as_str().unwrap().to_owned())
                    .collect();
                skus.sort();
                skus
            }
        };
        assert_eq!(search("tee").await, ["TEE-RED", "tee-blue"]);
        assert_eq!(search("Item mug").await, ["MUG-100%", "MUG-100X"], "titles match too");
        assert_eq!(search("100%").await, ["MUG-100%"], "% matches itself");
        assert_eq!(search("").await.len(), 4, "an empty search lists everything");
        let long = "x".repeat(101);
        let refused = app
            .gql(
                "query($s: String) { inventoryItems(search: $s) { edges { cursor } } }",
                json!({ "s": long }),
            )
            .await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
    })
    .await;
}

#[tokio::test]
async fn orders_and_backorder_events_list_newest_first_and_page_towards_older_ones() {
    on_each_backend(|app| async move {
        let location = app.location("Depot").await;
        let channel = app.channel("Web", &[(location, 0)]).await;
        app.item("BACK").backorder_level(location, 0).await;
        for number in 1..=3 {
            let variables = place_order_variables(&format!("pi_{number}"), channel, &[("BACK", 1)]);
            let placed = app.gql(PLACE_ORDER_ID, variables).await;
            assert!(placed.error_code().is_none(), "{:?}", placed.0);
        }
        let newest = app
            .gql("{ orders(first: 2, newestFirst: true) { edges { node { paymentIntentId } } pageInfo { endCursor hasNextPage } } }", json!({}))
            .await;
        let page = &newest.data()["orders"];
        let ids: Vec<&str> = page["edges"].as_array().unwrap().iter().map(|edge| edge["node"]["paymentIntentId"].as_str().unwrap()).collect();
        assert_eq!(ids, ["pi_3", "pi_2"]);
        assert_eq!(page["pageInfo"]["hasNextPage"], true);
        let older = app
            .gql(
                "query($a: String) { orders(first: 2, after: $a, newestFirst: true) { edges { node { paymentIntentId } } pageInfo { hasNextPage } } }",
                json!({ "a": page["pageInfo"]["endCursor"] }),
            )
            .await;
        assert_eq!(older.data()["orders"]["edges"][0]["node"]["paymentIntentId"], "pi_1");
        assert_eq!(older.data()["orders"]["pageInfo"]["hasNextPage"], false);

        let events = app
            .gql("{ backorderEvents(first: 2, newestFirst: true) { id } }", json!({}))
            .await;
        assert_eq!(events.data()["backorderEvents"], json!([{ "id": "3" }, { "id": "2" }]));
        let before = app
            .gql("{ backorderEvents(before: \"2\", newestFirst: true) { id } }", json!({}))
            .await;
        assert_eq!(before.data()["backorderEvents"], json!([{ "id": "1" }]));
    })
    .await;
}

#[tokio::test]
async fn activity_counts_placed_orders_out_of_stock_refusals_and_backorders_per_minute() {
    on_each_backend(|app| async move {
        let location = app.location("Depot").await;
        let channel = app.channel("Web", &[(location, 0)]).await.to_string();
        app.item("LAST").level(location, 1).await;
        app.item("BACK").backorder_level(location, 0).await;
        let place = |pi: &'static str, sku: &'static str| {
            let (app, channel) = (&app, channel.clone());
            async move {
                app.gql(PLACE_ORDER_ID, place_order_variables(pi, channel, &[(sku, 1)]))
                    .await
            }
        };
        assert!(place("pi_last", "LAST").await.error_code().is_none());
        assert_eq!(place("pi_late", "LAST").await.error_code(), Some("OUT_OF_STOCK"));
        assert_eq!(place("pi_later", "LAST").await.error_code(), Some("OUT_OF_STOCK"));
        assert!(place("pi_back", "BACK").await.error_code().is_none());

        let activity = app
            .gql(
                "{ activity(minutes: 5) { start ordersPlaced outOfStockRefusals backorders } }",
                json!({}),
            )
            .await;
        let minutes = activity.data()["activity"].as_array().unwrap().clone();
        assert_eq!(minutes.len(), 5, "every minute, empty ones included");
        // Summed: the test may straddle a minute boundary.
        let total = |field: &str| {
            minutes
                .iter()
                .map(|minute| minute[field].as_i64().unwrap())
                .sum::<i64>()
        };
        assert_eq!(total("ordersPlaced"), 2);
        assert_eq!(total("outOfStockRefusals"), 2);
        assert_eq!(total("backorders"), 1);
        let starts: Vec<&str> = minutes.iter().map(|minute| minute["start"].as_str().unwrap()).collect();
        assert!(
            starts.windows(2).all(|pair| pair[0] < pair[1]),
            "oldest first: {starts:?}"
        );

        let refused = app.gql("{ activity(minutes: 0) { start } }", json!({})).await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
        let anonymous = app.client().anonymous().gql("{ activity { start } }", json!({})).await;
        assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
    })
    .await;
}

/// The page itself, in Debian's Chromium driven by playwright-core (`tests/admin-e2e`,
/// installed by `.ci/run`): key entry, inline edits and version conflicts, the live feed
/// across a server restart, the chart. Screenshots land in `target/admin-e2e`.
#[tokio::test]
async fn the_admin_page_works_end_to_end_in_headless_chromium() {
    let e2e_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/admin-e2e");
    let installed = std::path::Path::new(e2e_dir)
        .join("node_modules/playwright-core")
        .exists()
        && std::path::Path::new("/usr/bin/chromium").exists();
    let install = "apt-get install chromium; npm ci --prefix tests/admin-e2e";
    if !node_tool_installed(installed, "Chromium or playwright-core", install) {
        return;
    }
    let envs = vec![
        ("STOCKROOM_BIN", env!("CARGO_BIN_EXE_stockroom").to_owned()),
        (
            "ARTIFACTS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/admin-e2e").to_owned(),
        ),
    ];
    let output = run_node(format!("{e2e_dir}/admin.mjs"), Vec::new(), envs).await;
    assert!(
        output.status.success(),
        "the admin page failed in Chromium:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
