//! What the actors write for the observer: plain atomics, bumped where the
//! work happens, read once a second by the sampler.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ractor::{ActorId, ActorRef};

use super::latency::Latency;
use crate::room::{RoomInbox, RoomMsg};

/// Everything the observer reads that is not already in
/// [`crate::metrics::Metrics`]; lives inside it, so every actor that has the
/// metrics has these too.
#[derive(Debug, Default)]
pub struct Figures {
    pub(crate) rooms: ObservedRooms,
    closed: [AtomicU64; CloseReason::ALL.len()],
    pub(crate) latency: Latency,
    pub(crate) calcs: CalcBoard,
}

impl Figures {
    /// Counts one connection that ended.
    pub(crate) fn connection_closed(&self, why: CloseReason) {
        self.closed[why as usize].fetch_add(1, Relaxed);
    }

    /// Connections closed since start, by reason, in [`CloseReason::ALL`] order.
    pub(crate) fn closed(&self) -> [u64; CloseReason::ALL.len()] {
        std::array::from_fn(|i| self.closed[i].load(Relaxed))
    }
}

/// Why a connection ended, as the observer groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum CloseReason {
    /// The client sent a close frame.
    ClientClose = 0,
    /// The peer vanished (reset, EOF without close) or a write failed or timed out.
    PeerGone,
    /// Closed with 1013: the outbound queue overflowed.
    SlowConsumer,
    /// Closed with 1001 after the idle timeout.
    Idle,
    /// Closed with 1002, 1007 or 1008: protocol violation, binary frames, abuse.
    Policy,
    /// Closed with 1009: a frame over the size limit.
    Oversize,
    /// The room could not be (re)joined (1011), or the room limit (1013).
    JoinFailed,
    /// Closed by an administrator from the observer.
    Admin,
    /// Closed with 1001 because the server shuts down.
    Shutdown,
    /// Closed with 4001: the session's token expired without a refresh.
    TokenExpired,
}

impl CloseReason {
    pub(crate) const ALL: [CloseReason; 10] = [
        CloseReason::ClientClose,
        CloseReason::PeerGone,
        CloseReason::SlowConsumer,
        CloseReason::Idle,
        CloseReason::Policy,
        CloseReason::Oversize,
        CloseReason::JoinFailed,
        CloseReason::Admin,
        CloseReason::Shutdown,
        CloseReason::TokenExpired,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client_close",
            CloseReason::PeerGone => "peer_gone",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Idle => "idle",
            CloseReason::Policy => "policy",
            CloseReason::Oversize => "oversize",
            CloseReason::JoinFailed => "join_failed",
            CloseReason::Admin => "admin",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TokenExpired => "token_expired",
        }
    }
}

/// One room's figures: created by the registry with the room, written by
/// the room actor (the only writer of each field), read by the sampler.
#[derive(Debug)]
pub struct RoomStats {
    pub(crate) name: String,
    /// Shared with the connections that count chats into the room.
    pub(crate) inbox: Arc<RoomInbox>,
    /// The room's last broadcast message id.
    pub(crate) last_id: AtomicU64,
    /// Chat messages the room handled.
    pub(crate) messages_in: AtomicU64,
    /// Frames the room queued to members (broadcast × members reached).
    pub(crate) deliveries: AtomicU64,
    pub(crate) members: AtomicUsize,
    /// The longest member outbound queue seen by the last broadcast.
    pub(crate) deepest_queue: AtomicUsize,
    pub(crate) presence_interval_ms: AtomicU64,
}

impl RoomStats {
    pub(crate) fn new(name: String, inbox: Arc<RoomInbox>) -> Self {
        RoomStats {
            name,
            inbox,
            last_id: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            members: AtomicUsize::new(0),
            deepest_queue: AtomicUsize::new(0),
            presence_interval_ms: AtomicU64::new(0),
        }
    }

    /// After a message: what the room looks like now (two relaxed stores).
    pub(crate) fn note_shape(&self, members: usize, presence_interval: Duration) {
        self.members.store(members, Relaxed);
        let ms = u64::try_from(presence_interval.as_millis()).unwrap_or(u64::MAX);
        self.presence_interval_ms.store(ms, Relaxed);
    }

    /// After a broadcast that reached `delivered` members, the longest of
    /// whose queues held `deepest` frames.
    pub(crate) fn note_broadcast(&self, delivered: u64, deepest: usize) {
        self.deliveries.fetch_add(delivered, Relaxed);
        self.deepest_queue.store(deepest, Relaxed);
    }
}

/// A live room as the observer knows it.
#[derive(Clone)]
pub(crate) struct ObservedRoom {
    pub actor: ActorRef<RoomMsg>,
    pub stats: Arc<RoomStats>,
}

