//! A phase: a stretch of time during which the clients do one thing (send at
//! a rate, ping, calculate), and what they measured while doing it.
//!
//! The coordinator describes a phase with a [`PhaseSpec`]; every process's
//! clients run it and record into a [`PhaseStats`]; the stats become a
//! serializable [`PhaseResult`], and the results of all worker processes are
//! merged into one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::stats::{Hist, Series};

/// What every client does during one phase. Sent to worker processes as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpec {
    /// Distinguishes this phase's messages from late ones of earlier phases
    /// (it is part of every `client_id`). Starts at 1.
    pub id: u32,
    /// For the summary: "fanout", "step 3", "with calculations", ...
    pub name: String,
    /// Wall-clock start, so worker processes start together.
    pub start_unix_us: u64,
    /// How long clients send.
    pub duration_ms: u64,
    /// How long to keep counting receipts after the last send.
    pub grace_ms: u64,
    /// Aggregate chat rate of all senders together, messages per second.
    pub chat_rate: f64,
    /// Main-room members `0..senders` send chat.
    pub senders: u32,
    /// Length of each chat text, bytes.
    pub text_bytes: usize,
    /// The last `pingers` main-room members send pings.
    pub pingers: u32,
    /// Pings per second per pinger.
    pub ping_rate: f64,
    /// Every client sends one ping (the liveness check).
    pub ping_all: bool,
    /// Calculator clients send these expressions in turn, one at a time,
    /// each as soon as the previous result arrived. Empty: no calculations.
    pub calc_exprs: Vec<String>,
    /// Receivers of each message when the fleet is spread over many rooms
    /// (`ingest`); 0: one room, every main-room member receives everything.
    #[serde(default)]
    pub room_size: u32,
}

impl PhaseSpec {
    /// A phase in which clients stay connected and do nothing.
    pub fn idle(id: u32, name: &str, start_unix_us: u64, duration_ms: u64) -> PhaseSpec {
        PhaseSpec {
            id,
            name: name.to_owned(),
            start_unix_us,
            duration_ms,
            grace_ms: 0,
            chat_rate: 0.0,
            senders: 0,
            text_bytes: 0,
            pingers: 0,
            ping_rate: 0.0,
            ping_all: false,
            calc_exprs: Vec::new(),
            room_size: 0,
        }
    }
}

/// What the clients of one process measured during a phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    /// Main-room members connected when the phase started (the receivers).
    pub members_at_start: u64,
    /// All clients connected when the phase ended.
    pub connected_at_end: u64,
    /// Chat frames written (calculations not included).
    pub sent: u64,
    /// Sends that failed because the connection broke.
    pub send_failed: u64,
    /// `error` frames with code `rate_limited`.
    pub rate_limited: u64,
    /// `error` frames with code `calc_busy`.
    pub calc_busy: u64,
    /// `error` frames with code `unavailable`: the server could not store
    /// the message and did not broadcast it.
    #[serde(default)]
    pub unavailable: u64,
    /// Receivers per message (see [`PhaseSpec::room_size`]); 0: all members.
    #[serde(default)]
    pub room_size: u64,
    /// Any other `error` frame, and frames that did not decode.
    pub other_errors: u64,
    /// Chat deliveries of this phase received by main-room members.
    pub received: u64,
    /// Receipts that belonged to an earlier phase (arrived after its grace).
    pub stale: u64,
    /// Chats whose id was not above the last one their client received:
    /// out of room order, or repeated.
    #[serde(default)]
    pub reordered: u64,
    pub pings_sent: u64,
    pub pongs: u64,
    pub calc_sent: u64,
    /// Calculation results the calculating clients received.
    pub calc_results: u64,
    /// Calculation results whose status was not `ok`.
    pub calc_not_ok: u64,
    /// Clients whose connection ended during the phase.
    pub disconnects: u64,
    /// ... of those, closed by the server with 1013 (slow consumer / full).
    pub slow_consumer_closes: u64,
    /// The latest any scheduled send went out, microseconds.
    pub max_send_lag_us: u64,
    /// CPU seconds the load generator's process(es) used during the phase
    /// (sending, receiving, grace), summed over `--procs` workers.
    #[serde(default)]
    pub client_cpu_seconds: Option<f64>,
    /// Chat delivery latency, `now − sent_at`, microseconds.
    pub chat: Hist,
    /// Ping round trips, microseconds.
    pub ping: Hist,
    /// Chat latency per second of the phase (by receipt time).
    pub series: Series,
    /// For each pong: the room's `num_participants` as its client last
    /// heard it, as (value, pongs) pairs in value order. After the liveness
    /// check, one pong per client: a room whose members all agree has one
    /// pair. (Pairs, not a map: integer map keys do not survive the
    /// workers' internally tagged messages.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants_seen: Vec<(u64, u64)>,
}

