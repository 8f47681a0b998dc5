//! Frames the server sends to clients.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A frame from server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export)]
pub enum ServerFrame {
    /// The first frame after connecting and after every `join`.
    Welcome(Welcome),
    /// A chat message broadcast to everyone in the room, the sender included.
    Chat(ChatMessage),
    /// Presence changes, coalesced: at most one per room per interval.
    RoomUpdate(RoomUpdate),
    /// The answer to a `ping`.
    Pong(Pong),
    /// Something the client sent was refused; sent to that client only.
    Error(ErrorFrame),
    /// One page of earlier messages: the answer to a client's `history`.
    History(HistoryPage),
    /// The answer to an accepted `refresh`: the session now lasts until
    /// `expires_at`.
    Refreshed(Refreshed),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Welcome {
    /// Unique for the lifetime of the server process.
    #[ts(type = "number")]
    pub session_id: u64,
    pub name: String,
    pub room: String,
    pub num_participants: u32,
    /// Names of members already announced to the room (the new member is
    /// not among them: it arrives in the next `room_update`); at most
    /// [`crate::MAX_PARTICIPANTS_LISTED`] of them. `num_participants` counts
    /// everyone, the new member included.
    pub participants: Vec<String>,
    pub limits: Limits,
    /// Names the room's stream. It changes only when the stream was lost
    /// (the data directory was deleted, or `memory` storage restarted); a
    /// client resuming with another epoch cannot be recovered.
    pub epoch: String,
    /// The room's newest message id, 0 if it has none.
    #[ts(type = "number")]
    pub last_id: u64,
    /// `null` when the client did not ask to resume; `true` when `history`
    /// holds exactly every message after the client's `since` id; `false`
    /// when it could not (another epoch, or too many missed), and `history`
    /// holds the latest messages instead: what the client shows is stale.
    pub recovered: Option<bool>,
    /// The verified user this session speaks for (the token's `sub`), or
    /// `null` for a guest (or any session when the server runs without
    /// authentication).
    pub user_id: Option<String>,
    /// Earlier messages, oldest first: the latest few on a plain join, the
    /// missed ones on a recovered resume. Always the last field: the server
    /// splices a room's shared, pre-encoded history in here.
    pub history: Vec<ChatFrame>,
}

/// A `chat` frame inside another frame (`welcome.history`,
/// `history.messages`): exactly the bytes that were broadcast, `"type"`
/// included, so the server replays stored frames without decoding them and
/// a client handles them like live ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export)]
pub enum ChatFrame {
    Chat(ChatMessage),
}

/// The limits this server enforces, so a client can check before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Limits {
    pub max_text_chars: u32,
    pub max_frame_bytes: u32,
    pub max_messages_per_sec: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ChatMessage {
    /// Per-room sequence number, strictly increasing.
    #[ts(type = "number")]
    pub id: u64,
    pub room: String,
    /// The sender's session name, stamped by the server.
    pub author: String,
    /// The sender's verified user id (its token's `sub`), stamped by the
    /// server. Absent for a guest (and so in every message of a server
    /// without `--auth`, byte for byte as before identities existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional = nullable)]
    pub user_id: Option<String>,
    pub text: String,
    /// Echoed exactly from the sender's `chat` frame.
    pub client_id: Option<String>,
    /// Echoed exactly from the sender's `chat` frame.
    #[ts(type = "number | null")]
    pub sent_at: Option<u64>,
    /// Milliseconds since the Unix epoch when the room broadcast it.
    #[ts(type = "number")]
    pub server_time: u64,
    /// Set when the text was a calculation such as `200!`.
    pub calc: Option<CalcResult>,
}

/// The outcome of a calculation request such as `200!`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct CalcResult {
    /// Names this calculation; the full value is at `GET /calc/{id}` while retained.
    pub id: String,
    /// The expression as the user wrote it (trimmed).
    pub expr: String,
    pub status: CalcStatus,
    /// Decimal digits; abbreviated (first and last digits) when `truncated`.
    pub value: Option<String>,
    /// Number of decimal digits of the full value.
    #[ts(type = "number | null")]
    pub digits: Option<u64>,
    pub truncated: bool,
    #[ts(type = "number")]
    pub elapsed_ms: u64,
    /// A sentence explaining any status other than `ok`.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum CalcStatus {
    Ok,
    /// Refused before any work: too large for the memory or time limits.
    Rejected,
    Timeout,
    /// The calculation queue was full.
    Busy,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RoomUpdate {
    pub room: String,
    pub num_participants: u32,
    /// Names that joined since the previous update.
    pub joined: Vec<String>,
    /// Names that left since the previous update.
    pub left: Vec<String>,
    /// Renames since the previous update (an extension to v1: old clients
    /// ignore it, as they ignore any unknown field).
    #[serde(default)]
    pub renamed: Vec<Rename>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

/// Earlier messages of a room, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct HistoryPage {
    pub room: String,
    pub messages: Vec<ChatFrame>,
    /// Whether older messages than the first of `messages` are stored.
    pub has_more: bool,
}

/// A refreshed session's new expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Refreshed {
    /// Seconds since the Unix epoch (the new token's `exp`).
    #[ts(type = "number")]
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Pong {
    #[ts(type = "number")]
    pub nonce: u64,
    #[ts(type = "number")]
    pub server_time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    /// A sentence a person understands.
    pub message: String,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ErrorCode {
    InvalidJson,
    UnknownType,
    InvalidField,
    TextTooLong,
    RateLimited,
    InvalidName,
    InvalidRoom,
    /// Too many messages held behind a running calculation.
    CalcBusy,
    /// The server already has its most rooms (`--max-rooms`); a `join` that
    /// would create another is refused.
    RoomLimit,
    /// The room's inbox is full (`--room-inbox`): the chat was not broadcast.
    RoomBusy,
    /// The message could not be stored (the disk is full or failing): it was
    /// not broadcast. Try again later.
    Unavailable,
    /// The session's token does not grant this (a room outside its `rooms`
    /// claim).
    Forbidden,
    /// A `refresh` token was refused: invalid, expired, for another user,
    /// or sent where tokens are not used.
    InvalidToken,
}

impl ErrorCode {
    /// Every code, for metrics that want a zero for each.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::InvalidJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidField,
        ErrorCode::TextTooLong,
        ErrorCode::RateLimited,
        ErrorCode::InvalidName,
        ErrorCode::InvalidRoom,
        ErrorCode::CalcBusy,
        ErrorCode::RoomLimit,
        ErrorCode::RoomBusy,
        ErrorCode::Unavailable,
        ErrorCode::Forbidden,
        ErrorCode::InvalidToken,
    ];

    /// The wire name, also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::CalcBusy => "calc_busy",
            ErrorCode::RoomLimit => "room_limit",
            ErrorCode::RoomBusy => "room_busy",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InvalidToken => "invalid_token",
        }
    }
}

impl ServerFrame {
    /// Encodes the frame as JSON text. Serializing these types cannot fail
    /// (string keys, no maps with non-string keys, no floats).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            // Unreachable for these types; degrade to a valid frame rather than panic.
            r#"{"type":"error","code":"invalid_field","message":"The server could not encode a frame."}"#
                .to_owned()
        })
    }

    /// Builds an `error` frame.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error(ErrorFrame {
            code,
            message: message.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    /// Messages stored before identities existed have no `user_id`; they
    /// still decode, as a guest's.
    #[test]
    fn chat_stored_without_user_id_is_a_guests() {
        let old = r#"{"type":"chat","id":1,"room":"r","author":"a","text":"t","client_id":null,"sent_at":null,"server_time":5,"calc":null}"#;
        let Ok(ServerFrame::Chat(chat)) = serde_json::from_str::<ServerFrame>(old) else {
            panic!("an old chat frame must decode");
        };
        assert_eq!(chat.user_id, None);
    }
}