/// Every live room's stats, and how often each room name was restarted.
/// Locked when a room starts, stops or fails (by the registry), once a
/// second by the sampler, and by an action: never on the chat path.
#[derive(Default)]
pub(crate) struct ObservedRooms(Mutex<RoomBook>);

#[derive(Default)]
pub(crate) struct RoomBook {
    pub live: HashMap<ActorId, ObservedRoom>,
    /// Restarts by room name; forgotten when the room stops for good (idle).
    pub restarts: HashMap<String, u64>,
}

impl std::fmt::Debug for ObservedRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedRooms").finish_non_exhaustive()
    }
}

impl ObservedRooms {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RoomBook> {
        // Nothing panics while the lock is held.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, actor: ActorRef<RoomMsg>, stats: Arc<RoomStats>) {
        self.lock()
            .live
            .insert(actor.get_id(), ObservedRoom { actor, stats });
    }

    pub(crate) fn remove(&self, id: ActorId) {
        self.lock().live.remove(&id);
    }

    /// The room's actor panicked (and is being restarted).
    pub(crate) fn note_restart(&self, room: &str) {
        *self.lock().restarts.entry(room.to_owned()).or_default() += 1;
    }

    /// The room stopped for good: its restart count goes with it.
    pub(crate) fn forget_restarts(&self, room: &str) {
        self.lock().restarts.remove(room);
    }

    /// The live room called `room`, if any. O(rooms): for actions only.
    pub(crate) fn find(&self, room: &str) -> Option<ObservedRoom> {
        self.lock()
            .live
            .values()
            .find(|r| r.stats.name == room)
            .cloned()
    }
}

/// Most finished calculations remembered for the observer.
pub(crate) const RECENT_CALCS: usize = 20;

/// The scheduler's running calculations and its latest results, kept by the
/// scheduler as it starts and finishes them (O(workers) each time).
#[derive(Debug, Default)]
pub(crate) struct CalcBoard(Mutex<CalcBoardInner>);

#[derive(Debug, Default, Clone)]
pub(crate) struct CalcBoardInner {
    pub running: Vec<RunningCalc>,
    pub recent: VecDeque<RecentCalc>,
}

#[derive(Debug, Clone)]
pub(crate) struct RunningCalc {
    pub id: String,
    pub expr: String,
    pub started: Instant,
    pub estimate: Duration,
    pub peak_bytes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct RecentCalc {
    pub id: String,
    pub expr: String,
    pub status: &'static str,
    pub elapsed: Duration,
}

impl CalcBoard {
    fn lock(&self) -> MutexGuard<'_, CalcBoardInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn started(&self, calc: RunningCalc) {
        self.lock().running.push(calc);
    }

    /// A running calculation ended (`status` as in `actorchat_calc_total`).
    pub(crate) fn finished(&self, id: &str, status: &'static str, elapsed: Duration) {
        let mut board = self.lock();
        let Some(pos) = board.running.iter().position(|c| c.id == id) else {
            return;
        };
        let calc = board.running.swap_remove(pos);
        if board.recent.len() == RECENT_CALCS {
            board.recent.pop_front();
        }
        board.recent.push_back(RecentCalc {
            id: calc.id,
            expr: calc.expr,
            status,
            elapsed,
        });
    }

    /// The scheduler stopped: nothing runs any more.
    pub(crate) fn clear_running(&self) {
        self.lock().running.clear();
    }

    pub(crate) fn read(&self) -> CalcBoardInner {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(id: &str) -> RunningCalc {
        RunningCalc {
            id: id.into(),
            expr: "5!".into(),
            started: Instant::now(),
            estimate: Duration::from_millis(1),
            peak_bytes: 1,
        }
    }

    #[test]
    fn the_board_keeps_only_the_latest_results() {
        let board = CalcBoard::default();
        for i in 0..RECENT_CALCS + 5 {
            let id = format!("c{i}");
            board.started(running(&id));
            board.finished(&id, "ok", Duration::ZERO);
        }
        let read = board.read();
        assert!(read.running.is_empty());
        assert_eq!(read.recent.len(), RECENT_CALCS);
        assert_eq!(read.recent.back().map(|c| c.id.as_str()), Some("c24"));
        // A result for a calculation that was not running changes nothing.
        board.finished("c999", "ok", Duration::ZERO);
        assert_eq!(board.read().recent.len(), RECENT_CALCS);
    }

    #[test]
    fn close_reasons_are_counted_apart() {
        let f = Figures::default();
        f.connection_closed(CloseReason::Idle);
        f.connection_closed(CloseReason::Idle);
        f.connection_closed(CloseReason::Admin);
        let closed = f.closed();
        for (i, why) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i, "ALL is in discriminant order");
        }
        assert_eq!(closed[CloseReason::Idle as usize], 2);
        assert_eq!(closed[CloseReason::Admin as usize], 1);
        assert_eq!(closed.iter().sum::<u64>(), 3);
    }
}
