//! `actorchat token`: development tokens signed with the configured HS256
//! secret, so a developer can try `--auth` without an application backend.
//! Production tokens come from that backend (docs/auth.md shows how).

use std::time::Duration;

use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::claims::RoomPattern;
use super::verify::read_secret;
use super::{AuthError, KeyConfig};
use crate::clock::unix_millis;

/// Options of `actorchat token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (`sub`), 1 to 64 characters.
    #[arg(long)]
    pub sub: String,
    /// The display name (`name`); default: the `sub`.
    #[arg(long)]
    pub name: Option<String>,
    /// Rooms the holder may join, comma-separated; `team-*` is a prefix.
    /// Default: every room.
    #[arg(long, value_delimiter = ',')]
    pub rooms: Option<Vec<String>>,
    /// Grants the observer's actions.
    #[arg(long)]
    pub admin: bool,
    /// How long the token lives: `90s`, `15m`, `1h`, `2d`.
    #[arg(long, default_value = "1h", value_parser = crate::config::parse_age)]
    pub ttl: Duration,
    #[command(flatten)]
    pub keys: KeyConfig,
}

#[derive(Serialize)]
struct Issued<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<&'a [String]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    admin: bool,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// Signs a token with the HS256 secret of `args.keys`, checking the claims
/// by the rules the server applies, so a token it prints is one it accepts.
pub fn issue(args: &TokenArgs) -> Result<String, AuthError> {
    let path = args.keys.auth_hs256_secret_file.as_ref().ok_or_else(|| {
        AuthError::Usage(
            "actorchat token signs with HS256: give --auth-hs256-secret-file (or ACTORCHAT_AUTH_HS256_SECRET_FILE)".into(),
        )
    })?;
    let secret = read_secret(path)?;
    if let Some(rooms) = &args.rooms {
        for pattern in rooms {
            RoomPattern::parse(pattern).map_err(AuthError::Usage)?;
        }
    }
    let now = unix_millis() / 1000;
    let claims = Issued {
        sub: &args.sub,
        name: args.name.as_deref(),
        rooms: args.rooms.as_deref(),
        admin: args.admin,
        iat: now,
        exp: now + args.ttl.as_secs(),
        aud: args.keys.auth_audience.as_deref(),
        iss: args.keys.auth_issuer.as_deref(),
    };
    // The server's own rules for sub and name (rooms were checked above).
    let checked = super::claims::Claims {
        sub: Some(args.sub.clone().into()),
        exp: Some(claims.exp.into()),
        name: args.name.clone(),
        rooms: None,
        admin: args.admin,
    };
    super::User::try_from(checked).map_err(|e| AuthError::Usage(e.to_string()))?;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )
    .map_err(|e| AuthError::Sign(e.to_string()))
}
