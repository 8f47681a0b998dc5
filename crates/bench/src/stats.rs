//! Latency statistics: HdrHistograms, their percentiles, and the wire form
//! worker processes use to send them to the coordinator.
//!
//! All values are microseconds. A histogram keeps three significant digits
//! (0.1 % error) from 1 µs to one hour; per-second histograms for the
//! latency-over-time chart keep two, which is plenty for a chart.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::BenchError;

/// Largest latency recorded; larger values are clamped to it.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds that serializes as base64 text of the
/// HdrHistogram V2 encoding, so it can cross a process boundary in JSON.
#[derive(Debug, Clone)]
pub struct Hist(pub Histogram<u64>);

impl Hist {
    /// A histogram with three significant digits, for reported percentiles.
    pub fn precise() -> Hist {
        Hist::with_sigfig(3)
    }

    /// A histogram with two significant digits, for per-second chart points.
    pub fn coarse() -> Hist {
        Hist::with_sigfig(2)
    }

    fn with_sigfig(sigfig: u8) -> Hist {
        // Constant bounds within hdrhistogram's documented valid range.
        Hist(
            Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig)
                .expect("constant histogram bounds are valid"),
        )
    }

    /// Records one latency, clamped to the histogram's range.
    pub fn record(&mut self, us: u64) {
        self.0.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, other: &Hist) {
        // Both histograms share bounds; `add` can only fail if `other` holds
        // values this one cannot, and then per-value recording still works.
        if self.0.add(&other.0).is_err() {
            for v in other.0.iter_recorded() {
                self.0
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The usual percentiles, or `None` if nothing was recorded.
    pub fn latency(&self) -> Option<Latency> {
        if self.0.is_empty() {
            return None;
        }
        let h = &self.0;
        Some(Latency {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        })
    }

    /// Encodes as base64 of the V2 serialization.
    pub fn encode(&self) -> Result<String, BenchError> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(&self.0, &mut buf)
            .map_err(|e| BenchError::Histogram(format!("{e:?}")))?;
        Ok(BASE64.encode(buf))
    }

    /// Decodes what [`Hist::encode`] produced.
    pub fn decode(text: &str) -> Result<Hist, BenchError> {
        let bytes = BASE64
            .decode(text)
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| BenchError::Histogram(format!("{e:?}")))?;
        // Re-home into our standard bounds so merges never fail.
        let mut out = if h.sigfig() >= 3 {
            Hist::precise()
        } else {
            Hist::coarse()
        };
        out.merge(&Hist(h));
        Ok(out)
    }

    /// Log-spaced buckets (ten per decade) for the histogram chart.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut buckets: Vec<Bucket> = Vec::new();
        for v in self.0.iter_recorded() {
            let value = v.value_iterated_to().max(1);
            let decile = ((value as f64).log10() * 10.0).floor() as i32;
            let lo = 10f64.powf(decile as f64 / 10.0);
            let hi = 10f64.powf((decile + 1) as f64 / 10.0);
            match buckets.last_mut() {
                Some(b) if b.decile == decile => b.count += v.count_at_value(),
                _ => buckets.push(Bucket {
                    decile,
                    lo_us: lo,
                    hi_us: hi,
                    count: v.count_at_value(),
                }),
            }
        }
        buckets
    }
}

impl Default for Hist {
    fn default() -> Hist {
        Hist::precise()
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.encode().map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hist, D::Error> {
        let text = String::deserialize(d)?;
        Hist::decode(&text).map_err(serde::de::Error::custom)
    }
}

/// Percentiles of one latency distribution, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// One bar of the latency histogram chart: latencies in `[lo_us, hi_us)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// `floor(10·log10(lo_us))`, the bucket's position on the log axis.
    pub decile: i32,
    pub lo_us: f64,
    pub hi_us: f64,
    pub count: u64,
}

/// One point of the latency-over-time chart: deliveries received during
/// second `t` of a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub t: u32,
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Per-second histograms, indexed by second since the phase started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Series(pub Vec<Hist>);

/// Seconds of per-second data kept; later receipts go into the last second.
pub const MAX_SERIES_SECS: usize = 3600;

impl Series {
    pub fn record(&mut self, second: usize, us: u64) {
        let second = second.min(MAX_SERIES_SECS - 1);
        while self.0.len() <= second {
            self.0.push(Hist::coarse());
        }
        self.0[second].record(us);
    }

    pub fn merge(&mut self, other: &Series) {
        while self.0.len() < other.0.len() {
            self.0.push(Hist::coarse());
        }
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.merge(theirs);
        }
    }

    /// p50 and p99 per second, skipping empty seconds.
    pub fn points(&self) -> Vec<SeriesPoint> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(t, h)| {
                let l = h.latency()?;
                Some(SeriesPoint {
                    t: u32::try_from(t).unwrap_or(u32::MAX),
                    count: l.count,
                    p50_us: l.p50_us,
                    p99_us: l.p99_us,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut h = Hist::precise();
        assert!(h.latency().is_none());
        for us in 1..=10_000 {
            h.record(us);
        }
        let l = h.latency().unwrap();
        assert_eq!(l.count, 10_000);
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(l.p50_us, 5_000), "{l:?}");
        assert!(near(l.p90_us, 9_000), "{l:?}");
        assert!(near(l.p99_us, 9_900), "{l:?}");
        assert!(near(l.p999_us, 9_990), "{l:?}");
        assert!(near(l.max_us, 10_000), "{l:?}");
        assert!((l.mean_us - 5_000.5).abs() < 10.0);
        // Out-of-range values are clamped, not lost.
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.len(), 10_002);
    }

    #[test]
    fn worker_histograms_merge_through_json() {
        // Two workers each see half the deliveries.
        let mut a = Hist::precise();
        let mut b = Hist::precise();
        for us in 0..1000 {
            a.record(100 + us);
            b.record(5_000 + us);
        }
        let json_a = serde_json::to_string(&a).unwrap();
        let json_b = serde_json::to_string(&b).unwrap();
        let mut merged: Hist = serde_json::from_str(&json_a).unwrap();
        merged.merge(&serde_json::from_str::<Hist>(&json_b).unwrap());
        let l = merged.latency().unwrap();
        assert_eq!(l.count, 2000);
        assert!(l.p50_us >= 1_099 && l.p50_us <= 5_000, "{l:?}");
        assert!(l.max_us >= 5_995, "{l:?}");
        assert!(Hist::decode("not base64!").is_err());
    }

    #[test]
    fn series_and_buckets() {
        let mut s = Series::default();
        s.record(0, 1_000);
        s.record(2, 50_000);
        let mut other = Series::default();
        other.record(3, 7);
        s.merge(&other);
        let points = s.points();
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].t, 0);
        assert_eq!(points[1].t, 2);
        assert_eq!(points[2].t, 3);
        let back: Series = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.points(), points);

        let mut h = Hist::precise();
        h.record(10);
        h.record(11);
        h.record(1_000);
        let b = h.buckets();
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 3);
        assert_eq!(b.len(), 2);
        assert!(b[0].lo_us <= 10.0 && b[0].hi_us > 11.0);
    }
}
