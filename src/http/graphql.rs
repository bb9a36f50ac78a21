//! GraphQL over HTTP (the GraphQL-over-HTTP specification, checked in the tests by
//! graphql-http's own server audit): reading a request from `POST` or `GET`, choosing the
//! response's media type from `Accept`, and the status codes that go with each.
//!
//! Done by hand rather than by async-graphql-axum's extractor because that extractor reads
//! bodies of any size (axum's body limit never sees them), reads any content type as
//! JSON, and answers every response as `application/graphql-response+json` with status
//! 200 and a `data` entry, which the specification forbids for requests that never ran.
//!
//! - `POST` needs `Content-Type: application/json` (anything else, multipart included,
//!   is 415: Stockroom has no uploads) and a body within `STOCKROOM_MAX_BODY_BYTES`
//!   (413, checked before anything is parsed). The body is one JSON object; batches are
//!   not supported (400).
//! - `GET` reads `query`, `operationName`, `variables` and `extensions` from the query
//!   string and may not run a mutation (405).
//! - `Accept: application/graphql-response+json` gets that media type, and a request that
//!   fails before execution (unparsable, invalid, variables that do not fit) gets 400 and
//!   no `data`. `application/json`, `*/*` or no `Accept` gets `application/json` and 200,
//!   also without `data` for such a request. Nothing acceptable: 406.

use async_graphql::{
    ServerError, Variables,
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};
use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Map, Value};

const JSON: &str = "application/json; charset=utf-8";
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";

/// The media type a response is written in, chosen from the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/graphql-response+json`: status codes tell request errors apart.
    GraphQLResponse,
    /// `application/json`: the legacy type; every GraphQL response is a 200.
    Json,
}

impl MediaType {
    /// Negotiates from `Accept` (missing: `application/json`); `None` if nothing we
    /// speak is acceptable. The highest `q` wins; at equal `q`, the first listed.
    pub fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
        let Some(accept) = headers.get(header::ACCEPT) else {
            return Some(MediaType::Json);
        };
        let accept = accept.to_str().ok()?;
        let mut best: Option<(f32, MediaType)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let essence = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|param| param.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, value)| value.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let media_type = match essence.as_str() {
                "application/graphql-response+json" => MediaType::GraphQLResponse,
                "application/json" | "application/*" | "*/*" => MediaType::Json,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, media_type));
            }
        }
        best.map(|(_, media_type)| media_type)
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            MediaType::GraphQLResponse => GRAPHQL_RESPONSE_JSON,
            MediaType::Json => JSON,
        })
    }

    /// Writes a GraphQL response. One that failed before execution gets no `data`, a
    /// `BAD_USER_INPUT` code on each error (async-graphql's parse and validation errors
    /// carry none), and as `application/graphql-response+json` the status 400.
    pub fn respond(self, mut response: async_graphql::Response) -> Response {
        for error in &mut response.errors {
            let code = error_code(error).to_owned();
            error.extensions.get_or_insert_with(Default::default).set("code", code);
        }
        let request_error = is_request_error(&response);
        if !request_error {
            // The common case, written straight from the response.
            let mut written = match serde_json::to_string(&response) {
                Ok(text) => (StatusCode::OK, text).into_response(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            };
            written.headers_mut().insert(header::CONTENT_TYPE, self.content_type());
            return written;
        }
        let mut body = serde_json::to_value(&response).unwrap_or_else(|_| Value::Object(Map::new()));
        if let Value::Object(fields) = &mut body {
            fields.remove("data");
        }
        let status = if self == MediaType::GraphQLResponse {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        self.write(status, &body)
    }

    /// A request refused before GraphQL saw it, in the GraphQL error shape.
    pub fn refuse(self, refusal: &Refusal) -> Response {
        let body = serde_json::json!({
            "errors": [{ "message": refusal.message, "extensions": { "code": refusal.code } }]
        });
        self.write(refusal.status, &body)
    }

    fn write(self, status: StatusCode, body: &Value) -> Response {
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, self.content_type());
        response
    }
}

