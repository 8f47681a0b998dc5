//! The server's own figures, read from its Prometheus `/metrics` endpoint.
//!
//! The load generator needs no PID and works against a remote server: memory
//! and CPU come from the standard `process_*` metrics. The parser is
//! deliberately tolerant: a metric that is missing or malformed is "n/a" in
//! the summary, never an error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::{Node, Target};

/// One sample line: `name{label="value",...} 12.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A parsed Prometheus text exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses Prometheus text format, skipping lines it does not understand.
    pub fn parse(text: &str) -> Exposition {
        let samples = text.lines().filter_map(parse_line).collect();
        Exposition { samples }
    }

    /// The sum of all samples named `name` (across labels), or `None`.
    pub fn get(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for s in self.samples.iter().filter(|s| s.name == name) {
            *found.get_or_insert(0.0) += s.value;
        }
        found
    }

    /// The sample named `name` whose `label` equals `value`.
    pub fn get_labeled(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels.iter().any(|(k, v)| k == label && v == value))
            .map(|s| s.value)
    }

    /// The histogram `name` (its `_bucket`, `_sum` and `_count` samples,
    /// summed over any labels other than `le`), or `None` if not exposed.
    pub fn histogram(&self, name: &str) -> Option<PromHistogram> {
        let bucket = format!("{name}_bucket");
        let mut bounds: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            let Some((_, le)) = s.labels.iter().find(|(k, _)| k == "le") else {
                continue;
            };
            let Ok(le) = le.parse::<f64>() else {
                continue;
            };
            if !le.is_finite() {
                continue;
            }
            // Keyed by the bound's bits so equal bounds of several label
            // sets add up; positive floats order like their bits.
            let entry = bounds.entry(le.to_bits()).or_insert((le, 0.0));
            entry.1 += s.value;
        }
        let count = self.get(&format!("{name}_count"))?;
        let sum = self.get(&format!("{name}_sum"))?;
        let mut buckets: Vec<(f64, f64)> = bounds.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(PromHistogram {
            buckets,
            sum,
            count,
        })
    }

    /// Every value of `label` on samples named `name`, summed per label value.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == name) {
            if let Some((_, v)) = s.labels.iter().find(|(k, _)| k == label) {
                *out.entry(v.clone()).or_insert(0.0) += s.value;
            }
        }
        out
    }
}

/// A Prometheus histogram as exposed: cumulative bucket counts by upper
/// bound (`le`), the sum and the count of observations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromHistogram {
    /// `(le, cumulative count)` of the finite bounds, ascending by `le`
    /// (the `+Inf` bucket is `count`; JSON has no infinity).
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl PromHistogram {
    /// What was observed between `before` and `self` (both scraped from the
    /// same server): bucket by bucket, sum and count.
    pub fn since(&self, before: &PromHistogram) -> PromHistogram {
        let earlier = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| b.to_bits() == le.to_bits())
                .map_or(0.0, |(_, n)| *n)
        };
        PromHistogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| (le, (n - earlier(le)).max(0.0)))
                .collect(),
            sum: (self.sum - before.sum).max(0.0),
            count: (self.count - before.count).max(0.0),
        }
    }

    /// Adds another server's observations (same buckets: same binary).
    fn add(&mut self, other: &PromHistogram) {
        for (le, n) in &mut self.buckets {
            if let Some((_, m)) = other
                .buckets
                .iter()
                .find(|(b, _)| b.to_bits() == le.to_bits())
            {
                *n += m;
            }
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The mean observation, `None` if there was none.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// Estimates the `q` quantile as Prometheus' `histogram_quantile` does:
    /// linear interpolation inside the bucket that holds it (from 0 for the
    /// first bucket). A quantile above the highest finite bound is that
    /// bound: the histogram cannot say more. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantile_in(q).map(|q| q.estimate)
    }

    /// The `q` quantile with the bounds of the bucket that holds it, which
    /// say how much the estimate is worth.
    pub fn quantile_in(&self, q: f64) -> Option<Quantile> {
        let total = self.buckets.last().map_or(0.0, |b| b.1).max(self.count);
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > lower.1 {
                let within = (rank - lower.1) / (cumulative - lower.1);
                return Some(Quantile {
                    estimate: lower.0 + (le - lower.0) * within.clamp(0.0, 1.0),
                    lower: lower.0,
                    upper: Some(le),
                });
            }
            lower = (le, cumulative);
        }
        Some(Quantile {
            estimate: lower.0,
            lower: lower.0,
            upper: None,
        })
    }

    /// Mean, p50 and p99, `None` if nothing was observed.
    pub fn summary(&self) -> Option<HistogramSummary> {
        Some(HistogramSummary {
            count: self.count,
            mean: self.mean()?,
            p50: self.quantile_in(0.50)?,
            p99: self.quantile_in(0.99)?,
        })
    }
}

