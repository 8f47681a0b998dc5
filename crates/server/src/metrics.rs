//! Server metrics, rendered in the Prometheus text format at `/metrics`.
//!
//! Plain atomics in one struct per server (not a global registry) so that
//! several servers in one test process keep separate counts, and so that the
//! hot path (a delivery) costs one relaxed atomic add and nothing else.
//!
//! Rendering reads `/proc` (the open-descriptor count lists one entry per
//! connection), so `/metrics` renders on a blocking thread
//! ([`Metrics::render_off_runtime`]), never on a Tokio worker.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use actorchat_protocol::ErrorCode;
use ractor::ActorId;

use crate::auth::Refusal;
use crate::room::RoomInbox;
use crate::supervisor::TopLevel;

/// Counters and gauges shared by every actor of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: AtomicI64,
    /// WebSocket upgrades accepted since start.
    pub connections_accepted: AtomicU64,
    /// Upgrades refused with 503 because the server was at its connection limit.
    pub connections_refused: AtomicU64,
    /// Live room actors.
    pub rooms: AtomicI64,
    /// Room actors restarted after a panic.
    pub room_restarts: AtomicU64,
    /// Lookups refused because `max_rooms` rooms exist (joins and connects).
    pub room_limit_refusals: AtomicU64,
    /// Every room's inbox counter, for the deepest-inbox gauge.
    pub room_inboxes: RoomInboxes,
    /// Chat refused with `room_busy` because the room's inbox was full.
    pub room_busy_refusals: AtomicU64,
    /// Top-level actors (registry, scheduler) restarted, by [`TopLevel`].
    actor_restarts: [AtomicU64; TopLevel::ALL.len()],
    /// Upgrades refused with 403 by the origin check.
    pub origin_refusals: AtomicU64,
    /// `join` frames refused by the per-connection join rate.
    pub joins_rate_limited: AtomicU64,
    /// Text frames received from clients.
    pub frames_in: AtomicU64,
    /// Frames written to clients.
    pub frames_out: AtomicU64,
    /// Frames encoded once by a room and handed to its members.
    pub broadcasts: AtomicU64,
    /// Frames queued to a member by a broadcast (one broadcast, many deliveries).
    pub deliveries: AtomicU64,
    /// Clients disconnected with 1013 because their outbound queue was full.
    pub slow_consumer_disconnects: AtomicU64,
    /// Clients disconnected with 1009 for an oversize frame.
    pub oversize_disconnects: AtomicU64,
    /// Clients disconnected with 1002/1007/1008 (protocol violations,
    /// binary frames, repeated abuse, frame timeouts).
    pub policy_disconnects: AtomicU64,
    /// Clients closed with 1001 because nothing arrived within the idle timeout.
    pub idle_disconnects: AtomicU64,
    /// Keepalive pings sent to silent connections.
    pub pings_sent: AtomicU64,
    /// TCP connections still in their HTTP phase (not upgraded, not closed).
    pub pending_connections: AtomicI64,
    /// Pending TCP connections closed to make room for a newer one because
    /// `max_pending_connections` were already in their HTTP phase.
    pub pending_evicted: AtomicU64,
    /// HTTP connections closed because a request's headers did not arrive
    /// within the header timeout.
    pub header_timeouts: AtomicU64,
    /// Frames sitting in outbound queues right now, summed over connections.
    pub outbound_queue_depth: AtomicI64,
    /// `error` frames sent, by code, indexed like [`ErrorCode::ALL`].
    errors: [AtomicU64; ErrorCode::ALL.len()],
    pub calc: CalcMetrics,
    pub history: HistoryMetrics,
    pub auth: AuthMetrics,
    pub cluster: ClusterMetrics,
    /// What only the observer reads (room stats, close reasons, latency
    /// probe, calculation board); see [`crate::observer`].
    pub(crate) observed: crate::observer::Figures,
}