impl PhaseResult {
    pub fn empty() -> PhaseResult {
        PhaseResult {
            members_at_start: 0,
            connected_at_end: 0,
            sent: 0,
            send_failed: 0,
            rate_limited: 0,
            calc_busy: 0,
            unavailable: 0,
            room_size: 0,
            other_errors: 0,
            received: 0,
            stale: 0,
            reordered: 0,
            pings_sent: 0,
            pongs: 0,
            calc_sent: 0,
            calc_results: 0,
            calc_not_ok: 0,
            disconnects: 0,
            slow_consumer_closes: 0,
            max_send_lag_us: 0,
            client_cpu_seconds: None,
            chat: Hist::precise(),
            ping: Hist::precise(),
            series: Series::default(),
            participants_seen: Vec::new(),
        }
    }

    /// Adds another process's result for the same phase.
    pub fn merge(&mut self, o: &PhaseResult) {
        self.members_at_start += o.members_at_start;
        self.connected_at_end += o.connected_at_end;
        self.sent += o.sent;
        self.send_failed += o.send_failed;
        self.rate_limited += o.rate_limited;
        self.calc_busy += o.calc_busy;
        self.unavailable += o.unavailable;
        self.room_size = self.room_size.max(o.room_size);
        self.other_errors += o.other_errors;
        self.received += o.received;
        self.stale += o.stale;
        self.reordered += o.reordered;
        self.pings_sent += o.pings_sent;
        self.pongs += o.pongs;
        self.calc_sent += o.calc_sent;
        self.calc_results += o.calc_results;
        self.calc_not_ok += o.calc_not_ok;
        self.disconnects += o.disconnects;
        self.slow_consumer_closes += o.slow_consumer_closes;
        self.max_send_lag_us = self.max_send_lag_us.max(o.max_send_lag_us);
        self.client_cpu_seconds = match (self.client_cpu_seconds, o.client_cpu_seconds) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.chat.merge(&o.chat);
        self.ping.merge(&o.ping);
        self.series.merge(&o.series);
        let mut seen: BTreeMap<u64, u64> = self.participants_seen.iter().copied().collect();
        for (n, pongs) in &o.participants_seen {
            *seen.entry(*n).or_default() += pongs;
        }
        self.participants_seen = seen.into_iter().collect();
    }

    /// Deliveries the server should have made: every accepted chat message
    /// goes to every member of its room, the sender included. Messages
    /// refused with `rate_limited` or `unavailable` are not broadcast.
    pub fn expected(&self) -> u64 {
        let receivers = if self.room_size > 0 {
            self.room_size
        } else {
            self.members_at_start
        };
        self.sent
            .saturating_sub(self.rate_limited)
            .saturating_sub(self.unavailable)
            * receivers
    }
}

/// Counters shown while a phase runs (also streamed by worker processes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Live {
    pub opened: u64,
    pub failed: u64,
    pub sent: u64,
    pub received: u64,
    pub pongs: u64,
}

impl Live {
    pub fn add(&mut self, o: &Live) {
        self.opened += o.opened;
        self.failed += o.failed;
        self.sent += o.sent;
        self.received += o.received;
        self.pongs += o.pongs;
    }
}

/// Lock shards for the histograms: clients record into shard
/// `client % SHARDS`, so two runtime threads rarely contend.
const SHARDS: usize = 16;

#[derive(Debug)]
struct Shard {
    received: u64,
    chat: Hist,
    ping: Hist,
    series: Series,
}

/// Where the clients of one process record a phase, concurrently.
#[derive(Debug)]
pub struct PhaseStats {
    pub members_at_start: u64,
    pub room_size: u64,
    pub sent: AtomicU64,
    pub send_failed: AtomicU64,
    pub rate_limited: AtomicU64,
    pub calc_busy: AtomicU64,
    pub unavailable: AtomicU64,
    pub other_errors: AtomicU64,
    pub stale: AtomicU64,
    pub reordered: AtomicU64,
    pub pings_sent: AtomicU64,
    pub pongs: AtomicU64,
    pub calc_sent: AtomicU64,
    pub calc_results: AtomicU64,
    pub calc_not_ok: AtomicU64,
    pub disconnects: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub max_send_lag_us: AtomicU64,
    shards: Vec<Mutex<Shard>>,
    participants_seen: Mutex<BTreeMap<u64, u64>>,
}

