//! The WebSocket layer: the HTTP upgrade ([`handshake`]), then a [`Reader`]
//! and a [`Writer`] over the upgraded connection, and the closing handshake
//! ([`close`]).
//!
//! Why not tungstenite (axum's `WebSocket`): its output buffer keeps the size
//! of the largest frame it ever wrote and its input buffer is zero-filled to
//! capacity, both for the life of the connection, and every frame is copied
//! through them. Here the writer encodes a batch of shared, pre-encoded
//! frames into one buffer, writes it with one call and lets a large buffer
//! go afterwards, so an idle connection keeps almost nothing. The protocol
//! subset is small: no extensions, no subprotocols, server frames unmasked,
//! client frames masked ([`frame`]). Conformance is proven by the
//! Autobahn|Testsuite against `examples/autobahn_echo.rs`, which uses this
//! module's handshake, decoder, writer and closing handshake as the chat does
//! (the listener, keepalive and frame timeout are covered by raw-socket
//! tests instead; docs/conformance.md).

pub mod decoder;
pub mod frame;
pub mod handshake;

use std::time::Duration;

use crate::mailbox::Frame;
use actorchat_protocol::close_code;
use bytes::BytesMut;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;

pub use decoder::{DecodeError, Decoder, Incoming};
pub use handshake::Upgrade;

use frame::{CloseError, FrameError, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

type Io = TokioIo<Upgraded>;

/// How long the closing handshake may take once the server has decided to
/// close: writing what is still queued plus the close frame, then waiting
/// for the peer's close frame. After it the TCP connection is dropped anyway.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-connection settings of the WebSocket layer.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Bytes reserved for a read when the buffer is full; the buffer grows
    /// with the bytes that arrive (doubling), never with an announced length.
    pub read: usize,
    /// Largest frame or fragmented message accepted (1009 beyond).
    pub max_message: usize,
    /// A frame or fragmented message that has begun must be complete within
    /// this time (1008 otherwise), so a trickle cannot pin a buffer forever.
    pub frame_timeout: Duration,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("a frame or fragmented message was not completed within {0:?}")]
    FrameTimeout(Duration),
    #[error("connection closed without a close frame")]
    Eof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How to end a connection with a close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    pub code: u16,
    pub reason: &'static str,
    /// The peer has sent its close frame already: answer and close TCP at
    /// once instead of waiting for it.
    pub peer_closed: bool,
}

impl Closing {
    /// The server closes first and waits for the peer's close frame.
    pub fn new(code: u16, reason: &'static str) -> Self {
        Closing {
            code,
            reason,
            peer_closed: false,
        }
    }

    /// The answer to the peer's valid close frame: its code echoed (1000 if
    /// it sent none), as section 5.5.1 suggests.
    pub fn answer(code: Option<u16>) -> Self {
        Closing {
            code: code.unwrap_or(close_code::NORMAL),
            reason: "",
            peer_closed: true,
        }
    }
}

impl ReadError {
    /// The close frame this error calls for (section 7.4), or `None` when
    /// the peer is gone and nothing can be sent.
    pub fn closing(&self) -> Option<Closing> {
        let closing = match self {
            ReadError::Decode(DecodeError::Frame(FrameError::TooBig { .. })) => {
                Closing::new(close_code::MESSAGE_TOO_BIG, "Frame too large.")
            }
            ReadError::Decode(DecodeError::Frame(FrameError::Protocol(why))) => {
                Closing::new(close_code::PROTOCOL_ERROR, why)
            }
            ReadError::Decode(DecodeError::InvalidUtf8) => {
                Closing::new(close_code::INVALID_DATA, "Text frames must be UTF-8.")
            }
            ReadError::Decode(DecodeError::BadClose(CloseError::Protocol(why))) => Closing {
                peer_closed: true,
                ..Closing::new(close_code::PROTOCOL_ERROR, why)
            },
            ReadError::Decode(DecodeError::BadClose(CloseError::InvalidUtf8)) => Closing {
                peer_closed: true,
                ..Closing::new(close_code::INVALID_DATA, "The close reason must be UTF-8.")
            },
            ReadError::FrameTimeout(_) => Closing::new(
                close_code::POLICY_VIOLATION,
                "A frame or fragmented message took too long to arrive.",
            ),
            ReadError::Eof | ReadError::Io(_) => return None,
        };
        Some(closing)
    }
}

/// The reading half: bytes from the socket into the [`Decoder`], under the
/// frame timeout.
pub struct Reader {
    io: ReadHalf<Io>,
    decoder: Decoder,
    read: usize,
    frame_timeout: Duration,
    /// When the frame or message now in progress was first seen unfinished.
    mid_message_since: Option<Instant>,
}

impl Reader {
    fn new(io: ReadHalf<Io>, settings: Settings) -> Self {
        Reader {
            io,
            decoder: Decoder::new(settings.max_message),
            read: settings.read,
            frame_timeout: settings.frame_timeout,
            mid_message_since: None,
        }
    }

