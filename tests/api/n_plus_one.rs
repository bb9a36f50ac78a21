use serde_json::json;

use crate::helpers::{TestApp, on_each_backend};

const DEEP_PAGE: &str = "query($first: Int!) { inventoryItems(first: $first) { edges { node {
    sku levels { stockedQuantity item { sku } location { name } } } } } }";

/// Statements one run of `DEEP_PAGE` costs, and the number of items it returned.
async fn statements_for_page(app: &TestApp, first: i32) -> (usize, usize) {
    let before = app.statements_run();
    let response = app.gql(DEEP_PAGE, json!({ "first": first })).await;
    let items = response.data()["inventoryItems"]["edges"]
        .as_array()
        .unwrap()
        .len();
    (app.statements_run() - before, items)
}

#[tokio::test]
async fn nested_fields_are_batched_so_100_items_cost_as_few_queries_as_10() {
    on_each_backend(|app| async move {
        let berlin = app.location("Berlin").await;
        let hamburg = app.location("Hamburg").await;
        for index in 0..100 {
            app.item(&format!("N-{index:03}"))
                .level(berlin, index)
                .level(hamburg, 1)
                .await;
        }
        let (for_ten, ten) = statements_for_page(&app, 10).await;
        let (for_hundred, hundred) = statements_for_page(&app, 100).await;
        assert_eq!((ten, hundred), (10, 100));
        // auth + items + their levels + the levels' items + the levels' locations.
        assert!(for_hundred <= 5, "100 items took {for_hundred} statements");
        assert_eq!(
            for_hundred, for_ten,
            "statement count must not grow with the page"
        );
    })
    .await;
}