impl PhaseStats {
    pub fn new(members_at_start: u64, room_size: u64) -> PhaseStats {
        PhaseStats {
            members_at_start,
            room_size,
            sent: AtomicU64::new(0),
            send_failed: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            calc_busy: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            other_errors: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            pings_sent: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
            calc_sent: AtomicU64::new(0),
            calc_results: AtomicU64::new(0),
            calc_not_ok: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            slow_consumer_closes: AtomicU64::new(0),
            max_send_lag_us: AtomicU64::new(0),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        received: 0,
                        chat: Hist::precise(),
                        ping: Hist::precise(),
                        series: Series::default(),
                    })
                })
                .collect(),
            participants_seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one pong's `num_participants` (see
    /// [`PhaseResult::participants_seen`]).
    pub fn note_participants(&self, n: u64) {
        let mut seen = self
            .participants_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *seen.entry(n).or_default() += 1;
    }

    fn shard(&self, client: u32) -> std::sync::MutexGuard<'_, Shard> {
        let m = &self.shards[client as usize % SHARDS];
        // A poisoned shard only means another client task panicked while
        // recording; the counts are still usable.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One chat delivery, `latency_us` after it was sent, received during
    /// second `second` of the phase.
    pub fn record_chat(&self, client: u32, second: usize, latency_us: u64) {
        let mut s = self.shard(client);
        s.received += 1;
        s.chat.record(latency_us);
        s.series.record(second, latency_us);
    }

    pub fn record_pong(&self, client: u32, rtt_us: u64) {
        self.pongs.fetch_add(1, Relaxed);
        self.shard(client).ping.record(rtt_us);
    }

    pub fn live(&self) -> Live {
        let received = (0..SHARDS as u32).map(|i| self.shard(i).received).sum();
        Live {
            opened: 0,
            failed: 0,
            sent: self.sent.load(Relaxed),
            received,
            pongs: self.pongs.load(Relaxed),
        }
    }

    /// Snapshot into a serializable result.
    pub fn collect(&self, connected_at_end: u64) -> PhaseResult {
        let mut r = PhaseResult::empty();
        r.members_at_start = self.members_at_start;
        r.room_size = self.room_size;
        r.connected_at_end = connected_at_end;
        r.sent = self.sent.load(Relaxed);
        r.send_failed = self.send_failed.load(Relaxed);
        r.rate_limited = self.rate_limited.load(Relaxed);
        r.calc_busy = self.calc_busy.load(Relaxed);
        r.unavailable = self.unavailable.load(Relaxed);
        r.other_errors = self.other_errors.load(Relaxed);
        r.stale = self.stale.load(Relaxed);
        r.reordered = self.reordered.load(Relaxed);
        r.pings_sent = self.pings_sent.load(Relaxed);
        r.pongs = self.pongs.load(Relaxed);
        r.calc_sent = self.calc_sent.load(Relaxed);
        r.calc_results = self.calc_results.load(Relaxed);
        r.calc_not_ok = self.calc_not_ok.load(Relaxed);
        r.disconnects = self.disconnects.load(Relaxed);
        r.slow_consumer_closes = self.slow_consumer_closes.load(Relaxed);
        r.max_send_lag_us = self.max_send_lag_us.load(Relaxed);
        for i in 0..SHARDS as u32 {
            let s = self.shard(i);
            r.received += s.received;
            r.chat.merge(&s.chat);
            r.ping.merge(&s.ping);
            r.series.merge(&s.series);
        }
        r.participants_seen = self
            .participants_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, pongs)| (*n, *pongs))
            .collect();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_collect_and_merge() {
        let stats = PhaseStats::new(10, 0);
        stats.sent.fetch_add(5, Relaxed);
        for client in 0..10 {
            for _ in 0..5 {
                stats.record_chat(client, 0, 1_000 + u64::from(client));
            }
        }
        stats.record_pong(3, 500);
        let a = stats.collect(10);
        assert_eq!(a.received, 50);
        assert_eq!(a.expected(), 50);
        assert_eq!(a.chat.len(), 50);
        assert_eq!(a.pongs, 1);

        let json = serde_json::to_string(&a).unwrap();
        let b: PhaseResult = serde_json::from_str(&json).unwrap();
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.sent, 10);
        assert_eq!(merged.members_at_start, 20);
        assert_eq!(merged.received, 100);
        assert_eq!(merged.chat.len(), 100);
        // 10 sent × 20 receivers.
        assert_eq!(merged.expected(), 200);
        assert_eq!(merged.series.points()[0].count, 100);
    }

    #[test]
    fn rate_limited_messages_are_not_expected() {
        let mut r = PhaseResult::empty();
        r.sent = 10;
        r.rate_limited = 4;
        r.members_at_start = 3;
        assert_eq!(r.expected(), 18);
        r.unavailable = 1;
        assert_eq!(r.expected(), 15);
    }

    #[test]
    fn many_rooms_expect_each_message_in_its_room_only() {
        let mut r = PhaseResult::empty();
        r.sent = 100;
        r.members_at_start = 2000;
        r.room_size = 4;
        assert_eq!(r.expected(), 400);
        let mut other = r.clone();
        other.sent = 50;
        r.merge(&other);
        assert_eq!(r.expected(), 600);
    }
}