/// Room streams' figures (see `crate::history`).
#[derive(Debug, Default)]
pub struct HistoryMetrics {
    /// Messages committed to storage.
    pub appends: AtomicU64,
    /// Failed commits (each answered `unavailable` to its senders).
    pub write_errors: AtomicU64,
    /// Messages removed by retention.
    pub trimmed: AtomicU64,
    /// Reads from storage for history pages and resumes.
    pub reads: AtomicU64,
    /// Resumes answered `recovered: true` / `false`.
    pub resumes_recovered: AtomicU64,
    pub resumes_not_recovered: AtomicU64,
    /// One commit (transaction), in seconds.
    pub commit_seconds: Histogram,
    /// A room's batch, from being handed to storage to the room learning
    /// it was committed: what persisting adds to a message's delivery
    /// (the writer's queue, the commit, and both thread hand-offs), which
    /// `commit_seconds` alone does not show.
    pub append_seconds: Histogram,
    /// Messages per commit.
    pub commit_messages: CountHistogram,
    /// From a resume request reaching the room to its `welcome` being queued.
    pub resume_seconds: Histogram,
    /// One checkpoint pass of the checkpointer thread (never on the
    /// writer's path).
    pub checkpoint_seconds: Histogram,
    /// The writer's share of a WAL restart: copying the rest between two
    /// commits (a stall of every room's commits).
    pub wal_finish_seconds: Histogram,
    /// Frames (pages) in the WAL at the last checkpoint, and how many of
    /// them were not yet in the database file.
    pub wal_frames: AtomicU64,
    pub wal_uncopied_frames: AtomicU64,
}

/// Cluster mode's figures (see `crate::cluster`); all zero on one node.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// One Redis command or script, in seconds.
    pub redis_seconds: Histogram,
    /// Publishes that failed (their chats were answered `unavailable`).
    pub publish_errors: AtomicU64,
    /// Times the pub/sub connection was re-established.
    pub reconnects: AtomicU64,
    /// Probes that did not come back on a connection that had not
    /// dropped: the bus reconnected (see `crate::cluster::bus`).
    pub stale_probes: AtomicU64,
    /// Rooms that read missed messages from the stream: after a gap in the
    /// ids on their channel, or after a reconnect.
    pub catch_ups: AtomicU64,
    /// Rooms whose stream was lost (new epoch) or could not fill a gap:
    /// their members got a fresh `welcome` with `recovered: false`.
    pub resyncs: AtomicU64,
    /// Room channels this node subscribes to.
    pub subscribed: AtomicI64,
}

impl ClusterMetrics {
    fn render(&self, out: &mut String) {
        let counters = [
            (
                "actorchat_cluster_publish_errors_total",
                "Publishes to Redis that failed (their chats were answered `unavailable`).",
                &self.publish_errors,
            ),
            (
                "actorchat_cluster_reconnects_total",
                "Times the Redis pub/sub connection was re-established.",
                &self.reconnects,
            ),
            (
                "actorchat_cluster_stale_probes_total",
                "Pub/sub connections found silent by a probe (then re-established).",
                &self.stale_probes,
            ),
            (
                "actorchat_cluster_catch_ups_total",
                "Reads of missed messages from a room's stream (a gap in the ids, or a reconnect).",
                &self.catch_ups,
            ),
            (
                "actorchat_cluster_resyncs_total",
                "Rooms whose members got a fresh welcome with recovered: false (stream lost or gap unfillable).",
                &self.resyncs,
            ),
        ];
        for (name, help, value) in counters {
            metric(out, name, "counter", help, value.load(Relaxed));
        }
        metric(
            out,
            "actorchat_cluster_subscribed_channels",
            "gauge",
            "Room channels this node subscribes to.",
            self.subscribed.load(Relaxed),
        );
        self.redis_seconds.render(
            out,
            "actorchat_cluster_redis_seconds",
            "Round trip of one Redis command or script.",
        );
    }
}

/// Authentication's figures (see `crate::auth`).
#[derive(Debug, Default)]
pub struct AuthMetrics {
    /// Credentials refused, indexed like [`Refusal::REASONS`].
    refused: [AtomicU64; Refusal::REASONS.len()],
    /// Sessions whose token was replaced by a `refresh`.
    pub refreshes: AtomicU64,
    /// Sessions closed with 4001 because their token expired.
    pub expired: AtomicU64,
}

impl AuthMetrics {
    /// Counts one refused credential (upgrade, HTTP read, refresh).
    pub fn refused(&self, reason: &str) {
        if let Some(i) = Refusal::REASONS.iter().position(|r| *r == reason) {
            self.refused[i].fetch_add(1, Relaxed);
        }
    }

