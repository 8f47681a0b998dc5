//! actorchat wire protocol v1.
//!
//! These Rust types are the single source of truth for the protocol: the
//! server speaks them, the load generator speaks them, and the browser
//! client's TypeScript types are generated from them by `ts-rs` (run the
//! crate's tests; the files land in `web/src/lib/protocol/`).
//!
//! Every frame is one JSON object in a WebSocket text frame; its `"type"`
//! field names the variant. `docs/protocol.md` is the human-readable version,
//! and `vectors/` holds example frames that both the Rust and the TypeScript
//! tests decode.
//!
//! This crate has no async runtime and no I/O, so anything can depend on it.

mod client;
mod decode;
mod limits;
mod server;

pub use client::{ClientFrame, Since};
pub use decode::{DecodeError, check_since, decode_client_frame};
pub use limits::{
    MAX_CLIENT_ID_CHARS, MAX_EPOCH_CHARS, MAX_HISTORY_PAGE, MAX_INTEGER, MAX_NAME_CHARS,
    MAX_PARTICIPANTS_LISTED, MAX_ROOM_CHARS, MAX_TEXT_CHARS, MAX_TOKEN_BYTES, validate_name,
    validate_room,
};
pub use server::{
    CalcResult, CalcStatus, ChatFrame, ChatMessage, ErrorCode, ErrorFrame, HistoryPage, Limits,
    Pong, Refreshed, Rename, RoomUpdate, ServerFrame, Welcome,
};

/// Close codes the server uses, named for the policy that sends them.
pub mod close_code {
    /// An orderly close (the answer to a client's close).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down ("going away").
    pub const GOING_AWAY: u16 = 1001;
    /// A frame that breaks the WebSocket protocol (RFC 6455).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A binary frame, or repeated abuse after errors.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame larger than `max_frame_bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The room could not be joined (the registry or room did not answer).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// A slow consumer whose outbound queue overflowed, or a room that had
    /// to be re-created after a failure while the server was at its room
    /// limit ("try again later").
    /// (A server at its connection limit answers the upgrade with HTTP 503
    /// instead; no WebSocket is opened.)
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The session's token expired without a `refresh` (reason "token
    /// expired"); reconnect with a new token.
    pub const TOKEN_EXPIRED: u16 = 4001;
}
