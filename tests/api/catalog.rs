use sea_orm::EntityTrait;
use serde_json::json;
use stockroom_test_support::racing::on_each_backend;

const CREATE_LOCATION: &str = "mutation($name: String!) { createStockLocation(input: { name: $name }) { id name } }";
const CREATE_CHANNEL: &str = "mutation($name: String!) { createSalesChannel(input: { name: $name }) { id name } }";
const MAP: &str = "mutation($c: ID!, $l: ID!, $p: Int!) {
    mapSalesChannelLocation(input: { salesChannelId: $c, stockLocationId: $l, priority: $p }) {
        id locations { priority location { id name } } } }";
const CREATE_SHIPPING: &str = "mutation($name: String!, $l: ID!) {
    createShippingOption(input: { name: $name, stockLocationId: $l }) { id name stockLocation { id name } } }";
const CREATE_ITEM: &str = "mutation($sku: String!, $title: String!) {
    createInventoryItem(input: { sku: $sku, title: $title }) { id sku title levels { id } } }";
const SET_LEVEL: &str = "mutation($sku: String!, $l: ID!, $q: Int!, $b: Boolean, $v: Int) {
    setStockLevel(input: { sku: $sku, stockLocationId: $l, stockedQuantity: $q, allowBackorder: $b, expectedVersion: $v }) {
        id stockedQuantity reservedQuantity allowBackorder version available item { sku } location { name } } }";

#[tokio::test]
async fn an_admin_builds_a_catalog_and_a_storefront_reads_availability() {
    on_each_backend(|app| async move {
        let location = app.gql(CREATE_LOCATION, json!({ "name": "Berlin" })).await;
        let location_id = location.data()["createStockLocation"]["id"].as_str().unwrap().to_owned();
        let channel = app.gql(CREATE_CHANNEL, json!({ "name": "Web" })).await;
        let channel_id = channel.data()["createSalesChannel"]["id"].as_str().unwrap().to_owned();

        let mapped = app.gql(MAP, json!({ "c": channel_id, "l": location_id, "p": 3 })).await;
        assert_eq!(
            mapped.data()["mapSalesChannelLocation"]["locations"],
            json!([{ "priority": 3, "location": { "id": location_id, "name": "Berlin" } }])
        );
        let shipping = app.gql(CREATE_SHIPPING, json!({ "name": "DHL", "l": location_id })).await;
        assert_eq!(shipping.data()["createShippingOption"]["stockLocation"]["name"], "Berlin");

        let item = app.gql(CREATE_ITEM, json!({ "sku": "A-1", "title": "  Apple  " })).await;
        assert_eq!(item.data()["createInventoryItem"]["title"], "Apple");
        let level = app.gql(SET_LEVEL, json!({ "sku": "A-1", "l": location_id, "q": 7 })).await;
        assert_eq!(
            level.data()["setStockLevel"],
            json!({
                "id": level.data()["setStockLevel"]["id"], "stockedQuantity": 7, "reservedQuantity": 0,
                "allowBackorder": false, "version": 1, "available": 7,
                "item": { "sku": "A-1" }, "location": { "name": "Berlin" }
            })
        );

        let listed = app
            .gql("{ stockLocations { name } salesChannels { name } shippingOptions { name } inventoryItem(sku: \"A-1\") { levels { stockedQuantity } } }", json!({}))
            .await;
        assert_eq!(
            listed.data(),
            &json!({
                "stockLocations": [{ "name": "Berlin" }], "salesChannels": [{ "name": "Web" }],
                "shippingOptions": [{ "name": "DHL" }], "inventoryItem": { "levels": [{ "stockedQuantity": 7 }] }
            })
        );

        let availability = app
            .client()
            .anonymous()
            .gql(
                "query($c: ID!) { availability(salesChannelId: $c, skus: [\"A-1\"]) { sku available inStock backorderable } }",
                json!({ "c": channel_id }),
            )
            .await;
        assert_eq!(
            availability.data()["availability"],
            json!([{ "sku": "A-1", "available": 7, "inStock": true, "backorderable": false }])
        );
    })
    .await;
}