    fn render(&self, out: &mut String) {
        header(
            out,
            "actorchat_auth_refusals_total",
            "counter",
            "Tokens and requests refused by authentication, by reason.",
        );
        for (reason, n) in Refusal::REASONS.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "actorchat_auth_refusals_total{{reason=\"{reason}\"}} {}",
                n.load(Relaxed)
            );
        }
        metric(
            out,
            "actorchat_auth_refreshes_total",
            "counter",
            "Session tokens replaced by a refresh.",
            self.refreshes.load(Relaxed),
        );
        metric(
            out,
            "actorchat_auth_expired_total",
            "counter",
            "Sessions closed with 4001 because their token expired.",
            self.expired.load(Relaxed),
        );
    }
}

impl HistoryMetrics {
    fn render(&self, out: &mut String) {
        let counters = [
            (
                "actorchat_history_appends_total",
                "Messages committed to storage.",
                &self.appends,
            ),
            (
                "actorchat_history_write_errors_total",
                "Failed storage commits (their messages were answered `unavailable`).",
                &self.write_errors,
            ),
            (
                "actorchat_history_trimmed_total",
                "Messages removed by retention.",
                &self.trimmed,
            ),
            (
                "actorchat_history_reads_total",
                "Storage reads for history pages and resumes.",
                &self.reads,
            ),
        ];
        for (name, help, value) in counters {
            metric(out, name, "counter", help, value.load(Relaxed));
        }
        header(
            out,
            "actorchat_history_resumes_total",
            "counter",
            "Resume requests by outcome.",
        );
        let _ = writeln!(
            out,
            "actorchat_history_resumes_total{{result=\"recovered\"}} {}\nactorchat_history_resumes_total{{result=\"not_recovered\"}} {}",
            self.resumes_recovered.load(Relaxed),
            self.resumes_not_recovered.load(Relaxed)
        );
        self.commit_seconds.render(
            out,
            "actorchat_history_commit_seconds",
            "Time of one storage commit.",
        );
        self.append_seconds.render(
            out,
            "actorchat_history_append_seconds",
            "A room's batch from being handed to storage to the room learning it was committed (writer queue, commit, thread hand-offs).",
        );
        self.commit_messages.render(
            out,
            "actorchat_history_commit_messages",
            "Messages per storage commit.",
        );
        self.resume_seconds.render(
            out,
            "actorchat_history_resume_seconds",
            "From a resume request reaching its room to the welcome being queued.",
        );
        self.checkpoint_seconds.render(
            out,
            "actorchat_history_checkpoint_seconds",
            "One WAL checkpoint pass of the checkpointer thread (off the writer's path).",
        );
        self.wal_finish_seconds.render(
            out,
            "actorchat_history_wal_finish_seconds",
            "The writer copying the rest of the WAL so that it can start over (commits wait meanwhile).",
        );
        metric(
            out,
            "actorchat_history_wal_frames",
            "gauge",
            "Frames (pages) in the SQLite WAL at the last checkpoint.",
            self.wal_frames.load(Relaxed),
        );
        metric(
            out,
            "actorchat_history_wal_uncopied_frames",
            "gauge",
            "WAL frames not yet copied into the database file at the last checkpoint.",
            self.wal_uncopied_frames.load(Relaxed),
        );
    }

    /// Records what a checkpoint found.
    pub(crate) fn note_wal(&self, log: i64, copied: i64) {
        let frames = |n: i64| u64::try_from(n).unwrap_or(0);
        self.wal_frames.store(frames(log), Relaxed);
        self.wal_uncopied_frames
            .store(frames(log.saturating_sub(copied)), Relaxed);
    }
}

/// A Prometheus histogram of counts (batch sizes), with fixed buckets.
#[derive(Debug, Default)]
pub struct CountHistogram {
    buckets: [AtomicU64; COUNT_BUCKETS.len()],
    count: AtomicU64,
    sum: AtomicU64,
}

const COUNT_BUCKETS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

