//! The server under test, derived from `--url`: one node, or several nodes
//! of a cluster (`--url A --url B`, or `--url A,B`), over which clients are
//! spread round-robin.
//!
//! `ws://host:port[/prefix]` gives the WebSocket endpoint `{prefix}/ws` and
//! the metrics endpoint `http://host:port{prefix}/metrics`. Only plain `ws://`
//! is supported: the load generator measures the server, not TLS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::BenchError;

/// Where the server (or each node of a cluster) is, and how to address it.
#[derive(Debug)]
pub struct Target {
    /// The `--url`s as given (comma-separated), for the summary.
    pub url: String,
    /// At least one.
    pub nodes: Vec<Node>,
    /// The node the next client connects to.
    next: AtomicUsize,
    /// A connect token every client presents (`--token`), for servers with
    /// `--auth`.
    pub token: Option<String>,
    /// `host:port` of the cluster's Redis (`--redis`), whose `INFO` the
    /// server figures include.
    pub redis: Option<String>,
}

/// One node of the server under test.
#[derive(Debug, Clone)]
pub struct Node {
    pub url: String,
    /// `host:port` as written, for the `Host` header and request URIs.
    pub authority: String,
    /// Path prefix before `/ws` and `/metrics` (usually empty).
    pub prefix: String,
    /// The resolved address clients of this node connect to.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses `--url` (a comma-separated list of nodes) and resolves each
    /// host once.
    pub async fn resolve(urls: &str, token: Option<String>) -> Result<Target, BenchError> {
        let mut nodes = Vec::new();
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            nodes.push(Node::resolve(url).await?);
        }
        if nodes.is_empty() {
            return Err(BenchError::InvalidUrl {
                url: urls.to_owned(),
                reason: "no URL given".into(),
            });
        }
        Ok(Target::of(urls, nodes, token))
    }

    fn of(url: &str, nodes: Vec<Node>, token: Option<String>) -> Target {
        Target {
            url: url.to_owned(),
            nodes,
            next: AtomicUsize::new(0),
            token,
            redis: None,
        }
    }

    /// The node for the next client: round-robin.
    pub fn pick(&self) -> &Node {
        let i = self.next.fetch_add(1, Relaxed) % self.nodes.len();
        &self.nodes[i]
    }

    /// The WebSocket path and query for one client (the node's prefix goes
    /// in front when it connects).
    pub fn ws_path(&self, name: &str, room: &str) -> String {
        let mut path = format!("/ws?name={name}&room={room}");
        if let Some(token) = &self.token {
            path.push_str(&format!("&token={}", percent_encode(token)));
        }
        path
    }

    /// The WebSocket URL for a client that resumes after `since.0` in the
    /// stream `since.1` (`?since=ID&epoch=E`); a plain join without it.
    pub fn resume_path(&self, name: &str, room: &str, since: Option<(u64, &str)>) -> String {
        let mut path = self.ws_path(name, room);
        if let Some((id, epoch)) = since {
            path.push_str(&format!("&since={id}&epoch={}", percent_encode(epoch)));
        }
        path
    }
}

impl Node {
    async fn resolve(url: &str) -> Result<Node, BenchError> {
        let (authority, prefix) = split_url(url)?;
        let with_port = if has_port(&authority) {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let mut addrs =
            tokio::net::lookup_host(&with_port)
                .await
                .map_err(|e| BenchError::Resolve {
                    host: with_port.clone(),
                    reason: e.to_string(),
                })?;
        let addr = addrs.next().ok_or_else(|| BenchError::Resolve {
            host: with_port.clone(),
            reason: "no address".into(),
        })?;
        Ok(Node {
            url: url.to_owned(),
            authority,
            prefix,
            addr,
        })
    }

    /// The path of the Prometheus endpoint.
    pub fn metrics_path(&self) -> String {
        format!("{}/metrics", self.prefix)
    }
}

/// Splits `ws://host:port/prefix` into (`host:port`, `/prefix`).
pub fn split_url(url: &str) -> Result<(String, String), BenchError> {
    let invalid = |reason: &str| BenchError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = if let Some(rest) = url.strip_prefix("ws://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("wss://") || url.starts_with("https://") {
        return Err(invalid("TLS is not supported; use ws://"));
    } else {
        return Err(invalid("expected ws://host:port"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(invalid("missing host"));
    }
    if path.contains('?') || path.contains('#') {
        return Err(invalid("give the server's base URL without a query"));
    }
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix("/ws").unwrap_or(path);
    Ok((authority.to_owned(), path.to_owned()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (the
/// server's epochs are plain, but they are the server's to choose).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn has_port(authority: &str) -> bool {
    match authority.rfind(':') {
        // `[::1]` has colons but no port; `[::1]:3000` has one after `]`.
        Some(i) => !authority[i..].contains(']'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_paths() {
        let node = Node {
            url: "ws://h:1".into(),
            authority: "h:1".into(),
            prefix: String::new(),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let t = Target::of("ws://h:1", vec![node.clone()], None);
        assert_eq!(t.resume_path("n", "r", None), "/ws?name=n&room=r");
        assert_eq!(
            t.resume_path("n", "r", Some((42, "e+1"))),
            "/ws?name=n&room=r&since=42&epoch=e%2B1"
        );
        let with_token = Target::of("ws://h:1", vec![node], Some("a.b_c-d".into()));
        assert_eq!(
            with_token.ws_path("n", "r"),
            "/ws?name=n&room=r&token=a.b_c-d"
        );
    }

    #[tokio::test]
    async fn clients_are_spread_over_the_nodes_round_robin() {
        let t = Target::resolve("ws://127.0.0.1:1, ws://127.0.0.1:2/p", None)
            .await
            .unwrap();
        let ports: Vec<u16> = (0..5).map(|_| t.pick().addr.port()).collect();
        assert_eq!(ports, [1, 2, 1, 2, 1]);
        assert_eq!(t.nodes[1].metrics_path(), "/p/metrics");
        assert!(Target::resolve(" , ", None).await.is_err());
    }

    #[test]
    fn splits_urls() {
        let s = |u: &str| split_url(u).unwrap();
        assert_eq!(
            s("ws://127.0.0.1:3000"),
            ("127.0.0.1:3000".into(), "".into())
        );
        assert_eq!(
            s("ws://127.0.0.1:3000/"),
            ("127.0.0.1:3000".into(), "".into())
        );
        assert_eq!(
            s("ws://127.0.0.1:3000/ws"),
            ("127.0.0.1:3000".into(), "".into())
        );
        assert_eq!(s("ws://h:1/chat/ws"), ("h:1".into(), "/chat".into()));
        assert_eq!(s("http://h:1"), ("h:1".into(), "".into()));
        assert!(split_url("wss://h:1").is_err());
        assert!(split_url("h:1").is_err());
        assert!(split_url("ws://").is_err());
        assert_eq!(percent_encode("aZ0-._~"), "aZ0-._~");
        assert_eq!(percent_encode("a b&é"), "a%20b%26%C3%A9");
        assert!(has_port("[::1]:3000"));
        assert!(!has_port("[::1]"));
        assert!(!has_port("localhost"));
    }
}
