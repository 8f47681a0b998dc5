//! The claims a connect token carries, and what they grant once checked.
//!
//! Every rule here is about the token's *content*; the signature, the
//! algorithm and the time claims are checked before (see
//! [`super::verify`]). A token whose claims break a rule is refused as a
//! whole: a server that quietly dropped a bad `rooms` entry would grant
//! something its issuer did not mean.

use std::sync::Arc;

use actorchat_protocol::{validate_name, validate_room};
use serde::Deserialize;

use super::TokenError;

/// Longest `sub` (user id), in characters.
pub const MAX_SUB_CHARS: usize = 64;
/// Most entries in a `rooms` claim.
pub const MAX_ROOM_PATTERNS: usize = 100;

/// The claims this server reads. `exp` and `sub` are required; they are
/// loosely typed here so that a missing or wrongly typed one is refused
/// with a sentence naming it rather than a decoding error. `aud`, `iss` and `nbf` are checked by the
/// validation and not kept.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    #[serde(default)]
    pub sub: Option<serde_json::Value>,
    #[serde(default)]
    pub exp: Option<serde_json::Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub rooms: Option<Vec<String>>,
    #[serde(default)]
    pub admin: bool,
}

/// A verified user: who a session speaks for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The token's `sub`; stamped on every message the user sends.
    pub id: Arc<str>,
    /// The display name: the token's `name`, or its `sub` when that is a
    /// valid name.
    pub name: String,
    pub rooms: RoomGrant,
    /// May use the observer's actions.
    pub admin: bool,
    /// The token's `exp`, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// The rooms a token lets its holder join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomGrant {
    /// No `rooms` claim: every room.
    Any,
    Only(Box<[RoomPattern]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomPattern {
    Exact(String),
    /// `team-*`: every room whose name starts with `team-` (`*` alone: any).
    Prefix(String),
}

impl User {
    /// `expires_at` in milliseconds (saturating: `exp` is whatever the
    /// token's issuer wrote, up to `u64::MAX`).
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at.saturating_mul(1000)
    }
}

impl RoomGrant {
    pub fn allows(&self, room: &str) -> bool {
        match self {
            RoomGrant::Any => true,
            RoomGrant::Only(patterns) => patterns.iter().any(|p| match p {
                RoomPattern::Exact(name) => name == room,
                RoomPattern::Prefix(prefix) => room.starts_with(prefix.as_str()),
            }),
        }
    }

    /// The claim as it was written (`null` for [`RoomGrant::Any`]), for
    /// `GET /api/identity`.
    pub fn patterns(&self) -> Option<Vec<String>> {
        match self {
            RoomGrant::Any => None,
            RoomGrant::Only(patterns) => Some(
                patterns
                    .iter()
                    .map(|p| match p {
                        RoomPattern::Exact(name) => name.clone(),
                        RoomPattern::Prefix(prefix) => format!("{prefix}*"),
                    })
                    .collect(),
            ),
        }
    }
}

impl RoomPattern {
    /// `lobby` or `team-*`; the part before `*` follows the room-name rules
    /// (and may be empty: `*` grants every room).
    pub fn parse(pattern: &str) -> Result<RoomPattern, String> {
        match pattern.strip_suffix('*') {
            Some("") => Ok(RoomPattern::Prefix(String::new())),
            Some(prefix) => validate_room(prefix)
                .map(|p| RoomPattern::Prefix(p.to_owned()))
                .map_err(|reason| format!("{pattern:?} is not a room prefix: {reason}")),
            None => validate_room(pattern)
                .map(|p| RoomPattern::Exact(p.to_owned()))
                .map_err(|reason| format!("{pattern:?} is not a room name: {reason}")),
        }
    }
}

impl TryFrom<Claims> for User {
    type Error = TokenError;

