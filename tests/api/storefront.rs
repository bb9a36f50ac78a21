use serde_json::json;
use stockroom_test_support::{
    fixtures::{PLACE_ORDER_ID, place_order_variables},
    racing::{on_each_backend, race},
};

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
        // Lists of other lengths (SQLite pads its list of skus to a power of two with the
        // last one) and a sku asked twice: every asked sku answered, in the order asked.
        let response = anonymous
            .gql(
                AVAILABILITY,
                json!({ "c": channel.to_string(), "skus": ["B-1", "A-1", "B-1"] }),
            )
            .await;
        let answered: Vec<(&str, i64)> = response.data()["availability"]
            .as_array()
            .unwrap()
            .iter()
            .map(|answer| (answer["sku"].as_str().unwrap(), answer["available"].as_i64().unwrap()))
            .collect();
        assert_eq!(answered, [("B-1", 2), ("A-1", 7), ("B-1", 2)]);
        let response = anonymous
            .gql(
                AVAILABILITY,
                json!({ "c": channel.to_string(), "skus": ["C-1", "NOPE", "A-1", "X", "Y"] }),
            )
            .await;
        let available: Vec<i64> = response.data()["availability"]
            .as_array()
            .unwrap()
            .iter()
            .map(|answer| answer["available"].as_i64().unwrap())
            .collect();
        assert_eq!(available, [0, 0, 7, 0, 0]);
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
        // No skus (or only malformed ones) still tells a known channel from an unknown one.
        let none = anonymous.gql(AVAILABILITY, json!({ "c": channel, "skus": [] })).await;
        assert_eq!(none.data()["availability"], json!([]));
        let malformed = anonymous
            .gql(AVAILABILITY, json!({ "c": channel, "skus": ["bad sku"] }))
            .await;
        assert_eq!(malformed.data()["availability"][0]["available"], 0);
        let none_unknown = anonymous.gql(AVAILABILITY, json!({ "c": "999", "skus": [] })).await;
        assert_eq!(none_unknown.error_code(), Some("NOT_FOUND"));
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

/// Concurrent reads share statements (`inventory::availability::Reads`), yet none may
/// answer from a snapshot older than its own question: while orders sell a level one unit
/// at a time, a read asked after the k-th order was confirmed never shows more than
/// stock − k. Readers ask different sku lists, so shared statements must hand each one
/// exactly its own answer.
#[tokio::test]
async fn shared_availability_reads_never_answer_from_before_they_were_asked() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    };
    const STOCK: i64 = 30;
    const READERS: usize = 12;
    on_each_backend(|app| async move {
        let depot = app.location("Depot").await;
        let channel = app.channel("Web", &[(depot, 0)]).await.to_string();
        app.item("HOT").level(depot, STOCK as i32).await;
        app.item("COLD").level(depot, 7).await;
        let sold = Arc::new(AtomicI64::new(0));
        let selling = Arc::new(AtomicBool::new(true));
        let client = app.client().clone();
        let outcomes = race(READERS + 1, |task| {
            let (client, channel, sold, selling) = (client.clone(), channel.clone(), sold.clone(), selling.clone());
            async move {
                if task == READERS {
                    for order in 0..STOCK {
                        let variables = place_order_variables(&format!("pi_{order}"), &channel, &[("HOT", 1)]);
                        let placed = client.gql(PLACE_ORDER_ID, variables).await;
                        assert!(placed.error_code().is_none(), "{:?}", placed.0);
                        sold.fetch_add(1, Ordering::SeqCst);
                    }
                    selling.store(false, Ordering::SeqCst);
                    return 0;
                }
                let asked: Vec<&str> = match task % 3 {
                    0 => vec!["HOT"],
                    1 => vec!["COLD", "HOT", "NOPE"],
                    _ => vec!["NOPE", "COLD"],
                };
                let mut reads = 0;
                while selling.load(Ordering::SeqCst) {
                    let confirmed = sold.load(Ordering::SeqCst);
                    let read = client
                        .anonymous()
                        .gql(AVAILABILITY, json!({ "c": channel, "skus": asked }))
                        .await;
                    let answers = read.data()["availability"].as_array().unwrap().clone();
                    let skus: Vec<&str> = answers.iter().map(|answer| answer["sku"].as_str().unwrap()).collect();
                    assert_eq!(skus, asked, "each read gets its own skus, in its order");
                    for answer in &answers {
                        let available = answer["available"].as_i64().unwrap();
                        match answer["sku"].as_str().unwrap() {
                            "HOT" => assert!(
                                available <= STOCK - confirmed,
                                "a read asked after {confirmed} confirmed orders showed {available}"
                            ),
                            "COLD" => assert_eq!(available, 7),
                            _ => assert_eq!(available, 0),
                        }
                    }
                    reads += 1;
                }
                reads
            }
        })
        .await;
        assert!(
            outcomes.iter().sum::<i32>() > 0,
            "the readers read while the orders sold"
        );
        let read = app
            .client()
            .anonymous()
            .gql(AVAILABILITY, json!({ "c": channel, "skus": ["HOT"] }))
            .await;
        assert_eq!(read.data()["availability"][0]["available"], 0);
    })
    .await;
}
