//! Decoding and validating untrusted client frames.
//!
//! Decoding happens in two passes over the text so that every failure maps to
//! exactly one error code: first only the `"type"` tag is read (is this JSON?
//! an object? a known type?), then the variant's own fields are decoded and
//! validated. Unknown extra fields are ignored, as the protocol promises.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::error::Category;

use crate::limits::{
    MAX_CLIENT_ID_CHARS, MAX_EPOCH_CHARS, MAX_HISTORY_PAGE, MAX_INTEGER, MAX_TEXT_CHARS,
    MAX_TOKEN_BYTES, validate_name, validate_room,
};
use crate::{ClientFrame, ErrorCode, Since};

/// Why a client frame was refused: the wire error code plus a sentence for
/// the person (or developer) on the other end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

impl DecodeError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        DecodeError {
            code,
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChatFields {
    text: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    sent_at: Option<u64>,
}

#[derive(Deserialize)]
struct PingFields {
    nonce: u64,
}

#[derive(Deserialize)]
struct SetNameFields {
    name: String,
}

#[derive(Deserialize)]
struct JoinFields {
    room: String,
    #[serde(default)]
    since: Option<Since>,
}

#[derive(Deserialize)]
struct RefreshFields {
    token: String,
}

#[derive(Deserialize)]
struct HistoryFields {
    before: u64,
    limit: u32,
}

/// Decodes one text frame from a client and validates every field.
///
/// On success the frame is normalised: chat text and names are trimmed.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, DecodeError> {
    // serde would happily read a struct from a JSON array, so insist on an
    // object before anything else.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => DecodeError::new(
                ErrorCode::InvalidJson,
                "A frame must be a JSON object like {\"type\":\"ping\",\"nonce\":1}.",
            ),
            Err(e) => invalid_json(&e),
        });
    }
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| field_error(&e, "type"))?;
    let Some(kind) = envelope.kind else {
        return Err(DecodeError::new(
            ErrorCode::InvalidField,
            "The frame has no \"type\" field.",
        ));
    };
    match kind.as_ref() {
        "chat" => {
            let f: ChatFields = fields(text, "chat")?;
            chat(f)
        }
        "ping" => {
            let f: PingFields = fields(text, "ping")?;
            check_integer("nonce", f.nonce)?;
            Ok(ClientFrame::Ping { nonce: f.nonce })
        }
        "set_name" => {
            let f: SetNameFields = fields(text, "set_name")?;
            let name =
                validate_name(&f.name).map_err(|m| DecodeError::new(ErrorCode::InvalidName, m))?;
            Ok(ClientFrame::SetName {
                name: name.to_owned(),
            })
        }
        "join" => {
            let f: JoinFields = fields(text, "join")?;
            validate_room(&f.room).map_err(|m| DecodeError::new(ErrorCode::InvalidRoom, m))?;
            if let Some(since) = &f.since {
                check_since(since)?;
            }
            Ok(ClientFrame::Join {
                room: f.room,
                since: f.since,
            })
        }
        "history" => {
            let f: HistoryFields = fields(text, "history")?;
            check_integer("before", f.before)?;
            if !(1..=MAX_HISTORY_PAGE).contains(&f.limit) {
                return Err(DecodeError::new(
                    ErrorCode::InvalidField,
                    format!(
                        "\"limit\" must be from 1 to {MAX_HISTORY_PAGE}; got {}.",
                        f.limit
                    ),
                ));
            }
            Ok(ClientFrame::History {
                before: f.before,
                limit: f.limit,
            })
        }
        "refresh" => {
            let f: RefreshFields = fields(text, "refresh")?;
            let token = f.token.trim();
            if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
                return Err(DecodeError::new(
                    ErrorCode::InvalidField,
                    format!(
                        "\"token\" must be 1 to {MAX_TOKEN_BYTES} bytes; this one has {}.",
                        token.len()
                    ),
                ));
            }
            Ok(ClientFrame::Refresh {
                token: token.to_owned(),
            })
        }
        other => Err(DecodeError::new(
            ErrorCode::UnknownType,
            format!(
                "Unknown frame type {:?}; expected chat, ping, set_name, join, history or refresh.",
                truncate(other, 40)
            ),
        )),
    }
}

