//! Reading a frame's latency stamp: whether it is a chat frame, and its
//! `client_id` and `sent_at`.
//!
//! Every member receives every message, so this runs once per delivery and
//! is the load generator's hottest code. A full `serde_json` parse of a chat
//! frame cost about half of the client's CPU at 750,000 deliveries/s, which
//! the server then could not use. So frames in the exact compact layout
//! serde writes for [`actorchat_protocol::ChatMessage`] (`{"type":"chat",`
//! first) are read by a substring scan; anything else goes through a
//! borrowed serde view, so another server's field order or whitespace only
//! costs speed, never correctness.
//!
//! Why the scan cannot be fooled by message content: inside a JSON string
//! every `"` is escaped, so `"client_id":"` or `"sent_at":` can only match
//! where a string ends right before a `:`, that is at an object key, and
//! all keys are the protocol's, not user text.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;

const CLIENT_ID_KEY: &str = r#""client_id":""#;
const SENT_AT_KEY: &str = r#""sent_at":"#;
/// Built once: constructing a substring searcher per frame cost as much as
/// the search.
static CLIENT_ID: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(CLIENT_ID_KEY));
static SENT_AT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(SENT_AT_KEY));

/// What latency needs from a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp<'a> {
    /// A chat frame; its stamp fields if it carries both.
    Chat {
        client_id: Option<&'a str>,
        sent_at: Option<u64>,
    },
    /// Any other frame type, by name.
    Other(&'a str),
}

/// Reads the stamp of a server frame, or `None` if the frame is not a JSON
/// object with a string `type`, or its stamp needs unescaping (the caller
/// then decodes it fully).
pub fn read(text: &str) -> Option<Stamp<'_>> {
    scan(text).or_else(|| {
        let view: View<'_> = serde_json::from_str(text).ok()?;
        Some(match view.kind {
            "chat" => Stamp::Chat {
                client_id: view.client_id,
                sent_at: view.sent_at,
            },
            other => Stamp::Other(other),
        })
    })
}

