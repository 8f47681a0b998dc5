//! The clients of one process: opening them at a ramp rate, running phases,
//! closing them.
//!
//! Every client is one task (see [`crate::member`]). The fleet tells all of
//! them what to do through one `watch` channel holding the current
//! [`Phase`]; they record what they see into the phase's [`PhaseStats`]. With
//! `--procs N` each worker process runs a fleet of its share of the clients.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::client::{self, ConnectError};
use crate::clock;
use crate::limits::ClientLimit;
use crate::member::{self, Member, Role};
use crate::pacing::{Pacer, Schedule};
use crate::phase::{Live, PhaseResult, PhaseSpec, PhaseStats};
use crate::target::Target;

/// Who connects where: the same for every process of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetPlan {
    pub url: String,
    /// Clients in the main room (chatters, pingers, receivers).
    pub members: u32,
    /// Clients in the calculation room.
    pub calcers: u32,
    /// Main-room members are spread over this many rooms, member `g` in
    /// room `g % rooms` (see [`FleetPlan::member_room`]); 0 or 1: one room.
    #[serde(default)]
    pub rooms: u32,
    pub room: String,
    pub calc_room: String,
    /// Client `g` is named `{name_prefix}{g}`.
    pub name_prefix: String,
    /// New connections per second, all processes together.
    pub ramp_rate: f64,
    /// Bind client `g` to `source_ips[g % len]`; empty: let the OS choose.
    pub source_ips: Vec<IpAddr>,
    pub read_buffer: usize,
    /// Handshakes in flight at once, per process.
    pub max_pending: usize,
    pub connect_timeout_ms: u64,
    /// `--token`: every client connects as this verified user.
    #[serde(default)]
    pub token: Option<String>,
}

impl FleetPlan {
    pub fn total(&self) -> u32 {
        self.members + self.calcers
    }

    /// The room main-room member `global` joins: `room`, or `{room}-{r}`
    /// with `r = global % rooms` when the members are spread over rooms.
    pub fn member_room(&self, global: u32) -> String {
        if self.rooms > 1 {
            format!("{}-{}", self.room, global % self.rooms)
        } else {
            self.room.clone()
        }
    }

    fn member(&self, global: u32) -> Member {
        let role = if global < self.members {
            Role::Chat { index: global }
        } else {
            Role::Calc {
                index: global - self.members,
            }
        };
        Member {
            global,
            role,
            members: self.members,
        }
    }
}

/// This process's part of the clients: global ids `g` with `g % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub index: u32,
    pub count: u32,
}

impl Share {
    pub const ALL: Share = Share { index: 0, count: 1 };
}

/// How opening the clients went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RampResult {
    pub opened: u64,
    pub failed: u64,
    /// Clients never attempted because a client-side limit was hit.
    pub skipped: u64,
    pub errors: BTreeMap<String, u64>,
    pub limit: Option<ClientLimit>,
    /// First connect attempt to last handshake, seconds.
    pub ramp_secs: f64,
    /// `room_update` frames received by all clients while ramping (plus a
    /// short settle time for the last coalesced update).
    pub room_updates: u64,
}

impl RampResult {
    pub fn merge(&mut self, o: &RampResult) {
        self.opened += o.opened;
        self.failed += o.failed;
        self.skipped += o.skipped;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
        self.limit = self.limit.or(o.limit);
        self.ramp_secs = self.ramp_secs.max(o.ramp_secs);
        self.room_updates += o.room_updates;
    }
}

/// What the clients are told to do right now.
#[derive(Debug)]
pub struct Phase {
    /// `None`: stay connected, send nothing.
    pub spec: Option<PhaseSpec>,
    pub start: Instant,
    pub end: Instant,
    pub start_unix_us: u64,
    /// Pre-built chat text of `spec.text_bytes` bytes.
    pub text: String,
    pub stats: Arc<PhaseStats>,
    /// Close the connection and end the task.
    pub close: bool,
}

impl Phase {
    fn idle(close: bool) -> Phase {
        let now = Instant::now();
        Phase {
            spec: None,
            start: now,
            end: now,
            start_unix_us: clock::now_us(),
            text: String::new(),
            stats: Arc::new(PhaseStats::new(0, 0)),
            close,
        }
    }

    pub fn id(&self) -> u32 {
        self.spec.as_ref().map_or(0, |s| s.id)
    }
}

