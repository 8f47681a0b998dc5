//! Identity (`--auth`): signed connect tokens, verified authors, room
//! access, refresh and expiry, against the real server over real WebSocket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use actorchat::Config;
use actorchat::auth::AuthMode;
use actorchat_protocol::{ClientFrame, ErrorCode, ServerFrame, close_code};
use common::{Client, TempDir, config, http_request, server};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "an-hs256-secret-for-tests-only-0123456789";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A server config with `--auth mode` and the HS256 secret (kept in `dir`).
fn auth_config(dir: &TempDir, mode: AuthMode) -> Config {
    std::fs::create_dir_all(dir.path()).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let mut config = config();
    config.auth.auth = mode;
    config.auth.keys.auth_hs256_secret_file = Some(secret);
    config
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Claims for `sub` valid for an hour, with `extra` merged in (a `null`
/// removes a claim).
fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({ "sub": sub, "exp": now() + 3600 });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn url(addr: SocketAddr, room: &str, token: &str) -> String {
    format!("ws://{addr}/ws?room={room}&token={token}")
}

/// Tries to open a WebSocket; on refusal returns the HTTP status and body.
async fn refused(request: impl IntoClientRequest + Unpin) -> (u16, String) {
    match connect_async(request).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (response.status().as_u16(), body)
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

async fn next_error(client: &mut Client) -> (ErrorCode, String) {
    client
        .next_matching(|f| match f {
            ServerFrame::Error(e) => Some((e.code, e.message)),
            _ => None,
        })
        .await
}

#[tokio::test]
async fn a_valid_token_makes_a_verified_author() {
    let dir = TempDir::new("auth-valid");
    let running = server(auth_config(&dir, AuthMode::Required)).await;
    let addr = running.local_addr();
    let token = hs256(&claims("u-ada", json!({ "name": "Ada" })));
    // `?name=` is ignored: a verified user's name is its token's.
    let mut ada =
        Client::connect_url(&format!("{}&name=Mallory", url(addr, "lobby", &token))).await;
    assert_eq!(ada.welcome.user_id.as_deref(), Some("u-ada"));
    assert_eq!(ada.welcome.name, "Ada");
    // The same user through a header, as a non-browser client would.
    let mut request = format!("ws://{addr}/ws?room=lobby")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", hs256(&claims("u-bob", json!({}))))
            .parse()
            .unwrap(),
    );
    let (ws, _) = connect_async(request).await.unwrap();
    let mut bob = Client {
        ws,
        welcome: ada.welcome.clone(),
    };
    let ServerFrame::Welcome(welcome) = bob.next().await else {
        panic!("expected a welcome");
    };
    assert_eq!(welcome.user_id.as_deref(), Some("u-bob"));
    assert_eq!(
        welcome.name, "u-bob",
        "no `name` claim: the sub is the name"
    );
    ada.chat("hello").await;
    for client in [&mut ada, &mut bob] {
        let chat = client.next_chat().await;
        assert_eq!(
            (chat.author.as_str(), chat.user_id.as_deref()),
            ("Ada", Some("u-ada"))
        );
    }
    // The stored history keeps the verified author.
    let (status, body) = http_request(
        addr,
        "GET",
        "/rooms/lobby/messages",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["messages"][0]["user_id"], "u-ada");
    // A verified user cannot rename.
    ada.send(&ClientFrame::SetName { name: "Eve".into() }).await;
    let (code, message) = next_error(&mut ada).await;
    assert_eq!(code, ErrorCode::InvalidName);
    assert!(message.contains("token"), "{message}");
}

#[tokio::test]
async fn refused_tokens_get_401_with_the_reason() {
    let dir = TempDir::new("auth-refused");
    let mut config = auth_config(&dir, AuthMode::Required);
    config.auth.keys.auth_audience = Some("chat.example".into());
    config.auth.auth_leeway_secs = 0;
    let running = server(config).await;
    let addr = running.local_addr();
    let aud = json!({ "aud": "chat.example" });
    let with = |extra: Value| {
        let mut c = claims("u1", aud.clone());
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let other_key = encode(
        &Header::new(Algorithm::HS256),
        &with(json!({})),
        &EncodingKey::from_secret(b"another-secret-another-secret-another"),
    )
    .unwrap();
    // `alg: none`: a header and claims with an empty signature.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(&with(json!({})))
    );
    let cases = [
        (hs256(&with(json!({ "exp": now() - 10 }))), "expired"),
        (hs256(&with(json!({ "nbf": now() + 600 }))), "not valid yet"),
        (other_key, "signature is not valid"),
        (none, "algorithm none is not allowed"),
        (hs256(&with(json!({ "sub": null }))), "claim `sub`"),
        (hs256(&with(json!({ "exp": null }))), "claim `exp`"),
        (
            hs256(&with(json!({ "aud": "other.example" }))),
            "another audience",
        ),
        (hs256(&with(json!({ "aud": null }))), "claim `aud`"),
        (hs256(&with(json!({ "exp": "tomorrow" }))), "`exp`"),
        // CVE-2026-25537: a wrongly typed `nbf` must not skip its check.
        (hs256(&with(json!({ "nbf": "later" }))), "`nbf`"),
        (
            hs256(&with(json!({ "rooms": ["bad room"] }))),
            "claim `rooms`",
        ),
        ("not-a-token".to_owned(), "not a well-formed JWT"),
    ];
    for (token, reason) in cases {
        let (status, body) = refused(url(addr, "lobby", &token)).await;
        assert_eq!(status, 401, "{reason}: {body}");
        assert!(body.contains(reason), "expected {reason:?} in {body:?}");
    }
    let (status, body) = refused(format!("ws://{addr}/ws?room=lobby")).await;
    assert_eq!(status, 401);
    assert!(body.contains("requires a token"), "{body}");
    // The valid one, for contrast.
    let ok = Client::connect_url(&url(addr, "lobby", &hs256(&with(json!({}))))).await;
    assert_eq!(ok.welcome.user_id.as_deref(), Some("u1"));
    let refusals = common::metric(addr, "actorchat_auth_refusals_total{reason=\"expired\"}").await;
    assert_eq!(refusals, 1.0);
}

#[tokio::test]
async fn public_key_servers_accept_their_algorithm_only() {
    for (public, private, alg) in [
        ("rsa_public.pem", "rsa_private.pem", Algorithm::RS256),
        ("ec_public.pem", "ec_private.pem", Algorithm::ES256),
    ] {
        let mut config = config();
        config.auth.auth = AuthMode::Required;
        config.auth.keys.auth_public_key_file = Some(format!("{KEYS}/{public}").into());
        let running = server(config).await;
        let addr = running.local_addr();
        let pem = std::fs::read(format!("{KEYS}/{private}")).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let token = encode(&Header::new(alg), &claims("u-pk", json!({})), &key).unwrap();
        let client = Client::connect_url(&url(addr, "lobby", &token)).await;
        assert_eq!(client.welcome.user_id.as_deref(), Some("u-pk"), "{alg:?}");
        // Key confusion: an HS256 token whose "secret" is the public key.
        let public_pem = std::fs::read(format!("{KEYS}/{public}")).unwrap();
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims("u-pk", json!({ "admin": true })),
            &EncodingKey::from_secret(&public_pem),
        )
        .unwrap();
        let (status, body) = refused(url(addr, "lobby", &forged)).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("algorithm HS256 is not allowed"), "{body}");
    }
}