/// A quantile estimated from buckets: the estimate, and the bucket it lies
/// in (`upper` `None`: above the highest finite bound).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantile {
    pub estimate: f64,
    pub lower: f64,
    pub upper: Option<f64>,
}

impl Quantile {
    /// For people: `≤ upper` in the first bucket (interpolating from zero
    /// would invent precision), `> lower` above the last bound, else the
    /// estimate. `unit` formats a value.
    pub fn show(&self, unit: impl Fn(f64) -> String) -> String {
        match self.upper {
            None => format!("> {}", unit(self.lower)),
            Some(upper) if self.lower <= 0.0 => format!("≤ {}", unit(upper)),
            Some(_) => unit(self.estimate),
        }
    }
}

/// A server histogram over a run, in the histogram's own unit (seconds,
/// messages); the quantiles are estimated from its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistogramSummary {
    pub count: f64,
    /// Exact: Δsum / Δcount.
    pub mean: f64,
    pub p50: Quantile,
    pub p99: Quantile,
}

/// The history histograms a snapshot keeps (issue 11's server metrics).
pub const HISTORY_HISTOGRAMS: [&str; 3] = [COMMIT_MESSAGES, COMMIT_SECONDS, RESUME_SECONDS];
/// Messages per storage commit (transaction).
pub const COMMIT_MESSAGES: &str = "actorchat_history_commit_messages";
/// Duration of one storage commit, seconds.
pub const COMMIT_SECONDS: &str = "actorchat_history_commit_seconds";
/// Server side of a resume: from the request to its welcome being queued.
pub const RESUME_SECONDS: &str = "actorchat_history_resume_seconds";

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    // Value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y\"z"}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

/// The server figures the summary reports, each `None` when not exposed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSnapshot {
    pub resident_memory_bytes: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub connections: Option<f64>,
    pub slow_consumer_disconnects: Option<f64>,
    pub deliveries: Option<f64>,
    pub broadcasts: Option<f64>,
    /// `actorchat_errors_total` by `code`.
    pub errors: BTreeMap<String, f64>,
    /// Messages persisted (`actorchat_history_appends_total`).
    #[serde(default)]
    pub history_appends: Option<f64>,
    #[serde(default)]
    pub history_write_errors: Option<f64>,
    /// `actorchat_history_resumes_total` by `result` (`recovered`,
    /// `not_recovered`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub history_resumes: BTreeMap<String, f64>,
    /// The [`HISTORY_HISTOGRAMS`] the server exposes, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms: BTreeMap<String, PromHistogram>,
    /// The cluster's Redis (`--redis`): CPU seconds (user + system) and
    /// memory in use, from its `INFO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_cpu_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_used_memory_bytes: Option<f64>,
    /// Each node's own figures when the target is several nodes (the
    /// fields above are then their sums).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeFigures>,
}

/// One node's figures in a multi-node run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeFigures {
    pub url: String,
    pub resident_memory_bytes: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub connections: Option<f64>,
    pub deliveries: Option<f64>,
}

