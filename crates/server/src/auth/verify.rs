//! Checking a token: its algorithm against the configured keys, its
//! signature, its time claims, then its content ([`super::claims`]).
//!
//! The algorithm is read from the token's header by this module first, so
//! that `alg: none`, an unknown name, and an algorithm this server has no
//! key for (an HS256 token presented to an RS256 server, the classic key
//! confusion) are each refused with a sentence naming the algorithm, and the
//! signature check never runs with a key of the wrong family.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::claims::Claims;
use super::{AuthError, KeyConfig, TokenError, User};
use actorchat_protocol::MAX_TOKEN_BYTES;

/// Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as
/// long as the hash (256 bits).
const MIN_SECRET_BYTES: usize = 32;

pub(crate) struct Verifier {
    hs256: Option<DecodingKey>,
    /// RS256 or ES256, from the PEM key's type.
    public: Option<(Algorithm, DecodingKey)>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway_secs: u64,
}

impl Verifier {
    pub(crate) fn new(keys: &KeyConfig, leeway_secs: u64) -> Result<Verifier, AuthError> {
        let hs256 = match &keys.auth_hs256_secret_file {
            Some(path) => Some(DecodingKey::from_secret(&read_secret(path)?)),
            None => None,
        };
        let public = match &keys.auth_public_key_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| AuthError::Read {
                    path: path.clone(),
                    source,
                })?;
                let key = DecodingKey::from_rsa_pem(&pem)
                    .map(|k| (Algorithm::RS256, k))
                    .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|k| (Algorithm::ES256, k)))
                    .map_err(|e| AuthError::Key {
                        path: path.clone(),
                        reason: format!(
                            "not a PEM RSA or EC (P-256) public key ({e}); RS256 needs an RSA key, ES256 a P-256 key"
                        ),
                    })?;
                Some(key)
            }
            None => None,
        };
        Ok(Verifier {
            hs256,
            public,
            audience: keys.auth_audience.clone(),
            issuer: keys.auth_issuer.clone(),
            leeway_secs,
        })
    }

    pub(crate) fn has_key(&self) -> bool {
        self.hs256.is_some() || self.public.is_some()
    }

    /// The algorithms this server accepts, for error sentences.
    fn allowed(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        if self.hs256.is_some() {
            names.push("HS256");
        }
        if let Some((alg, _)) = &self.public {
            names.push(if *alg == Algorithm::RS256 {
                "RS256"
            } else {
                "ES256"
            });
        }
        names.join(" and ")
    }

    pub(crate) fn verify(&self, token: &str) -> Result<User, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let alg = header_alg(token)?;
        let (alg, key) = match (alg.as_str(), &self.hs256, &self.public) {
            ("HS256", Some(key), _) => (Algorithm::HS256, key),
            ("RS256", _, Some((Algorithm::RS256, key))) => (Algorithm::RS256, key),
            ("ES256", _, Some((Algorithm::ES256, key))) => (Algorithm::ES256, key),
            _ => {
                return Err(TokenError::Algorithm {
                    alg: printable(&alg),
                    allowed: self.allowed(),
                });
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required: HashSet<String> = ["exp", "sub"].map(String::from).into();
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.insert("iss".into());
        }
        validation.required_spec_claims = required;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .into_kind()
        {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAlgorithm => TokenError::Algorithm {
                alg: printable(&alg_name(alg)),
                allowed: self.allowed(),
            },
            ErrorKind::InvalidClaimFormat(claim) => TokenError::BadClaim {
                claim: static_claim(&claim),
                reason: "has the wrong type".into(),
            },
            ErrorKind::Json(e) => TokenError::BadClaim {
                claim: "claims",
                reason: format!("could not be read ({})", strip_input(&e)),
            },
            _ => TokenError::Malformed,
        })?;
        User::try_from(data.claims)
    }
}

/// Reads an HS256 secret file; too short a secret is a set-up error.
pub(super) fn read_secret(path: &std::path::Path) -> Result<Vec<u8>, AuthError> {
    let bytes = std::fs::read(path).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthError::Key {
            path: path.to_owned(),
            reason: format!(
                "an HS256 secret needs at least {MIN_SECRET_BYTES} bytes; this one has {}",
                secret.len()
            ),
        });
    }
    Ok(secret.to_vec())
}

/// The `alg` of a token's header, read without trusting anything else.
fn header_alg(token: &str) -> Result<String, TokenError> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let header: Header = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    Ok(header.alg)
}

fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// An algorithm name as a sentence may quote it: short, printable.
fn printable(alg: &str) -> String {
    let clean: String = alg
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(16)
        .collect();
    if clean.is_empty() {
        "(empty)".into()
    } else {
        clean
    }
}

/// Claim names jsonwebtoken reports, as the `&'static str` our errors keep.
fn static_claim(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "nbf" => "nbf",
        "iat" => "iat",
        "aud" => "aud",
        "iss" => "iss",
        "sub" => "sub",
        _ => "claims",
    }
}

/// A serde error without the quoted input (which could be long).
fn strip_input(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    text.chars().take(120).collect()
}
