//! Frames a client sends to the server.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A frame from client to server. Decode untrusted input with
/// [`crate::decode_client_frame`], which validates every field; the derives
/// here are for clients (the load generator, tests) that build frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export)]
pub enum ClientFrame {
    /// Broadcast `text` to the sender's room. `client_id` and `sent_at` are
    /// echoed back untouched so the sender can match its message and measure
    /// the round trip.
    Chat {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional, type = "number")]
        sent_at: Option<u64>,
    },
    /// Ask for a `pong` carrying the same nonce.
    Ping {
        #[ts(type = "number")]
        nonce: u64,
    },
    /// Rename this session; the room is told in its next `room_update`.
    SetName { name: String },
    /// Leave the current room and join this one; answered with a `welcome`.
    /// With `since`, resume: the `welcome` carries every message after
    /// `since.id` if it can (`recovered: true`).
    Join {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        since: Option<Since>,
    },
    /// Ask for up to `limit` (1 to 100) messages of the current room older
    /// than `before`; answered with a `history` frame.
    History {
        #[ts(type = "number")]
        before: u64,
        limit: u32,
    },
    /// Replace this session's token with a newer one for the same user
    /// (same `sub`) before the current one expires; answered with
    /// `refreshed`, or an `invalid_token` or `forbidden` error (the session
    /// then goes on until its current token expires).
    Refresh { token: String },
}

/// Where a resuming client stopped: the last id it has, in the stream `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Since {
    #[ts(type = "number")]
    pub id: u64,
    pub epoch: String,
}
