//! What a run found: the serializable [`Summary`] (`--json`, the HTML
//! report, the integration tests) and its human-readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::fleet::RampResult;
pub use crate::history_summary::{IngestSummary, ReconnectSummary};
use crate::metrics::{ServerSnapshot, delta};
use crate::phase::{PhaseResult, PhaseSpec};
use crate::stats::{Bucket, Hist, Latency, SeriesPoint};

/// The result of one benchmark run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// `connections`, `fanout`, `capacity` or `calc-mix`.
    pub scenario: String,
    pub url: String,
    pub procs: u32,
    pub started_unix_ms: u64,
    /// Clients the scenario asked for.
    pub clients: u64,
    /// Clients that connected and received their `welcome`.
    pub opened: u64,
    /// Clients whose connection attempt failed (see `connect_errors`).
    pub failed: u64,
    /// Clients never attempted because a client-side limit was hit.
    pub skipped: u64,
    /// Clients that answered the final liveness ping.
    pub alive: u64,
    /// Pongs received in the final liveness check (same as `alive`).
    pub pongs: u64,
    /// Clients still connected at the end.
    pub connected_at_end: u64,
    /// Time to open all clients, seconds.
    pub ramp_secs: f64,
    /// `room_update` frames all clients received while joining.
    pub room_updates_during_ramp: u64,
    /// At the liveness check: the room's `num_participants` as each live
    /// client last heard it, counted by value (one key: they all agree).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub participants_at_end: BTreeMap<u64, u64>,
    pub connect_errors: BTreeMap<String, u64>,
    /// Set when the load generator, not the server, stopped the run.
    pub client_limit: Option<String>,

    /// Totals over the measured phases.
    pub sent: u64,
    pub send_failed: u64,
    pub rate_limited: u64,
    pub expected_deliveries: u64,
    pub received_deliveries: u64,
    /// `expected_deliveries − received_deliveries` (never negative).
    pub loss: u64,
    pub loss_ratio: f64,
    /// Deliveries out of room order, summed over the phases.
    #[serde(default)]
    pub reordered: u64,
    pub deliveries_per_sec: f64,
    /// Chat delivery latency over all measured phases.
    pub latency: Option<Latency>,
    pub ping_latency: Option<Latency>,

    pub phases: Vec<PhaseSummary>,
    pub server: ServerSummary,
    pub capacity: Option<CapacitySummary>,
    /// `ingest`'s persisted throughput and commit figures.
    #[serde(default)]
    pub ingest: Option<IngestSummary>,
    /// `reconnect`'s resume checks and latency.
    #[serde(default)]
    pub reconnect: Option<ReconnectSummary>,
    /// Anything a reader should know: raised senders, missing metrics, ...
    pub notes: Vec<String>,
    /// Checks the run failed (then `actorchat bench` exits with status 1);
    /// empty when it passed or the scenario checks nothing.
    #[serde(default)]
    pub failures: Vec<String>,

    #[serde(skip)]
    all_chat: Hist,
    #[serde(skip)]
    all_ping: Hist,
    #[serde(skip)]
    measured_secs: f64,
}

