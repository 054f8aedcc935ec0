//! The demo app, the admin page and the browser SDK, embedded into the binary
//! at build time (crates/volley-hub/assets; the SDK is built from clients/js).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The demo app (`/`).
pub(crate) const INDEX_HTML: &[u8] = include_bytes!("../assets/index.html");
/// The admin page (`/admin`).
pub(crate) const ADMIN_HTML: &[u8] = include_bytes!("../assets/admin.html");
/// The browser SDK (`/volley.js`).
pub(crate) const VOLLEY_JS: &[u8] = include_bytes!("../assets/volley.js");
const APP_JS: &[u8] = include_bytes!("../assets/app.js");
const ADMIN_JS: &[u8] = include_bytes!("../assets/admin.js");
const STYLE_CSS: &[u8] = include_bytes!("../assets/style.css");

/// An HTML page.
pub(crate) fn page(body: &'static [u8]) -> Response {
    with_type(body, "text/html; charset=utf-8")
}

/// A JavaScript module.
pub(crate) fn script(body: &'static [u8]) -> Response {
    with_type(body, "text/javascript; charset=utf-8")
}

fn with_type(body: &'static [u8], content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A file under `/assets/`.
pub(crate) fn by_name(name: &str) -> Option<Response> {
    Some(match name {
        "app.js" => script(APP_JS),
        "admin.js" => script(ADMIN_JS),
        "volley.js" => script(VOLLEY_JS),
        "style.css" => with_type(STYLE_CSS, "text/css; charset=utf-8"),
        _ => return None,
    })
}
