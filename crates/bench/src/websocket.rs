//! The load generator's WebSocket client: the RFC 6455 client handshake and
//! framing, reading frames straight out of one buffer.
//!
//! Why not tungstenite: at 750,000 deliveries/s its per-frame work (a
//! buffer split and a reference count per frame, a UTF-8 copy, one poll of
//! the stream per frame) cost the generator about a fifth of its CPU, on
//! the two cores it shares with the server it measures. Here one `read`
//! fills the buffer and every complete frame in it is handed out as a
//! borrowed slice, so a client that fell behind catches up in one pass and
//! stamps the whole batch with one clock reading.
//!
//! Client frames are masked as the RFC requires; the masks come from a
//! per-connection xorshift generator, not a cryptographic one: the masking
//! rule protects browsers' intermediaries from script-chosen bytes, which a
//! load generator talking to a server of its operator's choosing does not
//! need.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Server frames larger than this end the connection. A chat frame is at
/// most a few KiB, but a resume `welcome` carries up to `--recover-max`
/// (default 1,000) messages of up to 4,000 characters each.
pub const MAX_FRAME: usize = 32 << 20;
/// Handshake responses larger than this are refused.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the server closed the connection")]
    Eof,
    #[error("server answered HTTP {0}")]
    Http(u16),
    #[error("bad handshake response: {0}")]
    Handshake(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// One frame from the server, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Text(&'a str),
    /// A close frame and its code (1005 if it carried none).
    Close(u16),
    /// A ping: the caller answers it with [`Ws::pong`].
    Ping(&'a [u8]),
    /// Pongs and binary frames, which the benchmark ignores.
    Other,
}

/// An open client connection.
pub struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of the unparsed bytes in `buf`.
    pos: usize,
    read_size: usize,
    out: Vec<u8>,
    mask_state: u64,
}

impl Ws {
    /// Performs the client handshake for `path_and_query` on `host`.
    /// Bytes the server sent after its response (usually the `welcome`)
    /// stay buffered.
    pub async fn handshake(
        mut stream: TcpStream,
        host: &str,
        path_and_query: &str,
        read_size: usize,
    ) -> Result<Ws, WsError> {
        let key = generate_key();
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(read_size.max(1024));
        let head_len = loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(WsError::Eof);
            }
            if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > MAX_RESPONSE_HEAD {
                return Err(WsError::Handshake("response head too long"));
            }
            buf.reserve(1024);
        };
        check_response(&buf[..head_len], &derive_accept_key(key.as_bytes()))?;
        Ok(Ws {
            stream,
            buf,
            pos: head_len,
            read_size: read_size.max(256),
            out: Vec::new(),
            mask_state: mask_seed(),
        })
    }

    /// Waits until more bytes have arrived. Cancel-safe: nothing is lost if
    /// the future is dropped.
    pub async fn read_more(&mut self) -> Result<(), WsError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < self.read_size / 4 {
            self.buf.reserve(self.read_size);
        }
        match self.stream.read_buf(&mut self.buf).await? {
            0 => Err(WsError::Eof),
            _ => Ok(()),
        }
    }

    /// The next complete frame already buffered, if any. Fragmented messages
    /// are refused: actorchat never fragments, and the benchmark's frames are
    /// small.
    pub fn next_frame(&mut self) -> Result<Option<Incoming<'_>>, WsError> {
        let Some((opcode, start, end)) = parse_header(&self.buf[self.pos..])? else {
            return Ok(None);
        };
        let payload = &self.buf[self.pos + start..self.pos + end];
        self.pos += end;
        Ok(Some(match opcode {
            OP_TEXT => Incoming::Text(
                std::str::from_utf8(payload)
                    .map_err(|_| WsError::Protocol("text frame is not UTF-8"))?,
            ),
            OP_CLOSE => Incoming::Close(match payload {
                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                _ => 1005,
            }),
            OP_PING => Incoming::Ping(payload),
            _ => Incoming::Other,
        }))
    }

    /// The next frame, reading as needed.
    pub async fn recv(&mut self) -> Result<Incoming<'_>, WsError> {
        // Parse once to learn whether a frame is complete, then again to
        // return it: a borrow returned from a loop cannot be re-borrowed by
        // the read in the same loop.
        while parse_header(&self.buf[self.pos..])?.is_none() {
            self.read_more().await?;
        }
        Ok(self.next_frame()?.unwrap_or(Incoming::Other))
    }

    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(OP_TEXT, text.as_bytes()).await
    }

    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(OP_PONG, payload).await
    }

    /// Sends a normal close (1000) and shuts the write side down.
    pub async fn close(&mut self) -> io::Result<()> {
        self.send(OP_CLOSE, &1000u16.to_be_bytes()).await?;
        self.stream.shutdown().await
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mask = self.next_mask();
        self.out.clear();
        encode_masked(&mut self.out, opcode, payload, mask);
        self.stream.write_all(&self.out).await?;
        if self.out.capacity() > 4096 {
            self.out = Vec::new();
        }
        Ok(())
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_ne_bytes()
    }
}

