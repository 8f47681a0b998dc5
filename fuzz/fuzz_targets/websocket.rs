//! The server's inbound WebSocket path without a socket:
//! `actorchat::websocket::Decoder` (RFC 6455 frame parser, fragment
//! assembly, fail-fast UTF-8, close-frame validation) fed an arbitrary byte
//! stream that arrives split at arbitrary points.
//!
//! Input layout (so seeds stay readable):
//! - byte 0 selects the message limit from [`LIMITS`];
//! - byte 1 selects how the stream is split: `0xFF` feeds it one byte at a
//!   time; otherwise its low four bits are a count `c`, and the next `c`
//!   bytes are the lengths of the first `c` reads (0 is an empty read); the
//!   rest of the stream is one last read;
//! - everything after that is the stream.
//!
//! Checked: the messages and the final state (the error, or what is still
//! pending) are the same however the stream is split; they match a
//! straightforward reference reading of RFC 6455 (§5.2 framing, §5.4
//! fragmentation, §5.5.1 close bodies, §8.1 UTF-8) over the whole stream;
//! and the decoder's buffer grows with the bytes that arrive, never with the
//! length a header announces.
#![no_main]

use actorchat::websocket::frame::{CloseError, FrameError};
use actorchat::websocket::{DecodeError, Decoder, Incoming};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Message limits to try: the edges of the length encodings, small limits
/// that make oversize frames and messages easy to reach, and the server's
/// default (16 KiB).
const LIMITS: [usize; 8] = [0, 1, 125, 126, 127, 4096, 16_384, 65_536];

fuzz_target!(|data: &[u8]| {
    let Some((limit, reads, stream)) = layout(data) else {
        return;
    };
    let whole = decode(&[stream], limit);
    let split = decode(&reads, limit);
    assert_eq!(
        whole, split,
        "the result depends on how the stream is split"
    );
    assert_eq!(
        whole.summary(),
        reference(stream, limit),
        "differs from the RFC reading"
    );
});

/// What a stream decodes to: its messages, then how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Incoming>,
    end: Result<Pending, DecodeError>,
}

/// The decoder's state after the last read, when nothing failed.
#[derive(Debug, PartialEq, Eq)]
struct Pending {
    mid_message: bool,
    buffered: usize,
}

/// The ending as the reference sees it (errors by the close code they get).
#[derive(Debug, PartialEq, Eq)]
enum End {
    Pending(Pending),
    /// 1002.
    Protocol,
    /// 1009, for a frame or message of this size.
    TooBig(u64),
    /// 1007.
    InvalidUtf8,
    /// A malformed close frame: 1002.
    BadCloseProtocol,
    /// A close reason that is not UTF-8: 1007.
    BadCloseUtf8,
}

impl Outcome {
    fn summary(&self) -> (Vec<Incoming>, End) {
        let end = match &self.end {
            Ok(pending) => End::Pending(Pending { ..*pending }),
            Err(DecodeError::Frame(FrameError::Protocol(_))) => End::Protocol,
            Err(DecodeError::Frame(FrameError::TooBig { size, .. })) => End::TooBig(*size),
            Err(DecodeError::InvalidUtf8) => End::InvalidUtf8,
            Err(DecodeError::BadClose(CloseError::Protocol(_))) => End::BadCloseProtocol,
            Err(DecodeError::BadClose(CloseError::InvalidUtf8)) => End::BadCloseUtf8,
        };
        (self.messages.clone(), end)
    }
}

/// An input read as (limit, reads, whole stream).
type Layout<'a> = (usize, Vec<&'a [u8]>, &'a [u8]);

/// Splits the input into (limit, reads, whole stream).
fn layout(data: &[u8]) -> Option<Layout<'_>> {
    let (&selector, rest) = data.split_first()?;
    let (&mode, rest) = rest.split_first()?;
    let limit = LIMITS[usize::from(selector) % LIMITS.len()];
    if mode == 0xFF {
        return Some((limit, rest.chunks(1).collect(), rest));
    }
    let count = usize::from(mode & 0x0F).min(rest.len());
    let (lengths, stream) = rest.split_at(count);
    let mut reads = Vec::with_capacity(count + 1);
    let mut tail = stream;
    for &length in lengths {
        let (read, after) = tail.split_at(usize::from(length).min(tail.len()));
        reads.push(read);
        tail = after;
    }
    reads.push(tail);
    Some((limit, reads, stream))
}

