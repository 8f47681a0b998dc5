//! A connection's mailbox: the bounded queue through which a room hands it
//! pre-encoded frames, plus the "you are out" signal.
//!
//! Backpressure policy (the one place it is decided): a room never waits for
//! a member. It offers each frame with [`MemberHandle::offer`]; when a
//! member's queue is full, that member is a slow consumer: the room drops it
//! and signals [`Kick::SlowConsumer`], and the connection closes with 1013.
//! Everyone else keeps receiving.
//!
//! A fresh mailbox is made for every join. The room holds the only
//! [`MemberHandle`], so when a room actor dies (a panic) the connection sees
//! its mailbox close and rejoins through the registry, which has restarted
//! the room.
//!
//! Why not `tokio::sync::mpsc`: a bounded tokio channel allocates about
//! 1.5 KiB up front (its shared state plus a first block of 32 slots), which
//! for tens of thousands of idle connections is a fifth of the memory budget.
//! This one is a `VecDeque` behind a mutex (held for a push or a pop, never
//! across an await) and one waker: about 100 bytes until frames queue up,
//! and it gives its memory back after a burst.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use bytes::Bytes;
use futures_util::task::AtomicWaker;

/// One outbound text frame, pre-encoded.
///
/// Most frames are one buffer shared by every member a broadcast reached. A
/// `welcome` is the exception: its head is the member's own (session, name)
/// but its `history` is the room's, so it is queued as parts and the room's
/// history bytes are shared, not copied, however many members join at once
/// (a join storm into a room with 200 KB of recent history would otherwise
/// hold one copy per joiner until each is written). The parts are
/// concatenated only into the socket's write buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Whole(Bytes),
    Parts(Box<[Bytes]>),
}

impl Frame {
    /// The frame's payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Whole(bytes) => bytes.len(),
            Frame::Parts(parts) => parts.iter().map(Bytes::len).sum(),
        }
    }

    /// The whole payload as one buffer (copies a spliced frame).
    #[cfg(test)]
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Frame::Whole(bytes) => bytes.clone(),
            Frame::Parts(parts) => Bytes::from(parts.concat()),
        }
    }
}

/// Why a room removed a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// The member's outbound queue was full.
    SlowConsumer,
    /// An administrator closed the connection from the observer.
    Admin,
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undeliverable {
    /// The queue is full: a slow consumer.
    Full,
    /// The connection has gone.
    Gone,
}

/// What the connection finds in its mailbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The oldest queued frames, taken under one lock: as many as fit in the
    /// batch budget, and always at least one.
    Frames(Vec<Frame>),
    /// The room removed this member; takes precedence over queued frames.
    Kicked(Kick),
    /// The room dropped its handle without a kick: the room actor died.
    Closed,
}

/// A queue that grew past this many slots is shrunk back once drained.
const SHRINK_ABOVE: usize = 64;
/// Most frames handed out in one [`Delivery::Frames`].
const MAX_BATCH: usize = 256;

struct Shared {
    state: Mutex<State>,
    /// The connection task, woken when something arrives.
    waker: AtomicWaker,
    /// The connection task while it writes, woken only by a kick: a separate
    /// waker, so frames offered during a long write do not wake it each time.
    kick_waker: AtomicWaker,
}

struct State {
    queue: VecDeque<Frame>,
    capacity: usize,
    kick: Option<Kick>,
    handle_dropped: bool,
    mailbox_dropped: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across code that can panic midway, so a
        // poisoned state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The room's end: offers frames without ever waiting.
pub struct MemberHandle {
    shared: Arc<Shared>,
}

/// The connection's end.
pub struct Mailbox {
    shared: Arc<Shared>,
    /// Most bytes of frames handed out in one batch; a single frame larger
    /// than this still goes out, alone.
    batch_bytes: usize,
}

/// Makes a mailbox holding at most `capacity` frames, handing them out in
/// batches of at most `batch_bytes` (but always at least one frame).
pub fn mailbox(capacity: usize, batch_bytes: usize) -> (MemberHandle, Mailbox) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            kick: None,
            handle_dropped: false,
            mailbox_dropped: false,
        }),
        waker: AtomicWaker::new(),
        kick_waker: AtomicWaker::new(),
    });
    (
        MemberHandle {
            shared: shared.clone(),
        },
        Mailbox {
            shared,
            batch_bytes,
        },
    )
}

impl MemberHandle {
    /// Queues a frame without waiting. Cloning [`Bytes`] only bumps a
    /// reference count: every member shares the one encoding.
    pub fn offer(&self, frame: &Bytes) -> Result<(), Undeliverable> {
        self.offer_counted(frame).map(|_| ())
    }

