//! The HTTP surface: GraphQL (and GraphiQL), the Stripe webhook, health and readiness,
//! and the admin page.
//! The GraphQL-over-HTTP protocol itself is in the private `graphql` module.
//!
//! The caller's identity is decided here, once per request, from the `Authorization`
//! header and handed to GraphQL as request data; field guards then only read it.

mod admin;
mod graphql;
mod limits;

use async_graphql::http::{WebSocketProtocols as Protocols, WsMessage};
use async_graphql::{Data, http::ALL_WEBSOCKET_PROTOCOLS};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use self::{graphql::MediaType, limits::AnonymousLimit};
use crate::{
    AppState,
    auth::{Caller, IdentifiedPerConnection},
    error::Error,
    graphql::{StockroomSchema, build_schema, query_threads},
    stripe,
};

/// What the handlers share; one `Arc`, because axum clones the state for every request.
#[derive(Clone)]
struct HttpState(std::sync::Arc<HttpShared>);

struct HttpShared {
    app: AppState,
    /// Mutations' and subscriptions', reading through `AppState::db`.
    schema: StockroomSchema,
    /// Queries', reading through `AppState::query_db`.
    query_schema: StockroomSchema,
    limit: AnonymousLimit,
    documents: graphql::ParsedDocuments,
}

impl std::ops::Deref for HttpState {
    type Target = HttpShared;

    fn deref(&self) -> &HttpShared {
        &self.0
    }
}

/// How long a browser may reuse a CORS preflight answer.
const CORS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The application's router; `state` must be migrated already.
pub fn router(state: AppState) -> Router {
    crate::metrics::handle();
    let schema = build_schema(state.clone());
    let query_schema = build_schema(AppState {
        db: state.query_db.clone(),
        ..state.clone()
    });
    let limit = AnonymousLimit::from_config(&state.config);
    let graphql = Router::new()
        .route("/graphql", get(graphql_http).post(graphql_http))
        .layer(cors(&state.config.cors_origins));
    let webhooks = Router::new()
        .route("/webhooks/stripe", post(stripe::webhook::receive))
        .layer(DefaultBodyLimit::max(stripe::webhook::MAX_BODY_BYTES))
        .with_state(state.clone());
    Router::new()
        .merge(graphql)
        .route("/graphql/ws", get(graphql_ws))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(admin::routes())
        .with_state(HttpState(std::sync::Arc::new(HttpShared {
            app: state,
            schema,
            query_schema,
            limit,
            documents: graphql::ParsedDocuments::default(),
        })))
        .merge(webhooks)
        // Outermost first: the id is set before the span that shows it, and echoed back.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Longest client-given request id shown in logs.
const MAX_REQUEST_ID_LOGGED: usize = 64;

/// The span every log record of a request carries: its id (the caller's `x-request-id`,
/// or a new UUID, echoed in the response) and, for GraphQL, the operation name. Never
/// headers or bodies: they carry keys and customer data.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
        .map(|id| id.chars().take(MAX_REQUEST_ID_LOGGED).collect::<String>())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        operation = tracing::field::Empty,
    )
}

/// CORS for `/graphql`, for storefronts in a browser on `origins`. Browsers may send only
/// `Content-Type` and `Accept`, never credentials nor `Authorization`: cross-origin, only
/// the public fields work. No origins: no CORS headers, so browsers keep the same-origin rule.
fn cors(origins: &[axum::http::HeaderValue]) -> CorsLayer {
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let allowed = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().cloned())
    };
    CorsLayer::new()
        .allow_origin(allowed)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::ACCEPT])
        .max_age(CORS_MAX_AGE)
}

/// The 429 for a client past the anonymous rate limit.
fn throttled(retry_after: std::time::Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let refused = graphql::Refusal {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "THROTTLED",
        message: format!("too many requests without an API key from this address; retry in {seconds} s"),
    };
    let mut response = MediaType::Json.refuse(&refused);
    response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    response
}

/// Takes a rate-limit token unless the request carries a key known to be valid; `Err`
/// says how long the client must wait.
fn admit(
    state: &HttpState,
    parts: &axum::http::request::Parts,
    authorization: Option<&str>,
) -> Result<(), std::time::Duration> {
    if state.app.keys.is_known_valid(authorization) {
        return Ok(());
    }
    state.limit.check(&parts.headers, &parts.extensions)
}

/// `GET` and `POST /graphql` (see [`graphql`] for the protocol): refusals first, then
/// the caller's identity, then the schema.
async fn graphql_http(State(state): State<HttpState>, request: axum::extract::Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if let Err(wait) = admit(&state, &parts, authorization) {
        return throttled(wait);
    }
    if graphql::wants_html(&parts.method, &parts.headers) {
        return admin::graphiql_page(&parts.headers);
    }
    let Some(media_type) = MediaType::negotiate(&parts.headers) else {
        let refused = graphql::refusal(
            StatusCode::NOT_ACCEPTABLE,
            "accept application/graphql-response+json or application/json",
        );
        return MediaType::Json.refuse(&refused);
    };
    let is_get = parts.method == Method::GET;
    let mut request = match read_request(&state, is_get, &parts, body).await {
        Ok(request) => request,
        Err(refused) => return media_type.refuse(&refused),
    };
    // Parsed once, here; a parse error is answered without running (or parsing) again.
    let unparsable = state.documents.parse(&mut request).err();
    let mutation = unparsable.is_none() && graphql::selects_mutation(&mut request);
    // GET must be safe (GraphQL over HTTP): links, prefetchers and caches may repeat it.
    if is_get && mutation {
        let refused = graphql::refusal(StatusCode::METHOD_NOT_ALLOWED, "mutations need POST");
        return media_type.refuse(&refused);
    }
    let operation = match unparsable {
        None => graphql::operation_name(&mut request),
        Some(_) => request.operation_name.clone(),
    };
    if let Some(name) = &operation {
        tracing::Span::current().record("operation", name.as_str());
    }
    let caller = match state.app.keys.authenticate(authorization).await {
        Ok(caller) => caller,
        Err(err) => return media_type.refuse(&err.into()),
    };
    let response = match unparsable {
        Some(error) => async_graphql::Response::from_errors(vec![error]),
        // One GraphQL request multiplexes hundreds of resolver futures in one task. Under
        // tokio's cooperative budget the task would be forced to yield part-way through
        // waking them, and the DataLoader's batch window would close on half a batch.
        // Depth and complexity limits bound the work done without yielding.
        None if mutation => tokio::task::coop::unconstrained(state.schema.execute(request.data(caller))).await,
        // Below the priority of the rest: see `query_threads`.
        None => match query_threads::execute(&state.query_schema, request.data(caller)).await {
            Ok(response) => response,
            Err(err) => return media_type.refuse(&err.into()),
        },
    };
    let outcome = response.errors.first().map_or("ok", graphql::error_code);
    crate::metrics::graphql_request(operation.as_deref(), outcome, started.elapsed());
    media_type.respond(response)
}

