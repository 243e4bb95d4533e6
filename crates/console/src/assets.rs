//! The console's static files, built into the binary: nothing is fetched at
//! run time. Leaflet 1.9.4 (BSD-2-Clause, `assets/leaflet-1.9.4/LICENSE`) draws
//! the map.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "leaflet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/leaflet-1.9.4/leaflet.js"),
    ),
    (
        "leaflet.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/leaflet-1.9.4/leaflet.css"),
    ),
    (
        "audit.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/audit.js"),
    ),
    (
        "policy.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/policy.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
];

pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, kind, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}