fn chat(f: ChatFields) -> Result<ClientFrame, DecodeError> {
    let text = f.text.trim();
    if text.is_empty() {
        return Err(DecodeError::new(
            ErrorCode::InvalidField,
            "A chat message needs some text.",
        ));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(DecodeError::new(
            ErrorCode::TextTooLong,
            format!(
                "A chat message has at most {MAX_TEXT_CHARS} characters; this one has {chars}."
            ),
        ));
    }
    if let Some(id) = &f.client_id {
        let n = id.chars().count();
        if n > MAX_CLIENT_ID_CHARS {
            return Err(DecodeError::new(
                ErrorCode::InvalidField,
                format!(
                    "\"client_id\" has at most {MAX_CLIENT_ID_CHARS} characters; this one has {n}."
                ),
            ));
        }
    }
    if let Some(sent_at) = f.sent_at {
        check_integer("sent_at", sent_at)?;
    }
    let text = if text.len() == f.text.len() {
        f.text
    } else {
        text.to_owned()
    };
    Ok(ClientFrame::Chat {
        text,
        client_id: f.client_id,
        sent_at: f.sent_at,
    })
}

/// Checks a resume point; shared with the `/ws?since=&epoch=` query.
pub fn check_since(since: &Since) -> Result<(), DecodeError> {
    check_integer("since.id", since.id)?;
    let n = since.epoch.chars().count();
    if n == 0 || n > MAX_EPOCH_CHARS {
        return Err(DecodeError::new(
            ErrorCode::InvalidField,
            format!("\"since.epoch\" has 1 to {MAX_EPOCH_CHARS} characters; this one has {n}."),
        ));
    }
    Ok(())
}

fn fields<'a, T: Deserialize<'a>>(text: &'a str, kind: &str) -> Result<T, DecodeError> {
    serde_json::from_str(text).map_err(|e| field_error(&e, kind))
}

fn check_integer(field: &str, value: u64) -> Result<(), DecodeError> {
    if value > MAX_INTEGER {
        return Err(DecodeError::new(
            ErrorCode::InvalidField,
            format!("\"{field}\" must be an integer from 0 to 2^53; got {value}."),
        ));
    }
    Ok(())
}

fn invalid_json(e: &serde_json::Error) -> DecodeError {
    DecodeError::new(
        ErrorCode::InvalidJson,
        format!("The frame is not valid JSON ({e})."),
    )
}

fn field_error(e: &serde_json::Error, kind: &str) -> DecodeError {
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => invalid_json(e),
        Category::Data => DecodeError::new(
            ErrorCode::InvalidField,
            format!(
                "Bad field in a {kind:?} frame: {}.",
                shorten(&strip_position(e), MAX_DETAIL_CHARS)
            ),
        ),
    }
}

/// Longest serde detail quoted in a field error, in characters. serde quotes
/// a string of the wrong type in full (`invalid type: string "…"`), and the
/// sentence goes back to the client and into the server's log, so without a
/// cap it would grow with the frame (found by the `client_frame` fuzz target).
const MAX_DETAIL_CHARS: usize = 160;

/// `s` cut to `max_chars` characters, with `…` when something was cut.
fn shorten(s: &str, max_chars: usize) -> Cow<'_, str> {
    let kept = truncate(s, max_chars);
    if kept.len() == s.len() {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("{kept}…"))
    }
}

