//! Identity: who a session speaks for, from a signed connect token (JWT)
//! issued by the application's own backend (see docs/auth.md).
//!
//! Policy, in one place:
//! - `--auth off` (the default): no tokens; anyone connects under any name,
//!   exactly as before identities existed. A token sent anyway is ignored.
//! - `optional`: guests connect as before; a token, if presented, must be
//!   valid, and makes the session a verified user.
//! - `required`: no valid token, no connection.
//!
//! A refused token is answered before the WebSocket upgrade (HTTP 401, with
//! a sentence saying why), so a client never holds a socket it may not use.
//! The accepted algorithms are exactly those whose keys are configured,
//! never chosen by the token. Tokens are secrets: they are never logged, and
//! types that hold one redact it in `Debug`.

mod claims;
mod issue;
pub(crate) mod routes;
mod verify;

use std::path::PathBuf;

use axum::http::{HeaderMap, StatusCode, header};
use clap::Args;

pub use claims::{RoomGrant, RoomPattern, User};
pub use issue::{TokenArgs, issue};
pub(crate) use verify::Verifier;

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthMode {
    #[default]
    Off,
    Optional,
    Required,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::Optional => "optional",
            AuthMode::Required => "required",
        }
    }
}

/// Where the keys are and what a token must say, shared by the server and
/// `actorchat token`.
#[derive(Debug, Clone, Default, Args)]
pub struct KeyConfig {
    /// File holding the HS256 shared secret (at least 32 bytes; surrounding
    /// whitespace is ignored). Enables HS256 tokens.
    #[arg(long, env = "ACTORCHAT_AUTH_HS256_SECRET_FILE")]
    pub auth_hs256_secret_file: Option<PathBuf>,

    /// PEM file with the public key that verifies tokens: an RSA key enables
    /// RS256, a P-256 EC key enables ES256.
    #[arg(long, env = "ACTORCHAT_AUTH_PUBLIC_KEY_FILE")]
    pub auth_public_key_file: Option<PathBuf>,

    /// When set, a token's `aud` must name this audience.
    #[arg(long, env = "ACTORCHAT_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// When set, a token's `iss` must be this issuer.
    #[arg(long, env = "ACTORCHAT_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
}

/// The server's authentication options.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthConfig {
    /// Who may connect: `off` (anyone, any name), `optional` (guests, and
    /// verified users with a valid token) or `required` (a valid token only).
    #[arg(long, env = "ACTORCHAT_AUTH", value_enum, default_value_t = AuthMode::Off)]
    pub auth: AuthMode,

    #[command(flatten)]
    pub keys: KeyConfig,

    /// Clock skew allowed when checking `exp` and `nbf`, in seconds (0 to 30).
    #[arg(
        long,
        env = "ACTORCHAT_AUTH_LEEWAY_SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(0..=30)
    )]
    pub auth_leeway_secs: u64,
}

/// Authentication could not be set up: the server does not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("--auth {mode} needs a key: --auth-hs256-secret-file and/or --auth-public-key-file")]
    NoKey { mode: &'static str },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("cannot sign the token: {0}")]
    Sign(String),
    #[error("{0}")]
    Usage(String),
}

/// Why a token was refused, as a sentence for the person holding it (and
/// the operator's log): never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "The token is not a well-formed JWT (three base64url parts: header, claims, signature)."
    )]
    Malformed,
    #[error("The token is longer than {max} bytes.", max = actorchat_protocol::MAX_TOKEN_BYTES)]
    TooLong,
    #[error("The token's algorithm {alg} is not allowed here; this server accepts {allowed}.")]
    Algorithm { alg: String, allowed: String },
    #[error("The token's signature is not valid for this server's key.")]
    BadSignature,
    #[error("The token has expired.")]
    Expired,
    #[error("The token is not valid yet (its `nbf` is in the future).")]
    NotYetValid,
    #[error("The token lacks the required claim `{0}`.")]
    MissingClaim(String),
    #[error("The token is for another audience (`aud`).")]
    WrongAudience,
    #[error("The token is from another issuer (`iss`).")]
    WrongIssuer,
    #[error("The token's claim `{claim}` {reason}.")]
    BadClaim { claim: &'static str, reason: String },
    #[error("This server does not accept tokens (--auth off).")]
    NotAccepted,
}

