//! Access control: every field against every role, key management and revocation, the
//! anonymous rate limit, CORS.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request};
use futures_util::{FutureExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use stockroom::auth::{Caller, Role};
use stockroom_test_support::{
    app::{Client, TestApp},
    database::{Backend, SqliteFile},
    fixtures::{PLACE_ORDER_ID, place_order_variables},
    racing::{on_each_backend, on_each_backend_with, race},
};

const CREATE_KEY: &str = "mutation($name: String!, $role: ApiKeyRole!) {
    createApiKey(input: { name: $name, role: $role }) { secret apiKey { id name role prefix createdAt lastUsedAt revokedAt } } }";
const REVOKE_KEY: &str = "mutation($id: ID!) { revokeApiKey(input: { id: $id }) { id revokedAt } }";
const LIST_KEYS: &str = "{ apiKeys { id name role prefix createdAt lastUsedAt revokedAt } }";
/// A field every role but none of the anonymous may use.
const READ_ORDERS: &str = "{ order(id: \"999999\") { id } }";

/// Creates a key with `role` through the API; returns (id, secret).
async fn create_key(app: &TestApp, name: &str, role: &str) -> (i32, String) {
    let created = app.gql(CREATE_KEY, json!({ "name": name, "role": role })).await;
    let created = &created.data()["createApiKey"];
    (
        created["apiKey"]["id"].as_str().unwrap().parse().unwrap(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// Who may use each root field, as the contract says ("API keys and roles"). A field
/// missing here fails the test: a new field cannot slip through unguarded.
fn expected_roles() -> HashMap<&'static str, &'static [Role]> {
    use Role::*;
    const EVERYONE: &[Role] = &[Admin, Read, Checkout];
    const WATCHERS: &[Role] = &[Admin, Read];
    const CHECKOUTS: &[Role] = &[Admin, Checkout];
    const ADMINS: &[Role] = &[Admin];
    HashMap::from([
        ("Query.availability", &[] as &[Role]),
        ("Query.stockLocations", WATCHERS),
        ("Query.salesChannels", WATCHERS),
        ("Query.shippingOptions", WATCHERS),
        ("Query.inventoryItem", WATCHERS),
        ("Query.inventoryItems", WATCHERS),
        ("Query.backorders", WATCHERS),
        ("Query.backorderEvents", WATCHERS),
        ("Query.activity", WATCHERS),
        ("Query.stockMovements", WATCHERS),
        ("Query.order", EVERYONE),
        ("Query.orderByPaymentIntent", EVERYONE),
        ("Query.orders", EVERYONE),
        ("Query.reservation", EVERYONE),
        ("Query.reservations", EVERYONE),
        ("Query.apiKeys", ADMINS),
        ("Mutation.createStockLocation", ADMINS),
        ("Mutation.createSalesChannel", ADMINS),
        ("Mutation.mapSalesChannelLocation", ADMINS),
        ("Mutation.createShippingOption", ADMINS),
        ("Mutation.createInventoryItem", ADMINS),
        ("Mutation.setStockLevel", ADMINS),
        ("Mutation.adjustStock", ADMINS),
        ("Mutation.placeOrder", CHECKOUTS),
        ("Mutation.reserveStock", CHECKOUTS),
        ("Mutation.releaseReservation", CHECKOUTS),
        ("Mutation.createApiKey", ADMINS),
        ("Mutation.revokeApiKey", ADMINS),
        ("Subscription.backorderEvents", WATCHERS),
    ])
}

const INTROSPECT: &str = "
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
{ __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { kind name
      fields { name args { name type { ...T } } type { ...T } }
      inputFields { name type { ...T } }
      enumValues { name } } } }";

/// The schema's types by name, from introspection.
struct Introspected {
    types: BTreeMap<String, Value>,
}

impl Introspected {
    /// A literal of `ty` (an introspected type reference): only what is required, and ids
    /// that name nothing, so no call can touch what the test relies on.
    fn literal(&self, ty: &Value) -> String {
        match ty["kind"].as_str().unwrap() {
            "NON_NULL" => self.literal(&ty["ofType"]),
            "LIST" => format!("[{}]", self.literal(&ty["ofType"])),
            "ENUM" => self.types[ty["name"].as_str().unwrap()]["enumValues"][0]["name"]
                .as_str()
                .unwrap()
                .to_owned(),
            "INPUT_OBJECT" => {
                let fields = self.types[ty["name"].as_str().unwrap()]["inputFields"]
                    .as_array()
                    .unwrap();
                let required: Vec<String> = fields
                    .iter()
                    .filter(|field| field["type"]["kind"] == "NON_NULL")
                    .map(|field| format!("{}: {}", field["name"].as_str().unwrap(), self.literal(&field["type"])))
                    .collect();
                format!("{{ {} }}", required.join(", "))
            }
            _ => match ty["name"].as_str().unwrap() {
                "ID" => "\"999999\"".to_owned(),
                "String" => "\"x\"".to_owned(),
                "Int" => "1".to_owned(),
                "Boolean" => "false".to_owned(),
                other => panic!("no literal for scalar {other}"),
            },
        }
    }

    /// The shortest operation that calls `field` of the root `operation` type.
    fn operation(&self, operation: &str, field: &Value) -> String {
        let args: Vec<String> = field["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|arg| arg["type"]["kind"] == "NON_NULL")
            .map(|arg| format!("{}: {}", arg["name"].as_str().unwrap(), self.literal(&arg["type"])))
            .collect();
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("({})", args.join(", "))
        };
        let mut ty = &field["type"];
        while !ty["ofType"].is_null() {
            ty = &ty["ofType"];
        }
        let selection = if ty["kind"] == "OBJECT" { " { __typename }" } else { "" };
        format!("{operation} {{ {}{args}{selection} }}", field["name"].as_str().unwrap())
    }
}

/// The error code a caller got, or `None` if the field let it through (whatever the
/// field then answered: an unknown id, say).
fn access_code(response: &Value) -> Option<String> {
    response["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error["extensions"]["code"].as_str())
        .find(|code| matches!(*code, "UNAUTHENTICATED" | "FORBIDDEN"))
        .map(str::to_owned)
}

#[tokio::test]
async fn every_field_admits_exactly_the_roles_the_contract_gives_it() {
    on_each_backend(|app| async move {
        let mut keys: Vec<(Role, i32, Client)> = Vec::new();
        for (role, name) in [
            (Role::Admin, "ADMIN"),
            (Role::Read, "READ"),
            (Role::Checkout, "CHECKOUT"),
        ] {
            let (id, secret) = create_key(&app, name, name).await;
            keys.push((role, id, app.client().with_key(&secret)));
        }
        let schema = app.gql(INTROSPECT, json!({})).await;
        let schema = &schema.data()["__schema"];
        let introspected = Introspected {
            types: schema["types"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ty| (ty["name"].as_str().unwrap().to_owned(), ty.clone()))
                .collect(),
        };
        let mut expected = expected_roles();
        let mut checked = 0;
        for root in ["queryType", "mutationType", "subscriptionType"] {
            let root_name = schema[root]["name"].as_str().unwrap();
            let operation = match root {
                "queryType" => "query",
                "mutationType" => "mutation",
                _ => "subscription",
            };
            for field in introspected.types[root_name]["fields"].as_array().unwrap() {
                let name = format!("{root_name}.{}", field["name"].as_str().unwrap());
                let allowed = expected
                    .remove(name.as_str())
                    .unwrap_or_else(|| panic!("{name} is not in the access table: say who may use it"));
                let text = introspected.operation(operation, field);
                let callers = std::iter::once((None, Caller::Anonymous, app.client().anonymous())).chain(
                    keys.iter()
                        .map(|(role, id, client)| (Some(*role), Caller::Key { id: *id, role: *role }, client.clone())),
                );
                for (role, caller, client) in callers {
                    let got = if operation == "subscription" {
                        // A guard refuses on the stream's first poll; an admitted
                        // subscription waits for events instead.
                        let request = async_graphql::Request::new(&text).data(caller);
                        let schema = app.schema();
                        let mut stream = schema.execute_stream(request);
                        match stream.next().now_or_never() {
                            Some(Some(response)) => access_code(&serde_json::to_value(&response).unwrap()),
                            _ => None,
                        }
                    } else {
                        access_code(&client.gql(&text, json!({})).await.0)
                    };
                    let want = match role {
                        None if allowed.is_empty() => None,
                        None => Some("UNAUTHENTICATED"),
                        Some(role) if allowed.is_empty() || allowed.contains(&role) => None,
                        Some(_) => Some("FORBIDDEN"),
                    };
                    assert_eq!(got.as_deref(), want, "{name} as {role:?}: {text}");
                }
                checked += 1;
            }
        }
        assert!(
            expected.is_empty(),
            "the table names fields the schema lacks: {:?}",
            expected.keys()
        );
        assert!(checked >= 28, "only {checked} fields checked");
    })
    .await;
}

#[tokio::test]
async fn keys_are_listed_with_role_prefix_and_last_use_but_never_their_secret() {
    on_each_backend(|app| async move {
        let (id, secret) = create_key(&app, "dashboard", "READ").await;
        let dashboard = app.client().with_key(&secret);
        assert_eq!(dashboard.gql(READ_ORDERS, json!({})).await.error_code(), None);

        let listed = app.gql(LIST_KEYS, json!({})).await;
        assert!(
            !listed.0.to_string().contains(&secret),
            "a listing never shows a secret"
        );
        let keys = listed.data()["apiKeys"].as_array().unwrap().clone();
        assert_eq!(keys.len(), 2, "STOCKROOM_ADMIN_KEY and the new key: {keys:?}");
        assert_eq!(keys[0]["name"], "STOCKROOM_ADMIN_KEY");
        assert_eq!(keys[0]["role"], "ADMIN");
        assert_eq!(keys[0]["prefix"], "", "nothing of an outside key is kept in clear");
        let key = &keys[1];
        assert_eq!(key["id"], id.to_string());
        assert_eq!(
            (key["name"].as_str(), key["role"].as_str()),
            (Some("dashboard"), Some("READ"))
        );
        assert_eq!(key["prefix"].as_str().unwrap(), &secret[..12]);
        assert!(key["revokedAt"].is_null());

        // Last use is written off the request path: wait for it, boundedly.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let listed = app.gql(LIST_KEYS, json!({})).await;
            if !listed.data()["apiKeys"][1]["lastUsedAt"].is_null() {
                break;
            }
            assert!(Instant::now() < deadline, "lastUsedAt was never written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let revoked = app.gql(REVOKE_KEY, json!({ "id": id.to_string() })).await;
        let first = revoked.data()["revokeApiKey"]["revokedAt"].clone();
        assert!(!first.is_null());
        let again = app.gql(REVOKE_KEY, json!({ "id": id.to_string() })).await;
        assert_eq!(
            again.data()["revokeApiKey"]["revokedAt"],
            first,
            "revoking again keeps the first time"
        );
        let unknown = app.gql(REVOKE_KEY, json!({ "id": "999999" })).await;
        assert_eq!(unknown.error_code(), Some("NOT_FOUND"));
        let nameless = app.gql(CREATE_KEY, json!({ "name": "  ", "role": "READ" })).await;
        assert_eq!(nameless.error_code(), Some("BAD_USER_INPUT"));
    })
    .await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_here_and_within_the_cache_time_in_another_process() {
    const CACHE_MS: u64 = 300;
    let Some(here) = TestApp::postgres_with(|config| config.key_cache_ms = CACHE_MS).await else {
        return;
    };
    let elsewhere = here.another_process(|_| {}).await;
    let (id, secret) = create_key(&here, "checkout", "CHECKOUT").await;
    for process in [&here, &elsewhere] {
        let answer = process.client().with_key(&secret).gql(READ_ORDERS, json!({})).await;
        assert_eq!(
            answer.error_code(),
            None,
            "the key works (and is now cached) everywhere"
        );
    }
    here.gql(REVOKE_KEY, json!({ "id": id.to_string() })).await.data();
    let revoked_at = Instant::now();
    let answer = here.client().with_key(&secret).gql(READ_ORDERS, json!({})).await;
    assert_eq!(
        answer.error_code(),
        Some("UNAUTHENTICATED"),
        "the revoking process refuses at once"
    );

    // The bound is the cache time; the slack only absorbs a slow machine.
    let bound = Duration::from_millis(CACHE_MS) + Duration::from_secs(5);
    loop {
        let answer = elsewhere.client().with_key(&secret).gql(READ_ORDERS, json!({})).await;
        if answer.error_code() == Some("UNAUTHENTICATED") {
            break;
        }
        assert!(
            revoked_at.elapsed() < bound,
            "another process still accepts a revoked key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(here.backend, Backend::Postgres);
}

/// An anonymous `availability` request from `address` (through the trusted header).
fn storefront_request(address: &str, key: Option<&str>) -> Request<Body> {
    let body = json!({ "query": "{ availability(salesChannelId: \"1\", skus: [\"A\"]) { sku } }" });
    let mut request = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("x-forwarded-for", format!("203.0.113.9, {address}"));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn a_keyed_client_is_not_throttled_while_its_key_is_looked_up_again() {
    let limited = |config: &mut stockroom::Config| {
        config.anonymous_rate = 1;
        config.anonymous_burst = 1;
        config.key_cache_ms = 50;
        config.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    };
    on_each_backend_with(limited, |app| async move {
        app.channel("Web", &[]).await;
        let (id, key) = create_key(&app, "storefront", "READ").await;
        let burst = |key: String| {
            let client = app.client().clone();
            async move {
                race(10, move |_| {
                    let (client, key) = (client.clone(), key.clone());
                    async move {
                        client
                            .respond(storefront_request("198.51.100.20", Some(&key)))
                            .await
                            .status()
                    }
                })
                .await
            }
        };
        // Found valid once (from another address, so this one's bucket stays full).
        let first = app
            .client()
            .respond(storefront_request("198.51.100.21", Some(&key)))
            .await;
        assert_eq!(first.status(), 200);
        for _ in 0..4 {
            // Each burst arrives after the key's verdict lapsed: all of it is looked up
            // again at once, and none of it is counted as anonymous.
            tokio::time::sleep(Duration::from_millis(80)).await;
            let statuses = burst(key.clone()).await;
            assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
        }
        // Revoked, the key is an anonymous caller's again, limit included.
        app.gql(REVOKE_KEY, json!({ "id": id.to_string() })).await.data();
        let statuses = burst(key).await;
        assert!(statuses.iter().any(|status| *status == 429), "{statuses:?}");
    })
    .await;
}

#[tokio::test]
async fn an_anonymous_flood_gets_429_while_keyed_orders_go_through() {
    let limited = |config: &mut stockroom::Config| {
        config.anonymous_rate = 1;
        config.anonymous_burst = 5;
        config.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    };
    on_each_backend_with(limited, |app| async move {
        let (location, channel) = app.one_location_shop().await;
        app.item("HOT").level(location, 1_000).await;
        let (_, checkout) = create_key(&app, "checkout", "CHECKOUT").await;
        let checkout = app.client().with_key(&checkout);
        checkout.gql(READ_ORDERS, json!({})).await.data();

        let outcomes = race(60, |task| {
            let client = app.client().clone();
            let checkout = checkout.clone();
            async move {
                if task % 3 == 0 {
                    let variables = place_order_variables(&format!("pi_{task}"), channel, &[("HOT", 1)]);
                    let placed = checkout.gql(PLACE_ORDER_ID, variables).await;
                    (true, if placed.error_code().is_none() { 200 } else { 500 }, None)
                } else {
                    // Half of the flood with made-up keys: they are anonymous callers too.
                    let key = (task % 3 == 2).then_some("srk_made_up");
                    let response = client.respond(storefront_request("198.51.100.7", key)).await;
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .map(|value| value.to_str().unwrap().parse::<u64>().unwrap());
                    (false, response.status().as_u16(), retry_after)
                }
            }
        })
        .await;
        let keyed: Vec<u16> = outcomes.iter().filter(|o| o.0).map(|o| o.1).collect();
        assert_eq!(keyed.len(), 20);
        assert!(
            keyed.iter().all(|status| *status == 200),
            "every keyed order was placed: {keyed:?}"
        );
        let anonymous: Vec<&(bool, u16, Option<u64>)> = outcomes.iter().filter(|o| !o.0).collect();
        let admitted = anonymous.iter().filter(|o| o.1 == 200).count();
        let throttled: Vec<_> = anonymous.iter().filter(|o| o.1 == 429).collect();
        assert_eq!(admitted + throttled.len(), 40, "every anonymous request got 200 or 429");
        assert!(
            (5..=15).contains(&admitted),
            "the burst of 5 (plus 1/s) got through, not {admitted}"
        );
        assert!(
            throttled.iter().all(|o| o.2.is_some_and(|seconds| seconds >= 1)),
            "429s say when to retry"
        );

        let response = app.client().respond(storefront_request("198.51.100.7", None)).await;
        assert_eq!(response.status(), 429);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "THROTTLED");
        let other = app.client().respond(storefront_request("198.51.100.8", None)).await;
        assert_eq!(other.status(), 200, "the limit is per address");
        let metrics = app
            .client()
            .send(Request::get("/metrics").body(Body::empty()).unwrap())
            .await;
        let metrics = String::from_utf8_lossy(&metrics.1).into_owned();
        let limited: f64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix("stockroom_rate_limited_total "))
            .and_then(|value| value.trim().parse().ok())
            .expect("the counter is exported");
        assert!(limited >= 25.0, "the refusals were counted: {limited}");
    })
    .await;
}

#[tokio::test]
async fn cors_admits_listed_origins_without_credentials_and_no_others() {
    let cors = |config: &mut stockroom::Config| config.cors_origins = vec!["https://shop.example".parse().unwrap()];
    on_each_backend_with(cors, |app| async move {
        let preflight = |origin: &str, headers: &str| {
            Request::builder()
                .method("OPTIONS")
                .uri("/graphql")
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", headers)
                .body(Body::empty())
                .unwrap()
        };
        let allowed = app
            .client()
            .respond(preflight("https://shop.example", "content-type"))
            .await;
        assert!(allowed.status().is_success(), "{}", allowed.status());
        let header = |response: &axum::response::Response, name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_ascii_lowercase())
        };
        assert_eq!(
            header(&allowed, "access-control-allow-origin").as_deref(),
            Some("https://shop.example")
        );
        assert!(
            header(&allowed, "access-control-allow-headers")
                .unwrap()
                .contains("content-type")
        );
        assert!(
            !header(&allowed, "access-control-allow-headers")
                .unwrap()
                .contains("authorization"),
            "keys cannot be sent cross-origin"
        );
        assert_eq!(header(&allowed, "access-control-allow-credentials"), None);

        let foreign = app
            .client()
            .respond(preflight("https://evil.example", "content-type"))
            .await;
        assert_eq!(header(&foreign, "access-control-allow-origin"), None);

        let request = Request::post("/graphql")
            .header("origin", "https://shop.example")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({ "query": "{ availability(salesChannelId: \"1\", skus: [\"A\"]) { sku } }" }).to_string(),
            ))
            .unwrap();
        let response = app.client().respond(request).await;
        assert_eq!(
            header(&response, "access-control-allow-origin").as_deref(),
            Some("https://shop.example")
        );
        // The admin key still works from a same-origin (or server-side) caller.
        assert_eq!(app.gql(READ_ORDERS, json!({})).await.error_code(), None);
    })
    .await;
}

#[test]
fn the_command_line_creates_lists_and_revokes_keys() {
    let file = SqliteFile::new();
    let url = file.url();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_stockroom"))
            .args(args)
            .env("DATABASE_URL", &url)
            .env("STOCKROOM_DEMO", "0")
            .env_remove("STOCKROOM_ADMIN_KEY")
            .output()
            .expect("the binary runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let secret = run(&["api-key", "create", "--name", "till", "--role", "checkout"]);
    let secret = secret.trim();
    assert!(secret.starts_with("srk_") && secret.len() == 68, "{secret}");
    let listed = run(&["api-key", "list"]);
    let row = listed
        .lines()
        .find(|line| line.ends_with("till"))
        .expect("the key is listed");
    assert!(row.contains("CHECKOUT") && row.contains(&secret[..12]), "{row}");
    assert!(!listed.contains(secret), "the list never shows a secret");
    let id = row.split_whitespace().next().unwrap();
    run(&["api-key", "revoke", id]);
    let listed = run(&["api-key", "list"]);
    let dashes = |row: &str| row.split_whitespace().filter(|field| *field == "-").count();
    let revoked_row = listed.lines().find(|line| line.ends_with("till")).unwrap();
    assert_eq!(dashes(row), 2, "never used, not revoked: {row}");
    assert_eq!(dashes(revoked_row), 1, "revoked now, still never used: {revoked_row}");
}