/// One measured phase (a fan-out run, a capacity step, a calc-mix phase).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub name: String,
    /// Aggregate chat rate, messages per second.
    pub rate: f64,
    pub senders: u32,
    /// Receivers: main-room members connected at the start.
    pub members: u64,
    pub duration_secs: f64,
    /// Sends the pacing schedule called for; `sent` falls short of it only
    /// if connections broke.
    pub scheduled: u64,
    pub sent: u64,
    pub send_failed: u64,
    pub rate_limited: u64,
    pub expected_deliveries: u64,
    pub received_deliveries: u64,
    pub loss: u64,
    pub loss_ratio: f64,
    /// Received deliveries per second of sending.
    pub deliveries_per_sec: f64,
    pub latency: Option<Latency>,
    pub ping_latency: Option<Latency>,
    pub pings_sent: u64,
    pub pongs: u64,
    pub calc_sent: u64,
    pub calc_results: u64,
    pub calc_not_ok: u64,
    pub calc_busy: u64,
    pub disconnects: u64,
    pub slow_consumer_closes: u64,
    pub other_errors: u64,
    /// Receipts of an earlier phase that arrived after its grace period.
    pub stale: u64,
    /// Chats a client received out of room order (id not above its last).
    #[serde(default)]
    pub reordered: u64,
    /// Latest a scheduled send went out; large values mean the load
    /// generator itself could not keep up.
    pub max_send_lag_ms: f64,
    pub server_cpu_seconds: Option<f64>,
    /// The load generator's own CPU over the phase (all its processes).
    #[serde(default)]
    pub client_cpu_seconds: Option<f64>,
    /// Server CPU time per received delivery, microseconds.
    pub server_cpu_per_delivery_us: Option<f64>,
    pub server_deliveries: Option<f64>,
    pub server_slow_consumer_disconnects: Option<f64>,
    pub server_rss_bytes: Option<f64>,
    /// p50/p99 per second of the phase, for the latency-over-time chart.
    pub series: Vec<SeriesPoint>,
    /// Latency histogram, log-spaced buckets.
    pub histogram: Vec<Bucket>,
}

/// Server figures from `/metrics`; `None` where the server does not expose
/// them ("n/a").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerSummary {
    pub before: Option<ServerSnapshot>,
    /// While the clients were held open (`connections`) or after the run.
    pub during: Option<ServerSnapshot>,
    pub after: Option<ServerSnapshot>,
    /// (RSS during hold − RSS before) / alive clients, bytes.
    pub rss_per_connection_bytes: Option<f64>,
    /// Server CPU per delivery over the measured phases, microseconds.
    pub cpu_per_delivery_us: Option<f64>,
    /// Server CPU while the clients were held idle (`connections`), in
    /// percent of one core: what keeping them open costs (keepalive included).
    #[serde(default)]
    pub hold_cpu_percent: Option<f64>,
    /// Why `/metrics` could not be read, if it could not.
    pub metrics_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CapacitySummary {
    pub p99_threshold_ms: f64,
    pub max_loss: f64,
    /// Highest deliveries/s of a step that passed; `None` if none did.
    pub max_sustainable_deliveries_per_sec: Option<f64>,
    /// The message rate of that step.
    pub at_rate: Option<f64>,
    pub stopped_because: String,
}

