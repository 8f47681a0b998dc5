//! `actorchat_protocol::decode_client_frame` on arbitrary UTF-8.
//!
//! Beyond "no panic", every outcome is checked against the protocol's
//! promises: an accepted frame satisfies every documented limit and survives
//! encode → decode unchanged (decoding normalises, so a second pass must be a
//! fixed point); a refused frame carries a decoding error code and a short,
//! non-empty sentence.
#![no_main]

use actorchat_protocol::{
    ClientFrame, ErrorCode, MAX_CLIENT_ID_CHARS, MAX_INTEGER, MAX_TEXT_CHARS, decode_client_frame,
    validate_name, validate_room,
};
use libfuzzer_sys::fuzz_target;

/// Longest error sentence accepted, in characters: the decoder cuts what it
/// quotes from the input, so a message never grows with the frame. The
/// longest legitimate one quotes an unknown type's first 40 characters
/// Debug-escaped (up to 10 characters each, `\u{10ffff}`): about 460.
const MAX_MESSAGE_CHARS: usize = 500;

fuzz_target!(|text: &str| {
    let first = decode_client_frame(text);
    assert_eq!(
        first,
        decode_client_frame(text),
        "decoding is deterministic"
    );
    match first {
        Ok(frame) => {
            check_limits(&frame);
            let encoded = serde_json::to_string(&frame).expect("a frame always serialises");
            assert_eq!(
                decode_client_frame(&encoded).as_ref(),
                Ok(&frame),
                "re-decoding {encoded:?} (from {text:?})"
            );
        }
        Err(e) => {
            assert!(
                !matches!(e.code, ErrorCode::RateLimited | ErrorCode::CalcBusy),
                "{:?} is not a decoding error",
                e.code
            );
            assert!(!e.message.trim().is_empty(), "empty message for {text:?}");
            let chars = e.message.chars().count();
            assert!(
                chars <= MAX_MESSAGE_CHARS,
                "a {chars}-character error message for a {}-byte frame: {:?}",
                text.len(),
                e.message
            );
        }
    }
});

fn check_limits(frame: &ClientFrame) {
    match frame {
        ClientFrame::Chat {
            text,
            client_id,
            sent_at,
        } => {
            assert!(!text.is_empty() && text.trim() == text, "{text:?}");
            assert!(text.chars().count() <= MAX_TEXT_CHARS);
            if let Some(id) = client_id {
                assert!(id.chars().count() <= MAX_CLIENT_ID_CHARS);
            }
            assert!(sent_at.is_none_or(|t| t <= MAX_INTEGER));
        }
        ClientFrame::Ping { nonce } => assert!(*nonce <= MAX_INTEGER),
        ClientFrame::SetName { name } => assert_eq!(validate_name(name), Ok(name.as_str())),
        ClientFrame::Join { room } => assert_eq!(validate_room(room), Ok(room.as_str())),
    }
}