    /// The next message. Cancel-safe: bytes read so far stay in the buffer
    /// and the frame timeout keeps its start, so this can be one branch of a
    /// `select!`.
    pub async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            if let Some(message) = self.decoder.decode()? {
                // A finished frame restarts the clock, unless it is a control
                // frame inside a fragmented message: pings must not keep a
                // half-sent message alive.
                if !self.decoder.is_fragmented_message() {
                    self.mid_message_since = None;
                }
                return Ok(message);
            }
            let deadline = if self.decoder.is_mid_message() {
                let since = *self.mid_message_since.get_or_insert_with(Instant::now);
                Some(since + self.frame_timeout)
            } else {
                self.mid_message_since = None;
                None
            };
            let read_size = self.read;
            let buf = self.decoder.buffer();
            if deadline.is_none() && buf.capacity() > 2 * read_size {
                // Empty after a large frame: give the memory back, so an
                // idle connection keeps only `read` bytes.
                *buf = BytesMut::new();
            }
            make_room(buf, read_size);
            let read = self.io.read_buf(buf);
            let n = match deadline {
                // Boxed: the timer exists only while a frame is unfinished,
                // so an idle connection does not carry it.
                Some(deadline) => match Box::pin(tokio::time::timeout_at(deadline, read)).await {
                    Ok(n) => n?,
                    Err(_) => return Err(ReadError::FrameTimeout(self.frame_timeout)),
                },
                None => read.await?,
            };
            if n == 0 {
                return Err(ReadError::Eof);
            }
        }
    }

    /// After the server's close frame: reads and discards until the peer's
    /// close frame or EOF (section 7.1.1). After a protocol error the stream
    /// is out of step with its frames: what is buffered is dropped and the
    /// close frame is looked for in what arrives next (the peer usually
    /// sends it in a write of its own).
    async fn until_peer_closes(&mut self) {
        loop {
            match self.decoder.decode() {
                Ok(Some(Incoming::Close(_))) | Err(DecodeError::BadClose(_)) => return,
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(_) => self.decoder.reset(),
            }
            let buf = self.decoder.buffer();
            make_room(buf, self.read);
            match self.io.read_buf(buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Room for the next read: `read` bytes at first, then doubling with what
/// has arrived, never with the length a frame header announces.
fn make_room(buf: &mut BytesMut, read: usize) {
    if buf.capacity() - buf.len() < 64 {
        buf.reserve(read.max(buf.len()));
    }
}

/// A write buffer larger than this is let go after each write, so an idle
/// connection does not keep the size of its biggest burst.
const KEEP_WRITE_BUFFER: usize = 1024;

/// The writing half: frames are queued into one buffer and written together.
pub struct Writer {
    io: WriteHalf<Io>,
    buf: Vec<u8>,
    /// Bytes of `buf` already written. A flush cut short (a `select!` that
    /// chose another branch) resumes here, so the peer never sees a torn
    /// frame, even when a close frame follows.
    written: usize,
}

impl Writer {
    fn new(io: WriteHalf<Io>) -> Self {
        Writer {
            io,
            buf: Vec::new(),
            written: 0,
        }
    }

    /// Queues a text frame; nothing is written until [`Writer::flush`].
    pub fn queue_text(&mut self, text: &[u8]) {
        frame::encode(&mut self.buf, OP_TEXT, text);
    }

    /// Queues text frames, growing the buffer once for all of them.
    pub fn queue_texts(&mut self, texts: &[Frame]) {
        let bytes: usize = texts.iter().map(|t| frame::MAX_HEADER + t.len()).sum();
        self.buf.reserve(bytes);
        for text in texts {
            match text {
                Frame::Whole(text) => self.queue_text(text),
                Frame::Parts(parts) => frame::encode_parts(&mut self.buf, OP_TEXT, parts),
            }
        }
    }

    /// Writes everything queued, with one call unless the socket takes it in
    /// parts. Cancel-safe: what was written stays written, and the next
    /// flush continues after it.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        while self.written < self.buf.len() {
            let n = self.io.write(&self.buf[self.written..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        if self.buf.capacity() > KEEP_WRITE_BUFFER {
            self.buf = Vec::new();
        }
        Ok(())
    }

    pub async fn send_text(&mut self, text: &[u8]) -> std::io::Result<()> {
        self.queue_text(text);
        self.flush().await
    }

    pub async fn send_binary(&mut self, data: &[u8]) -> std::io::Result<()> {
        frame::encode(&mut self.buf, OP_BINARY, data);
        self.flush().await
    }

    pub async fn ping(&mut self, payload: &[u8]) -> std::io::Result<()> {
        frame::encode(&mut self.buf, OP_PING, payload);
        self.flush().await
    }

    pub async fn pong(&mut self, payload: &[u8]) -> std::io::Result<()> {
        frame::encode(&mut self.buf, OP_PONG, payload);
        self.flush().await
    }
}

/// Ends a connection with the closing handshake of section 7.1.1: finish the
/// frame being written (if a write was cut short) and send the close frame.
/// If the peer has closed already, that completes the handshake and the
/// connection is dropped. Otherwise the server also sends its FIN (nothing
/// may follow a close frame) and reads and discards until the peer's close
/// frame or EOF, and only then drops the connection: dropping at once while
/// the peer still has bytes in flight makes the kernel answer with RST,
/// which can destroy the close frame before the peer reads it. Bounded by
/// [`CLOSE_TIMEOUT`] in all.
pub async fn close(mut reader: Reader, mut writer: Writer, closing: Closing) {
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    frame::encode(
        &mut writer.buf,
        OP_CLOSE,
        &frame::close_payload(closing.code, closing.reason),
    );
    let _ = tokio::time::timeout_at(deadline, async {
        if writer.flush().await.is_err() || closing.peer_closed {
            return;
        }
        if writer.io.shutdown().await.is_ok() {
            reader.until_peer_closes().await;
        }
    })
    .await;
}