impl ServerSnapshot {
    pub fn from_exposition(e: &Exposition) -> ServerSnapshot {
        ServerSnapshot {
            resident_memory_bytes: e.get("process_resident_memory_bytes"),
            cpu_seconds: e.get("process_cpu_seconds_total"),
            connections: e.get("actorchat_connections"),
            slow_consumer_disconnects: e.get("actorchat_slow_consumer_disconnects_total"),
            deliveries: e.get("actorchat_deliveries_total"),
            broadcasts: e.get("actorchat_broadcasts_total"),
            errors: e.by_label("actorchat_errors_total", "code"),
            history_appends: e.get("actorchat_history_appends_total"),
            history_write_errors: e.get("actorchat_history_write_errors_total"),
            history_resumes: e.by_label("actorchat_history_resumes_total", "result"),
            histograms: HISTORY_HISTOGRAMS
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), e.histogram(name)?)))
                .collect(),
            redis_cpu_seconds: None,
            redis_used_memory_bytes: None,
            nodes: Vec::new(),
        }
    }

    /// The cluster's figures: each node's summed, and listed per node.
    fn sum(parts: Vec<(String, ServerSnapshot)>) -> ServerSnapshot {
        fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            }
        }
        fn merge(into: &mut BTreeMap<String, f64>, from: &BTreeMap<String, f64>) {
            for (k, v) in from {
                *into.entry(k.clone()).or_default() += v;
            }
        }
        let mut total = ServerSnapshot::default();
        for (url, s) in parts {
            total.resident_memory_bytes = add(total.resident_memory_bytes, s.resident_memory_bytes);
            total.cpu_seconds = add(total.cpu_seconds, s.cpu_seconds);
            total.connections = add(total.connections, s.connections);
            total.slow_consumer_disconnects =
                add(total.slow_consumer_disconnects, s.slow_consumer_disconnects);
            total.deliveries = add(total.deliveries, s.deliveries);
            total.broadcasts = add(total.broadcasts, s.broadcasts);
            total.history_appends = add(total.history_appends, s.history_appends);
            total.history_write_errors = add(total.history_write_errors, s.history_write_errors);
            merge(&mut total.errors, &s.errors);
            merge(&mut total.history_resumes, &s.history_resumes);
            for (name, h) in &s.histograms {
                match total.histograms.get_mut(name) {
                    Some(sum) => sum.add(h),
                    None => {
                        total.histograms.insert(name.clone(), h.clone());
                    }
                }
            }
            total.nodes.push(NodeFigures {
                url,
                resident_memory_bytes: s.resident_memory_bytes,
                cpu_seconds: s.cpu_seconds,
                connections: s.connections,
                deliveries: s.deliveries,
            });
        }
        total
    }

    /// The change of histogram `name` from `before` to `self`.
    pub fn histogram_since(
        &self,
        before: Option<&ServerSnapshot>,
        name: &str,
    ) -> Option<PromHistogram> {
        let now = self.histograms.get(name)?;
        Some(match before.and_then(|b| b.histograms.get(name)) {
            Some(earlier) => now.since(earlier),
            None => now.clone(),
        })
    }
}

/// `after - before` when both exist.
pub fn delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// Why `/metrics` could not be read (reported as a note, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("could not reach {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("timed out reading {0}")]
    Timeout(String),
    #[error("{0} answered {1}")]
    Status(String, String),
    #[error("{0}: malformed HTTP response")]
    Malformed(String),
}

/// Reads and parses the server's `/metrics`.
pub async fn scrape(target: &Target) -> Result<ServerSnapshot, MetricsError> {
    let mut parts = Vec::with_capacity(target.nodes.len());
    for node in &target.nodes {
        let text = fetch(node).await?;
        parts.push((
            node.url.clone(),
            ServerSnapshot::from_exposition(&Exposition::parse(&text)),
        ));
    }
    let mut snapshot = match parts.len() {
        1 => parts.pop().map(|(_, s)| s).unwrap_or_default(),
        _ => ServerSnapshot::sum(parts),
    };
    if let Some(redis) = &target.redis {
        let info = redis_info(redis).await?;
        let field = |name: &str| {
            info.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        };
        snapshot.redis_cpu_seconds = field("used_cpu_user")
            .zip(field("used_cpu_sys"))
            .map(|(user, sys)| user + sys);
        snapshot.redis_used_memory_bytes = field("used_memory");
    }
    Ok(snapshot)
}