/// Feeds `reads` one after another, decoding everything each read
/// completes, the way the server's reader does.
fn decode(reads: &[&[u8]], limit: usize) -> Outcome {
    let mut decoder = Decoder::new(limit);
    let mut messages = Vec::new();
    let mut fed = 0;
    for read in reads {
        decoder.buffer().extend_from_slice(read);
        fed += read.len();
        loop {
            match decoder.decode() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        messages,
                        end: Err(e),
                    };
                }
            }
        }
        // Generous: amortised doubling, never the announced length.
        let capacity = decoder.buffer().capacity();
        assert!(
            capacity <= 4 * fed + 1024,
            "{capacity} bytes reserved after {fed} bytes arrived"
        );
    }
    let buffered = decoder.buffer().len();
    Outcome {
        messages,
        end: Ok(Pending {
            mid_message: decoder.is_mid_message(),
            buffered,
        }),
    }
}

/// A message being assembled by the reference.
struct Assembling {
    text: bool,
    data: Vec<u8>,
}

/// RFC 6455 read directly off the whole stream. Framing (§5.2): no
/// extensions (RSV bits 0), the six defined opcodes, client frames masked,
/// the top bit of a 64-bit length clear, control frames final and at most
/// 125 bytes, payloads over `limit` refused from the header. Fragmentation
/// (§5.4): continuations only inside a message, no new message inside one,
/// control frames allowed between fragments, the assembled message within
/// `limit`. Text (§8.1): UTF-8, failing as soon as the bytes so far cannot
/// begin valid UTF-8. Close bodies (§5.5.1, §7.4): empty, or a code
/// registered for use on the wire (1000-1003, 1007-1014 per the IANA
/// registry, 3000-4999) followed by a UTF-8 reason.
fn reference(stream: &[u8], limit: usize) -> (Vec<Incoming>, End) {
    let mut messages = Vec::new();
    let mut partial: Option<Assembling> = None;
    let mut at = 0;
    let end = loop {
        let s = &stream[at..];
        let pending = End::Pending(Pending {
            mid_message: !s.is_empty() || partial.is_some(),
            buffered: s.len(),
        });
        if s.len() < 2 {
            break pending;
        }
        let fin = s[0] & 0x80 != 0;
        let opcode = s[0] & 0x0F;
        let masked = s[1] & 0x80 != 0;
        if s[0] & 0x70 != 0 || !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) || !masked {
            break End::Protocol;
        }
        let (len, header) = match s[1] & 0x7F {
            126 if s.len() < 4 => break pending,
            126 => (u64::from(u16::from_be_bytes([s[2], s[3]])), 4),
            127 if s.len() < 10 => break pending,
            127 => {
                let mut n = [0; 8];
                n.copy_from_slice(&s[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            n => (u64::from(n), 2),
        };
        if len >> 63 != 0 || (opcode >= 8 && (!fin || len > 125)) {
            break End::Protocol;
        }
        if len > limit as u64 {
            break End::TooBig(len);
        }
        let len = len as usize;
        if s.len() < header + 4 + len {
            break pending;
        }
        let mask = &s[header..header + 4];
        let payload: Vec<u8> = s[header + 4..header + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        at += header + 4 + len;

        match opcode {
            0x9 => messages.push(Incoming::Ping(Bytes::from(payload))),
            0xA => messages.push(Incoming::Pong),
            0x8 => match close_body(&payload) {
                Ok(code) => messages.push(Incoming::Close(code)),
                Err(end) => break end,
            },
            0x1 | 0x2 if partial.is_some() => break End::Protocol,
            0x0 if partial.is_none() => break End::Protocol,
            _ => {
                let mut message = partial.take().unwrap_or(Assembling {
                    text: opcode == 0x1,
                    data: Vec::new(),
                });
                let size = message.data.len() + payload.len();
                if size > limit {
                    break End::TooBig(size as u64);
                }
                message.data.extend_from_slice(&payload);
                if fin {
                    if !message.text {
                        messages.push(Incoming::Binary(Bytes::from(message.data)));
                    } else if let Ok(text) = String::from_utf8(message.data) {
                        messages.push(Incoming::Text(text));
                    } else {
                        break End::InvalidUtf8;
                    }
                } else {
                    // Only a sequence cut off at the end may still be
                    // completed by the next fragment.
                    if message.text
                        && let Err(e) = std::str::from_utf8(&message.data)
                        && e.error_len().is_some()
                    {
                        break End::InvalidUtf8;
                    }
                    partial = Some(message);
                }
            }
        }
    };
    (messages, end)
}

fn close_body(payload: &[u8]) -> Result<Option<u16>, End> {
    match payload {
        [] => Ok(None),
        [_] => Err(End::BadCloseProtocol),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                Err(End::BadCloseProtocol)
            } else if std::str::from_utf8(reason).is_err() {
                Err(End::BadCloseUtf8)
            } else {
                Ok(Some(code))
            }
        }
    }
}