/// A chat frame's `id`, if the frame is in serde's compact layout (the id
/// is its second field): what the order check needs, at the cost of a
/// prefix match and a few digits.
pub fn chat_id(text: &str) -> Option<u64> {
    let digits = text.strip_prefix(r#"{"type":"chat","id":"#)?;
    let end = digits.bytes().position(|b| !b.is_ascii_digit())?;
    digits[..end].parse().ok()
}

/// The fast path: a chat frame in serde's compact layout whose stamp fields
/// are both present and need no unescaping.
fn scan(text: &str) -> Option<Stamp<'_>> {
    let body = text.strip_prefix(r#"{"type":"chat","#)?;
    let client_id = string_after(body, &CLIENT_ID)?;
    let sent_at = integer_after(body, &SENT_AT)?;
    Some(Stamp::Chat {
        client_id: Some(client_id),
        sent_at: Some(sent_at),
    })
}

/// The string value following `key`, if it has no escapes.
fn string_after<'a>(body: &'a str, key: &Finder<'_>) -> Option<&'a str> {
    let start = key.find(body.as_bytes())? + key.needle().len();
    let value = &body[start..];
    let end = memchr::memchr(b'"', value.as_bytes())?;
    let value = &value[..end];
    (!value.contains('\\')).then_some(value)
}

/// The unsigned integer following `key`, if it is one.
fn integer_after(body: &str, key: &Finder<'_>) -> Option<u64> {
    let start = key.find(body.as_bytes())? + key.needle().len();
    let digits = &body[start..];
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    // An integer must be followed by a delimiter; `1.5` or `1e3` is not one.
    match digits.as_bytes().get(end) {
        Some(b',' | b'}') => digits[..end].parse().ok(),
        _ => None,
    }
}

/// The borrowed serde view for frames the scan does not read. Field names
/// are those of [`actorchat_protocol::ChatMessage`].
#[derive(Deserialize)]
struct View<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    client_id: Option<&'a str>,
    #[serde(default)]
    sent_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use actorchat_protocol::{CalcResult, CalcStatus, ChatMessage, Pong, ServerFrame};
    use proptest::prelude::*;

    #[test]
    fn a_chat_s_id_is_read_from_its_prefix() {
        assert_eq!(chat_id(&chat("a", "hi", None, None, false)), Some(7));
        assert_eq!(chat_id(r#"{"type":"pong","nonce":1}"#), None);
        assert_eq!(chat_id(r#"{"type":"chat","id":"#), None);
    }

    fn chat(
        author: &str,
        text: &str,
        client_id: Option<&str>,
        sent_at: Option<u64>,
        calc: bool,
    ) -> String {
        ServerFrame::Chat(ChatMessage {
            id: 7,
            room: "r".into(),
            author: author.into(),
            user_id: None,
            text: text.into(),
            client_id: client_id.map(Into::into),
            sent_at,
            server_time: 1_700_000_000_000,
            calc: calc.then(|| CalcResult {
                id: "c1".into(),
                expr: "5!".into(),
                status: CalcStatus::Ok,
                value: Some("120".into()),
                digits: Some(3),
                truncated: false,
                elapsed_ms: 0,
                reason: None,
            }),
        })
        .to_json()
    }

    #[test]
    fn the_scan_reads_what_the_protocol_writes() {
        let json = chat(
            "a",
            "hello",
            Some("3.12.45"),
            Some(1_700_000_000_000_000),
            true,
        );
        let expected = Stamp::Chat {
            client_id: Some("3.12.45"),
            sent_at: Some(1_700_000_000_000_000),
        };
        assert_eq!(scan(&json), Some(expected), "{json}");
        assert_eq!(read(&json), Some(expected));
    }

    #[test]
    fn other_layouts_and_types_take_the_serde_path() {
        let spaced = r#"{ "type": "chat", "client_id": "1.2.3", "sent_at": 5 }"#;
        assert_eq!(scan(spaced), None);
        assert_eq!(
            read(spaced),
            Some(Stamp::Chat {
                client_id: Some("1.2.3"),
                sent_at: Some(5)
            })
        );
        let reordered = r#"{"sent_at":5,"type":"chat"}"#;
        assert_eq!(
            read(reordered),
            Some(Stamp::Chat {
                client_id: None,
                sent_at: Some(5)
            })
        );
        let pong = ServerFrame::Pong(Pong {
            nonce: 1,
            server_time: 2,
        })
        .to_json();
        assert_eq!(read(&pong), Some(Stamp::Other("pong")));
        assert_eq!(read("not json"), None);
        assert_eq!(read(r#"{"type":3}"#), None);
    }

    #[test]
    fn missing_or_escaped_stamps_are_not_guessed() {
        let no_stamp = chat("a", "hi", None, None, false);
        assert_eq!(scan(&no_stamp), None);
        assert_eq!(
            read(&no_stamp),
            Some(Stamp::Chat {
                client_id: None,
                sent_at: None
            })
        );
        // A borrowed view cannot unescape; the caller decodes such a frame
        // fully (the benchmark's own ids never need escapes).
        let escaped = chat("a", "hi", Some("x\"y"), Some(9), false);
        assert_eq!(scan(&escaped), None);
        assert_eq!(read(&escaped), None);
        assert_eq!(integer_after(r#""sent_at":1.5}"#, &SENT_AT), None);
        assert_eq!(integer_after(r#""sent_at":15}"#, &SENT_AT), Some(15));
    }

    proptest! {
        /// Whatever authors and texts contain (quotes, fake keys, escapes),
        /// the scan agrees with a full decode or declines.
        #[test]
        fn the_scan_never_disagrees_with_serde(
            author in r#"[a-z"\\:,{} ]{0,20}|"client_id":"x|"sent_at":1"#,
            text in r#"[a-z"\\:,{} ]{0,40}|"client_id":"9.9.9","sent_at":1,"#,
            client_id in proptest::option::of("[0-9.]{1,12}"),
            sent_at in proptest::option::of(0u64..(1 << 53)),
            calc in any::<bool>(),
        ) {
            let json = chat(&author, &text, client_id.as_deref(), sent_at, calc);
            let Ok(ServerFrame::Chat(full)) = serde_json::from_str::<ServerFrame>(&json) else {
                panic!("the protocol's own chat frame must decode: {json}");
            };
            if let Some(Stamp::Chat { client_id, sent_at }) = scan(&json) {
                prop_assert_eq!(client_id, full.client_id.as_deref());
                prop_assert_eq!(sent_at, full.sent_at);
            }
            prop_assert_eq!(
                read(&json),
                Some(Stamp::Chat { client_id: full.client_id.as_deref(), sent_at: full.sent_at })
            );
        }
    }
}