impl TokenError {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed | TokenError::TooLong => "malformed",
            TokenError::Algorithm { .. } => "algorithm",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::WrongAudience => "audience",
            TokenError::WrongIssuer => "issuer",
            TokenError::BadClaim { .. } => "bad_claim",
            TokenError::NotAccepted => "not_accepted",
        }
    }
}

/// A request refused for its credentials: 401 (no valid token) or 403
/// (valid, but not for this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    /// One of [`Refusal::REASONS`], for metrics and logs.
    pub reason: &'static str,
}

impl Refusal {
    /// Every reason label: a token's ([`TokenError::reason`]), no token
    /// where one is required, and a room the token does not grant.
    pub const REASONS: [&'static str; 12] = [
        "malformed",
        "algorithm",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "missing_claim",
        "audience",
        "issuer",
        "bad_claim",
        "not_accepted",
        "no_token",
        "forbidden_room",
    ];

    pub fn forbidden(room: &str) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            message: forbidden_room(room),
            reason: "forbidden_room",
        }
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: e.to_string(),
            reason: e.reason(),
        }
    }
}

/// The sentence for a room outside a token's `rooms`.
pub fn forbidden_room(room: &str) -> String {
    format!("Your token does not grant the room {room}.")
}

/// The server's authentication: its mode and, unless off, its keys.
pub struct Auth {
    mode: AuthMode,
    verifier: Option<Verifier>,
}

impl Auth {
    /// Reads the keys; a mode other than `off` without a key, or a key that
    /// cannot be read, stops the start.
    pub fn new(config: &AuthConfig) -> Result<Auth, AuthError> {
        let verifier = match config.auth {
            AuthMode::Off => None,
            mode => {
                let verifier = Verifier::new(&config.keys, config.auth_leeway_secs)?;
                if !verifier.has_key() {
                    return Err(AuthError::NoKey {
                        mode: mode.as_str(),
                    });
                }
                Some(verifier)
            }
        };
        Ok(Auth {
            mode: config.auth,
            verifier,
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Checks a token against the configured keys and rules.
    pub fn verify(&self, token: &str) -> Result<User, TokenError> {
        match &self.verifier {
            Some(verifier) => verifier.verify(token),
            None => Err(TokenError::NotAccepted),
        }
    }

    /// Decides who a request speaks for: `Ok(None)` is a guest (or anyone,
    /// with auth off), `Ok(Some)` a verified user.
    pub fn admit(&self, token: Option<&str>) -> Result<Option<User>, Refusal> {
        match (self.mode, token) {
            (AuthMode::Off, _) | (AuthMode::Optional, None) => Ok(None),
            (AuthMode::Required, None) => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "This server requires a token: connect with ?token=… or an `Authorization: Bearer …` header.".into(),
                reason: "no_token",
            }),
            (_, Some(token)) => self.verify(token).map(Some).map_err(Refusal::from),
        }
    }

    /// [`Auth::admit`] for a request to read `room` over HTTP.
    pub fn may_read_room(&self, headers: &HeaderMap, room: &str) -> Result<(), Refusal> {
        match self.admit(bearer(headers))? {
            Some(user) if !user.rooms.allows(room) => Err(Refusal::forbidden(room)),
            _ => Ok(()),
        }
    }
}

/// The token of an `Authorization: Bearer …` header, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A token from a URL's query (`/ws?token=…`): a secret, so its `Debug`
/// shows nothing of it.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct QueryToken(pub String);

impl std::fmt::Debug for QueryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryToken(<redacted>)")
    }
}