impl CountHistogram {
    pub fn observe(&self, n: u64) {
        for (bound, bucket) in COUNT_BUCKETS.iter().zip(&self.buckets) {
            if n <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(n, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let buckets = COUNT_BUCKETS.iter().zip(&self.buckets);
        render_histogram(
            out,
            (name, help),
            buckets.map(|(bound, b)| (bound, b.load(Relaxed))),
            self.count.load(Relaxed),
            self.sum.load(Relaxed),
        );
    }
}

/// How a calculation ended, as counted in `actorchat_calc_total{status}`.
/// `Cancelled` (the requester disconnected) has no wire status: nobody is
/// left to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalcEnd {
    Ok,
    Rejected,
    Timeout,
    Busy,
    Error,
    Cancelled,
}

impl CalcEnd {
    const ALL: [CalcEnd; 6] = [
        CalcEnd::Ok,
        CalcEnd::Rejected,
        CalcEnd::Timeout,
        CalcEnd::Busy,
        CalcEnd::Error,
        CalcEnd::Cancelled,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CalcEnd::Ok => "ok",
            CalcEnd::Rejected => "rejected",
            CalcEnd::Timeout => "timeout",
            CalcEnd::Busy => "busy",
            CalcEnd::Error => "error",
            CalcEnd::Cancelled => "cancelled",
        }
    }
}

/// The calculation scheduler's figures.
#[derive(Debug, Default)]
pub struct CalcMetrics {
    ended: [AtomicU64; CalcEnd::ALL.len()],
    /// Admitted calculations waiting for a worker.
    pub queued: AtomicI64,
    /// Calculations running on calculator threads.
    pub running: AtomicI64,
    /// Sum of the peak-memory estimates of running calculations.
    pub budget_in_use: AtomicI64,
    /// Wall time of calculations that ran to the end (compute + decimal).
    pub compute_seconds: Histogram,
    /// Time from a cancellation (timeout or disconnect) to the worker being free.
    pub cancel_latency_seconds: Histogram,
}

impl CalcMetrics {
    pub fn ended(&self, how: CalcEnd) {
        if let Some(i) = CalcEnd::ALL.iter().position(|c| *c == how) {
            self.ended[i].fetch_add(1, Relaxed);
        }
    }

    /// Calculations ended since start, by status.
    pub(crate) fn ended_counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CalcEnd::ALL
            .iter()
            .zip(&self.ended)
            .map(|(how, n)| (how.as_str(), n.load(Relaxed)))
    }

    fn render(&self, out: &mut String) {
        header(
            out,
            "actorchat_calc_total",
            "counter",
            "Calculations by how they ended.",
        );
        for (how, count) in CalcEnd::ALL.iter().zip(&self.ended) {
            let _ = writeln!(
                out,
                "actorchat_calc_total{{status=\"{}\"}} {}",
                how.as_str(),
                count.load(Relaxed)
            );
        }
        metric(
            out,
            "actorchat_calc_queue_length",
            "gauge",
            "Calculations waiting for a worker.",
            self.queued.load(Relaxed),
        );
        metric(
            out,
            "actorchat_calc_running",
            "gauge",
            "Calculations running.",
            self.running.load(Relaxed),
        );
        metric(
            out,
            "actorchat_calc_budget_bytes_in_use",
            "gauge",
            "Estimated peak memory of running calculations.",
            self.budget_in_use.load(Relaxed),
        );
        self.compute_seconds.render(
            out,
            "actorchat_calc_compute_seconds",
            "Time of calculations that finished.",
        );
        self.cancel_latency_seconds.render(
            out,
            "actorchat_calc_cancel_latency_seconds",
            "Time from cancellation to the calculator thread ending.",
        );
    }
}

/// A Prometheus histogram with fixed buckets, in seconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];

impl Histogram {
    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let buckets = BUCKETS.iter().zip(&self.buckets);
        render_histogram(
            out,
            (name, help),
            buckets.map(|(bound, b)| (bound, b.load(Relaxed))),
            self.count.load(Relaxed),
            self.sum_micros.load(Relaxed) as f64 / 1e6,
        );
    }
}

/// The inbox counter of every live room, keyed by room actor. Locked only
/// when a room starts or stops (by the registry) and at a scrape: never on
/// the chat path, which touches only the room's own atomic.
#[derive(Debug, Default)]
pub struct RoomInboxes(Mutex<HashMap<ActorId, Arc<RoomInbox>>>);

impl RoomInboxes {
    pub(crate) fn insert(&self, room: ActorId, inbox: Arc<RoomInbox>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(room, inbox);
    }

    pub(crate) fn remove(&self, room: ActorId) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&room);
    }

    /// The most chat messages waiting in any one room right now.
    pub fn deepest(&self) -> usize {
        let rooms = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rooms.values().map(|inbox| inbox.depth()).max().unwrap_or(0)
    }
}

