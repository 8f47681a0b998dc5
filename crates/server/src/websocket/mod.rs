//! The WebSocket layer: the HTTP upgrade, then a [`Reader`] and a [`Writer`]
//! over the upgraded connection.
//!
//! Why not tungstenite (axum's `WebSocket`): its output buffer keeps the size
//! of the largest frame it ever wrote and its input buffer is zero-filled to
//! capacity, both for the life of the connection, and every frame is copied
//! through them. Here the writer encodes a batch of shared, pre-encoded
//! frames into one buffer, writes it with one call and lets a large buffer
//! go afterwards, so an idle connection keeps almost nothing. The protocol
//! subset is small: no extensions, no subprotocols, server frames unmasked,
//! client frames masked ([`frame`]).

pub mod frame;

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::task::TaskTracker;
use tracing::warn;

use frame::{FrameError, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};

type Io = TokioIo<Upgraded>;

/// A valid WebSocket upgrade request (HTTP/1.1, RFC 6455 section 4.2.1).
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let bad = |why| Err((StatusCode::BAD_REQUEST, why));
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
            return bad("Only WebSocket version 13 is supported.");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return bad("The Sec-WebSocket-Key header is missing.");
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err((
                StatusCode::UPGRADE_REQUIRED,
                "This connection cannot be upgraded.",
            ));
        };
        Ok(Upgrade { key, on_upgrade })
    }
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

/// Sizes of a connection's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    /// Bytes reserved for each read.
    pub read: usize,
    /// Largest frame or fragmented message accepted (1009 beyond).
    pub max_message: usize,
}

impl Upgrade {
    /// Answers 101 Switching Protocols and, once hyper hands over the
    /// connection, runs `session` on a task tracked by `tracker`.
    pub fn on_upgrade<F, Fut>(self, tracker: &TaskTracker, buffers: Buffers, session: F) -> Response
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
                    let reader = Reader::new(read, buffers);
                    let writer = Writer {
                        io: write,
                        buf: Vec::new(),
                    };
                    // Boxed: this future lives as long as the connection.
                    Box::pin(session(reader, writer)).await;
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

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    Ping(Bytes),
    /// The client's close code, if it sent one.
    Close(Option<u16>),
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("connection closed without a close frame")]
    Eof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The reading half: frames in, messages out.
pub struct Reader {
    io: ReadHalf<Io>,
    buf: BytesMut,
    buffers: Buffers,
    /// A fragmented message in progress: its opcode and what arrived so far.
    partial: Option<(u8, BytesMut)>,
}

impl Reader {
    fn new(io: ReadHalf<Io>, buffers: Buffers) -> Self {
        Reader {
            io,
            buf: BytesMut::new(),
            buffers,
            partial: None,
        }
    }

    /// The next message. Cancel-safe: bytes read so far stay in the buffer,
    /// so this can be one branch of a `select!`.
    pub async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            while let Some(frame) = frame::parse(&mut self.buf, self.buffers.max_message)? {
                if let Some(message) = self.assemble(frame)? {
                    return Ok(message);
                }
            }
            if self.buf.capacity() - self.buf.len() < 64 {
                self.buf.reserve(self.buffers.read);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(ReadError::Eof);
            }
        }
    }

    fn assemble(&mut self, frame: frame::Frame) -> Result<Option<Incoming>, ReadError> {
        let protocol = |why| ReadError::Frame(FrameError::Protocol(why));
        match frame.opcode {
            OP_PING => Ok(Some(Incoming::Ping(frame.payload.freeze()))),
            OP_PONG => Ok(None),
            OP_CLOSE => {
                let code = (frame.payload.len() >= 2)
                    .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                Ok(Some(Incoming::Close(code)))
            }
            OP_TEXT | OP_BINARY if self.partial.is_some() => {
                Err(protocol("a new message began before the last one ended"))
            }
            OP_TEXT | OP_BINARY if frame.fin => finish(frame.opcode, frame.payload).map(Some),
            OP_TEXT | OP_BINARY => {
                self.partial = Some((frame.opcode, frame.payload));
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some((opcode, mut message)) = self.partial.take() else {
                    return Err(protocol("a continuation frame without a message"));
                };
                let size = message.len() + frame.payload.len();
                if size > self.buffers.max_message {
                    return Err(FrameError::TooBig {
                        size: size as u64,
                        limit: self.buffers.max_message,
                    }
                    .into());
                }
                message.extend_from_slice(&frame.payload);
                if frame.fin {
                    finish(opcode, message).map(Some)
                } else {
                    self.partial = Some((opcode, message));
                    Ok(None)
                }
            }
            _ => Err(protocol("unknown opcode")),
        }
    }
}

fn finish(opcode: u8, payload: BytesMut) -> Result<Incoming, ReadError> {
    if opcode == OP_BINARY {
        return Ok(Incoming::Binary);
    }
    String::from_utf8(payload.to_vec())
        .map(Incoming::Text)
        .map_err(|_| ReadError::InvalidUtf8)
}

/// A write buffer larger than this is let go after each write, so an idle
/// connection does not keep the size of its biggest burst.
const KEEP_WRITE_BUFFER: usize = 1024;

/// The writing half: frames are queued into one buffer and written together.
pub struct Writer {
    io: WriteHalf<Io>,
    buf: Vec<u8>,
}

impl Writer {
    /// Queues a text frame; nothing is written until [`Writer::flush`].
    pub fn queue_text(&mut self, text: &[u8]) {
        frame::encode(&mut self.buf, OP_TEXT, text);
    }

    /// Queues text frames, growing the buffer once for all of them.
    pub fn queue_texts(&mut self, texts: &[Bytes]) {
        let bytes: usize = texts.iter().map(|t| frame::MAX_HEADER + t.len()).sum();
        self.buf.reserve(bytes);
        for text in texts {
            self.queue_text(text);
        }
    }

    /// Writes everything queued with one call (more only if the socket takes
    /// it in parts).
    pub async fn flush(&mut self) -> std::io::Result<()> {
        let result = self.io.write_all(&self.buf).await;
        self.buf.clear();
        if self.buf.capacity() > KEEP_WRITE_BUFFER {
            self.buf = Vec::new();
        }
        result
    }

    pub async fn send_text(&mut self, text: &[u8]) -> std::io::Result<()> {
        self.queue_text(text);
        self.flush().await
    }

    pub async fn pong(&mut self, payload: &[u8]) -> std::io::Result<()> {
        frame::encode(&mut self.buf, OP_PONG, payload);
        self.flush().await
    }

    /// Sends a close frame and shuts the write side down.
    pub async fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        frame::encode(&mut self.buf, OP_CLOSE, &frame::close_payload(code, reason));
        self.flush().await?;
        self.io.shutdown().await
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
