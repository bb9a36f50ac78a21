//! The HTTP surface: GraphQL (and GraphiQL), the Stripe webhook, health and readiness.
//!
//! The caller's identity is decided here, once per request, from the `Authorization`
//! header and handed to GraphQL as request data; field guards then only read it.

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Data, Pos, http::GraphiQLSource, parser::types::OperationType};
use async_graphql_axum::{
    GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket, rejection::GraphQLRejection,
};
use axum::extract::ws::WebSocketUpgrade;
use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use tower_http::trace::TraceLayer;

use crate::{
    AppState,
    auth::{self, Caller},
    error::Error,
    graphql::{StockroomSchema, build_schema},
    stripe,
};

#[derive(Clone)]
struct HttpState {
    app: AppState,
    schema: StockroomSchema,
}

/// The application's router; `state` must be migrated already.
pub fn router(state: AppState) -> Router {
    crate::metrics::handle();
    let schema = build_schema(state.clone());
    let webhooks = Router::new()
        .route("/webhooks/stripe", post(stripe::webhook::receive))
        .layer(DefaultBodyLimit::max(stripe::webhook::MAX_BODY_BYTES))
        .with_state(state.clone());
    Router::new()
        .route("/graphql", get(graphql).post(graphql))
        .route("/graphql/ws", get(graphql_ws))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(HttpState { app: state, schema })
        .merge(webhooks)
        .layer(TraceLayer::new_for_http())
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn has_mutation(query: &str) -> bool {
    async_graphql::parser::parse_query(query).is_ok_and(|document| {
        document
            .operations
            .iter()
            .any(|(_, operation)| operation.node.ty == OperationType::Mutation)
    })
}

async fn graphql(
    State(state): State<HttpState>,
    method: Method,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Response {
    if method == Method::GET && wants_html(&headers) {
        let page = GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish();
        return Html(page).into_response();
    }
    let request = match request {
        Ok(request) => request.into_inner(),
        Err(rejection) => return rejection.into_response(),
    };
    // GET must be safe (GraphQL over HTTP): links, prefetchers and caches may repeat it.
    if method == Method::GET && has_mutation(&request.query) {
        return (StatusCode::METHOD_NOT_ALLOWED, "mutations need POST").into_response();
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    let response = match auth::authenticate(&state.app.db, authorization).await {
        // One GraphQL request multiplexes hundreds of resolver futures in one task. Under
        // tokio's cooperative budget the task would be forced to yield part-way through
        // waking them, and the DataLoader's batch window would close on half a batch.
        // Depth and complexity limits bound the work done without yielding.
        Ok(caller) => tokio::task::coop::unconstrained(state.schema.execute(request.data(caller))).await,
        Err(err) => {
            let error = async_graphql::Error::from(err).into_server_error(Pos::default());
            async_graphql::Response::from_errors(vec![error])
        }
    };
    GraphQLResponse::from(response).into_response()
}

/// Subscriptions over WebSocket (graphql-transport-ws, and legacy graphql-ws). The admin
/// key comes in the `connection_init` payload, `{"authorization": "Bearer <key>"}`; a
/// connection without a valid one is refused before any subscription starts.
async fn graphql_ws(State(state): State<HttpState>, protocol: GraphQLProtocol, upgrade: WebSocketUpgrade) -> Response {
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
        let db = state.app.db.clone();
        GraphQLWebSocket::new(socket, state.schema, protocol)
            .on_connection_init(move |payload| async move {
                let authorization = payload.get("authorization").and_then(|value| value.as_str());
                match auth::authenticate(&db, authorization).await? {
                    Caller::Admin => {
                        let mut data = Data::default();
                        data.insert(Caller::Admin);
                        Ok(data)
                    }
                    Caller::Anonymous => Err(Error::Unauthenticated.into()),
                }
            })
            .serve()
    })
}

async fn metrics() -> impl IntoResponse {
    let text = crate::metrics::handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn ready(State(state): State<HttpState>) -> StatusCode {
    match state.app.db.conn().ping().await {
        Ok(()) => StatusCode::OK,
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database did not answer");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}