impl PhaseSummary {
    pub fn new(
        spec: &PhaseSpec,
        r: &PhaseResult,
        before: Option<&ServerSnapshot>,
        after: Option<&ServerSnapshot>,
    ) -> PhaseSummary {
        let duration_secs = spec.duration_ms as f64 / 1000.0;
        let expected = r.expected();
        let loss = expected.saturating_sub(r.received);
        let cpu = delta(
            before.and_then(|s| s.cpu_seconds),
            after.and_then(|s| s.cpu_seconds),
        );
        PhaseSummary {
            name: spec.name.clone(),
            rate: spec.chat_rate,
            senders: spec.senders,
            members: r.members_at_start,
            duration_secs,
            scheduled: crate::pacing::total_sends(
                std::time::Duration::from_millis(spec.duration_ms),
                spec.chat_rate,
                u64::from(spec.senders),
            ),
            sent: r.sent,
            send_failed: r.send_failed,
            rate_limited: r.rate_limited,
            expected_deliveries: expected,
            received_deliveries: r.received,
            loss,
            loss_ratio: ratio(loss, expected),
            deliveries_per_sec: per_sec(r.received, duration_secs),
            latency: r.chat.latency(),
            ping_latency: r.ping.latency(),
            pings_sent: r.pings_sent,
            pongs: r.pongs,
            calc_sent: r.calc_sent,
            calc_results: r.calc_results,
            calc_not_ok: r.calc_not_ok,
            calc_busy: r.calc_busy,
            disconnects: r.disconnects,
            slow_consumer_closes: r.slow_consumer_closes,
            other_errors: r.other_errors,
            stale: r.stale,
            reordered: r.reordered,
            max_send_lag_ms: r.max_send_lag_us as f64 / 1000.0,
            server_cpu_seconds: cpu,
            client_cpu_seconds: r.client_cpu_seconds,
            server_cpu_per_delivery_us: per_delivery_us(cpu, r.received),
            server_deliveries: delta(
                before.and_then(|s| s.deliveries),
                after.and_then(|s| s.deliveries),
            ),
            server_slow_consumer_disconnects: delta(
                before.and_then(|s| s.slow_consumer_disconnects),
                after.and_then(|s| s.slow_consumer_disconnects),
            ),
            server_rss_bytes: after.and_then(|s| s.resident_memory_bytes),
            series: r.series.points(),
            histogram: r.chat.buckets(),
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Server CPU seconds spread over deliveries, in microseconds each.
fn per_delivery_us(cpu_seconds: Option<f64>, deliveries: u64) -> Option<f64> {
    cpu_seconds
        .filter(|_| deliveries > 0)
        .map(|c| c * 1e6 / deliveries as f64)
}

impl Summary {
    pub fn new(scenario: &str, url: &str, procs: u32, clients: u64, ramp: &RampResult) -> Summary {
        let mut s = Summary {
            scenario: scenario.to_owned(),
            url: url.to_owned(),
            procs,
            started_unix_ms: crate::clock::now_ms(),
            clients,
            opened: ramp.opened,
            failed: ramp.failed,
            skipped: ramp.skipped,
            ramp_secs: ramp.ramp_secs,
            room_updates_during_ramp: ramp.room_updates,
            connect_errors: ramp.errors.clone(),
            client_limit: ramp.limit.map(|l| l.explain()),
            ..Summary::default()
        };
        if ramp.failed > 0 && ramp.limit.is_none() {
            s.notes.push(format!(
                "{} of {} connection attempts failed; see connect_errors",
                ramp.failed,
                ramp.opened + ramp.failed
            ));
        }
        s
    }

    /// Adds a measured phase and updates the totals.
    pub fn add_phase(&mut self, phase: PhaseSummary, result: &PhaseResult) {
        self.sent += phase.sent;
        self.send_failed += phase.send_failed;
        self.rate_limited += phase.rate_limited;
        self.expected_deliveries += phase.expected_deliveries;
        self.received_deliveries += phase.received_deliveries;
        self.reordered += phase.reordered;
        self.loss = self
            .expected_deliveries
            .saturating_sub(self.received_deliveries);
        self.loss_ratio = ratio(self.loss, self.expected_deliveries);
        self.measured_secs += phase.duration_secs;
        self.deliveries_per_sec = per_sec(self.received_deliveries, self.measured_secs);
        self.all_chat.merge(&result.chat);
        self.all_ping.merge(&result.ping);
        self.latency = self.all_chat.latency();
        self.ping_latency = self.all_ping.latency();
        let cpu: Option<f64> = self
            .phases
            .iter()
            .chain(std::iter::once(&phase))
            .map(|p| p.server_cpu_seconds)
            .sum();
        self.server.cpu_per_delivery_us = per_delivery_us(cpu, self.received_deliveries);
        if phase.rate_limited > 0 {
            self.notes.push(format!(
                "{}: {} messages were refused with rate_limited (the server allows 20 messages/s \
                 per connection); use more senders",
                phase.name, phase.rate_limited
            ));
        }
        if phase.disconnects > 0 {
            self.notes.push(format!(
                "{}: {} clients were disconnected ({} as slow consumers, close code 1013)",
                phase.name, phase.disconnects, phase.slow_consumer_closes
            ));
        }
        if phase.max_send_lag_ms > 100.0 {
            self.notes.push(format!(
                "{}: a scheduled send went out {:.0} ms late; the load generator itself may be \
                 saturated (try --procs)",
                phase.name, phase.max_send_lag_ms
            ));
        }
        self.phases.push(phase);
    }

    /// Records the final liveness check.
    pub fn set_liveness(&mut self, check: &PhaseResult) {
        self.alive = check.pongs;
        self.pongs = check.pongs;
        self.connected_at_end = check.connected_at_end;
        self.participants_at_end = check.participants_seen.iter().copied().collect();
    }

    /// The human-readable summary table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "actorchat bench {} → {} ({} process{})",
            self.scenario,
            self.url,
            self.procs,
            if self.procs == 1 { "" } else { "es" }
        );
        let _ = writeln!(
            w,
            "  clients     {} requested, {} opened, {} failed{}, {} alive (answered a ping); ramp {:.2} s, {} room_update frames",
            self.clients,
            self.opened,
            self.failed,
            if self.skipped > 0 {
                format!(", {} not attempted", self.skipped)
            } else {
                String::new()
            },
            self.alive,
            self.ramp_secs,
            self.room_updates_during_ramp
        );
        for (kind, n) in &self.connect_errors {
            let _ = writeln!(w, "              {n} × {kind}");
        }
        if let Some(limit) = &self.client_limit {
            let _ = writeln!(w, "  LIMIT       {limit}");
        }
        if !self.participants_at_end.is_empty() {
            let heard: Vec<String> = self
                .participants_at_end
                .iter()
                .map(|(n, clients)| format!("{n} ({clients} clients)"))
                .collect();
            let _ = writeln!(
                w,
                "  presence    num_participants last heard: {}",
                heard.join(", ")
            );
        }
        if let Some(rss) = self.server.rss_per_connection_bytes {
            let _ = writeln!(w, "  server RSS  {} per connection", bytes(rss));
        }
        if let Some(cpu) = self.server.hold_cpu_percent {
            let _ = writeln!(w, "  server CPU  {cpu:.2} % of one core while holding");
        }
        if !self.phases.is_empty() {
            let _ = writeln!(
                w,
                "\n  {:<18} {:>8} {:>7} {:>9} {:>12} {:>12} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
                "phase",
                "msg/s",
                "senders",
                "sent",
                "expected",
                "received",
                "loss",
                "deliv/s",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "cpu/deliv"
            );
            for p in &self.phases {
                let l = p.latency;
                let _ = writeln!(
                    w,
                    "  {:<18} {:>8.0} {:>7} {:>9} {:>12} {:>12} {:>9} {:>11.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
                    truncate(&p.name, 18),
                    p.rate,
                    p.senders,
                    p.sent,
                    p.expected_deliveries,
                    p.received_deliveries,
                    p.loss,
                    p.deliveries_per_sec,
                    us(l.map(|l| l.p50_us)),
                    us(l.map(|l| l.p90_us)),
                    us(l.map(|l| l.p99_us)),
                    us(l.map(|l| l.p999_us)),
                    us(l.map(|l| l.max_us)),
                    p.server_cpu_per_delivery_us
                        .map_or("n/a".into(), |c| format!("{c:.2} µs")),
                );
            }
            if self
                .phases
                .iter()
                .any(|p| p.ping_latency.is_some() || p.calc_sent > 0)
            {
                let _ = writeln!(
                    w,
                    "\n  {:<18} {:>9} {:>9} {:>9} {:>10} {:>12} {:>10}",
                    "phase",
                    "pings",
                    "ping p50",
                    "ping p99",
                    "calc sent",
                    "calc results",
                    "calc busy"
                );
                for p in &self.phases {
                    let l = p.ping_latency;
                    let _ = writeln!(
                        w,
                        "  {:<18} {:>9} {:>9} {:>9} {:>10} {:>12} {:>10}",
                        truncate(&p.name, 18),
                        p.pongs,
                        us(l.map(|l| l.p50_us)),
                        us(l.map(|l| l.p99_us)),
                        p.calc_sent,
                        p.calc_results,
                        p.calc_busy
                    );
                }
            }
            let _ = writeln!(
                w,
                "\n  total       sent {} ({} failed, {} rate-limited); deliveries {} expected, {} received, loss {} ({:.4} %), {} out of order",
                self.sent,
                self.send_failed,
                self.rate_limited,
                self.expected_deliveries,
                self.received_deliveries,
                self.loss,
                self.loss_ratio * 100.0,
                self.reordered
            );
        }
        if let Some(c) = &self.capacity {
            let _ = writeln!(
                w,
                "  capacity    {} (p99 ≤ {} ms, loss ≤ {}); stopped: {}",
                c.max_sustainable_deliveries_per_sec
                    .map_or("no step passed".into(), |d| format!(
                        "{d:.0} deliveries/s sustained at {:.0} msg/s",
                        c.at_rate.unwrap_or(0.0)
                    )),
                c.p99_threshold_ms,
                c.max_loss,
                c.stopped_because
            );
        }
        let s = &self.server;
        let rss = |snap: &Option<ServerSnapshot>| {
            snap.as_ref()
                .and_then(|s| s.resident_memory_bytes)
                .map_or("n/a".into(), bytes)
        };
        let _ = writeln!(
            w,
            "  server      RSS before {}, during {}, after {}; CPU per delivery {}",
            rss(&s.before),
            rss(&s.during),
            rss(&s.after),
            s.cpu_per_delivery_us
                .map_or("n/a".into(), |c| format!("{c:.2} µs"))
        );
        if let Some(e) = &s.metrics_error {
            let _ = writeln!(w, "              /metrics: {e}");
        }
        if let Some(i) = &self.ingest {
            i.write_table(w);
        }
        if let Some(r) = &self.reconnect {
            r.write_table(w);
        }
        for note in &self.notes {
            let _ = writeln!(w, "  note        {note}");
        }
        for failure in &self.failures {
            let _ = writeln!(w, "  FAILED      {failure}");
        }
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// `1234` µs → `1.23 ms`.
pub fn us(v: Option<u64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v < 1_000 => format!("{v} µs"),
        Some(v) if v < 1_000_000 => format!("{:.2} ms", v as f64 / 1e3),
        Some(v) => format!("{:.2} s", v as f64 / 1e6),
    }
}

pub fn bytes(b: f64) -> String {
    if b.abs() < 1024.0 {
        format!("{b:.0} B")
    } else if b.abs() < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_summary_counts_add_up() {
        let spec = PhaseSpec {
            chat_rate: 10.0,
            senders: 2,
            ..PhaseSpec::idle(1, "fanout", 0, 2_000)
        };
        let mut r = PhaseResult::empty();
        r.members_at_start = 5;
        r.sent = 20;
        r.received = 95;
        for _ in 0..95 {
            r.chat.record(2_000);
        }
        let before = ServerSnapshot {
            cpu_seconds: Some(1.0),
            ..ServerSnapshot::default()
        };
        let after = ServerSnapshot {
            cpu_seconds: Some(1.0095),
            ..ServerSnapshot::default()
        };
        let p = PhaseSummary::new(&spec, &r, Some(&before), Some(&after));
        assert_eq!(p.expected_deliveries, 100);
        assert_eq!(p.loss, 5);
        assert!((p.deliveries_per_sec - 47.5).abs() < 1e-9);
        assert!((p.server_cpu_per_delivery_us.unwrap() - 100.0).abs() < 1e-6);
        let mut s = Summary::new("fanout", "ws://x", 1, 5, &RampResult::default());
        s.add_phase(p, &r);
        assert_eq!(s.loss, 5);
        assert_eq!(s.latency.unwrap().count, 95);
        let table = s.table();
        assert!(table.contains("fanout"), "{table}");
        assert!(table.contains("n/a"), "{table}");
        let json = serde_json::to_string(&s).unwrap();
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back.received_deliveries, 95);
    }

    #[test]
    fn formats() {
        assert_eq!(us(Some(999)), "999 µs");
        assert_eq!(us(Some(1_500)), "1.50 ms");
        assert_eq!(us(Some(2_000_000)), "2.00 s");
        assert_eq!(us(None), "n/a");
        assert_eq!(bytes(6_963.0), "6.8 KiB");
    }
}