    /// [`MemberHandle::offer`], returning how many frames the queue holds
    /// now (the observer shows each room's deepest member queue).
    pub fn offer_counted(&self, frame: &Bytes) -> Result<usize, Undeliverable> {
        self.offer_frame(Frame::Whole(frame.clone()))
    }

    /// Queues a frame made of parts (see [`Frame`]), under the same policy
    /// as [`MemberHandle::offer`]; returns the queue's length.
    pub fn offer_frame(&self, frame: Frame) -> Result<usize, Undeliverable> {
        let queued = {
            let mut state = self.shared.lock();
            if state.mailbox_dropped {
                return Err(Undeliverable::Gone);
            }
            if state.queue.len() >= state.capacity {
                return Err(Undeliverable::Full);
            }
            state.queue.push_back(frame);
            state.queue.len()
        };
        // Wakes the task only if it is waiting: a connection that is still
        // writing its previous batch is not woken again per frame.
        self.shared.waker.wake();
        Ok(queued)
    }

    /// Frames waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Tells the connection it was removed, and why.
    pub fn kick(self, why: Kick) {
        self.shared.lock().kick = Some(why);
        // Dropping `self` wakes the connection.
    }
}

impl Drop for MemberHandle {
    fn drop(&mut self) {
        self.shared.lock().handle_dropped = true;
        self.shared.waker.wake();
        self.shared.kick_waker.wake();
    }
}

