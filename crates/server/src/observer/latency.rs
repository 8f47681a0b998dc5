//! Delivery latency, sampled: from the room handling a message to a
//! member's socket write of it.
//!
//! Timing every delivery would cost the hot path a clock read and a shared
//! write per member. Instead, at most one broadcast per [`PROBE_INTERVAL`]
//! (across all rooms) becomes the *probe*: the room publishes the address of
//! its encoded bytes and the time. After each write a connection loads that
//! address (one relaxed-cost atomic load per batch) and compares it with the
//! frames it just wrote; only a connection that wrote the probe reads the
//! clock and adds one count to a log-scale histogram. The probe's bytes are
//! held here until the next probe replaces them, so the address cannot be
//! reused by another allocation while it is published.
//!
//! The sampler drains the histogram once a second and keeps the last
//! [`WINDOW_SECS`] seconds, from which it reads p50 and p99.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::mailbox::Frame;

/// At most one probed broadcast per this interval, server-wide.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Seconds of samples behind each percentile.
pub(crate) const WINDOW_SECS: usize = 10;

/// Four buckets per power of two (a bucket spans 19 % at most), from 1 µs
/// to about 2^28 µs (4.5 minutes), plus one for under a microsecond.
const PER_OCTAVE: u32 = 4;
const OCTAVES: u32 = 28;
pub(crate) const BUCKETS: usize = (OCTAVES * PER_OCTAVE) as usize + 1;

/// Nanoseconds since a process-wide epoch.
fn nanos() -> u64 {
    nanos_at(Instant::now())
}

fn nanos_at(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) struct Latency {
    /// When the next probe may be taken ([`nanos`]).
    next_probe: AtomicU64,
    /// Address of the probe's bytes; 0 while none is published.
    probe: AtomicUsize,
    /// When the probe's room handled it ([`nanos`]).
    probe_start: AtomicU64,
    /// Keeps the probe's allocation alive while its address is published.
    held: Mutex<Option<Bytes>>,
    /// Counts of the current second, by bucket.
    live: Box<[AtomicU64]>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            next_probe: AtomicU64::new(0),
            probe: AtomicUsize::new(0),
            probe_start: AtomicU64::new(0),
            held: Mutex::new(None),
            live: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latency").finish_non_exhaustive()
    }
}

impl Latency {
    /// Called by a room with the bytes it is about to offer to its members
    /// and when the room received the message (a chat waits for storage
    /// first, and that wait is part of its latency): makes them the probe if
    /// one is due (one clock read per broadcast).
    pub(crate) fn maybe_probe(&self, frame: &Bytes, received: Instant) {
        let now = nanos();
        let due = self.next_probe.load(Ordering::Relaxed);
        if now < due || frame.is_empty() {
            return;
        }
        let next = now.saturating_add(PROBE_INTERVAL.as_nanos() as u64);
        if self
            .next_probe
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another room took this probe
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        self.probe.store(0, Ordering::Release);
        self.probe_start
            .store(nanos_at(received).min(now), Ordering::Release);
        self.probe.store(frame.as_ptr() as usize, Ordering::Release);
        // The previous probe's bytes are released only now, after its
        // address stopped being published.
        *held = Some(frame.clone());
    }

    /// Called by a connection after writing `frames`: records the latency
    /// if the probe was among them.
    pub(crate) fn on_written(&self, frames: &[Frame]) {
        let probe = self.probe.load(Ordering::Acquire);
        let is_probe = |f: &Frame| matches!(f, Frame::Whole(b) if b.as_ptr() as usize == probe);
        if probe == 0 || !frames.iter().any(is_probe) {
            return;
        }
        let start = self.probe_start.load(Ordering::Acquire);
        // A probe replaced meanwhile may have paired a newer start with our
        // address; the frame we hold keeps our address from being reused,
        // so an unchanged address means an unchanged probe.
        if self.probe.load(Ordering::Acquire) != probe {
            return;
        }
        self.record(Duration::from_nanos(nanos().saturating_sub(start)));
    }