/// Reads the GraphQL request out of a `GET` query string or a `POST` body. The body is
/// read only after its headers passed, and never past `STOCKROOM_MAX_BODY_BYTES`.
async fn read_request(
    state: &HttpState,
    is_get: bool,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
) -> Result<async_graphql::Request, graphql::Refusal> {
    if is_get {
        return graphql::read_query_string(parts.uri.query());
    }
    graphql::check_post_headers(&parts.headers)?;
    let limit = state.app.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|err| {
            if err.into_inner().is::<http_body_util::LengthLimitError>() {
                graphql::refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {limit} bytes (STOCKROOM_MAX_BODY_BYTES)"),
                )
            } else {
                graphql::refusal(StatusCode::BAD_REQUEST, "the body could not be read")
            }
        })?;
    graphql::read_post_body(&bytes)
}

/// Subscriptions over WebSocket (graphql-transport-ws, and legacy graphql-ws). The API
/// key comes in the `connection_init` payload, `{"authorization": "Bearer <key>"}`; a
/// connection without a valid one is refused before any subscription starts, and each
/// subscription field checks the key's role. Opening a connection counts against the
/// anonymous rate limit: the key is not known yet.
async fn graphql_ws(
    State(state): State<HttpState>,
    upgrade: WebSocketUpgrade,
    request: axum::http::request::Parts,
) -> Response {
    if let Err(wait) = admit(&state, &request, None) {
        return throttled(wait);
    }
    // The first subprotocol the client offers that we speak.
    let protocol = request
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|offered| offered.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|name| name.trim().parse::<Protocols>().ok())
        });
    let Some(protocol) = protocol else {
        return (StatusCode::BAD_REQUEST, "offer graphql-transport-ws (or graphql-ws)").into_response();
    };
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
        state
            .app
            .sockets
            .clone()
            .track_future(serve_socket(socket, state, protocol))
    })
}

/// One WebSocket connection, until the client leaves or the process stops. On a stop,
/// every subscription ends (on the same signal, see `SubscriptionRoot`): their `complete`
/// messages go out, then a close frame (1001, going away) tells the client to reconnect
/// elsewhere.
async fn serve_socket(socket: WebSocket, state: HttpState, protocol: Protocols) {
    let (mut sink, incoming) = socket.split();
    let incoming = incoming
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let keys = state.app.keys.clone();
    let outgoing = async_graphql::http::WebSocket::new(state.schema.clone(), incoming, protocol)
        .on_connection_init(move |payload| async move {
            // Any case: GraphiQL sends its headers editor as the payload, `Authorization` and all.
            let authorization = payload
                .as_object()
                .and_then(|fields| {
                    fields
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                })
                .and_then(|(_, value)| value.as_str());
            match keys.authenticate(authorization).await? {
                caller @ Caller::Key { .. } => {
                    let mut data = Data::default();
                    data.insert(caller);
                    data.insert(IdentifiedPerConnection);
                    Ok(data)
                }
                Caller::Anonymous => Err(Error::Unauthenticated.into()),
            }
        })
        .map(|message| match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        });
    futures_util::pin_mut!(outgoing);
    let stopping = state.app.stopping.clone();
    loop {
        tokio::select! {
            message = outgoing.next() => {
                let Some(message) = message else { return };
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            () = stopping.cancelled() => break,
        }
    }
    // Everything the subscriptions have left to say is ready now: their `complete`s.
    while let Some(Some(message)) = outgoing.next().now_or_never() {
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let close = CloseFrame {
        code: axum::extract::ws::close_code::AWAY,
        reason: "the server is stopping".into(),
    };
    sink.send(Message::Close(Some(close))).await.ok();
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let (max, open, idle) = state.app.db.pool_state();
    crate::metrics::pool(max, open, idle);
    crate::metrics::subscribers(state.app.events.subscribers());
    let text = crate::metrics::handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn health() -> StatusCode {
    StatusCode::OK
}

/// 503 while stopping (a load balancer should send new requests elsewhere) or while the
/// database does not answer, through any of the pools (requests, queries, combined writes).
async fn ready(State(state): State<HttpState>) -> StatusCode {
    if state.app.stopping.is_cancelled() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let pinged = tokio::try_join!(
        state.app.db.conn().ping(),
        state.app.query_db.conn().ping(),
        state.app.placements.database().conn().ping()
    );
    match pinged {
        Ok(_) => StatusCode::OK,
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database did not answer");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}
