//! Static assets embedded in the binary, so `cargo run --release` serves the
//! whole web client without Node or files on disk.

use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;

/// The production build of the Svelte client (`web/dist/`, committed).
#[derive(RustEmbed)]
#[folder = "../../web/dist/"]
struct WebDist;

/// The dependency-free test page, like the original Gleam project's.
const TEST_PAGE: &str = include_str!("../static/test.html");

pub async fn test_page() -> Html<&'static str> {
    Html(TEST_PAGE)
}

/// Serves a file from the web build; paths without an extension fall back to
/// `index.html` so client-side routes work.
pub async fn web_client(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if let Some(file) = WebDist::get(path) {
        return file_response(path, file);
    }
    let looks_like_file = path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'));
    match WebDist::get("index.html") {
        Some(index) if !looks_like_file => file_response("index.html", index),
        _ => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
}

fn file_response(path: &str, file: rust_embed::EmbeddedFile) -> Response {
    // Vite puts content-hashed files under assets/: cache those for good,
    // and always revalidate everything else (index.html names the hashes).
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, file.metadata.mimetype().to_owned()),
            (header::CACHE_CONTROL, cache.to_owned()),
        ],
        file.data,
    )
        .into_response()
}
