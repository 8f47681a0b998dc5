//! The origin check on the WebSocket upgrade (cross-site WebSocket hijacking).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{Client, config, metric, server, ws_url};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Upgrades with this `Origin` header; returns the HTTP status (101 on success).
async fn upgrade_from(addr: SocketAddr, origin: &str) -> u16 {
    let mut request = ws_url(addr, "page", "lobby").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", origin.parse().unwrap());
    match connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn a_page_from_another_site_gets_403_before_the_upgrade() {
    let server = server(config()).await;
    let addr = server.local_addr();
    assert_eq!(upgrade_from(addr, "https://evil.example").await, 403);
    assert_eq!(upgrade_from(addr, "null").await, 403);
    assert_eq!(metric(addr, "actorchat_origin_refusals_total").await, 2.0);
    assert_eq!(metric(addr, "actorchat_connections").await, 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_servers_own_pages_loopback_pages_and_non_browsers_are_allowed() {
    let server = server(config()).await;
    let addr = server.local_addr();
    // Same origin as the Host the client sent (127.0.0.1:<port>).
    assert_eq!(upgrade_from(addr, &format!("http://{addr}")).await, 101);
    // A development server on another loopback port.
    assert_eq!(upgrade_from(addr, "http://localhost:5173").await, 101);
    assert_eq!(upgrade_from(addr, "http://127.0.0.1:5173").await, 101);
    // No Origin header at all: not a browser.
    let _c = Client::connect(addr, "bot", "lobby").await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_allowed_list_replaces_the_loopback_defaults_and_star_allows_all() {
    let mut cfg = config();
    cfg.allowed_origins = "https://chat.example".into();
    let server1 = server(cfg).await;
    let addr = server1.local_addr();
    assert_eq!(upgrade_from(addr, "https://chat.example").await, 101);
    assert_eq!(upgrade_from(addr, "http://localhost:5173").await, 403);
    assert_eq!(upgrade_from(addr, &format!("http://{addr}")).await, 101);
    server1.shutdown().await;

    let mut cfg = config();
    cfg.allowed_origins = "*".into();
    let server2 = server(cfg).await;
    assert_eq!(
        upgrade_from(server2.local_addr(), "https://evil.example").await,
        101
    );
    server2.shutdown().await;
}
