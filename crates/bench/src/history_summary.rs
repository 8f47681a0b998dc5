//! What the history scenarios (`ingest`, `reconnect`) report beyond the
//! common [`crate::Summary`] fields, and their lines in the summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::metrics::HistogramSummary;
use crate::stats::Latency;
use crate::summary::us;

/// `ingest`: persisted throughput across many rooms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IngestSummary {
    pub rooms: u32,
    pub members_per_room: u32,
    /// Messages per second per member, as asked.
    pub rate_per_member: f64,
    /// rooms × members × rate: what the clients offered.
    pub offered_per_sec: f64,
    pub duration_secs: f64,
    /// Δ`actorchat_history_appends_total` over the phase (sending and grace).
    pub persisted: Option<f64>,
    /// `persisted` / sending time.
    pub persisted_per_sec: Option<f64>,
    /// Persisted per second, one value per ~1 s scrape of `/metrics`
    /// during sending.
    pub persisted_per_sec_samples: Vec<f64>,
    /// The lowest of the samples, the first and last second left out
    /// (ramp-up and the tail) when there are at least three.
    pub sustained_min_per_sec: Option<f64>,
    /// Messages per commit (`actorchat_history_commit_messages`).
    pub commit_messages: Option<HistogramSummary>,
    /// One commit's duration in seconds (`actorchat_history_commit_seconds`).
    pub commit_seconds: Option<HistogramSummary>,
    /// Δ`actorchat_history_write_errors_total`.
    pub write_errors: Option<f64>,
    /// `unavailable` errors the clients received (stored nothing, broadcast
    /// nothing).
    pub unavailable: u64,
    /// Server CPU seconds over the phase / messages persisted, µs.
    pub server_cpu_per_message_us: Option<f64>,
    /// The load generator's CPU over the phase / messages it sent, µs
    /// (sending one message and receiving its deliveries).
    #[serde(default)]
    pub client_cpu_per_message_us: Option<f64>,
}

impl IngestSummary {
    /// Per-second rates from `(seconds since start, appends)` samples.
    pub fn set_samples(&mut self, samples: &[(f64, f64)]) {
        self.persisted_per_sec_samples = samples
            .windows(2)
            .filter_map(|w| {
                let dt = w[1].0 - w[0].0;
                (dt > 0.0).then(|| (w[1].1 - w[0].1).max(0.0) / dt)
            })
            .collect();
        let rates = &self.persisted_per_sec_samples;
        let inner = if rates.len() >= 3 {
            &rates[1..rates.len() - 1]
        } else {
            &rates[..]
        };
        self.sustained_min_per_sec = inner.iter().copied().reduce(f64::min);
    }

    pub fn write_table(&self, w: &mut String) {
        let opt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.0}"));
        let _ = writeln!(
            w,
            "\n  ingest      {} rooms × {} members × {} msg/s = {:.0} msg/s offered for {:.0} s",
            self.rooms,
            self.members_per_room,
            self.rate_per_member,
            self.offered_per_sec,
            self.duration_secs
        );
        let _ = writeln!(
            w,
            "  persisted   {} messages, {} msg/s (lowest 1 s sample {} msg/s); write errors {}, unavailable {}",
            opt(self.persisted),
            opt(self.persisted_per_sec),
            opt(self.sustained_min_per_sec),
            opt(self.write_errors),
            self.unavailable
        );
        let _ = writeln!(
            w,
            "  commits     {}; batch {}; latency {}",
            self.commit_messages
                .map_or("n/a".into(), |h| format!("{:.0}", h.count)),
            self.commit_messages.map_or("n/a".into(), |h| format!(
                "mean {:.1}, p50 {}, p99 {} messages",
                h.mean,
                h.p50.show(|v| format!("{v:.0}")),
                h.p99.show(|v| format!("{v:.0}"))
            )),
            self.commit_seconds
                .map_or("n/a".into(), |h| seconds_summary(&h))
        );
        let _ = writeln!(
            w,
            "  CPU         server {} per persisted message; load generator {} per message sent (and its deliveries)",
            self.server_cpu_per_message_us
                .map_or("n/a".into(), |c| format!("{c:.2} µs")),
            self.client_cpu_per_message_us
                .map_or("n/a".into(), |c| format!("{c:.2} µs"))
        );
    }
}

/// `reconnect`: resume correctness and latency.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReconnectSummary {
    pub clients: u32,
    pub droppers: u32,
    pub chatters: u32,
    pub epoch: String,
    /// The room's newest id at the end (from a fresh client's `welcome`).
    pub room_last_id: u64,
    /// Chat frames the chatters sent, and how many the server refused
    /// (`rate_limited`, `unavailable`: not broadcast).
    pub sent: u64,
    pub refused: u64,
    /// Sent and not refused, yet in no client's sequence.
    pub sent_unseen: u64,
    /// Abrupt closes by droppers.
    pub drops: u64,
    /// Connections that ended without the client asking (each then resumes).
    pub unexpected_disconnects: u64,
    /// Resume attempts answered with a `welcome`.
    pub resumes: u64,
    pub recovered: u64,
    pub not_recovered: u64,
    /// Resume welcomes with `recovered: null` (the server ignored `since`).
    pub recovered_missing: u64,
    /// Resume attempts that got no `welcome` (retried after the pause).
    pub resume_failures: u64,
    /// Welcomes whose epoch differed from the client's first one.
    pub epoch_changes: u64,
    /// Messages replayed in resume welcomes' `history`.
    pub replayed: u64,
    /// Messages received (history and live), all clients.
    pub received: u64,
    /// Clients whose whole sequence was exact.
    pub clients_exact: u32,
    /// Over all clients: ids never received (in a segment that should
    /// have them), repeated ids, ids received after a higher one, ids the
    /// room does not have.
    pub gaps: u64,
    pub duplicates: u64,
    pub reorderings: u64,
    pub out_of_range: u64,
    /// Ids two clients received with different content.
    pub conflicting_ids: u64,
    /// Client-side resume latency: connect to `welcome` received.
    pub resume_latency: Option<Latency>,
    /// Live chat frames, `now − sent_at` (replayed history not included).
    pub delivery_latency: Option<Latency>,
    /// `actorchat_history_resume_seconds` over the run.
    pub server_resume_seconds: Option<HistogramSummary>,
    /// Δ`actorchat_history_resumes_total` by result.
    pub server_resumes: BTreeMap<String, f64>,
}