impl Mailbox {
    /// Waits for the next delivery.
    pub async fn recv(&mut self) -> Delivery {
        poll_fn(|cx| {
            if let Some(delivery) = self.poll_now() {
                return Poll::Ready(delivery);
            }
            self.shared.waker.register(cx.waker());
            // Something may have arrived between the check and registering.
            match self.poll_now() {
                Some(delivery) => Poll::Ready(delivery),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Resolves when the room kicks this member; never otherwise. For the
    /// connection to watch while it is busy writing.
    pub async fn kicked(&self) -> Kick {
        poll_fn(|cx| {
            if let Some(kick) = self.shared.lock().kick {
                return Poll::Ready(kick);
            }
            self.shared.kick_waker.register(cx.waker());
            match self.shared.lock().kick {
                Some(kick) => Poll::Ready(kick),
                None => Poll::Pending,
            }
        })
        .await
    }

    fn poll_now(&self) -> Option<Delivery> {
        let mut state = self.shared.lock();
        if let Some(kick) = state.kick {
            return Some(Delivery::Kicked(kick));
        }
        if !state.queue.is_empty() {
            let mut bytes = 0;
            let take = state
                .queue
                .iter()
                .take(MAX_BATCH)
                .take_while(|frame| {
                    bytes += frame.len();
                    bytes <= self.batch_bytes
                })
                .count()
                .max(1);
            let frames = state.queue.drain(..take).collect();
            shrink_if_drained(&mut state.queue);
            return Some(Delivery::Frames(frames));
        }
        state.handle_dropped.then_some(Delivery::Closed)
    }

    /// Frames waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Mailbox {
    /// Refuses every later offer and discards what is queued; returns how
    /// many frames were discarded. Both under one lock, so the count is
    /// exact: nothing can be queued after it.
    pub fn close(&self) -> usize {
        let mut state = self.shared.lock();
        state.mailbox_dropped = true;
        // Frees the frames now rather than when the room next offers one.
        std::mem::take(&mut state.queue).len()
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.close();
    }
}

/// Gives back the memory of a burst once the queue is empty again.
fn shrink_if_drained(queue: &mut VecDeque<Frame>) {
    if queue.is_empty() && queue.capacity() > SHRINK_ABOVE {
        *queue = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn frames(list: &[&'static str]) -> Delivery {
        Delivery::Frames(list.iter().map(|s| Frame::Whole(frame(s))).collect())
    }

    /// A queued frame costs no more than a shared buffer handle: the
    /// spliced variant must not grow every slot of every mailbox.
    #[test]
    fn a_frame_is_the_size_of_a_buffer_handle() {
        assert_eq!(std::mem::size_of::<Frame>(), std::mem::size_of::<Bytes>());
    }

    #[tokio::test]
    async fn spliced_frames_share_their_parts_and_count_their_whole_length() {
        let (member, mut mailbox) = mailbox(4, 1024);
        let shared = Bytes::from_static(b"[1,2]");
        let parts = |head: &'static str| {
            Frame::Parts(vec![frame(head), shared.clone(), frame("}")].into_boxed_slice())
        };
        member.offer_frame(parts("{\"h\":")).unwrap();
        member.offer_frame(parts("{\"g\":")).unwrap();
        let Delivery::Frames(batch) = mailbox.recv().await else {
            panic!("expected frames");
        };
        assert_eq!(batch[0].len(), 11);
        assert_eq!(batch[0].to_bytes(), Bytes::from_static(b"{\"h\":[1,2]}"));
        assert_eq!(batch[1].to_bytes(), Bytes::from_static(b"{\"g\":[1,2]}"));
    }

    #[tokio::test]
    async fn frames_arrive_in_order_and_a_full_queue_is_reported() {
        let (member, mut mailbox) = mailbox(2, 1024);
        assert_eq!(member.offer(&frame("a")), Ok(()));
        assert_eq!(member.offer(&frame("b")), Ok(()));
        assert_eq!(member.offer(&frame("c")), Err(Undeliverable::Full));
        assert_eq!(mailbox.len(), 2);
        assert_eq!(mailbox.recv().await, frames(&["a", "b"]));
        assert!(mailbox.is_empty());
    }

    #[tokio::test]
    async fn batches_stop_at_the_byte_budget_but_take_at_least_one_frame() {
        let (member, mut mailbox) = mailbox(10, 5);
        for f in ["abc", "de", "f", "0123456789", "g"] {
            member.offer(&frame(f)).unwrap();
        }
        assert_eq!(mailbox.recv().await, frames(&["abc", "de"]));
        assert_eq!(mailbox.recv().await, frames(&["f"]));
        assert_eq!(mailbox.recv().await, frames(&["0123456789"]));
        assert_eq!(mailbox.recv().await, frames(&["g"]));
        assert!(mailbox.is_empty());
    }

    #[tokio::test]
    async fn batches_stop_at_the_frame_limit() {
        let (member, mut mailbox) = mailbox(1000, usize::MAX);
        for _ in 0..MAX_BATCH + 1 {
            member.offer(&frame("x")).unwrap();
        }
        let Delivery::Frames(batch) = mailbox.recv().await else {
            panic!("expected frames");
        };
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(mailbox.recv().await, frames(&["x"]));
    }

    #[tokio::test]
    async fn a_kick_comes_before_queued_frames() {
        let (member, mut mailbox) = mailbox(4, 1024);
        member.offer(&frame("a")).unwrap();
        member.kick(Kick::SlowConsumer);
        assert_eq!(mailbox.recv().await, Delivery::Kicked(Kick::SlowConsumer));
    }

    #[tokio::test]
    async fn a_kick_wakes_a_connection_that_is_busy_writing() {
        let (member, mailbox) = mailbox(4, 1024);
        let watcher = tokio::spawn(async move { mailbox.kicked().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        member.offer(&frame("a")).unwrap();
        member.kick(Kick::SlowConsumer);
        let got = tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Kick::SlowConsumer);
    }

    #[tokio::test]
    async fn dropping_the_handle_closes_after_the_queue_drains() {
        let (member, mut mailbox) = mailbox(4, 1024);
        member.offer(&frame("a")).unwrap();
        drop(member);
        assert_eq!(mailbox.recv().await, frames(&["a"]));
        assert_eq!(mailbox.recv().await, Delivery::Closed);
    }

    #[tokio::test]
    async fn a_closed_mailbox_reports_what_it_discarded_and_takes_no_more() {
        let (member, mailbox) = mailbox(4, 1024);
        member.offer(&frame("a")).unwrap();
        member.offer(&frame("b")).unwrap();
        assert_eq!(mailbox.close(), 2);
        assert_eq!(member.offer(&frame("c")), Err(Undeliverable::Gone));
        assert_eq!(mailbox.close(), 0);
    }

    #[tokio::test]
    async fn a_dropped_mailbox_is_gone() {
        let (member, mailbox) = mailbox(2, 1024);
        drop(mailbox);
        assert_eq!(member.offer(&frame("a")), Err(Undeliverable::Gone));
    }

    #[tokio::test]
    async fn a_waiting_connection_is_woken() {
        let (member, mut mailbox) = mailbox(2, 1024);
        let waiter = tokio::spawn(async move { mailbox.recv().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        member.offer(&frame("late")).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, frames(&["late"]));
    }

    #[tokio::test]
    async fn memory_is_given_back_after_a_burst() {
        let (member, mut mailbox) = mailbox(1000, usize::MAX);
        for _ in 0..500 {
            member.offer(&frame("x")).unwrap();
        }
        while !mailbox.is_empty() {
            mailbox.recv().await;
        }
        assert!(member.shared.lock().queue.capacity() <= SHRINK_ABOVE);
    }
}