    pub(crate) fn record(&self, d: Duration) {
        self.live[bucket_of(d)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts of the second that just ended; starts a new one.
    pub(crate) fn take_second(&self) -> Vec<u64> {
        self.live
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect()
    }
}

fn bucket_of(d: Duration) -> usize {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    if us == 0 {
        return 0;
    }
    let octave = 63 - us.leading_zeros();
    // us / 2^octave is in [1, 2): its first two fraction bits pick the bucket.
    let sub = ((u128::from(us) << 2) >> octave) as u32 - PER_OCTAVE;
    let index = 1 + octave * PER_OCTAVE + sub;
    (index as usize).min(BUCKETS - 1)
}

/// The upper bound of a bucket.
fn bucket_upper(index: usize) -> Duration {
    if index == 0 {
        return Duration::from_micros(1);
    }
    let i = index as u32 - 1;
    let (octave, sub) = (i / PER_OCTAVE, i % PER_OCTAVE);
    let ns = (1000u128 << octave) * u128::from(PER_OCTAVE + sub + 1) / u128::from(PER_OCTAVE);
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// The last [`WINDOW_SECS`] seconds of counts.
#[derive(Debug, Default)]
pub(crate) struct Window {
    seconds: VecDeque<Vec<u64>>,
}

impl Window {
    pub(crate) fn push(&mut self, second: Vec<u64>) {
        if self.seconds.len() == WINDOW_SECS {
            self.seconds.pop_front();
        }
        self.seconds.push_back(second);
    }

    pub(crate) fn samples(&self) -> u64 {
        self.seconds.iter().flatten().sum()
    }

    /// The `q` quantile (0..=1), as its bucket's upper bound; `None`
    /// without samples.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.samples();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for i in 0..BUCKETS {
            seen += self
                .seconds
                .iter()
                .map(|s| s.get(i).copied().unwrap_or(0))
                .sum::<u64>();
            if seen >= rank {
                return Some(bucket_upper(i));
            }
        }
        Some(bucket_upper(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        for us in [1u64, 2, 3, 5, 7, 100, 999, 1000, 12_345, 1 << 20, 1 << 27] {
            let d = Duration::from_micros(us);
            let b = bucket_of(d);
            assert!(bucket_upper(b) >= d, "{us} µs in bucket {b}");
            assert!(b == 0 || bucket_upper(b - 1) <= d, "{us} µs in bucket {b}");
            // A bucket spans at most a quarter of its lower bound.
            assert!(bucket_upper(b).as_secs_f64() <= d.as_secs_f64() * 1.25 + 1e-6);
        }
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::from_secs(100_000)), BUCKETS - 1);
        for i in 1..BUCKETS {
            assert!(bucket_upper(i) > bucket_upper(i - 1));
        }
    }

    #[test]
    fn quantiles_come_from_the_last_ten_seconds_only() {
        let latency = Latency::default();
        let mut window = Window::default();
        assert_eq!(window.quantile(0.5), None);
        // An old second of very slow deliveries, then ten fast ones.
        latency.record(Duration::from_secs(2));
        window.push(latency.take_second());
        for _ in 0..WINDOW_SECS {
            for _ in 0..99 {
                latency.record(Duration::from_micros(100));
            }
            latency.record(Duration::from_millis(10));
            window.push(latency.take_second());
        }
        assert_eq!(window.samples(), 1000);
        let p50 = window.quantile(0.5).unwrap();
        let p99 = window.quantile(0.99).unwrap();
        let p100 = window.quantile(1.0).unwrap();
        assert!(p50 >= Duration::from_micros(100) && p50 < Duration::from_micros(130));
        assert!(p99 < Duration::from_millis(1), "{p99:?}");
        assert!(p100 >= Duration::from_millis(10) && p100 < Duration::from_millis(13));
    }

    #[test]
    fn only_a_write_of_the_probe_is_timed() {
        let latency = Latency::default();
        let probe = Bytes::from_static(b"{\"type\":\"chat\"}");
        let other = Bytes::from(b"{\"type\":\"chat\"}".to_vec());
        latency.maybe_probe(&probe, Instant::now());
        let whole = |b: &Bytes| Frame::Whole(b.clone());
        latency.on_written(&[whole(&other)]);
        assert_eq!(latency.take_second().iter().sum::<u64>(), 0);
        latency.on_written(&[whole(&other), whole(&probe)]);
        latency.on_written(&[whole(&probe)]);
        assert_eq!(latency.take_second().iter().sum::<u64>(), 2);
        // Until PROBE_INTERVAL passes, a second broadcast is not a probe.
        let second = Bytes::from(b"x".to_vec());
        latency.maybe_probe(&second, Instant::now());
        latency.on_written(&[whole(&second)]);
        latency.on_written(&[whole(&probe)]);
        assert_eq!(latency.take_second().iter().sum::<u64>(), 1);
    }
}