impl Metrics {
    pub(crate) fn actor_restart(&self, which: TopLevel) {
        if let Some(i) = TopLevel::ALL.iter().position(|w| *w == which) {
            self.actor_restarts[i].fetch_add(1, Relaxed);
        }
    }

    /// Restarts of a top-level actor since start.
    pub(crate) fn actor_restarts_of(&self, which: TopLevel) -> u64 {
        TopLevel::ALL
            .iter()
            .position(|w| *w == which)
            .map_or(0, |i| self.actor_restarts[i].load(Relaxed))
    }

    /// `error` frames sent since start, by code.
    pub(crate) fn errors_by_code(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ErrorCode::ALL
            .iter()
            .zip(&self.errors)
            .map(|(code, n)| (code.as_str(), n.load(Relaxed)))
    }

    /// [`Metrics::render`] on a blocking thread: it reads `/proc`, at a cost
    /// that grows with the number of open connections.
    pub async fn render_off_runtime(self: &Arc<Self>) -> String {
        let metrics = self.clone();
        tokio::task::spawn_blocking(move || {
            BLOCKING_RENDER.with(|flag| flag.set(true));
            let text = metrics.render();
            BLOCKING_RENDER.with(|flag| flag.set(false));
            text
        })
        .await
        .unwrap_or_else(|e| format!("# metrics rendering failed: {e}\n"))
    }

    /// Counts one `error` frame sent to a client.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Renders everything, plus the standard `process_*` metrics, in the
    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauges: [(&str, &str, i64); 6] = [
            (
                "actorchat_connections",
                "Open WebSocket connections.",
                self.connections.load(Relaxed),
            ),
            (
                "actorchat_rooms",
                "Live room actors.",
                self.rooms.load(Relaxed),
            ),
            (
                "actorchat_outbound_queue_depth",
                "Frames waiting in outbound queues, summed over connections.",
                self.outbound_queue_depth.load(Relaxed),
            ),
            (
                "actorchat_room_inbox_deepest",
                "Chat messages waiting in the fullest room inbox.",
                i64::try_from(self.room_inboxes.deepest()).unwrap_or(i64::MAX),
            ),
            (
                "actorchat_pending_connections",
                "TCP connections in their HTTP phase (not yet upgraded).",
                self.pending_connections.load(Relaxed),
            ),
            ("process_open_fds", "Open file descriptors.", open_fds()),
        ];
        for (name, help, value) in gauges {
            metric(&mut out, name, "gauge", help, value);
        }
        let counters = [
            (
                "actorchat_connections_accepted_total",
                "WebSocket upgrades accepted.",
                &self.connections_accepted,
            ),
            (
                "actorchat_connections_refused_total",
                "Upgrades refused at the connection limit.",
                &self.connections_refused,
            ),
            (
                "actorchat_room_restarts_total",
                "Room actors restarted after a panic.",
                &self.room_restarts,
            ),
            (
                "actorchat_room_limit_refusals_total",
                "Joins and connects refused because the server has its most rooms.",
                &self.room_limit_refusals,
            ),
            (
                "actorchat_room_busy_refusals_total",
                "Chat messages refused because the room's inbox was full.",
                &self.room_busy_refusals,
            ),
            (
                "actorchat_joins_rate_limited_total",
                "Join frames refused by the per-connection join rate.",
                &self.joins_rate_limited,
            ),
            (
                "actorchat_origin_refusals_total",
                "WebSocket upgrades refused with 403 by the origin check.",
                &self.origin_refusals,
            ),
            (
                "actorchat_frames_in_total",
                "Frames received from clients.",
                &self.frames_in,
            ),
            (
                "actorchat_frames_out_total",
                "Frames written to clients.",
                &self.frames_out,
            ),
            (
                "actorchat_broadcasts_total",
                "Frames encoded once and broadcast to a room.",
                &self.broadcasts,
            ),
            (
                "actorchat_deliveries_total",
                "Broadcast frames queued to room members.",
                &self.deliveries,
            ),
            (
                "actorchat_slow_consumer_disconnects_total",
                "Clients closed with 1013 because their outbound queue was full.",
                &self.slow_consumer_disconnects,
            ),
            (
                "actorchat_oversize_disconnects_total",
                "Clients closed with 1009 for an oversize frame.",
                &self.oversize_disconnects,
            ),
            (
                "actorchat_policy_disconnects_total",
                "Clients closed with 1002, 1007 or 1008: protocol violations, binary frames, abuse, frame timeouts.",
                &self.policy_disconnects,
            ),
            (
                "actorchat_idle_disconnects_total",
                "Clients closed with 1001 after the idle timeout.",
                &self.idle_disconnects,
            ),
            (
                "actorchat_pings_sent_total",
                "Keepalive pings sent to silent connections.",
                &self.pings_sent,
            ),
            (
                "actorchat_pending_evicted_total",
                "Oldest pending (not yet upgraded) connections closed to make room at the cap.",
                &self.pending_evicted,
            ),
            (
                "actorchat_header_timeouts_total",
                "HTTP connections closed because headers did not arrive in time.",
                &self.header_timeouts,
            ),
        ];
        for (name, help, value) in counters {
            metric(&mut out, name, "counter", help, value.load(Relaxed));
        }
        header(
            &mut out,
            "actorchat_errors_total",
            "counter",
            "Error frames sent to clients, by code.",
        );
        for (code, count) in ErrorCode::ALL.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "actorchat_errors_total{{code=\"{}\"}} {}",
                code.as_str(),
                count.load(Relaxed)
            );
        }
        header(
            &mut out,
            "actorchat_actor_restarts_total",
            "counter",
            "Top-level actors restarted by the root supervisor.",
        );
        for (which, count) in TopLevel::ALL.iter().zip(&self.actor_restarts) {
            let _ = writeln!(
                out,
                "actorchat_actor_restarts_total{{actor=\"{}\"}} {}",
                which.as_str(),
                count.load(Relaxed)
            );
        }
        self.calc.render(&mut out);
        self.history.render(&mut out);
        self.auth.render(&mut out);
        self.cluster.render(&mut out);
        if let Some(rss) = resident_memory_bytes() {
            metric(
                &mut out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                rss,
            );
        }
        if let Some(cpu) = cpu_seconds_of("self") {
            metric(
                &mut out,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time in seconds.",
                cpu,
            );
        }
        out
    }
}