#[tokio::test]
async fn the_rooms_claim_limits_connect_join_and_http_reads() {
    let dir = TempDir::new("auth-rooms");
    let running = server(auth_config(&dir, AuthMode::Required)).await;
    let addr = running.local_addr();
    let token = hs256(&claims("u-t", json!({ "rooms": ["team-*", "lobby"] })));
    let (status, body) = refused(url(addr, "secret", &token)).await;
    assert_eq!(status, 403);
    assert!(body.contains("does not grant the room secret"), "{body}");
    let mut member = Client::connect_url(&url(addr, "team-a", &token)).await;
    member
        .send(&ClientFrame::Join {
            room: "secret".into(),
            since: None,
        })
        .await;
    let (code, message) = next_error(&mut member).await;
    assert_eq!(code, ErrorCode::Forbidden, "{message}");
    // Still in team-a.
    member.chat("still here").await;
    assert_eq!(member.next_chat().await.room, "team-a");
    member
        .send(&ClientFrame::Join {
            room: "lobby".into(),
            since: None,
        })
        .await;
    let welcome = member
        .next_matching(|f| match f {
            ServerFrame::Welcome(w) => Some(w),
            _ => None,
        })
        .await;
    assert_eq!(welcome.room, "lobby");
    let bearer = format!("Authorization: Bearer {token}\r\n");
    for (path, auth, expected) in [
        ("/rooms/team-a/messages", bearer.as_str(), 200),
        ("/rooms/secret/messages", bearer.as_str(), 403),
        ("/rooms/team-a/messages", "", 401),
    ] {
        let (status, body) = http_request(addr, "GET", path, auth).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
}

#[tokio::test]
async fn refresh_extends_the_session_and_expiry_closes_it_with_4001() {
    let dir = TempDir::new("auth-expiry");
    let mut config = auth_config(&dir, AuthMode::Required);
    config.auth.auth_leeway_secs = 0;
    let running = server(config).await;
    let addr = running.local_addr();
    let short = |sub: &str| hs256(&claims(sub, json!({ "exp": now() + 2 })));
    let mut kept = Client::connect_url(&url(addr, "lobby", &short("u-kept"))).await;
    let mut lapsed = Client::connect_url(&url(addr, "lobby", &short("u-lapsed"))).await;
    let longer = now() + 120;
    kept.send(&ClientFrame::Refresh {
        token: hs256(&claims("u-kept", json!({ "exp": longer }))),
    })
    .await;
    let refreshed = kept
        .next_matching(|f| match f {
            ServerFrame::Refreshed(r) => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(refreshed.expires_at, longer);
    // Another user's token, or an invalid one, is refused; the session goes on.
    for token in [hs256(&claims("u-other", json!({}))), "x.y.z".to_owned()] {
        kept.send(&ClientFrame::Refresh { token }).await;
        assert_eq!(next_error(&mut kept).await.0, ErrorCode::InvalidToken);
    }
    // An `exp` as far away as a JSON number goes is a long session, not
    // an overflow.
    let mut forever = Client::connect_url(&url(
        addr,
        "lobby",
        &hs256(&claims("u-forever", json!({ "exp": u64::MAX }))),
    ))
    .await;
    let started = std::time::Instant::now();
    let code = lapsed.close_code().await;
    assert_eq!(code, Some(close_code::TOKEN_EXPIRED));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "closed {:?} after the token's last second",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    kept.ping(7).await;
    forever.ping(8).await;
    assert_eq!(
        common::metric(addr, "actorchat_auth_expired_total").await,
        1.0
    );
}

#[tokio::test]
async fn optional_mode_keeps_guests_and_verified_names_apart() {
    let dir = TempDir::new("auth-optional");
    let running = server(auth_config(&dir, AuthMode::Optional)).await;
    let addr = running.local_addr();
    let mut ada = Client::connect_url(&url(
        addr,
        "lobby",
        &hs256(&claims("u-ada", json!({ "name": "Ada" }))),
    ))
    .await;
    // A guest asking for Ada's exact name joins under its default name.
    let mut guest = Client::connect(addr, "Ada", "lobby").await;
    assert_eq!(guest.welcome.user_id, None);
    assert_eq!(
        guest.welcome.name,
        format!("guest-{}", guest.welcome.session_id)
    );
    let (code, message) = next_error(&mut guest).await;
    assert_eq!(code, ErrorCode::InvalidName);
    assert!(message.contains("verified member"), "{message}");
    guest
        .send(&ClientFrame::SetName { name: "Ada".into() })
        .await;
    assert_eq!(next_error(&mut guest).await.0, ErrorCode::InvalidName);
    // Other names are fine, and the rename takes effect.
    guest
        .send(&ClientFrame::SetName { name: "ada".into() })
        .await;
    guest.chat("a guest speaks").await;
    let chat = guest.next_chat().await;
    assert_eq!((chat.author.as_str(), chat.user_id), ("ada", None));
    let chat = ada.next_chat().await;
    assert_eq!(chat.user_id, None, "the guest's message is not verified");
    // In another room, with no verified Ada, the name is free.
    let other = Client::connect(addr, "Ada", "elsewhere").await;
    assert_eq!(other.welcome.name, "Ada");
    // A presented token must still be valid.
    let (status, _) = refused(url(addr, "lobby", "x.y.z")).await;
    assert_eq!(status, 401);
    // A guest cannot take a token mid-session.
    guest
        .send(&ClientFrame::Refresh {
            token: hs256(&claims("u-g", json!({}))),
        })
        .await;
    assert_eq!(next_error(&mut guest).await.0, ErrorCode::InvalidToken);
}

#[tokio::test]
async fn auth_off_ignores_tokens_and_identity_reports_the_mode() {
    let running = server(config()).await;
    let addr = running.local_addr();
    let client = Client::connect_url(&format!("{}&name=Zed", url(addr, "lobby", "whatever"))).await;
    assert_eq!(
        (
            client.welcome.name.as_str(),
            client.welcome.user_id.as_deref()
        ),
        ("Zed", None)
    );
    let (status, body) = http_request(addr, "GET", "/api/identity", "").await;
    assert_eq!(status, 200);
    let identity: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(identity, json!({ "auth": "off", "user": null }));
}

#[tokio::test]
async fn identity_endpoint_says_who_a_token_makes_you() {
    let dir = TempDir::new("auth-identity");
    let running = server(auth_config(&dir, AuthMode::Optional)).await;
    let addr = running.local_addr();
    let exp = now() + 600;
    let token = hs256(&claims(
        "u-ada",
        json!({ "name": "Ada", "rooms": ["team-*"], "admin": true, "exp": exp }),
    ));
    let (status, body) = http_request(
        addr,
        "GET",
        "/api/identity",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let identity: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        identity,
        json!({ "auth": "optional", "user": {
            "user_id": "u-ada", "name": "Ada", "rooms": ["team-*"], "admin": true, "expires_at": exp
        }})
    );
    let expired = hs256(&claims("u-ada", json!({ "exp": now() - 100 })));
    let (status, body) = http_request(
        addr,
        "GET",
        "/api/identity",
        &format!("Authorization: Bearer {expired}\r\n"),
    )
    .await;
    assert_eq!((status, body.as_str()), (401, "The token has expired."));
}

#[tokio::test]
async fn an_admin_token_acts_in_the_observer() {
    let dir = TempDir::new("auth-observer");
    let running = server(auth_config(&dir, AuthMode::Optional)).await;
    let addr = running.local_addr();
    let _guest = Client::connect(addr, "m", "watched").await;
    let admin = hs256(&claims("u-root", json!({ "admin": true })));
    let _root = Client::connect_url(&url(addr, "watched", &admin)).await;
    let user = hs256(&claims("u-plain", json!({})));
    let path = "/api/observer/rooms/watched/members";
    let (status, body) = http_request(
        addr,
        "GET",
        path,
        &format!("Authorization: Bearer {admin}\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let members: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&Value> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["user_id"])
        .collect();
    assert_eq!(ids, [&Value::Null, &json!("u-root")], "{body}");
    let (status, _) = http_request(
        addr,
        "POST",
        "/api/observer/rooms/watched/kill",
        &format!("Authorization: Bearer {user}\r\n"),
    )
    .await;
    assert_eq!(status, 403, "a token without `admin` cannot act");
    let (status, body) = http_request(
        addr,
        "POST",
        "/api/observer/rooms/watched/kill",
        &format!("Authorization: Bearer {admin}\r\n"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}