/// The `extensions.code` an error is answered with. Every error of ours carries one.
/// Those async-graphql raises itself carry none: parse and validation errors, and an
/// argument whose variables do not fit its input type, which validation lets through to
/// the field when the input object also holds an optional variable the request left out.
/// All are bad input.
pub fn error_code(error: &ServerError) -> &str {
    match error.extensions.as_ref().and_then(|extensions| extensions.get("code")) {
        Some(async_graphql::Value::String(code)) => code,
        _ => "BAD_USER_INPUT",
    }
}

/// Whether a response failed before execution began (a parse or validation error, an
/// unknown operation, variables that do not fit): then it has no `data`. Errors raised by
/// resolvers always carry the `path` of their field; these never do.
fn is_request_error(response: &async_graphql::Response) -> bool {
    !response.errors.is_empty()
        && response.data == async_graphql::Value::Null
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// The fields of a GraphQL-over-HTTP request, before they are trusted.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<Map<String, Value>>,
    // Read only to refuse a malformed one: Stockroom uses no request extensions.
    #[allow(dead_code)]
    extensions: Option<Map<String, Value>>,
}

/// The same, as a `GET` query string carries them (JSON values as strings).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryString {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// Why a request was refused before GraphQL saw it.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    /// The contract's `extensions.code`.
    pub code: &'static str,
    pub message: String,
}

/// A refusal of the request itself (`BAD_USER_INPUT`), with `status` saying why (400, 405,
/// 406, 413, 415).
pub fn refusal(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code: "BAD_USER_INPUT",
        message: message.into(),
    }
}

impl From<crate::error::Error> for Refusal {
    /// A failure to serve the request at all (the database is down while the caller's key
    /// is checked): 503 if a retry may succeed, else 500, with the error's own code.
    fn from(err: crate::error::Error) -> Self {
        Refusal {
            status: if err.is_transient() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            code: err.code(),
            message: err.to_string(),
        }
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    refusal(StatusCode::BAD_REQUEST, message)
}

impl Fields {
    fn into_request(self) -> Result<async_graphql::Request, Refusal> {
        let query = self.query.ok_or_else(|| bad_request("the request has no query"))?;
        let mut request = async_graphql::Request::new(query);
        if let Some(name) = self.operation_name {
            request = request.operation_name(name);
        }
        if let Some(variables) = self.variables {
            request = request.variables(Variables::from_json(Value::Object(variables)));
        }
        Ok(request)
    }
}

/// Whether `headers` declare a JSON body (`application/json`, any parameters).
fn is_json_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Checks a `POST`'s content type before its body is read.
pub fn check_post_headers(headers: &HeaderMap) -> Result<(), Refusal> {
    if is_json_body(headers) {
        return Ok(());
    }
    let declared = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    let message = match declared {
        None => "a POST needs Content-Type: application/json".to_owned(),
        Some(kind) if kind.trim_start().to_ascii_lowercase().starts_with("multipart/") => {
            "multipart requests are not supported: Stockroom has no uploads; send application/json".to_owned()
        }
        Some(kind) => format!("Content-Type {kind:?} is not supported; send application/json"),
    };
    Err(refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, message))
}

/// Reads a `POST` body (already within the size limit) into a request.
pub fn read_post_body(body: &Bytes) -> Result<async_graphql::Request, Refusal> {
    // A derived struct would also accept a JSON array (by position): say what it is.
    match body.trim_ascii_start().first() {
        Some(b'{') => {}
        Some(b'[') => return Err(bad_request("batched requests are not supported; send one JSON object")),
        _ => return Err(bad_request("the body must be a JSON object")),
    }
    let fields: Fields = serde_json::from_slice(body).map_err(|err| bad_request(format!("invalid request: {err}")))?;
    fields.into_request()
}