/// One Prometheus histogram: cumulative buckets, `+Inf`, sum and count.
fn render_histogram<B: std::fmt::Display>(
    out: &mut String,
    (name, help): (&str, &str),
    buckets: impl Iterator<Item = (B, u64)>,
    count: u64,
    sum: impl std::fmt::Display,
) {
    header(out, name, "histogram", help);
    for (bound, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// utime + stime of a process (`"self"` or a PID) from `/proc/<pid>/stat`
/// (Linux), in seconds; `None` elsewhere.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')' come state (3) … utime (14) and stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    Some((utime + stime) as f64 / ticks as f64)
}

/// VmRSS from `/proc/self/status` (Linux); `None` elsewhere.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

thread_local! {
    /// Set while [`Metrics::render_off_runtime`] renders on a blocking thread.
    static BLOCKING_RENDER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Lists `/proc/self/fd`: one system call per few dozen descriptors, so
/// O(connections). Debug builds check it never runs on a Tokio worker.
fn open_fds() -> i64 {
    debug_assert!(
        tokio::runtime::Handle::try_current().is_err() || BLOCKING_RENDER.with(|f| f.get()),
        "/proc/self/fd listed on a Tokio worker thread; use render_off_runtime"
    );
    std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scrape_renders_on_a_blocking_thread() {
        let m = Arc::new(Metrics::default());
        assert!(m.render_off_runtime().await.contains("process_open_fds "));
    }

    /// The guard that keeps `/proc/self/fd` off the workers does fire.
    #[cfg(debug_assertions)]
    #[tokio::test]
    #[should_panic(expected = "Tokio worker")]
    async fn rendering_on_a_worker_is_caught_in_debug_builds() {
        Metrics::default().render();
    }

    #[test]
    fn renders_every_family() {
        let m = Metrics::default();
        m.deliveries.fetch_add(3, Relaxed);
        m.error(ErrorCode::RateLimited);
        let text = m.render();
        assert!(text.contains("actorchat_deliveries_total 3\n"));
        assert!(text.contains("actorchat_errors_total{code=\"rate_limited\"} 1\n"));
        assert!(text.contains("actorchat_errors_total{code=\"invalid_json\"} 0\n"));
        assert!(text.contains("process_resident_memory_bytes "));
        assert!(text.contains("process_cpu_seconds_total "));
        // Every sample line is `name[{labels}] value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
