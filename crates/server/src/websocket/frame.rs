//! RFC 6455 framing: parsing what clients send, encoding what the server sends.
//!
//! Pure functions over byte buffers, so every rule is unit- and
//! property-tested without sockets. Client frames must be masked; server
//! frames never are. No extensions are negotiated, so the RSV bits must be 0.

use bytes::{Buf, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One parsed (and unmasked) client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: BytesMut,
}

/// Why the byte stream is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame (or message) over the size limit: close with 1009.
    #[error("frame of {size} bytes exceeds the {limit}-byte limit")]
    TooBig { size: u64, limit: usize },
    /// A protocol violation: close with 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// Parses one frame from the front of `buf`, consuming it. `Ok(None)` means
/// more bytes are needed (nothing is consumed, nothing is reserved: a buffer
/// grows with the bytes that arrive, never with the length a header
/// announces). A frame whose declared length exceeds `max_payload` is refused
/// from its header alone, before its payload is read.
pub fn parse(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol(
            "reserved bits set without a negotiated extension",
        ));
    }
    let opcode = b0 & 0x0F;
    let is_control = opcode >= 0x8;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
        _ => return Err(FrameError::Protocol("unknown opcode")),
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (len, header_len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(n);
            // Section 5.2: "the most significant bit MUST be 0".
            if len >> 63 != 0 {
                return Err(FrameError::Protocol(
                    "a 64-bit payload length must have its most significant bit clear",
                ));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if is_control && (!fin || len > 125) {
        return Err(FrameError::Protocol(
            "control frames must be final and at most 125 bytes",
        ));
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooBig {
            size: len,
            limit: max_payload,
        });
    }
    let len = len as usize; // at most max_payload
    let total = header_len + 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    let mask = [
        buf[header_len],
        buf[header_len + 1],
        buf[header_len + 2],
        buf[header_len + 3],
    ];
    buf.advance(header_len + 4);
    let mut payload = buf.split_to(len);
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

/// The longest header [`encode`] writes.
pub const MAX_HEADER: usize = 10;

/// Appends an unmasked, final server frame to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    encode_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Encodes one unfragmented frame whose payload is `parts` concatenated.
pub fn encode_parts(out: &mut Vec<u8>, opcode: u8, parts: &[bytes::Bytes]) {
    encode_header(out, opcode, parts.iter().map(bytes::Bytes::len).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
}

fn encode_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Whether a client may send this close code (RFC 6455 section 7.4 and the
/// IANA registry): 1000-1003 and 1007-1014 are defined; 1004-1006 and 1015
/// are reserved and must never appear on the wire; 3000-4999 belong to
/// libraries and applications; everything else is unassigned.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Reads a client's close payload (section 5.5.1): empty, or a valid code
/// followed by a UTF-8 reason. Returns the code, if there is one.
pub fn parse_close(payload: &[u8]) -> Result<Option<u16>, CloseError> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseError::Protocol(
            "a close frame's body must be empty or hold a 2-byte code",
        )),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(CloseError::Protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(CloseError::InvalidUtf8);
            }
            Ok(Some(code))
        }
    }
}

/// Why a client's close frame is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// Answer with 1002.
    Protocol(&'static str),
    /// The reason is not UTF-8: answer with 1007.
    InvalidUtf8,
}