/// State every client task of this process shares.
#[derive(Debug, Default)]
pub struct FleetShared {
    /// Main-room members still connected.
    pub members_alive: AtomicU64,
    /// All clients still connected.
    pub alive: AtomicU64,
    pub room_updates: AtomicU64,
}

/// The clients of this process.
pub struct Fleet {
    tx: watch::Sender<Arc<Phase>>,
    shared: Arc<FleetShared>,
}

/// Counters of the ramp, updated by the connect tasks.
#[derive(Default)]
struct RampCounters {
    opened: AtomicU64,
    failed: AtomicU64,
    limit_hit: AtomicBool,
    errors: Mutex<BTreeMap<String, u64>>,
    limit: Mutex<Option<ClientLimit>>,
}

impl RampCounters {
    fn failure(&self, e: &ConnectError) {
        self.failed.fetch_add(1, Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(e.kind()).or_insert(0) += 1;
        if let Some(limit) = e.limit() {
            self.limit_hit.store(true, Relaxed);
            let mut l = self.limit.lock().unwrap_or_else(|p| p.into_inner());
            l.get_or_insert(limit);
        }
    }
}

impl Fleet {
    /// Opens this process's share of the plan's clients at the ramp rate and
    /// waits until each has either received its `welcome` or failed.
    /// `progress` is called about four times a second.
    pub async fn open(
        target: Arc<Target>,
        plan: &FleetPlan,
        share: Share,
        mut progress: impl FnMut(Live),
    ) -> (Fleet, RampResult) {
        let (tx, _) = watch::channel(Arc::new(Phase::idle(false)));
        let shared = Arc::new(FleetShared::default());
        let counters = Arc::new(RampCounters::default());
        let pending = Arc::new(Semaphore::new(plan.max_pending.max(1)));
        let read_buffer = plan.read_buffer;
        let timeout = Duration::from_millis(plan.connect_timeout_ms);

        let mine: Vec<u32> = (0..plan.total())
            .filter(|g| g % share.count == share.index)
            .collect();
        let started = Instant::now();
        let mut pacer = Schedule::shared(
            started,
            started + Duration::from_secs(86_400 * 365),
            plan.ramp_rate.max(0.001),
            u64::from(share.count),
            u64::from(share.index),
        )
        .map(Pacer::new);
        let mut attempted = 0u64;
        let mut last_report = Instant::now();
        for &global in &mine {
            if counters.limit_hit.load(Relaxed) {
                break;
            }
            if let Some(pacer) = pacer.as_mut() {
                pacer.tick().await;
            }
            let Ok(permit) = pending.clone().acquire_owned().await else {
                break;
            };
            attempted += 1;
            let member = plan.member(global);
            let room = match member.role {
                Role::Chat { .. } => plan.member_room(global),
                Role::Calc { .. } => plan.calc_room.clone(),
            };
            let name = format!("{}{global}", plan.name_prefix);
            let source = (!plan.source_ips.is_empty())
                .then(|| plan.source_ips[global as usize % plan.source_ips.len()]);
            let target = target.clone();
            let task_counters = counters.clone();
            let shared = shared.clone();
            let phases = tx.subscribe();
            tokio::spawn(async move {
                let counters = task_counters;
                let result =
                    client::connect(&target, source, &name, &room, read_buffer, timeout).await;
                drop(permit);
                match result {
                    Ok((ws, welcome)) => {
                        shared.alive.fetch_add(1, Relaxed);
                        if matches!(member.role, Role::Chat { .. }) {
                            shared.members_alive.fetch_add(1, Relaxed);
                        }
                        counters.opened.fetch_add(1, Relaxed);
                        // The session lives on in this task; boxed so the
                        // connect future's state is not kept alongside it.
                        Box::pin(member::run(
                            ws,
                            member,
                            u64::from(welcome.num_participants),
                            shared,
                            phases,
                        ))
                        .await;
                    }
                    Err(e) => counters.failure(&e),
                }
            });
            if last_report.elapsed() >= Duration::from_millis(250) {
                last_report = Instant::now();
                progress(Live {
                    opened: counters.opened.load(Relaxed),
                    failed: counters.failed.load(Relaxed),
                    ..Live::default()
                });
            }
        }
        // Wait for the handshakes still in flight (each is bounded by the
        // connect timeout).
        loop {
            let done = counters.opened.load(Relaxed) + counters.failed.load(Relaxed);
            progress(Live {
                opened: counters.opened.load(Relaxed),
                failed: counters.failed.load(Relaxed),
                ..Live::default()
            });
            if done >= attempted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ramp_secs = started.elapsed().as_secs_f64();
        // room_update frames are coalesced (at most one per 100 ms per room);
        // give the last one time to arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let errors = counters
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let limit = *counters.limit.lock().unwrap_or_else(|p| p.into_inner());
        let ramp = RampResult {
            opened: counters.opened.load(Relaxed),
            failed: counters.failed.load(Relaxed),
            skipped: mine.len() as u64 - attempted,
            errors,
            limit,
            ramp_secs,
            room_updates: shared.room_updates.load(Relaxed),
        };
        (Fleet { tx, shared }, ramp)
    }

    /// Clients of this process still connected.
    pub fn alive(&self) -> u64 {
        self.shared.alive.load(Relaxed)
    }

    /// Runs one phase to its end plus grace and returns what was measured.
    pub async fn run_phase(&self, spec: PhaseSpec, mut progress: impl FnMut(Live)) -> PhaseResult {
        let start = clock::instant_at(spec.start_unix_us);
        let end = start + Duration::from_millis(spec.duration_ms);
        let deadline = end + Duration::from_millis(spec.grace_ms);
        let stats = Arc::new(PhaseStats::new(
            self.shared.members_alive.load(Relaxed),
            u64::from(spec.room_size),
        ));
        let cpu_before = clock::process_cpu_seconds();
        let text = chat_text(spec.text_bytes);
        let ping_all = spec.ping_all;
        self.tx.send_replace(Arc::new(Phase {
            start_unix_us: spec.start_unix_us,
            spec: Some(spec),
            start,
            end,
            text,
            stats: stats.clone(),
            close: false,
        }));
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // A liveness check is over once everyone answered.
            if ping_all && now >= end && stats.pongs.load(Relaxed) >= self.alive() {
                break;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(250))).await;
            progress(stats.live());
        }
        self.tx.send_replace(Arc::new(Phase::idle(false)));
        let mut result = stats.collect(self.alive());
        result.client_cpu_seconds = crate::metrics::delta(cpu_before, clock::process_cpu_seconds());
        result
    }

