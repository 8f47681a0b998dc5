//! Session identity: the ids the server hands out and the name a session
//! gets when the client does not choose one. (The session itself, the
//! state a connection owns, is `Session` in [`crate::connection`].)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Identifies one WebSocket session for the life of the server process.
pub type SessionId = u64;

/// Hands out session ids, starting at 1.
#[derive(Debug, Default)]
pub struct SessionIds(AtomicU64);

impl SessionIds {
    pub fn next(&self) -> SessionId {
        self.0.fetch_add(1, Relaxed) + 1
    }
}

/// The name a session gets when the client does not choose one.
pub fn default_name(id: SessionId) -> String {
    format!("guest-{id}")
}
