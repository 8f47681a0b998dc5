//! The observer over real sockets: its snapshot stream, its access rules
//! and its actions (kill a room, close a connection, cancel a calculation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use actorchat_protocol::{CalcStatus, ServerFrame};
use common::{
    ADMIN_TOKEN, Client, FRAME_TIMEOUT, config, config_with_admin, http_request, observer_action,
    server,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A Server-Sent Events reader over a plain socket (HTTP/1.0, so the body is
/// not chunked: it simply runs until the server closes).
struct Stream {
    tcp: TcpStream,
    buf: String,
    status: u16,
}

impl Stream {
    async fn open(addr: SocketAddr, auth: Option<&str>) -> Stream {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let auth = auth.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!("GET /api/observer/stream HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut stream = Stream {
            tcp,
            buf: String::new(),
            status: 0,
        };
        let head = stream.until("\r\n\r\n").await;
        stream.status = head.split(' ').nth(1).unwrap().parse().unwrap();
        stream
    }

    /// Reads until `sep`; returns what came before it.
    async fn until(&mut self, sep: &str) -> String {
        loop {
            if let Some(at) = self.buf.find(sep) {
                let before = self.buf[..at].to_owned();
                self.buf.drain(..at + sep.len());
                return before;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(FRAME_TIMEOUT, self.tcp.read(&mut chunk))
                .await
                .expect("no data from the stream within the timeout")
                .unwrap();
            assert!(n > 0, "the stream ended; so far: {}", self.buf);
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// The next event with data: (name, parsed data).
    async fn next(&mut self) -> (String, Value) {
        loop {
            let block = self.until("\n\n").await;
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if !data.is_empty() {
                return (name, serde_json::from_str(&data).unwrap());
            }
        }
    }

    /// Snapshots until one satisfies `ok` (bounded).
    async fn snapshot_where(&mut self, ok: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..30 {
            let (name, data) = self.next().await;
            if name == "snapshot" && ok(&data) {
                return data;
            }
        }
        panic!("no snapshot met the condition within 30 events");
    }
}

fn room<'a>(snapshot: &'a Value, name: &str) -> Option<&'a Value> {
    snapshot["rooms"]["shown"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
}

#[tokio::test]
async fn the_stream_says_hello_then_sends_a_snapshot_every_second() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, None).await;
    assert_eq!(stream.status, 200);
    let (name, hello) = stream.next().await;
    assert_eq!(name, "hello");
    assert_eq!(hello["access"], "read_only");
    assert_eq!(hello["token_set"], false);
    assert!(hello["history"].is_array());

    let mut a = Client::connect(addr, "a", "watched").await;
    let _b = Client::connect(addr, "b", "watched").await;
    a.chat("hello").await;
    let snap = stream
        .snapshot_where(|s| {
            room(s, "watched").is_some_and(|r| r["members"] == 2 && r["last_id"] == 1)
        })
        .await;
    assert!(snap["connections"]["open"].as_i64().unwrap() >= 2);
    assert_eq!(snap["rooms"]["live"], 1);
    assert_eq!(snap["tree"]["registry"]["up"], true);
    assert!(snap["process"]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(snap["process"]["runtime"]["workers"].as_u64().unwrap() > 0);
    assert_eq!(snap["latency"]["window_secs"], 10);
    // Once a second, not faster: two more snapshots take about two seconds.
    let started = std::time::Instant::now();
    stream.snapshot_where(|_| true).await;
    stream.snapshot_where(|_| true).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The delivery of "hello" was probed (the first broadcast always is).
    let snap = stream
        .snapshot_where(|s| s["latency"]["samples"].as_u64() > Some(0))
        .await;
    assert!(snap["latency"]["p99_us"].as_u64().is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_token_the_observer_is_read_only() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "a", "calm").await;
    for action in [
        "rooms/calm/kill",
        "rooms/calm/members/1/close",
        "calcs/c1/cancel",
    ] {
        let (status, body) = observer_action(addr, action).await;
        assert_eq!(status, 403, "{action}: {body}");
        assert!(body.contains("--admin-token"), "{body}");
    }
    // The page and reading are allowed (loopback).
    let (status, page) = common::http_get(addr, "/observer").await;
    assert_eq!(status, 200);
    assert!(page.contains("<div id=\"app\">"), "{page}");
    let (status, body) = http_request(addr, "GET", "/api/observer/rooms/calm/members", "").await;
    assert_eq!(status, 200, "{body}");
    let members: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(members[0]["name"], "a");
    a.ping(1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn with_a_token_the_stream_and_the_actions_need_it() {
    let server = server(config_with_admin()).await;
    let addr = server.local_addr();
    for auth in [None, Some("wrong-token-x")] {
        let stream = Stream::open(addr, auth).await;
        assert_eq!(stream.status, 401, "{auth:?}");
    }
    let (status, body) = http_request(
        addr,
        "POST",
        "/api/observer/rooms/lobby/kill",
        "Authorization: Bearer wrong-token-x\r\n",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = http_request(addr, "GET", "/api/observer/rooms/lobby/members", "").await;
    assert_eq!(status, 401);

    let mut stream = Stream::open(addr, Some(ADMIN_TOKEN)).await;
    assert_eq!(stream.status, 200);
    let (_, hello) = stream.next().await;
    assert_eq!(hello["access"], "admin");
    assert_eq!(hello["token_set"], true);
    // The token never shows in what the server sends.
    assert!(!hello.to_string().contains(ADMIN_TOKEN));
    let (status, _) = observer_action(addr, "rooms/nowhere/kill").await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn a_killed_room_restarts_and_its_restart_count_shows() {
    let server = server(config_with_admin()).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, Some(ADMIN_TOKEN)).await;
    let mut a = Client::connect(addr, "a", "fragile").await;
    let mut b = Client::connect(addr, "b", "fragile").await;
    stream
        .snapshot_where(|s| room(s, "fragile").is_some_and(|r| r["members"] == 2))
        .await;
    let (status, body) = observer_action(addr, "rooms/fragile/kill").await;
    assert_eq!(status, 202, "{body}");
    for client in [&mut a, &mut b] {
        client
            .next_matching(|f| match f {
                ServerFrame::Welcome(w) => Some(w),
                _ => None,
            })
            .await;
    }
    let snap = stream
        .snapshot_where(|s| {
            room(s, "fragile").is_some_and(|r| r["restarts"] == 1 && r["members"] == 2)
        })
        .await;
    assert_eq!(snap["rooms"]["totals"]["restarts"], 1);
    a.chat("still here").await;
    assert_eq!(b.next_chat().await.text, "still here");
    server.shutdown().await;
}

#[tokio::test]
async fn an_administrator_closes_one_connection() {
    let server = server(config_with_admin()).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, Some(ADMIN_TOKEN)).await;
    let mut a = Client::connect(addr, "a", "hall").await;
    let mut b = Client::connect(addr, "b", "hall").await;
    let session = b.welcome.session_id;
    let (status, _) = observer_action(addr, &format!("rooms/hall/members/{session}/close")).await;
    assert_eq!(status, 200);
    assert_eq!(b.close_code().await, Some(1000));
    let (status, _) = observer_action(addr, &format!("rooms/hall/members/{session}/close")).await;
    assert_eq!(status, 404, "already gone");
    stream
        .snapshot_where(|s| s["connections"]["closed_total"]["admin"] == 1)
        .await;
    a.ping(2).await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_administrator_cancels_a_running_calculation() {
    let mut cfg = config_with_admin();
    // 3·10^6! runs for several seconds even on a fast machine (10^6! takes
    // ~0.5 s, which a snapshot a second can miss): long enough to be seen
    // running and cancelled.
    cfg.calc_skip_time_admission = true;
    cfg.calc_timeout_ms = 60_000;
    cfg.calc_workers = Some(1);
    cfg.calc_max_bytes = 1 << 30;
    cfg.calc_budget_bytes = 1 << 30;
    let server = server(cfg).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, Some(ADMIN_TOKEN)).await;
    let mut a = Client::connect(addr, "a", "maths").await;
    a.chat("3000000!").await;
    let snap = stream
        .snapshot_where(|s| {
            s["calcs"]["running"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        })
        .await;
    let calc = &snap["calcs"]["running"][0];
    assert_eq!(calc["expr"], "3000000!");
    assert!(calc["estimate_ms"].as_u64().unwrap() > 0);
    let id = calc["id"].as_str().unwrap().to_owned();
    let (status, body) = observer_action(addr, &format!("calcs/{id}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    let chat = a.next_chat().await;
    let result = chat.calc.expect("the chat carries its calculation");
    assert_eq!(result.status, CalcStatus::Error);
    assert!(
        result.reason.unwrap_or_default().contains("administrator"),
        "the requester is told why"
    );
    let snap = stream
        .snapshot_where(|s| s["calcs"]["running"].as_array().is_some_and(Vec::is_empty))
        .await;
    assert_eq!(snap["calcs"]["recent"][0]["id"], id.as_str());
    let (status, _) = observer_action(addr, &format!("calcs/{id}/cancel")).await;
    assert_eq!(status, 404, "no longer running");
    server.shutdown().await;
}
