//! Who may watch the observer and who may act through it.
//!
//! - With `--admin-token` set, the stream and every action need
//!   `Authorization: Bearer <token>` (the page asks for the token once and
//!   keeps it in the tab's session storage). Wrong or missing: 401.
//! - Without a token, the observer is read-only and answers loopback
//!   clients only (403 to others); actions are refused with 403, because
//!   anything on the machine could otherwise kill rooms.
//!
//! The token is never logged (its `Debug` is redacted) and never travels in
//! a URL. [`access`] is the one place the decision is made, from the
//! request's headers and peer.
//! - With `--auth optional|required`, a valid session token whose `admin`
//!   claim is true is also an administrator's, from anywhere, beside (not
//!   instead of) `--admin-token`.

use std::net::SocketAddr;
use std::str::FromStr;

use std::borrow::Cow;

use axum::http::{HeaderMap, StatusCode};

use crate::auth::{Auth, AuthMode, bearer};

/// The `--admin-token` secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Compares in time independent of where the first difference is.
    fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl FromStr for AdminToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() < 8 {
            return Err("must be at least 8 characters".into());
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".into());
        }
        Ok(AdminToken(s.to_owned()))
    }
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Watch and act.
    Admin,
    /// Watch only (no token configured, loopback client).
    ReadOnly,
}

impl Access {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Access::Admin => "admin",
            Access::ReadOnly => "read_only",
        }
    }
}

/// Why a request was refused: its status and a sentence for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
}

/// Decides what a request to the observer may do.
pub(crate) fn access(
    headers: &HeaderMap,
    peer: SocketAddr,
    token: Option<&AdminToken>,
    auth: &Auth,
) -> Result<Access, Refused> {
    let offered = bearer(headers);
    if let Some(offered) = offered
        && auth.mode() != AuthMode::Off
        && !token.is_some_and(|t| t.matches(offered))
    {
        match auth.verify(offered) {
            Ok(user) if user.admin => return Ok(Access::Admin),
            // Not an administrator: what anyone else gets.
            Ok(_) => {}
            // Say why, unless it may have been a wrong admin token.
            Err(e) if token.is_none() => {
                return Err(Refused {
                    status: StatusCode::UNAUTHORIZED,
                    message: e.to_string().into(),
                });
            }
            Err(_) => {}
        }
    }
    match token {
        Some(token) => match offered {
            Some(offered) if token.matches(offered) => Ok(Access::Admin),
            Some(_) => Err(Refused {
                status: StatusCode::UNAUTHORIZED,
                message: "The admin token is wrong.".into(),
            }),
            None => Err(Refused {
                status: StatusCode::UNAUTHORIZED,
                message: "The observer needs the server's admin token (--admin-token).".into(),
            }),
        },
        None if peer.ip().to_canonical().is_loopback() => Ok(Access::ReadOnly),
        None => Err(Refused {
            status: StatusCode::FORBIDDEN,
            message: "Without --admin-token the observer is served to loopback clients only."
                .into(),
        }),
    }
}

/// Whether the `/observer` page itself may be served: to anyone when a
/// token is set (the page asks for it), else to loopback clients only.
pub(crate) fn may_see_page(peer: SocketAddr, token: Option<&AdminToken>) -> Result<(), Refused> {
    if token.is_some() || peer.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    Err(Refused {
        status: StatusCode::FORBIDDEN,
        message: "Without --admin-token the observer is served to loopback clients only.".into(),
    })
}

/// [`access`], then the stricter rule for actions: only [`Access::Admin`].
pub(crate) fn may_act(
    headers: &HeaderMap,
    peer: SocketAddr,
    token: Option<&AdminToken>,
    auth: &Auth,
) -> Result<(), Refused> {
    match access(headers, peer, token, auth)? {
        Access::Admin => Ok(()),
        Access::ReadOnly => Err(Refused {
            status: StatusCode::FORBIDDEN,
            message:
                "The observer is read-only: start the server with --admin-token to enable actions."
                    .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::{HeaderValue, header};

    const LOOPBACK: &str = "127.0.0.1:5000";
    const REMOTE: &str = "192.0.2.7:5000";

    fn off() -> Auth {
        Auth::new(&crate::auth::AuthConfig::default()).unwrap()
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn without_a_token_loopback_reads_and_nobody_acts() {
        let none = HeaderMap::new();
        assert_eq!(
            access(&none, peer(LOOPBACK), None, &off()),
            Ok(Access::ReadOnly)
        );
        assert_eq!(
            access(&none, peer("[::ffff:127.0.0.1]:1"), None, &off()),
            Ok(Access::ReadOnly)
        );
        assert_eq!(
            access(&none, peer("[::1]:1"), None, &off()),
            Ok(Access::ReadOnly)
        );
        let remote = access(&none, peer(REMOTE), None, &off()).unwrap_err();
        assert_eq!(remote.status, StatusCode::FORBIDDEN);
        let act = may_act(&bearer("anything-at-all"), peer(LOOPBACK), None, &off()).unwrap_err();
        assert_eq!(act.status, StatusCode::FORBIDDEN);
        assert!(may_see_page(peer(LOOPBACK), None).is_ok());
        assert!(may_see_page(peer(REMOTE), None).is_err());
    }

    #[test]
    fn with_a_token_only_the_bearer_of_it_gets_in_from_anywhere() {
        let token: AdminToken = "s3cret-token".parse().unwrap();
        let t = Some(&token);
        assert_eq!(
            access(&bearer("s3cret-token"), peer(REMOTE), t, &off()),
            Ok(Access::Admin)
        );
        assert_eq!(
            may_act(&bearer("s3cret-token"), peer(REMOTE), t, &off()),
            Ok(())
        );
        assert!(
            may_see_page(peer(REMOTE), t).is_ok(),
            "the page asks for the token"
        );
        for refused in [
            access(&bearer("s3cret-tokem"), peer(LOOPBACK), t, &off()),
            access(&bearer("s3cret"), peer(LOOPBACK), t, &off()),
            access(&HeaderMap::new(), peer(LOOPBACK), t, &off()),
        ] {
            assert_eq!(refused.unwrap_err().status, StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn the_token_is_checked_and_never_printed() {
        assert!("short".parse::<AdminToken>().is_err());
        assert!("has a space".parse::<AdminToken>().is_err());
        let token: AdminToken = "s3cret-token".parse().unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
