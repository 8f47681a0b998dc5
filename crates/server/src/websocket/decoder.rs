//! From bytes to messages, without a socket: frames are parsed
//! ([`frame::parse`]), fragments are assembled, text is checked for UTF-8 as
//! it arrives, and close frames are validated.
//!
//! Kept free of I/O so that every rule is unit-tested and fuzzed on arbitrary
//! byte streams split at arbitrary points; [`super::Reader`] feeds it from
//! the socket and adds the clock (the frame timeout).

use bytes::{Bytes, BytesMut};

use super::frame::{
    self, CloseError, FrameError, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};

/// A complete message or control frame from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The peer's close frame (already validated), with its code if it sent one.
    Close(Option<u16>),
}

/// Why the byte stream cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// The peer's close frame is malformed; the peer has closed its side.
    #[error("malformed close frame: {0:?}")]
    BadClose(CloseError),
}

/// A fragmented message in progress.
#[derive(Debug)]
struct Partial {
    opcode: u8,
    data: BytesMut,
    /// Bytes of `data` already known to be valid UTF-8 (text only), so each
    /// fragment is checked once and invalid text fails as soon as it arrives.
    checked: usize,
}

/// The inbound half of a connection's protocol state.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_message: usize,
    /// Boxed: fragmented messages are rare, and an idle connection should
    /// not carry room for one.
    partial: Option<Box<Partial>>,
}

