//! The built-in admin page (`/admin`) and GraphiQL, with every asset they load served by
//! this binary: both work on a machine with no internet access. The pages talk to the
//! public GraphQL API only, with the key the user pastes in.

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

/// What the pages may load and connect to: this origin only. Inline styles are allowed
/// for the chart library, which sizes its canvas with them; scripts never inline.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/admin", get(admin_page))
        .route("/admin/", get(admin_page))
        .route("/admin/assets/{*path}", get(asset))
}

async fn admin_page(headers: HeaderMap) -> Response {
    serve("admin/index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// GraphiQL, answered at `GET /graphql` to a browser.
pub(super) fn graphiql_page(headers: &HeaderMap) -> Response {
    serve("graphiql/index.html", headers)
}

/// Answers with one embedded file. Its content hash is the ETag, so a browser revalidates
/// cheaply and never keeps a page from an older binary.
fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let mut response = if request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|given| given.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match file.data {
            // Release builds: the bytes are in the binary; no copy per request.
            std::borrow::Cow::Borrowed(bytes) => axum::body::Body::from(bytes).into_response(),
            std::borrow::Cow::Owned(bytes) => bytes.into_response(),
        }
    };
    let headers = response.headers_mut();
    if let Ok(content_type) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