/// Redis's `INFO` text, read with one RESP request (no client library).
async fn redis_info(authority: &str) -> Result<String, MetricsError> {
    let url = format!("redis://{authority}");
    let io = |e| MetricsError::Io(url.clone(), e);
    let read = async {
        let mut stream = TcpStream::connect(authority).await.map_err(io)?;
        stream.write_all(b"INFO\r\nQUIT\r\n").await.map_err(io)?;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        match text.strip_prefix('$') {
            Some(rest) => Ok(rest
                .split_once("\r\n")
                .map_or(String::new(), |(_, body)| body.to_owned())),
            None => Err(MetricsError::Malformed(url.clone())),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| Err(MetricsError::Timeout(url.clone())))
}

/// A minimal HTTP/1.1 GET of `/metrics` (one request per connection), so the
/// load generator needs no HTTP client library.
pub async fn fetch(node: &Node) -> Result<String, MetricsError> {
    let url = format!("http://{}{}", node.authority, node.metrics_path());
    tokio::time::timeout(Duration::from_secs(10), fetch_inner(node, &url))
        .await
        .unwrap_or_else(|_| Err(MetricsError::Timeout(url.clone())))
}

async fn fetch_inner(node: &Node, url: &str) -> Result<String, MetricsError> {
    let io = |e| MetricsError::Io(url.to_owned(), e);
    let mut stream = TcpStream::connect(node.addr).await.map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        node.metrics_path(),
        node.authority
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw).await {
        // A reset after the response arrived still leaves a usable response.
        if raw.is_empty() {
            return Err(io(e));
        }
    }
    parse_http_response(&raw).map_err(|e| match e {
        HttpError::Status(s) => MetricsError::Status(url.to_owned(), s),
        HttpError::Malformed => MetricsError::Malformed(url.to_owned()),
    })
}

#[derive(Debug)]
enum HttpError {
    Status(String),
    Malformed,
}

fn parse_http_response(raw: &[u8]) -> Result<String, HttpError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(HttpError::Malformed)?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| HttpError::Malformed)?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().ok_or(HttpError::Malformed)?;
    let code = status
        .split_whitespace()
        .nth(1)
        .ok_or(HttpError::Malformed)?;
    if code != "200" {
        return Err(HttpError::Status(status.to_owned()));
    }
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(HttpError::Malformed)?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| HttpError::Malformed)?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| HttpError::Malformed)?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or(HttpError::Malformed)?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or(HttpError::Malformed)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2345e7
process_cpu_seconds_total 3.5 1700000000000
actorchat_connections 1000
actorchat_deliveries_total{room="lobby"} 10
actorchat_deliveries_total{room="x"} 5
actorchat_errors_total{code="rate_limited"} 7
actorchat_errors_total{code="invalid_json",path="a\"b}"} 2
actorchat_queue_depth_bucket{le="+Inf"} 3
garbage line without value
{"not":"prometheus"}
weird_metric NaNx
"#;

    #[test]
    fn parses_prometheus_text() {
        let e = Exposition::parse(TEXT);
        assert_eq!(e.get("process_resident_memory_bytes"), Some(12_345_000.0));
        assert_eq!(e.get("process_cpu_seconds_total"), Some(3.5));
        assert_eq!(e.get("actorchat_deliveries_total"), Some(15.0));
        assert_eq!(
            e.get_labeled("actorchat_errors_total", "code", "rate_limited"),
            Some(7.0)
        );
        assert_eq!(
            e.get_labeled("actorchat_errors_total", "code", "nope"),
            None
        );
        let errors = e.by_label("actorchat_errors_total", "code");
        assert_eq!(errors.get("invalid_json"), Some(&2.0));
        assert_eq!(e.get("actorchat_queue_depth_bucket"), Some(3.0));
        assert_eq!(e.get("weird_metric"), None);
        let inner = e
            .samples
            .iter()
            .find(|s| s.labels.iter().any(|(k, _)| k == "path"))
            .unwrap();
        assert_eq!(inner.labels[1].1, "a\"b}");
    }

    #[test]
    fn missing_metrics_are_none() {
        let s = ServerSnapshot::from_exposition(&Exposition::parse(TEXT));
        assert_eq!(s.connections, Some(1000.0));
        assert_eq!(s.slow_consumer_disconnects, None);
        assert_eq!(s.broadcasts, None);
        let empty = ServerSnapshot::from_exposition(&Exposition::parse(""));
        assert_eq!(empty, ServerSnapshot::default());
        assert_eq!(delta(Some(1.0), Some(3.5)), Some(2.5));
        assert_eq!(delta(None, Some(3.5)), None);
    }

    const HISTOGRAM: &str = r#"# TYPE actorchat_history_commit_seconds histogram
