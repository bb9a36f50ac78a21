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