fn mask_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Relaxed);
    // Any non-zero seed works; spread the counter so masks differ per connection.
    (crate::clock::now_us() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}

/// Checks a handshake response head: `101`, the upgrade headers, and the
/// accept key derived from ours.
fn check_response(head: &[u8], expected_accept: &str) -> Result<(), WsError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(WsError::Handshake("unparseable HTTP response")),
    }
    match response.code {
        Some(101) => {}
        Some(code) => return Err(WsError::Http(code)),
        None => return Err(WsError::Handshake("no status code")),
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket")) {
        return Err(WsError::Handshake("missing Upgrade: websocket"));
    }
    if header("sec-websocket-accept") != Some(expected_accept.as_bytes()) {
        return Err(WsError::Handshake("wrong Sec-WebSocket-Accept"));
    }
    Ok(())
}

/// Reads one server frame's header from the front of `buf`: its opcode and
/// where its payload starts and ends. `Ok(None)`: the frame is incomplete.
fn parse_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, WsError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    if b0 & 0x80 == 0 || b0 & 0x0F == OP_CONTINUATION {
        return Err(WsError::Protocol("fragmented messages are not supported"));
    }
    let opcode = b0 & 0x0F;
    if !matches!(opcode, OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(WsError::Protocol("unknown opcode"));
    }
    if b1 & 0x80 != 0 {
        return Err(WsError::Protocol("server frames must not be masked"));
    }
    let (len, header) = match (b1 & 0x7F, rest) {
        (126, [a, b, ..]) => (u64::from(u16::from_be_bytes([*a, *b])), 4),
        (127, [a, b, c, d, e, f, g, h, ..]) => {
            (u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]), 10)
        }
        (126 | 127, _) => return Ok(None),
        (n, _) => (u64::from(n), 2),
    };
    if len > MAX_FRAME as u64 {
        return Err(WsError::Protocol("frame larger than 32 MiB"));
    }
    let end = header + len as usize;
    Ok((buf.len() >= end).then_some((opcode, header, end)))
}

/// Appends a final, masked client frame.
fn encode_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xFFFF => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn headers_of_every_length_form() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let frame = server_frame(OP_TEXT, &vec![b'a'; len]);
            let header = frame.len() - len;
            assert_eq!(
                parse_header(&frame).unwrap(),
                Some((OP_TEXT, header, frame.len()))
            );
            assert_eq!(parse_header(&frame[..frame.len() - 1]).unwrap(), None);
            assert_eq!(parse_header(&frame[..1]).unwrap(), None);
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let refused = |bytes: &[u8]| parse_header(bytes).is_err();
        assert!(refused(&[0x81 | 0x40, 0])); // RSV1
        assert!(refused(&[0x01, 0])); // not final
        assert!(refused(&[0x80, 0])); // continuation
        assert!(refused(&[0x83, 0])); // reserved opcode
        assert!(refused(&[0x81, 0x80, 0, 0, 0, 0])); // masked
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&(MAX_FRAME as u64 + 1).to_be_bytes());
        assert!(refused(&huge));
    }

    #[test]
    fn handshake_responses() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = derive_accept_key(key.as_bytes());
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); // RFC 6455 §1.3
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        assert!(check_response(ok.as_bytes(), &accept).is_ok());
        assert!(matches!(
            check_response(ok.as_bytes(), "other"),
            Err(WsError::Handshake(_))
        ));
        let full = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n";
        assert!(matches!(
            check_response(full, &accept),
            Err(WsError::Http(503))
        ));
    }

    proptest! {
        /// Masked client frames unmask to the payload, with a header of the
        /// right length form.
        #[test]
        fn masking_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..70_000), mask in any::<[u8; 4]>()) {
            let mut out = Vec::new();
            encode_masked(&mut out, OP_TEXT, &payload, mask);
            prop_assert_eq!(out[0], 0x80 | OP_TEXT);
            prop_assert!(out[1] & 0x80 != 0);
            let header = match payload.len() { n if n < 126 => 2, n if n <= 0xFFFF => 4, _ => 10 };
            prop_assert_eq!(&out[header..header + 4], &mask[..]);
            let unmasked: Vec<u8> = out[header + 4..].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            prop_assert_eq!(unmasked, payload);
        }

        /// Any byte string either parses to a frame inside the buffer, asks
        /// for more, or is refused; never a panic or an out-of-bounds range.
        #[test]
        fn parsing_arbitrary_bytes_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some((_, start, end))) = parse_header(&bytes) {
                prop_assert!(start <= end && end <= bytes.len());
            }
        }
    }
}