/// Reads a `GET` query string into a request.
pub fn read_query_string(query: Option<&str>) -> Result<async_graphql::Request, Refusal> {
    let raw: QueryString = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|err| bad_request(format!("invalid query string: {err}")))?;
    let json_object = |value: Option<String>, what: &str| -> Result<Option<Map<String, Value>>, Refusal> {
        match value.as_deref().map(serde_json::from_str::<Option<Map<String, Value>>>) {
            None => Ok(None),
            Some(Ok(map)) => Ok(map),
            Some(Err(_)) => Err(bad_request(format!("{what} must be a JSON object"))),
        }
    };
    Fields {
        query: raw.query,
        operation_name: raw.operation_name,
        variables: json_object(raw.variables, "variables")?,
        extensions: json_object(raw.extensions, "extensions")?,
    }
    .into_request()
}

/// Longest query text whose parsed document is kept.
const MAX_KEPT_QUERY_BYTES: usize = 8 * 1024;

/// Memory the kept documents may take, estimated as below.
const KEPT_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

/// A parsed document takes up to about this many bytes per byte of its text (a
/// selection is ~200 bytes in memory and can be two characters of text, `a `).
const DOCUMENT_BYTES_PER_TEXT_BYTE: usize = 100;

/// Parsed documents by query text. Storefronts and checkouts send the same few texts
/// with new variables each time, and parsing (async-graphql's grammar) took a sixth of
/// the server's CPU per storefront read. Only documents that declare variables are kept:
/// a text with its inputs written inline is rarely sent twice. Bounded by an estimate of
/// their memory, so a stream of distinct texts, keyed or not, only evicts.
#[derive(Clone)]
pub struct ParsedDocuments(moka::sync::Cache<String, ExecutableDocument>);

impl Default for ParsedDocuments {
    fn default() -> Self {
        let weight = |query: &String, _: &ExecutableDocument| {
            u32::try_from(query.len().saturating_mul(DOCUMENT_BYTES_PER_TEXT_BYTE)).unwrap_or(u32::MAX)
        };
        ParsedDocuments(
            moka::sync::Cache::builder()
                .max_capacity(KEPT_DOCUMENT_BYTES)
                .weigher(weight)
                .build(),
        )
    }
}

impl ParsedDocuments {
    /// Parses `request`'s document into it, or copies it from the last time its text was
    /// seen; the error if it does not parse (answered without parsing it again).
    pub fn parse(&self, request: &mut async_graphql::Request) -> Result<(), ServerError> {
        let keepable = request.query.len() <= MAX_KEPT_QUERY_BYTES;
        if keepable && let Some(document) = self.0.get(&request.query) {
            request.set_parsed_query(document);
            return Ok(());
        }
        let document = request.parsed_query()?;
        let declares_variables = document
            .operations
            .iter()
            .any(|(_, operation)| !operation.node.variable_definitions.is_empty());
        if keepable && declares_variables {
            let document = document.clone();
            self.0.insert(request.query.clone(), document);
        }
        Ok(())
    }
}

/// The name of the operation a request runs, for its log span and latency metric:
/// `operationName` when the client sent one, else the name in the document when it holds
/// exactly one named operation (most clients send `mutation Place(…) {…}` and nothing
/// else). The document is parsed here once and kept in the request for execution.
///
/// Read here rather than by a schema extension: any extension sends every field of every
/// response through async-graphql's per-field extension chain, which cost more than half
/// the CPU of a 250-sku `availability` answer.
pub fn operation_name(request: &mut async_graphql::Request) -> Option<String> {
    if let Some(name) = &request.operation_name {
        return Some(name.clone());
    }
    // Parsed already, if it parses at all ([`ParsedDocuments::parse`]).
    let document: Result<&ExecutableDocument, ServerError> = request.parsed_query();
    match &document.ok()?.operations {
        DocumentOperations::Multiple(operations) if operations.len() == 1 => {
            operations.keys().next().map(ToString::to_string)
        }
        _ => None,
    }
}

/// Whether the operation a request would run is a mutation (refused over `GET`, which
/// must be safe to repeat). A document that does not parse is left to GraphQL to report.
pub fn selects_mutation(request: &mut async_graphql::Request) -> bool {
    let name = request.operation_name.clone();
    let document: Result<&ExecutableDocument, ServerError> = request.parsed_query();
    let Ok(document) = document else {
        return false;
    };
    document.operations.iter().any(|(operation_name, operation)| {
        operation.node.ty == OperationType::Mutation
            && (name.is_none() || operation_name.map(|n| n.as_str()) == name.as_deref())
    })
}