impl Decoder {
    /// A decoder accepting frames and messages of at most `max_message` bytes
    /// (1009 beyond).
    pub fn new(max_message: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            max_message,
            partial: None,
        }
    }

    /// Where newly read bytes go.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Forgets everything buffered and any message in progress.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.partial = None;
    }

    /// Whether a fragmented message has begun and not ended.
    pub fn is_fragmented_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Whether a frame or a fragmented message has begun and not ended.
    pub fn is_mid_message(&self) -> bool {
        !self.buf.is_empty() || self.partial.is_some()
    }

    /// The next complete message from the bytes buffered so far; `Ok(None)`
    /// when more bytes are needed. After an error the stream is unusable.
    pub fn decode(&mut self) -> Result<Option<Incoming>, DecodeError> {
        while let Some(frame) = frame::parse(&mut self.buf, self.max_message)? {
            if let Some(message) = self.assemble(frame)? {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    fn assemble(&mut self, frame: frame::Frame) -> Result<Option<Incoming>, DecodeError> {
        let protocol = |why| DecodeError::Frame(FrameError::Protocol(why));
        match frame.opcode {
            OP_PING => Ok(Some(Incoming::Ping(frame.payload.freeze()))),
            OP_PONG => Ok(Some(Incoming::Pong)),
            OP_CLOSE => frame::parse_close(&frame.payload)
                .map(|code| Some(Incoming::Close(code)))
                .map_err(DecodeError::BadClose),
            OP_TEXT | OP_BINARY if self.partial.is_some() => {
                Err(protocol("a new message began before the last one ended"))
            }
            OP_TEXT | OP_BINARY => {
                let mut partial = Partial {
                    opcode: frame.opcode,
                    data: frame.payload,
                    checked: 0,
                };
                if frame.fin {
                    return partial.finish().map(Some);
                }
                partial.check_utf8()?;
                self.partial = Some(Box::new(partial));
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some(mut partial) = self.partial.take() else {
                    return Err(protocol("a continuation frame without a message"));
                };
                let size = partial.data.len() + frame.payload.len();
                if size > self.max_message {
                    return Err(FrameError::TooBig {
                        size: size as u64,
                        limit: self.max_message,
                    }
                    .into());
                }
                partial.data.extend_from_slice(&frame.payload);
                if frame.fin {
                    return (*partial).finish().map(Some);
                }
                partial.check_utf8()?;
                self.partial = Some(partial);
                Ok(None)
            }
            _ => Err(protocol("unknown opcode")),
        }
    }
}

impl Partial {
    /// Checks the text of an unfinished message received since the last
    /// check. A sequence cut at the end may still be completed by the next
    /// fragment; anything else invalid fails now, before the rest arrives.
    fn check_utf8(&mut self) -> Result<(), DecodeError> {
        if self.opcode != OP_TEXT {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => self.checked = self.data.len(),
            Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to(),
            Err(_) => return Err(DecodeError::InvalidUtf8),
        }
        Ok(())
    }

    /// The whole message. Text is validated here in one pass (the common,
    /// single-frame message is checked exactly once).
    fn finish(self) -> Result<Incoming, DecodeError> {
        if self.opcode == OP_BINARY {
            return Ok(Incoming::Binary(self.data.freeze()));
        }
        String::from_utf8(self.data.to_vec())
            .map(Incoming::Text)
            .map_err(|_| DecodeError::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::frame::tests::client_frame;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Incoming>, DecodeError> {
        let mut decoder = Decoder::new(max);
        decoder.buffer().extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(message) = decoder.decode()? {
            out.push(message);
        }
        Ok(out)
    }

    #[test]
    fn assembles_fragments_around_an_interleaved_ping() {
        let mut bytes = client_frame(false, OP_TEXT, b"hel", [1, 2, 3, 4]);
        bytes.extend(client_frame(true, OP_PING, b"p", [0; 4]));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"lo", [5; 4]));
        assert_eq!(
            decode_all(&bytes, 100),
            Ok(vec![
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Text("hello".into())
            ])
        );
    }

    #[test]
    fn invalid_text_fails_at_the_fragment_that_makes_it_invalid() {
        let mut decoder = Decoder::new(100);
        // "κ" split across fragments is fine ...
        decoder
            .buffer()
            .extend(client_frame(false, OP_TEXT, &[0xce], [7; 4]));
        assert_eq!(decoder.decode(), Ok(None));
        decoder
            .buffer()
            .extend(client_frame(false, OP_CONTINUATION, &[0xba], [7; 4]));
        assert_eq!(decoder.decode(), Ok(None));
        // ... but 0xff can never be UTF-8: fail before the message ends.
        decoder
            .buffer()
            .extend(client_frame(false, OP_CONTINUATION, &[0xff], [7; 4]));
        assert_eq!(decoder.decode(), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn text_ending_inside_a_sequence_is_invalid() {
        let bytes = client_frame(true, OP_TEXT, &[b'a', 0xce], [0; 4]);
        assert_eq!(decode_all(&bytes, 100), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn fragment_rules() {
        let stray = client_frame(true, OP_CONTINUATION, b"x", [0; 4]);
        assert!(matches!(
            decode_all(&stray, 100),
            Err(DecodeError::Frame(FrameError::Protocol(_)))
        ));
        let mut interleaved = client_frame(false, OP_TEXT, b"a", [0; 4]);
        interleaved.extend(client_frame(true, OP_TEXT, b"b", [0; 4]));
        assert!(matches!(
            decode_all(&interleaved, 100),
            Err(DecodeError::Frame(FrameError::Protocol(_)))
        ));
        let mut oversize = client_frame(false, OP_BINARY, &[0; 60], [0; 4]);
        oversize.extend(client_frame(true, OP_CONTINUATION, &[0; 60], [0; 4]));
        assert!(matches!(
            decode_all(&oversize, 100),
            Err(DecodeError::Frame(FrameError::TooBig { size: 120, .. }))
        ));
    }

    #[test]
    fn close_frames_are_validated() {
        let close =
            |payload: &[u8]| decode_all(&client_frame(true, OP_CLOSE, payload, [3; 4]), 100);
        assert_eq!(close(b""), Ok(vec![Incoming::Close(None)]));
        assert_eq!(
            close(&3000u16.to_be_bytes()),
            Ok(vec![Incoming::Close(Some(3000))])
        );
        assert!(matches!(
            close(&1005u16.to_be_bytes()),
            Err(DecodeError::BadClose(CloseError::Protocol(_)))
        ));
        assert_eq!(
            close(&[0x03, 0xe8, 0xff]),
            Err(DecodeError::BadClose(CloseError::InvalidUtf8))
        );
    }

    #[test]
    fn mid_message_tracks_partial_frames_and_fragments() {
        let mut decoder = Decoder::new(100);
        assert!(!decoder.is_mid_message());
        let frame = client_frame(false, OP_TEXT, b"ab", [0; 4]);
        decoder.buffer().extend_from_slice(&frame[..3]);
        assert_eq!(decoder.decode(), Ok(None));
        assert!(decoder.is_mid_message());
        decoder.buffer().extend_from_slice(&frame[3..]);
        assert_eq!(decoder.decode(), Ok(None));
        assert!(decoder.is_mid_message(), "the message is unfinished");
        decoder
            .buffer()
            .extend(client_frame(true, OP_CONTINUATION, b"c", [0; 4]));
        assert_eq!(decoder.decode(), Ok(Some(Incoming::Text("abc".into()))));
        assert!(!decoder.is_mid_message());
    }

    proptest! {
        /// However the stream is cut into reads, the messages are the same.
        #[test]
        fn splitting_the_stream_changes_nothing(
            texts in proptest::collection::vec("\\PC{0,20}", 1..6),
            cuts in proptest::collection::vec(1usize..40, 0..20),
        ) {
            let mut bytes = Vec::new();
            for text in &texts {
                let raw = text.as_bytes();
                let (a, b) = raw.split_at(raw.len() / 2);
                bytes.extend(client_frame(false, OP_TEXT, a, [9, 8, 7, 6]));
                bytes.extend(client_frame(true, OP_CONTINUATION, b, [1, 2, 3, 4]));
            }
            let whole = decode_all(&bytes, 1000).unwrap();
            let mut decoder = Decoder::new(1000);
            let mut pieces = Vec::new();
            let mut rest = &bytes[..];
            for cut in cuts.iter().copied().chain(std::iter::once(usize::MAX)) {
                let (now, later) = rest.split_at(cut.min(rest.len()));
                decoder.buffer().extend_from_slice(now);
                while let Some(message) = decoder.decode().unwrap() {
                    pieces.push(message);
                }
                rest = later;
            }
            prop_assert_eq!(&pieces, &whole);
            let expected: Vec<Incoming> = texts.into_iter().map(Incoming::Text).collect();
            prop_assert_eq!(whole, expected);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut decoder = Decoder::new(128);
            decoder.buffer().extend_from_slice(&bytes);
            while let Ok(Some(_)) = decoder.decode() {}
        }
    }
}