    /// Closes every client and waits (at most a few seconds) for them to go.
    pub async fn close(self) {
        self.tx.send_replace(Arc::new(Phase::idle(true)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A chat text of `bytes` bytes (at least one character, at most the
/// protocol's limit).
pub fn chat_text(bytes: usize) -> String {
    const WORDS: &str = "the quick brown fox jumps over the lazy dog ";
    let n = bytes.clamp(1, actorchat_protocol::MAX_TEXT_CHARS);
    let mut text: String = WORDS.chars().cycle().take(n).collect();
    // The server trims; keep the length by ending on a visible character.
    if text.ends_with(' ') {
        text.pop();
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_text_has_the_requested_length() {
        assert_eq!(chat_text(0).len(), 1);
        assert_eq!(chat_text(64).len(), 64);
        assert_eq!(chat_text(4).len(), 4);
        assert_eq!(chat_text(1 << 20).len(), actorchat_protocol::MAX_TEXT_CHARS);
        assert!(!chat_text(44).ends_with(' '));
    }

    #[test]
    fn members_spread_over_rooms_round_robin() {
        let mut plan = FleetPlan {
            url: "ws://x".into(),
            members: 8,
            calcers: 0,
            rooms: 4,
            room: "bench-1".into(),
            calc_room: "bench-1-calc".into(),
            name_prefix: "b".into(),
            ramp_rate: 1.0,
            source_ips: Vec::new(),
            read_buffer: 4096,
            max_pending: 1,
            connect_timeout_ms: 1,
            token: None,
        };
        assert_eq!(plan.member_room(0), "bench-1-0");
        assert_eq!(plan.member_room(5), "bench-1-1");
        let in_room_3 = (0..8)
            .filter(|g| plan.member_room(*g) == "bench-1-3")
            .count();
        assert_eq!(in_room_3, 2);
        plan.rooms = 1;
        assert_eq!(plan.member_room(5), "bench-1");
        // Older worker plans without the field still parse.
        let mut json = serde_json::to_value(&plan).unwrap();
        json.as_object_mut().unwrap().remove("rooms");
        let back: FleetPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back.rooms, 0);
    }

    #[test]
    fn shares_partition_the_clients() {
        let count = 3;
        let mut seen = [0; 10];
        for index in 0..count {
            for g in (0..10u32).filter(|g| g % count == index) {
                seen[g as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
    }
}