#[tokio::test]
async fn mapping_a_location_again_changes_its_priority_and_locations_come_preferred_first() {
    on_each_backend(|app| async move {
        let near = app.location("Near").await;
        let far = app.location("Far").await;
        let channel = app.channel("Web", &[(near, 1), (far, 2)]).await;
        let remapped = app
            .gql(MAP, json!({ "c": channel.to_string(), "l": far.to_string(), "p": 0 }))
            .await;
        let names: Vec<_> = remapped.data()["mapSalesChannelLocation"]["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                (
                    entry["location"]["name"].as_str().unwrap(),
                    entry["priority"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(names, [("Far", 0), ("Near", 1)]);
        assert_eq!(app.count("sales_channel_location").await, 2);
    })
    .await;
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_change_nothing() {
    on_each_backend(|app| async move {
        let location = app.location("Berlin").await.to_string();
        let channel = app.channel("Web", &[]).await.to_string();
        app.item("A-1").await;
        let cases = [
            (MAP, json!({ "c": "999", "l": location, "p": 0 })),
            (MAP, json!({ "c": channel, "l": "999", "p": 0 })),
            (MAP, json!({ "c": channel, "l": "not-an-id", "p": 0 })),
            (CREATE_SHIPPING, json!({ "name": "DHL", "l": "999" })),
            (SET_LEVEL, json!({ "sku": "NOPE", "l": location, "q": 1 })),
            (SET_LEVEL, json!({ "sku": "A-1", "l": "999", "q": 1 })),
            (
                "mutation($l: ID!) { adjustStock(input: { sku: \"A-1\", stockLocationId: $l, delta: 1 }) { id } }",
                json!({ "l": location }),
            ),
        ];
        for (query, variables) in cases {
            let response = app.gql(query, variables.clone()).await;
            assert_eq!(response.error_code(), Some("NOT_FOUND"), "{variables}: {}", response.0);
        }
        assert_eq!(app.count("sales_channel_location").await, 0);
        assert_eq!(app.count("shipping_option").await, 0);
        assert_eq!(app.count("inventory_level").await, 0);
        assert_eq!(app.count("stock_movement").await, 0);
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_rejected_with_bad_user_input() {
    on_each_backend(|app| async move {
        let location = app.location("Berlin").await.to_string();
        app.item("A-1").await;
        let cases = [
            (CREATE_LOCATION, json!({ "name": "   " })),
            (CREATE_ITEM, json!({ "sku": "A-1", "title": "Duplicate" })),
            (CREATE_ITEM, json!({ "sku": "A 1", "title": "Space" })),
            (CREATE_ITEM, json!({ "sku": "", "title": "Empty" })),
            (SET_LEVEL, json!({ "sku": "A-1", "l": location, "q": -1, "b": false })),
            (SET_LEVEL, json!({ "sku": "A-1", "l": location, "q": 2_000_000_000 })),
            ("{ inventoryItems(first: 101) { edges { cursor } } }", json!({})),
            ("{ inventoryItems(first: 0) { edges { cursor } } }", json!({})),
            ("{ inventoryItems(after: \"garbage\") { edges { cursor } } }", json!({})),
        ];
        for (query, variables) in cases {
            let response = app.gql(query, variables.clone()).await;
            assert_eq!(
                response.error_code(),
                Some("BAD_USER_INPUT"),
                "{query} {variables}: {}",
                response.0
            );
        }
        assert_eq!(app.count("inventory_item").await, 1);
        assert_eq!(app.count("inventory_level").await, 0);
    })
    .await;
}

#[tokio::test]
async fn admin_fields_need_a_valid_key_and_storefront_fields_do_not() {
    on_each_backend(|app| async move {
        let channel = app.channel("Web", &[]).await.to_string();
        for client in [app.client().anonymous(), app.client().with_key("srk_wrong")] {
            for query in [
                "{ stockLocations { id } }",
                "{ inventoryItems { edges { cursor } } }",
                "{ orders { edges { cursor } } }",
                "mutation { createStockLocation(input: { name: \"X\" }) { id } }",
            ] {
                let response = client.gql(query, json!({})).await;
                assert_eq!(
                    response.error_code(),
                    Some("UNAUTHENTICATED"),
                    "{query}: {}",
                    response.0
                );
            }
            let public = client
                .gql(
                    "query($c: ID!) { availability(salesChannelId: $c, skus: []) { sku } }",
                    json!({ "c": channel }),
                )
                .await;
            assert_eq!(public.data()["availability"], json!([]));
        }
        assert_eq!(app.count("stock_location").await, 0);
    })
    .await;
}

#[tokio::test]
async fn api_keys_are_stored_hashed_and_new_keys_work() {
    on_each_backend(|app| async move {
        let name = stockroom::inventory::values::Name::parse("dashboard", "name").unwrap();
        let created = stockroom::auth::create_key(app.db(), name, stockroom::auth::Role::Admin)
            .await
            .unwrap();
        let key = created.secret;
        let response = app
            .client()
            .with_key(&key)
            .gql("{ stockLocations { id } }", json!({}))
            .await;
        assert_eq!(response.data()["stockLocations"], json!([]));
        let rows = entity::api_key::Entity::find().all(app.db().conn()).await.unwrap();
        assert!(
            rows.iter()
                .all(|row| row.key_hash != key && !row.key_hash.contains(&key[4..]))
        );
    })
    .await;
}

#[tokio::test]
async fn items_are_paged_with_opaque_cursors() {
    on_each_backend(|app| async move {
        for sku in ["P-1", "P-2", "P-3", "P-4", "P-5"] {
            app.item(sku).await;
        }
        let query = "query($after: String) { inventoryItems(first: 2, after: $after) {
            edges { cursor node { sku } } pageInfo { hasNextPage endCursor } } }";
        let mut after = serde_json::Value::Null;
        let mut seen = Vec::new();
        loop {
            let page = app.gql(query, json!({ "after": after })).await;
            let connection = &page.data()["inventoryItems"];
            for edge in connection["edges"].as_array().unwrap() {
                seen.push(edge["node"]["sku"].as_str().unwrap().to_owned());
            }
            if !connection["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                break;
            }
            after = connection["pageInfo"]["endCursor"].clone();
        }
        assert_eq!(seen, ["P-1", "P-2", "P-3", "P-4", "P-5"]);
    })
    .await;
}
