//! Static assets embedded in the binary, so `cargo run --release` serves the
//! whole web client without Node or files on disk.

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// The production build of the Svelte client (`web/dist/`, committed).
#[derive(RustEmbed)]
#[folder = "../../web/dist/"]
struct WebDist;

/// The dependency-free test page, like the original Gleam project's.
const TEST_PAGE: &str = include_str!("../static/test.html");

/// The test page keeps its script and style inline (it is one dependency-free
/// file by design), so its policy allows inline code; it never turns received
/// text into markup, which is what `'unsafe-inline'` would otherwise expose.
pub async fn test_page(headers: HeaderMap) -> Response {
    let csp = policy(&headers, "'unsafe-inline'");
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        TEST_PAGE,
    )
        .into_response();
    security_headers(response.headers_mut(), &csp);
    response
}

/// Serves a file from the web build; paths without an extension fall back to
/// `index.html` so client-side routes work.
pub async fn web_client(uri: Uri, headers: HeaderMap) -> Response {
    let csp = policy(&headers, "'self'");
    let mut response = web_file(&uri);
    security_headers(response.headers_mut(), &csp);
    response
}

fn web_file(uri: &Uri) -> Response {
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

/// The Content-Security-Policy for a page: scripts and styles from `code`
/// (`'self'` for the app: Vite emits no inline code), images from the app or
/// `data:` (the favicon), and network access only to this origin and its own
/// WebSocket endpoint.
///
/// `'self'` covers `ws:`/`wss:` only in CSP Level 3 browsers, so the
/// WebSocket origin is also named explicitly, built from the request's `Host`
/// header. The header is client input: anything but a plain host[:port] is
/// left out rather than echoed into the policy.
fn policy(headers: &HeaderMap, code: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_plain_host(h));
    let sockets = host.map_or_else(String::new, |h| format!(" ws://{h} wss://{h}"));
    format!(
        "default-src 'none'; script-src {code}; style-src {code}; img-src 'self' data:; \
         connect-src 'self'{sockets}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// `host`, `host:port`, `1.2.3.4:port` or `[v6]:port`: nothing that could
/// end a CSP directive or add a source.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn security_headers(headers: &mut HeaderMap, csp: &str) {
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_str(host).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    #[test]
    fn the_policy_names_the_websocket_origin_of_a_plain_host() {
        let csp = policy(&with_host("127.0.0.1:3000"), "'self'");
        assert!(csp.contains("connect-src 'self' ws://127.0.0.1:3000 wss://127.0.0.1:3000;"));
        assert!(csp.contains("script-src 'self';"));
        assert!(csp.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn a_host_header_that_could_inject_a_source_is_left_out() {
        for host in ["evil.example; script-src *", "a b", "x'y", ""] {
            let csp = policy(&with_host(host), "'self'");
            assert!(csp.contains("connect-src 'self'; "), "{host:?} gave {csp}");
            assert!(!csp.contains("evil"), "{csp}");
        }
        assert!(policy(&HeaderMap::new(), "'self'").contains("connect-src 'self'; "));
    }
}