actorchat_history_commit_seconds_bucket{le="0.001"} 10
actorchat_history_commit_seconds_bucket{le="0.01"} 90
actorchat_history_commit_seconds_bucket{le="0.1"} 100
actorchat_history_commit_seconds_bucket{le="+Inf"} 100
actorchat_history_commit_seconds_sum 0.5
actorchat_history_commit_seconds_count 100
actorchat_history_resumes_total{result="recovered"} 4
actorchat_history_resumes_total{result="not_recovered"} 1
actorchat_history_appends_total 1234
"#;

    #[test]
    fn histograms_give_mean_and_interpolated_quantiles() {
        let e = Exposition::parse(HISTOGRAM);
        let h = e.histogram(COMMIT_SECONDS).unwrap();
        assert_eq!(h.buckets.len(), 3);
        assert_eq!(h.mean(), Some(0.005));
        // Rank 50 of 100 lies in (0.001, 0.01]: 40 of its 80 observations in.
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - (0.001 + 0.009 * 0.5)).abs() < 1e-12, "{p50}");
        // Rank 99 lies in (0.01, 0.1]: 9 of its 10.
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - (0.01 + 0.09 * 0.9)).abs() < 1e-12, "{p99}");
        // The first bucket interpolates from zero.
        assert!((h.quantile(0.05).unwrap() - 0.0005).abs() < 1e-12);
        assert_eq!(e.histogram("nope"), None);

        let s = ServerSnapshot::from_exposition(&e);
        assert_eq!(s.history_appends, Some(1234.0));
        assert_eq!(s.history_resumes.get("recovered"), Some(&4.0));
        // A delta against an earlier scrape: only what happened in between.
        let mut earlier = h.clone();
        earlier.buckets = vec![(0.001, 10.0), (0.01, 10.0), (0.1, 10.0)];
        earlier.sum = 0.005;
        earlier.count = 10.0;
        let before = ServerSnapshot {
            histograms: [(COMMIT_SECONDS.to_owned(), earlier)].into(),
            ..ServerSnapshot::default()
        };
        let d = s.histogram_since(Some(&before), COMMIT_SECONDS).unwrap();
        assert_eq!(d.count, 90.0);
        assert_eq!(d.buckets[0].1, 0.0);
        assert_eq!(d.buckets[1].1, 80.0);
        let summary = d.summary().unwrap();
        assert!((summary.mean - 0.495 / 90.0).abs() < 1e-12);
        assert!(summary.p50.estimate > 0.001 && summary.p50.estimate <= 0.01);
        assert_eq!((summary.p50.lower, summary.p50.upper), (0.001, Some(0.01)));
        // Observations only in +Inf: the highest finite bound.
        let inf = PromHistogram {
            buckets: vec![(1.0, 0.0)],
            sum: 30.0,
            count: 3.0,
        };
        assert_eq!(inf.quantile(0.5), Some(1.0));
        let ms = |v: f64| format!("{} ms", v * 1e3);
        assert_eq!(inf.quantile_in(0.5).unwrap().show(ms), "> 1000 ms");
        // In the first bucket: only its bound is known.
        let first = h.quantile_in(0.05).unwrap();
        assert_eq!(first.show(ms), "≤ 1 ms");
        assert_eq!(
            h.quantile_in(0.5).unwrap().show(|v| format!("{v:.4}")),
            "0.0055"
        );
        assert_eq!(PromHistogram::default().summary(), None);
        // The JSON form round-trips (worker processes never send these, but
        // the summary does).
        let json = serde_json::to_string(&s).unwrap();
        let back: ServerSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back.histograms.len(), 1);
    }

    #[test]
    fn parses_http_responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\na 1\n\n";
        assert_eq!(parse_http_response(plain).unwrap(), "a 1\n\n");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na 1\n\r\n4\r\nb 2\n\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(chunked).unwrap(), "a 1\nb 2\n");
        assert!(matches!(
            parse_http_response(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(HttpError::Status(_))
        ));
        assert!(parse_http_response(b"garbage").is_err());
        assert!(
            parse_http_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                .is_err()
        );
    }
}