/// The payload of a close frame: the code, then a UTF-8 reason (≤ 123 bytes).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodes a frame the way a client must: masked.
    pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn parse_all(bytes: &[u8], max: usize) -> Result<Vec<Frame>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = parse(&mut buf, max)? {
            frames.push(frame);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(frames)
    }

    #[test]
    fn parses_masked_frames_of_every_length_encoding() {
        for len in [0, 1, 125, 126, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bytes = client_frame(true, OP_TEXT, &payload, [1, 2, 3, 4]);
            let frames = parse_all(&bytes, 1 << 20).unwrap();
            assert_eq!(
                frames,
                vec![Frame {
                    fin: true,
                    opcode: OP_TEXT,
                    payload: BytesMut::from(&payload[..])
                }]
            );
        }
    }

    #[test]
    fn waits_for_more_bytes_without_consuming() {
        let bytes = client_frame(true, OP_TEXT, b"hello", [9, 8, 7, 6]);
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(parse(&mut buf, 100), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn refuses_what_the_rfc_forbids() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        assert!(matches!(
            parse(&mut BytesMut::from(&unmasked[..]), 100),
            Err(FrameError::Protocol(_))
        ));
        let rsv = client_frame(true, 0x40 | OP_TEXT, b"x", [0; 4]);
        assert!(matches!(
            parse(&mut BytesMut::from(&rsv[..]), 100),
            Err(FrameError::Protocol(_))
        ));
        let opcode = client_frame(true, 0x3, b"x", [0; 4]);
        assert!(matches!(
            parse(&mut BytesMut::from(&opcode[..]), 100),
            Err(FrameError::Protocol(_))
        ));
        let fragmented_ping = client_frame(false, OP_PING, b"x", [0; 4]);
        assert!(matches!(
            parse(&mut BytesMut::from(&fragmented_ping[..]), 100),
            Err(FrameError::Protocol(_))
        ));
        let big_ping = client_frame(true, OP_PING, &[0; 126], [0; 4]);
        assert!(matches!(
            parse(&mut BytesMut::from(&big_ping[..]), 1000),
            Err(FrameError::Protocol(_))
        ));
    }

    #[test]
    fn refuses_oversize_frames_from_the_header_alone() {
        let header_only = [0x81, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(
            parse(&mut BytesMut::from(&header_only[..]), 16384),
            Err(FrameError::TooBig {
                size: 1 << 32,
                limit: 16384
            })
        );
    }

    #[test]
    fn refuses_a_64_bit_length_with_its_top_bit_set() {
        let header = [0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert!(matches!(
            parse(&mut BytesMut::from(&header[..]), 16384),
            Err(FrameError::Protocol(_))
        ));
    }

    #[test]
    fn an_announced_length_reserves_nothing() {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&[0x81, 0x80 | 126, 0x40, 0x00, 1, 2, 3, 4]);
        assert_eq!(parse(&mut buf, 1 << 20), Ok(None));
        assert!(buf.capacity() < 1024, "reserved {}", buf.capacity());
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(b""), Ok(None));
        assert!(matches!(parse_close(&[3]), Err(CloseError::Protocol(_))));
        for valid in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert_eq!(parse_close(&u16::to_be_bytes(valid)), Ok(Some(valid)));
        }
        for invalid in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000] {
            assert!(
                matches!(
                    parse_close(&u16::to_be_bytes(invalid)),
                    Err(CloseError::Protocol(_))
                ),
                "{invalid}"
            );
        }
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.extend_from_slice(&[0xce, 0xba, 0xff]);
        assert_eq!(parse_close(&bad_reason), Err(CloseError::InvalidUtf8));
        let mut good_reason = 3000u16.to_be_bytes().to_vec();
        good_reason.extend_from_slice("κόσμε".as_bytes());
        assert_eq!(parse_close(&good_reason), Ok(Some(3000)));
    }

    #[test]
    fn encodes_unmasked_frames() {
        let mut out = Vec::new();
        encode(&mut out, OP_TEXT, b"hi");
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        out.clear();
        encode(&mut out, OP_TEXT, &[b'x'; 300]);
        assert_eq!(&out[..4], &[0x81, 126, 1, 44]);
        assert_eq!(out.len(), 304);
        assert_eq!(close_payload(1001, "bye"), [3, 233, b'b', b'y', b'e']);
        assert_eq!(close_payload(1000, &"é".repeat(100)).len(), 2 + 122);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = parse(&mut buf, 128) {}
        }

        #[test]
        fn roundtrips_any_payload(payload in proptest::collection::vec(any::<u8>(), 0..2000), mask in any::<[u8; 4]>(), fin in any::<bool>()) {
            let bytes = client_frame(fin, OP_BINARY, &payload, mask);
            let frames = parse_all(&bytes, 4096).unwrap();
            prop_assert_eq!(frames, vec![Frame { fin, opcode: OP_BINARY, payload: BytesMut::from(&payload[..]) }]);
        }
    }
}
