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

use crate::target::Target;

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
        }
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
    let text = fetch(target).await?;
    Ok(ServerSnapshot::from_exposition(&Exposition::parse(&text)))
}

/// A minimal HTTP/1.1 GET of `/metrics` (one request per connection), so the
/// load generator needs no HTTP client library.
pub async fn fetch(target: &Target) -> Result<String, MetricsError> {
    let url = format!("http://{}{}", target.authority, target.metrics_path());
    tokio::time::timeout(Duration::from_secs(10), fetch_inner(target, &url))
        .await
        .unwrap_or_else(|_| Err(MetricsError::Timeout(url.clone())))
}

async fn fetch_inner(target: &Target, url: &str) -> Result<String, MetricsError> {
    let io = |e| MetricsError::Io(url.to_owned(), e);
    let mut stream = TcpStream::connect(target.addr).await.map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        target.metrics_path(),
        target.authority
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
