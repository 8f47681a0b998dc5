//! A connection's mailbox: the bounded queue through which a room hands it
//! pre-encoded frames, plus a one-shot "you are out" signal.
//!
//! Backpressure policy (the one place it is decided): a room never waits for
//! a member. It offers each frame with `try_send`; when a member's queue is
//! full, that member is a slow consumer: the room drops it and signals
//! [`Kick::SlowConsumer`], and the connection closes with 1013. Everyone else
//! keeps receiving.
//!
//! A fresh mailbox is made for every join. The room holds the only sender, so
//! when a room actor dies (a panic) the connection sees its mailbox close and
//! rejoins through the registry, which has restarted the room.

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};

/// Why a room removed a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// The member's outbound queue was full.
    SlowConsumer,
}

/// The room's end: offers frames without ever waiting.
#[derive(Debug)]
pub struct MemberHandle {
    frames: mpsc::Sender<Utf8Bytes>,
    kick: oneshot::Sender<Kick>,
}

/// The connection's end.
#[derive(Debug)]
pub struct Mailbox {
    pub frames: mpsc::Receiver<Utf8Bytes>,
    pub kicked: oneshot::Receiver<Kick>,
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undeliverable {
    /// The queue is full: a slow consumer.
    Full,
    /// The connection has gone.
    Gone,
}

/// Makes a mailbox holding at most `capacity` frames.
pub fn mailbox(capacity: usize) -> (MemberHandle, Mailbox) {
    let (frames_tx, frames_rx) = mpsc::channel(capacity.max(1));
    let (kick_tx, kick_rx) = oneshot::channel();
    (
        MemberHandle {
            frames: frames_tx,
            kick: kick_tx,
        },
        Mailbox {
            frames: frames_rx,
            kicked: kick_rx,
        },
    )
}

impl MemberHandle {
    /// Queues a frame without waiting. Cloning [`Utf8Bytes`] only bumps a
    /// reference count: every member shares the one encoding.
    pub fn offer(&self, frame: &Utf8Bytes) -> Result<(), Undeliverable> {
        self.frames.try_send(frame.clone()).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Undeliverable::Full,
            mpsc::error::TrySendError::Closed(_) => Undeliverable::Gone,
        })
    }

    /// Tells the connection it was removed, and why.
    pub fn kick(self, why: Kick) {
        // The connection may already be gone; then there is nobody to tell.
        let _ = self.kick.send(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_is_reported_and_kick_arrives() {
        let (member, mut mailbox) = mailbox(2);
        let frame = Utf8Bytes::from_static("{}");
        assert_eq!(member.offer(&frame), Ok(()));
        assert_eq!(member.offer(&frame), Ok(()));
        assert_eq!(member.offer(&frame), Err(Undeliverable::Full));
        member.kick(Kick::SlowConsumer);
        assert_eq!((&mut mailbox.kicked).await, Ok(Kick::SlowConsumer));
        assert!(mailbox.frames.recv().await.is_some());
    }

    #[tokio::test]
    async fn dropped_connection_is_gone() {
        let (member, mailbox) = mailbox(2);
        drop(mailbox);
        assert_eq!(
            member.offer(&Utf8Bytes::from_static("{}")),
            Err(Undeliverable::Gone)
        );
    }
}