/// Whether a `GET` asks for the GraphiQL page rather than for a GraphQL result.
pub fn wants_html(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn accept_picks_the_preferred_type_we_speak() {
        assert_eq!(MediaType::negotiate(&HeaderMap::new()), Some(MediaType::Json));
        assert_eq!(MediaType::negotiate(&accept("*/*")), Some(MediaType::Json));
        assert_eq!(
            MediaType::negotiate(&accept("application/graphql-response+json, application/json;q=0.9")),
            Some(MediaType::GraphQLResponse)
        );
        assert_eq!(
            MediaType::negotiate(&accept("application/graphql-response+json;q=0.5, application/json")),
            Some(MediaType::Json)
        );
        assert_eq!(MediaType::negotiate(&accept("text/plain")), None);
    }

    #[test]
    fn bodies_must_be_one_json_object_with_a_query() {
        assert!(read_post_body(&Bytes::from_static(br#"{"query":"{ __typename }"}"#)).is_ok());
        for body in [
            &br#"["{ __typename }"]"#[..],
            br#"{"qeury":"{ __typename }"}"#,
            br#"{"query":1}"#,
            br#"{"query":"{ a }","variables":"{}"}"#,
            br#"{"query":"{ a }","extensions":[]}"#,
            b"",
            b"{oops",
        ] {
            let refused = read_post_body(&Bytes::copy_from_slice(body)).unwrap_err();
            assert_eq!(
                refused.status,
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn get_reads_operation_name_and_json_variables() {
        let request = read_query_string(Some(
            "query=query+A(%24n%3AInt)%7B__typename%7D&operationName=A&variables=%7B%22n%22%3A1%7D",
        ))
        .unwrap();
        assert_eq!(request.operation_name.as_deref(), Some("A"));
        assert_eq!(request.query, "query A($n:Int){__typename}");
        assert!(read_query_string(Some("query=%7Ba%7D&variables=%5B%5D")).is_err());
    }

    #[test]
    fn only_a_selected_mutation_counts_as_one() {
        let mut mutation = async_graphql::Request::new("mutation { a }");
        assert!(selects_mutation(&mut mutation));
        let mut query_of_two = async_graphql::Request::new("query Q { a } mutation M { b }").operation_name("Q");
        assert!(!selects_mutation(&mut query_of_two));
    }

    fn with_variables(query: &str) -> async_graphql::Request {
        let variables = Variables::from_json(serde_json::json!({ "s": ["A"] }));
        async_graphql::Request::new(query).variables(variables)
    }

    #[test]
    fn documents_that_declare_variables_are_parsed_once_and_named() {
        let documents = ParsedDocuments::default();
        let text = "query Shelf($s: [String!]!) { availability(salesChannelId: \"1\", skus: $s) { sku } }";
        documents.parse(&mut with_variables(text)).unwrap();
        assert!(documents.0.contains_key(text));
        // The second request gets the kept document and names its operation from it.
        let mut second = with_variables(text);
        documents.parse(&mut second).unwrap();
        assert_eq!(operation_name(&mut second).as_deref(), Some("Shelf"));

        // Inputs written inline, even with (undeclared) variables sent along.
        let inline = "{ availability(salesChannelId: \"1\", skus: [\"A\"]) { sku } }";
        documents.parse(&mut with_variables(inline)).unwrap();
        let long = format!("query Q($s: [String!]!) {{ a {} }}", " ".repeat(MAX_KEPT_QUERY_BYTES));
        documents.parse(&mut with_variables(&long)).unwrap();
        let broken = "query Q($s: [String!]!) { a ";
        assert!(documents.parse(&mut with_variables(broken)).is_err());
        documents.0.run_pending_tasks();
        for not_kept in [inline, long.as_str(), broken] {
            assert!(!documents.0.contains_key(not_kept), "kept {not_kept:.40}");
        }
        assert_eq!(documents.0.entry_count(), 1);
    }
}