    fn try_from(claims: Claims) -> Result<User, TokenError> {
        let bad = |claim: &'static str, reason: String| TokenError::BadClaim { claim, reason };
        let sub = match claims.sub {
            None => return Err(TokenError::MissingClaim("sub".into())),
            Some(serde_json::Value::String(sub)) => sub,
            Some(_) => return Err(bad("sub", "must be a string".into())),
        };
        let expires_at = match claims.exp {
            None => return Err(TokenError::MissingClaim("exp".into())),
            Some(exp) => exp.as_u64().ok_or_else(|| {
                bad(
                    "exp",
                    "must be a whole number of seconds since the Unix epoch".into(),
                )
            })?,
        };
        let chars = sub.chars().count();
        if chars == 0 || chars > MAX_SUB_CHARS {
            return Err(bad(
                "sub",
                format!("must be 1 to {MAX_SUB_CHARS} characters; it has {chars}"),
            ));
        }
        if sub.chars().any(char::is_control) {
            return Err(bad("sub", "must not contain control characters".into()));
        }
        let name = match &claims.name {
            Some(name) => validate_name(name)
                .map_err(|reason| bad("name", reason))?
                .to_owned(),
            None => validate_name(&sub)
                .map_err(|_| {
                    bad(
                        "name",
                        "is missing, and `sub` cannot serve as a display name".into(),
                    )
                })?
                .to_owned(),
        };
        let rooms = match claims.rooms {
            None => RoomGrant::Any,
            Some(list) if list.len() > MAX_ROOM_PATTERNS => {
                return Err(bad(
                    "rooms",
                    format!(
                        "lists at most {MAX_ROOM_PATTERNS} rooms or prefixes; it has {}",
                        list.len()
                    ),
                ));
            }
            Some(list) => RoomGrant::Only(
                list.iter()
                    .map(|p| RoomPattern::parse(p))
                    .collect::<Result<_, _>>()
                    .map_err(|reason| bad("rooms", reason))?,
            ),
        };
        Ok(User {
            id: sub.into(),
            name,
            rooms,
            admin: claims.admin,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn claims(sub: &str, name: Option<&str>, rooms: Option<&[&str]>) -> Claims {
        Claims {
            sub: Some(sub.into()),
            exp: Some(10.into()),
            name: name.map(Into::into),
            rooms: rooms.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
            admin: false,
        }
    }

    #[test]
    fn rooms_claim_grants_names_and_prefixes() {
        let user = User::try_from(claims("u1", Some("Ada"), Some(&["lobby", "team-*"]))).unwrap();
        assert!(user.rooms.allows("lobby"));
        assert!(user.rooms.allows("team-"));
        assert!(user.rooms.allows("team-rust"));
        assert!(!user.rooms.allows("lobby2"));
        assert!(!user.rooms.allows("tea"));
        assert_eq!(
            user.rooms.patterns(),
            Some(vec!["lobby".into(), "team-*".into()])
        );
        let all = User::try_from(claims("u1", None, Some(&["*"]))).unwrap();
        assert!(all.rooms.allows("anything"));
        let none = User::try_from(claims("u1", None, Some(&[]))).unwrap();
        assert!(!none.rooms.allows("lobby"));
        assert_eq!(
            User::try_from(claims("u1", None, None)).unwrap().rooms,
            RoomGrant::Any
        );
    }

    #[test]
    fn the_name_comes_from_name_or_sub() {
        let user = User::try_from(claims("ada", None, None)).unwrap();
        assert_eq!(user.name, "ada");
        let user = User::try_from(claims("u1", Some("  Ada L. "), None)).unwrap();
        assert_eq!(user.name, "Ada L.");
        let long_sub = "x".repeat(40);
        let e = User::try_from(claims(&long_sub, None, None)).unwrap_err();
        assert!(e.to_string().contains("`name`"), "{e}");
    }

    #[test]
    fn bad_claims_are_refused_with_the_claim_named() {
        for (c, claim) in [
            (claims("", Some("A"), None), "`sub`"),
            (claims(&"s".repeat(65), Some("A"), None), "`sub`"),
            (claims("a\u{0}b", Some("A"), None), "`sub`"),
            (claims("u", Some(""), None), "`name`"),
            (claims("u", Some(&"n".repeat(33)), None), "`name`"),
            (claims("u", None, Some(&["has space"])), "`rooms`"),
            (claims("u", None, Some(&["a*b"])), "`rooms`"),
            (claims("u", None, Some(&["**"])), "`rooms`"),
        ] {
            let e = User::try_from(c).unwrap_err();
            assert!(e.to_string().contains(claim), "{e} should name {claim}");
        }
        let many: Vec<String> = (0..101).map(|i| format!("r{i}")).collect();
        let c = Claims {
            rooms: Some(many),
            ..claims("u", None, None)
        };
        assert!(User::try_from(c).is_err());
    }

    proptest! {
        /// Whatever the claims, checking them never panics, and what it
        /// accepts satisfies the rules.
        #[test]
        fn accepted_claims_satisfy_the_rules(
            sub in "\\PC{0,70}|[a-z0-9-]{1,10}",
            name in proptest::option::of("\\PC{0,40}"),
            rooms in proptest::option::of(proptest::collection::vec("[a-z*_ -]{0,8}", 0..5)),
        ) {
            let c = Claims { sub: Some(sub.clone().into()), exp: Some(1.into()), name: name.clone(), rooms: rooms.clone(), admin: false };
            if let Ok(user) = User::try_from(c) {
                let n = user.id.chars().count();
                prop_assert!((1..=MAX_SUB_CHARS).contains(&n));
                prop_assert_eq!(&*user.id, sub.as_str());
                prop_assert!(validate_name(&user.name).is_ok());
                if let (RoomGrant::Only(patterns), Some(rooms)) = (&user.rooms, &rooms) {
                    prop_assert_eq!(patterns.len(), rooms.len());
                }
            }
        }

        /// A room matches a grant exactly when it equals an entry or
        /// starts with a prefix entry.
        #[test]
        fn grants_match_like_the_rule_says(
            room in "[a-c-]{1,6}",
            entries in proptest::collection::vec("[a-c-]{1,4}\\*?", 0..4),
        ) {
            let c = Claims { sub: Some("u".into()), exp: Some(1.into()), name: None, rooms: Some(entries.clone()), admin: false };
            let user = User::try_from(c).unwrap();
            let expected = entries.iter().any(|e| match e.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => *e == room,
            });
            prop_assert_eq!(user.rooms.allows(&room), expected);
        }
    }
}
