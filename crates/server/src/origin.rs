//! Which web pages may open a WebSocket to this server (`--allowed-origins`).
//!
//! Why: a browser sends the visitor's cookies and network position with a
//! WebSocket upgrade from any page, and WebSockets are not covered by the
//! same-origin policy. Without a check, any site a visitor opens could chat
//! through the visitor's browser under the visitor's name (cross-site
//! WebSocket hijacking). Browsers always send `Origin` on an upgrade and
//! pages cannot forge it, so checking it is enough.
//!
//! Policy, in order:
//! 1. no `Origin` header: allowed (not a browser: the bench, curl, bots);
//! 2. the origin names the request's own `Host` (same-origin): allowed;
//! 3. the origin matches an entry of the list (`scheme://host:port`, where
//!    the port may be `*`, or the entry is `*` for everything): allowed;
//! 4. anything else: HTTP 403 before the upgrade.

/// The parsed `--allowed-origins` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowedOrigins {
    any: bool,
    entries: Vec<Pattern>,
}

/// One entry: scheme and host exact (ASCII case-insensitive), port exact or any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    scheme: String,
    host: String,
    /// `None` matches every port, the default one included.
    port: Option<String>,
}

impl AllowedOrigins {
    /// Parses a comma-separated list; empty entries are ignored.
    pub(crate) fn parse(list: &str) -> Result<Self, String> {
        let mut allowed = AllowedOrigins {
            any: false,
            entries: Vec::new(),
        };
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                allowed.any = true;
                continue;
            }
            let (scheme, rest) = entry.split_once("://").ok_or_else(|| {
                format!("{entry:?} is not an origin like http://example.com:8080 (or *)")
            })?;
            if scheme.is_empty() || rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "{entry:?} is not an origin like http://example.com:8080 (no path, no trailing slash)"
                ));
            }
            let (host, port) = split_port(rest);
            let port = match port {
                Some("*") => None,
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    Some(p.to_owned())
                }
                Some(p) => return Err(format!("{entry:?} has an invalid port {p:?}")),
                None => Some(default_port(scheme).to_owned()),
            };
            allowed.entries.push(Pattern {
                scheme: scheme.to_ascii_lowercase(),
                host: host.to_ascii_lowercase(),
                port,
            });
        }
        Ok(allowed)
    }

    /// Whether a page of `origin` may upgrade a request that carried `host`.
    /// `Err` carries the reason, for the log and the 403 body.
    pub(crate) fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), String> {
        let Some(origin) = origin else {
            return Ok(());
        };
        if self.any {
            return Ok(());
        }
        let Some((scheme, rest)) = origin.split_once("://") else {
            return Err(format!("the Origin {origin:?} is not an origin"));
        };
        let scheme = scheme.to_ascii_lowercase();
        let (o_host, o_port) = split_port(rest);
        let o_host = o_host.to_ascii_lowercase();
        let o_port = o_port.unwrap_or(default_port(&scheme));
        if let Some(host) = host {
            // The Host header has no scheme; the page's origin matches it when
            // host and port agree (default port of the page's scheme if absent).
            let (h_host, h_port) = split_port(host);
            if h_host.eq_ignore_ascii_case(&o_host)
                && h_port.unwrap_or(default_port(&scheme)) == o_port
            {
                return Ok(());
            }
        }
        let listed = self.entries.iter().any(|p| {
            p.scheme == scheme && p.host == o_host && p.port.as_deref().is_none_or(|p| p == o_port)
        });
        if listed {
            Ok(())
        } else {
            Err(format!(
                "the page's origin {origin:?} is neither this server's own ({}) nor in --allowed-origins",
                host.unwrap_or("no Host header")
            ))
        }
    }
}

/// Splits `host[:port]`, minding IPv6 literals (`[::1]:3000`).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let host = &authority[..=end];
                let port = authority[end + 1..].strip_prefix(':');
                (host, port)
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

fn default_port(scheme: &str) -> &'static str {
    match scheme {
        "https" | "wss" => "443",
        _ => "80",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn defaults() -> AllowedOrigins {
        AllowedOrigins::parse("http://localhost:*,http://127.0.0.1:*").unwrap()
    }

    #[test]
    fn no_origin_header_is_not_a_browser_and_is_allowed() {
        assert!(defaults().check(None, Some("chat.example:3000")).is_ok());
        assert!(defaults().check(None, None).is_ok());
    }

    #[test]
    fn the_servers_own_origin_is_allowed() {
        let d = defaults();
        assert!(
            d.check(Some("http://chat.example:3000"), Some("chat.example:3000"))
                .is_ok()
        );
        assert!(
            d.check(Some("https://Chat.Example"), Some("chat.example"))
                .is_ok()
        );
        assert!(
            d.check(Some("http://[::1]:3000"), Some("[::1]:3000"))
                .is_ok()
        );
        // Same host, other port: another origin.
        assert!(
            d.check(Some("http://chat.example:4000"), Some("chat.example:3000"))
                .is_err()
        );
    }

    #[test]
    fn loopback_pages_on_any_port_are_allowed_by_default() {
        let d = defaults();
        assert!(
            d.check(Some("http://127.0.0.1:5173"), Some("127.0.0.1:3000"))
                .is_ok()
        );
        assert!(
            d.check(Some("http://localhost"), Some("example.org"))
                .is_ok()
        );
        assert!(
            d.check(Some("https://localhost:5173"), Some("127.0.0.1:3000"))
                .is_err(),
            "the scheme is part of the origin"
        );
    }

    #[test]
    fn other_sites_are_refused_with_a_reason() {
        let why = defaults()
            .check(Some("https://evil.example"), Some("127.0.0.1:3000"))
            .unwrap_err();
        assert!(why.contains("evil.example"), "{why}");
        assert!(
            defaults()
                .check(Some("null"), Some("127.0.0.1:3000"))
                .is_err()
        );
    }

    #[test]
    fn star_allows_everything_and_exact_ports_are_exact() {
        let any = AllowedOrigins::parse("*").unwrap();
        assert!(any.check(Some("https://evil.example"), None).is_ok());
        let one = AllowedOrigins::parse("https://app.example:8443, https://www.example").unwrap();
        assert!(one.check(Some("https://app.example:8443"), None).is_ok());
        assert!(one.check(Some("https://app.example:8444"), None).is_err());
        assert!(one.check(Some("https://www.example"), None).is_ok());
        assert!(one.check(Some("https://www.example:443"), None).is_ok());
    }

    #[test]
    fn malformed_entries_are_configuration_errors() {
        for bad in ["example.com", "http://", "http://a.example/", "http://a:b"] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            AllowedOrigins::parse("").unwrap(),
            AllowedOrigins::parse(" , ").unwrap()
        );
    }

    proptest! {
        /// Whatever a hostile page or client puts in the headers, the check
        /// answers (no panic), and a foreign origin is never allowed by the
        /// defaults.
        #[test]
        fn any_header_values_get_an_answer(origin in ".{0,60}", host in ".{0,40}") {
            let d = defaults();
            let _ = d.check(Some(&origin), Some(&host));
            let _ = d.check(Some(&origin), None);
            let foreign = format!("https://x{}.evil.example", origin.len());
            prop_assert!(d.check(Some(&foreign), Some("127.0.0.1:3000")).is_err());
        }
    }
}
