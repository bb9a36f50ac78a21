use serde_json::json;

use crate::helpers::on_each_backend;

const AVAILABILITY: &str = "query($c: ID!, $skus: [String!]!) {
    availability(salesChannelId: $c, skus: $skus) { sku available inStock backorderable } }";

#[tokio::test]
async fn availability_sums_mapped_locations_and_never_goes_negative() {
    on_each_backend(|app| async move {
        let near = app.location("Near").await;
        let far = app.location("Far").await;
        let unmapped = app.location("Elsewhere").await;
        let channel = app.channel("Web", &[(near, 0), (far, 1)]).await;
        app.item("A-1").level(near, 3).level(far, 4).level(unmapped, 100).await;
        app.item("B-1").backorder_level(near, -5).level(far, 2).await;
        app.item("C-1").backorder_level(near, -1).await;
        let anonymous = app.client().anonymous();
        let response = anonymous
            .gql(
                AVAILABILITY,
                json!({ "c": channel.to_string(), "skus": ["A-1", "B-1", "C-1", "NOPE", "bad sku"] }),
            )
            .await;
        assert_eq!(
            response.data()["availability"],
            json!([
                { "sku": "A-1", "available": 7, "inStock": true, "backorderable": false },
                { "sku": "B-1", "available": 2, "inStock": true, "backorderable": true },
                { "sku": "C-1", "available": 0, "inStock": false, "backorderable": true },
                { "sku": "NOPE", "available": 0, "inStock": false, "backorderable": false },
                { "sku": "bad sku", "available": 0, "inStock": false, "backorderable": false },
            ])
        );
    })
    .await;
}

#[tokio::test]
async fn availability_rejects_unknown_channels_and_oversized_requests() {
    on_each_backend(|app| async move {
        let channel = app.channel("Web", &[]).await.to_string();
        let anonymous = app.client().anonymous();
        let unknown = anonymous.gql(AVAILABILITY, json!({ "c": "999", "skus": ["A"] })).await;
        assert_eq!(unknown.error_code(), Some("NOT_FOUND"));
        let skus: Vec<String> = (0..251).map(|i| format!("S-{i}")).collect();
        let too_many = anonymous.gql(AVAILABILITY, json!({ "c": channel, "skus": skus })).await;
        assert_eq!(too_many.error_code(), Some("BAD_USER_INPUT"));
    })
    .await;
}

#[tokio::test]
async fn availability_is_one_statement_and_agrees_with_every_levels_available() {
    on_each_backend(|app| async move {
        let near = app.location("Near").await;
        let far = app.location("Far").await;
        let channel = app.channel("Web", &[(near, 0), (far, 1)]).await;
        app.item("A-1").level(near, 5).level(far, 3).await;
        app.item("B-1").backorder_level(near, -4).level(far, 2).await;
        app.item("C-1").backorder_level(near, 6).await;
        let reserve = "mutation($k: String!, $c: ID!, $s: String!, $q: Int!) {
            reserveStock(input: { key: $k, salesChannelId: $c, lines: [{ sku: $s, quantity: $q }] }) { id } }";
        for (key, sku, quantity) in [
            ("live-a", "A-1", 2),
            ("lapsed-a", "A-1", 3),
            ("live-c", "C-1", 9),
            ("lapsed-c", "C-1", 1),
        ] {
            let variables = json!({ "k": key, "c": channel.to_string(), "s": sku, "q": quantity });
            app.gql(reserve, variables).await.data();
        }
        for key in ["lapsed-a", "lapsed-c"] {
            let sql = format!("UPDATE reservation SET expires_at = '2000-01-01T00:00:00+00:00' WHERE key = '{key}'");
            sea_orm::ConnectionTrait::execute_unprepared(app.db().conn(), &sql)
                .await
                .unwrap();
        }
        let skus = ["A-1", "B-1", "C-1"];
        let ask = || async {
            let before = app.statements_run();
            let answer = app
                .client()
                .anonymous()
                .gql(AVAILABILITY, json!({ "c": channel.to_string(), "skus": skus }))
                .await;
            (app.statements_run() - before, answer)
        };
        // The event feed reads the outbox after the writes above, on the same pool: the
        // fewest statements of three asks is what one ask costs.
        let (mut statements, storefront) = ask().await;
        for _ in 0..2 {
            statements = statements.min(ask().await.0);
        }
        assert_eq!(statements, 1, "one statement answers the storefront");
        for (index, sku) in skus.iter().enumerate() {
            let levels = app
                .gql(
                    "query($s: String!) { inventoryItem(sku: $s) { levels { available } } }",
                    json!({ "s": sku }),
                )
                .await;
            let summed: i64 = levels.data()["inventoryItem"]["levels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|level| level["available"].as_i64().unwrap())
                .sum();
            assert_eq!(
                storefront.data()["availability"][index]["available"].as_i64().unwrap(),
                summed,
                "{sku}: the storefront's sum and the levels' own `available` agree"
            );
        }
        assert_eq!(
            storefront.data()["availability"],
            json!([
                { "sku": "A-1", "available": 6, "inStock": true, "backorderable": false },
                { "sku": "B-1", "available": 2, "inStock": true, "backorderable": true },
                { "sku": "C-1", "available": 0, "inStock": false, "backorderable": true },
            ])
        );
    })
    .await;
}