impl ReconnectSummary {
    /// Why the run failed its checks (empty: it passed).
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        let mut check = |n: u64, what: &str| {
            if n > 0 {
                f.push(format!("{n} {what}"));
            }
        };
        check(self.gaps, "ids missing from clients' sequences (gaps)");
        check(self.duplicates, "duplicate deliveries");
        check(self.reorderings, "deliveries out of order");
        check(self.out_of_range, "ids the room does not have");
        check(
            self.conflicting_ids,
            "ids with different content on different clients",
        );
        check(
            self.sent_unseen,
            "accepted messages that no client received",
        );
        check(self.epoch_changes, "epoch changes without a restart");
        check(
            self.recovered_missing,
            "resume welcomes without `recovered`",
        );
        f
    }

    pub fn write_table(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "\n  reconnect   {} clients ({} droppers, {} chatting); room's last id {}, epoch {:?}",
            self.clients, self.droppers, self.chatters, self.room_last_id, self.epoch
        );
        let _ = writeln!(
            w,
            "  messages    {} sent, {} refused, {} accepted but unseen; {} received by all clients ({} replayed on resume)",
            self.sent, self.refused, self.sent_unseen, self.received, self.replayed
        );
        let _ = writeln!(
            w,
            "  resumes     {} drops, {} resumes: {} recovered, {} not recovered, {} without `recovered`; {} failed attempts; {} unexpected disconnects",
            self.drops,
            self.resumes,
            self.recovered,
            self.not_recovered,
            self.recovered_missing,
            self.resume_failures,
            self.unexpected_disconnects
        );
        let _ = writeln!(
            w,
            "  sequences   {} of {} clients exact; gaps {}, duplicates {}, reorderings {}, out of range {}, conflicting ids {}",
            self.clients_exact,
            self.clients,
            self.gaps,
            self.duplicates,
            self.reorderings,
            self.out_of_range,
            self.conflicting_ids
        );
        let l = self.resume_latency;
        let _ = writeln!(
            w,
            "  resume      client connect→welcome p50 {} p99 {} max {}; server {}",
            us(l.map(|l| l.p50_us)),
            us(l.map(|l| l.p99_us)),
            us(l.map(|l| l.max_us)),
            self.server_resume_seconds
                .map_or("n/a".into(), |h| seconds_summary(&h))
        );
        let d = self.delivery_latency;
        let _ = writeln!(
            w,
            "  delivery    live frames p50 {} p99 {} max {}",
            us(d.map(|l| l.p50_us)),
            us(d.map(|l| l.p99_us)),
            us(d.map(|l| l.max_us)),
        );
    }
}

/// `mean …, p50 …, p99 …` of a histogram in seconds.
fn seconds_summary(h: &HistogramSummary) -> String {
    let t = |s: f64| us(Some((s * 1e6).round() as u64));
    format!(
        "mean {}, p50 {}, p99 {}",
        t(h.mean),
        h.p50.show(t),
        h.p99.show(t)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_become_rates_and_a_sustained_minimum() {
        let mut s = IngestSummary::default();
        s.set_samples(&[
            (0.0, 0.0),
            (1.0, 500.0),
            (2.0, 1500.0),
            (3.0, 2400.0),
            (4.0, 2500.0),
        ]);
        assert_eq!(
            s.persisted_per_sec_samples,
            vec![500.0, 1000.0, 900.0, 100.0]
        );
        assert_eq!(s.sustained_min_per_sec, Some(900.0));
        s.set_samples(&[(0.0, 0.0), (0.5, 50.0)]);
        assert_eq!(s.sustained_min_per_sec, Some(100.0));
        s.set_samples(&[]);
        assert_eq!(s.sustained_min_per_sec, None);
        let mut table = String::new();
        s.write_table(&mut table);
        assert!(table.contains("n/a"), "{table}");
    }

    #[test]
    fn reconnect_failures_name_every_problem() {
        let mut r = ReconnectSummary::default();
        assert!(r.failures().is_empty());
        r.gaps = 2;
        r.duplicates = 1;
        let f = r.failures();
        assert_eq!(f.len(), 2);
        assert!(f[0].contains("gaps"));
        let mut table = String::new();
        r.write_table(&mut table);
        assert!(table.contains("gaps 2, duplicates 1"), "{table}");
    }
}