/// serde_json appends " at line 1 column 17"; keep the readable part.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(text: &str) -> ErrorCode {
        decode_client_frame(text).unwrap_err().code
    }

    #[test]
    fn valid_frames() {
        assert_eq!(
            decode_client_frame(
                r#"{"type":"chat","text":"  hi  ","client_id":"c1","sent_at":5,"author":"x"}"#
            ),
            Ok(ClientFrame::Chat {
                text: "hi".into(),
                client_id: Some("c1".into()),
                sent_at: Some(5)
            })
        );
        assert_eq!(
            decode_client_frame(r#"{"nonce":9007199254740992,"type":"ping"}"#),
            Ok(ClientFrame::Ping { nonce: 1 << 53 })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"set_name","name":" Ada "}"#),
            Ok(ClientFrame::SetName { name: "Ada".into() })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"join","room":"rust"}"#),
            Ok(ClientFrame::Join {
                room: "rust".into(),
                since: None
            })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"join","room":"rust","since":{"id":4,"epoch":"e1"}}"#),
            Ok(ClientFrame::Join {
                room: "rust".into(),
                since: Some(Since {
                    id: 4,
                    epoch: "e1".into()
                })
            })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"history","before":40,"limit":100}"#),
            Ok(ClientFrame::History {
                before: 40,
                limit: 100
            })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"refresh","token":" a.b.c "}"#),
            Ok(ClientFrame::Refresh {
                token: "a.b.c".into()
            })
        );
        // An escaped tag still decodes.
        assert!(decode_client_frame(r#"{"type":"pi\u006eg","nonce":1}"#).is_ok());
    }

    #[test]
    fn error_classes() {
        assert_eq!(code("hello"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidJson);
        assert_eq!(code("42"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"type":"chat","#), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"text":"hi"}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"chat"}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"chat","text":5}"#), ErrorCode::InvalidField);
        assert_eq!(
            code(r#"{"type":"chat","text":"   "}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"ping","nonce":-1}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"ping","nonce":1.5}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"ping","nonce":9007199254740993}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"set_name","name":""}"#),
            ErrorCode::InvalidName
        );
        assert_eq!(
            code(r#"{"type":"join","room":"a b"}"#),
            ErrorCode::InvalidRoom
        );
        assert_eq!(
            code(r#"{"type":"history","before":40,"limit":0}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"history","before":40,"limit":101}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"history","limit":5}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"join","room":"a","since":{"id":1,"epoch":""}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"join","room":"a","since":{"id":-1,"epoch":"e"}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"join","room":"a","since":7}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"refresh","token":""}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"refresh","token":7}"#),
            ErrorCode::InvalidField
        );
        let token = format!(r#"{{"type":"refresh","token":"{}"}}"#, "t".repeat(4097));
        assert_eq!(code(&token), ErrorCode::InvalidField);
        let long = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(4001));
        assert_eq!(code(&long), ErrorCode::TextTooLong);
        let id = format!(
            r#"{{"type":"chat","text":"x","client_id":"{}"}}"#,
            "i".repeat(65)
        );
        assert_eq!(code(&id), ErrorCode::InvalidField);
    }

    /// Regression (fuzzing, `client_frame`): a string where a number belongs
    /// was quoted in full, so the error sentence grew with the frame.
    #[test]
    fn field_errors_do_not_quote_long_input() {
        let frame = format!(r#"{{"type":"ping","nonce":"{}"}}"#, "x".repeat(1000));
        let e = decode_client_frame(&frame).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField);
        assert!(
            e.message
                .starts_with(r#"Bad field in a "ping" frame: invalid type: string"#)
        );
        assert!(
            e.message.ends_with("….") && e.message.chars().count() < 220,
            "{}",
            e.message
        );
        // Short details are left whole.
        assert_eq!(
            decode_client_frame(r#"{"type":"ping","nonce":"7"}"#)
                .unwrap_err()
                .message,
            r#"Bad field in a "ping" frame: invalid type: string "7", expected u64."#
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC*") {
            let _ = decode_client_frame(&s);
        }

        #[test]
        fn never_panics_on_json_like_text(s in r#"\{("type":"(chat|ping|join|set_name|history|x)",?)?("(text|nonce|room|name|client_id|sent_at|before|limit|since)":("[^"]{0,8}"|-?[0-9]{1,20}|null|true|\[\]|\{\}),?){0,4}\}"#) {
            let _ = decode_client_frame(&s);
        }

        #[test]
        fn chat_text_roundtrips(text in "[^\\s][^\\u{0}]{0,200}[^\\s]", id in proptest::option::of("[a-z0-9]{0,64}"), sent_at in proptest::option::of(0..=MAX_INTEGER)) {
            let frame = ClientFrame::Chat { text: text.clone(), client_id: id, sent_at };
            let json = serde_json::to_string(&frame).unwrap();
            let decoded = decode_client_frame(&json).unwrap();
            prop_assert_eq!(decoded, frame);
        }
    }
}
