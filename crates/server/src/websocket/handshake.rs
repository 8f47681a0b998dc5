//! The opening handshake (RFC 6455 section 4.2): checking the upgrade
//! request, answering 101, and handing the upgraded connection to a session.
//!
//! Every refusal is a plain HTTP answer with a sentence saying what to fix:
//! 400 for a malformed request, 426 (with `Sec-WebSocket-Version: 13`, as
//! section 4.2.2 requires) for another protocol version.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::{Reader, Settings, Writer};

/// A valid WebSocket upgrade request (HTTP/1.1, RFC 6455 section 4.2.1).
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why an upgrade request is refused.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    reason: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if self.status == StatusCode::UPGRADE_REQUIRED {
            let version = (
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return (self.status, [version], self.reason).into_response();
        }
        (self.status, self.reason).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let bad = |reason| {
            Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                reason,
            })
        };
        if parts.method != Method::GET {
            return bad("A WebSocket upgrade must be a GET request.");
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade")
            || !header_has_token(&parts.headers, header::UPGRADE, "websocket")
        {
            return bad(
                "This endpoint speaks WebSocket: send Connection: Upgrade and Upgrade: websocket.",
            );
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(Refusal {
                status: StatusCode::UPGRADE_REQUIRED,
                reason: "Only WebSocket version 13 is supported: send Sec-WebSocket-Version: 13.",
            });
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return bad("The Sec-WebSocket-Key header is missing.");
        };
        if !is_valid_key(key.as_bytes()) {
            return bad("Sec-WebSocket-Key must be the base64 encoding of 16 bytes.");
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return bad("This connection cannot be upgraded (WebSocket needs HTTP/1.1).");
        };
        Ok(Upgrade { key, on_upgrade })
    }
}

/// Section 4.2.1: "a base64-encoded value that, when decoded, is 16 bytes
/// in length".
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|raw| raw.len() == 16)
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + the RFC's GUID)).
fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

impl Upgrade {
    /// Answers 101 Switching Protocols and, once hyper hands over the
    /// connection, runs `session` on a task tracked by `tracker`.
    pub fn on_upgrade<F, Fut>(
        self,
        tracker: &TaskTracker,
        settings: Settings,
        session: F,
    ) -> Response
    where
        F: FnOnce(Reader, Writer) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tracker.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let (read, write) = tokio::io::split(TokioIo::new(upgraded));
                    // Boxed: this future lives as long as the connection.
                    Box::pin(session(Reader::new(read, settings), Writer::new(write))).await;
                }
                Err(e) => warn!(error = %e, "WebSocket upgrade failed"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
            ],
            [(header::SEC_WEBSOCKET_ACCEPT, accept)],
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_must_be_16_bytes_of_base64() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"short"));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ")); // unpadded
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZSE=")); // 17 bytes
        assert!(!is_valid_key(b"!!!!!!!!!!!!!!!!!!!!!!=="));
    }

    #[test]
    fn connection_header_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(header_has_token(&headers, header::CONNECTION, "upgrade"));
        assert!(!header_has_token(&headers, header::CONNECTION, "close"));
    }
}
