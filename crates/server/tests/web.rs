//! What the web client relies on from the server: how its files are served
//! (security headers, caching) and a `join` to the current room being a no-op
//! (the client may repeat one; it must not announce a false leave + join).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use actorchat_protocol::{ClientFrame, ServerFrame};
use common::{Client, config, http_response, server};

#[tokio::test]
async fn a_join_to_the_current_room_changes_nothing() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut ada = Client::connect(addr, "Ada", "same").await;
    let mut grace = Client::connect(addr, "Grace", "same").await;

    ada.send(&ClientFrame::Join {
        room: "same".into(),
        since: None,
    })
    .await;
    ada.chat("after the repeated join").await;

    // Ada gets no second welcome before her own echo …
    loop {
        match ada.next().await {
            ServerFrame::Welcome(w) => panic!("a second welcome: {w:?}"),
            ServerFrame::Chat(c) if c.text == "after the repeated join" => break,
            _ => {}
        }
    }
    // … and Grace sees nobody leave, only the chat.
    loop {
        match grace.next().await {
            ServerFrame::RoomUpdate(u) => {
                assert!(u.left.is_empty(), "false leave: {u:?}");
                assert_eq!(u.num_participants, 2, "{u:?}");
            }
            ServerFrame::Chat(c) if c.text == "after the repeated join" => {
                assert_eq!(c.author, "Ada");
                break;
            }
            _ => {}
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_join_to_another_room_still_moves_the_session() {
    let server = server(config()).await;
    let mut ada = Client::connect(server.local_addr(), "Ada", "here").await;
    ada.send(&ClientFrame::Join {
        room: "there".into(),
        since: None,
    })
    .await;
    let welcome = ada
        .next_matching(|f| match f {
            ServerFrame::Welcome(w) => Some(w),
            _ => None,
        })
        .await;
    assert_eq!(welcome.room, "there");
    server.shutdown().await;
}

/// GET with a given Host header; returns the status and the headers (names lower-cased).
async fn head_of(addr: SocketAddr, path: &str, host: &str) -> (u16, HashMap<String, String>) {
    let text = http_response(addr, path, host).await;
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

/// The script the embedded index.html loads (its name carries a content hash).
async fn script_path(addr: SocketAddr) -> String {
    let (_, body) = common::http_get(addr, "/").await;
    let start = body.find("/assets/").unwrap();
    let end = start + body[start..].find('"').unwrap();
    body[start..end].to_owned()
}

#[tokio::test]
async fn the_client_is_served_with_security_headers_and_cache_policy() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let host = addr.to_string();

    let script = script_path(addr).await;
    for path in [
        "/",
        "/index.html",
        "/some/deep/link",
        script.as_str(),
        "/test.html",
    ] {
        let (status, h) = head_of(addr, path, &host).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = &h["content-security-policy"];
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(
            csp.contains(&format!("connect-src 'self' ws://{host} wss://{host};")),
            "{path}: {csp}"
        );
    }

    // The app: only its own files, no inline code.
    let (_, index) = head_of(addr, "/", &host).await;
    let csp = &index["content-security-policy"];
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("style-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(index["cache-control"], "no-cache");

    let (_, asset) = head_of(addr, &script, &host).await;
    assert_eq!(
        asset["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(asset["content-type"].contains("javascript"));

    let (_, test_page) = head_of(addr, "/test.html", &host).await;
    assert_eq!(test_page["cache-control"], "no-cache");
    server.shutdown().await;
}

#[tokio::test]
async fn a_hostile_host_header_is_not_echoed_into_the_policy() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let (status, h) = head_of(addr, "/", "evil.example;script-src *").await;
    assert_eq!(status, 200);
    let csp = &h["content-security-policy"];
    assert!(!csp.contains("evil"), "{csp}");
    assert!(csp.contains("connect-src 'self';"), "{csp}");
    server.shutdown().await;
}
