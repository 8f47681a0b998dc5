//! Bad input, limits, slow consumers, crashes and shutdown, over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use actorchat_protocol::{ErrorCode, ServerFrame};
use common::{
    Client, config, config_with_admin, http_get, metric, observer_action, server, wait_for_metric,
    ws_url,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

async fn expect_error(client: &mut Client, code: ErrorCode) {
    loop {
        match client.next().await {
            ServerFrame::Error(e) => {
                assert_eq!(e.code, code, "{}", e.message);
                assert!(
                    e.message.len() > 10,
                    "message should be a sentence: {:?}",
                    e.message
                );
                return;
            }
            ServerFrame::RoomUpdate(_) => {}
            other => panic!("expected error {code:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_bad_input_class_gets_its_error_and_the_connection_stays_usable() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut bad = Client::connect(addr, "bad", "lobby").await;
    let mut bystander = Client::connect(addr, "bystander", "lobby").await;
    let long_text = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(4001));
    let cases: Vec<(&str, ErrorCode)> = vec![
        ("not json at all", ErrorCode::InvalidJson),
        (r#"["an","array"]"#, ErrorCode::InvalidJson),
        (r#"{"type":"chat","text":"#, ErrorCode::InvalidJson),
        (r#"{"type":"teleport"}"#, ErrorCode::UnknownType),
        (r#"{"text":"no type"}"#, ErrorCode::InvalidField),
        (r#"{"type":"chat"}"#, ErrorCode::InvalidField),
        (r#"{"type":"chat","text":42}"#, ErrorCode::InvalidField),
        (r#"{"type":"chat","text":"   "}"#, ErrorCode::InvalidField),
        (
            r#"{"type":"ping","nonce":"seven"}"#,
            ErrorCode::InvalidField,
        ),
        (
            r#"{"type":"ping","nonce":9007199254740993}"#,
            ErrorCode::InvalidField,
        ),
        (&long_text, ErrorCode::TextTooLong),
        (r#"{"type":"set_name","name":""}"#, ErrorCode::InvalidName),
        (
            r#"{"type":"set_name","name":"tab\there"}"#,
            ErrorCode::InvalidName,
        ),
        (
            r#"{"type":"join","room":"no spaces"}"#,
            ErrorCode::InvalidRoom,
        ),
        (r#"{"type":"join","room":""}"#, ErrorCode::InvalidRoom),
    ];
    for (i, (raw, code)) in cases.iter().enumerate() {
        bad.send_raw(raw).await;
        expect_error(&mut bad, *code).await;
        bad.ping(i as u64).await;
    }
    // Nothing reached the other client: its next chat is the one sent now.
    bad.chat("still here").await;
    let msg = bystander.next_chat().await;
    assert_eq!(
        (msg.author.as_str(), msg.text.as_str()),
        ("bad", "still here")
    );
    assert_eq!(
        metric(addr, "actorchat_errors_total{code=\"invalid_json\"}").await,
        3.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_the_connection_recovers() {
    let mut cfg = config();
    cfg.rate_per_sec = 20;
    cfg.rate_burst = 5;
    let server = server(cfg).await;
    let mut flooder = Client::connect(server.local_addr(), "flood", "lobby").await;
    for i in 0..50 {
        flooder.chat(&format!("spam {i}")).await;
    }
    let mut chats = 0;
    let mut limited = 0;
    // The burst of 5 goes through, the rest is dropped with (at least) one notice.
    loop {
        match tokio::time::timeout(Duration::from_millis(500), flooder.next()).await {
            Ok(ServerFrame::Chat(_)) => chats += 1,
            Ok(ServerFrame::Error(e)) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                limited += 1;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!((5..=8).contains(&chats), "{chats} chats got through");
    assert!(limited >= 1);
    flooder.ping(1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn binary_frames_close_with_1008() {
    let server = server(config()).await;
    let mut c = Client::connect(server.local_addr(), "bin", "lobby").await;
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(c.close_code().await, Some(1008));
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversize_frame_closes_with_1009_and_others_are_unaffected() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut big = Client::connect(addr, "big", "lobby").await;
    let mut other = Client::connect(addr, "other", "lobby").await;
    let huge = format!(r#"{{"type":"chat","text":"{}"}}"#, "y".repeat(17 * 1024));
    // The server may close before the whole frame is written.
    let _ = big.ws.send(Message::text(huge)).await;
    assert_eq!(big.close_code().await, Some(1009));
    other.chat("fine").await;
    assert_eq!(other.next_chat().await.text, "fine");
    assert_eq!(
        metric(addr, "actorchat_oversize_disconnects_total").await,
        1.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_query_parameters_are_refused_before_upgrading() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let err = tokio_tungstenite::connect_async(ws_url(addr, "ok", "bad%20room"))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 400),
        other => panic!("expected HTTP 400, got {other}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_connection_limit_answers_503() {
    let mut cfg = config();
    cfg.max_connections = Some(2);
    let server = server(cfg).await;
    let addr = server.local_addr();
    let _a = Client::connect(addr, "a", "lobby").await;
    let b = Client::connect(addr, "b", "lobby").await;
    let err = tokio_tungstenite::connect_async(ws_url(addr, "c", "lobby"))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 503),
        other => panic!("expected HTTP 503, got {other}"),
    }
    assert_eq!(
        metric(addr, "actorchat_connections_refused_total").await,
        1.0
    );
    // A freed slot can be used again.
    drop(b);
    wait_for_metric(addr, "actorchat_connections", |v| v == 1.0).await;
    let _c = Client::connect(addr, "c", "lobby").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_as_a_slow_consumer() {
    let mut cfg = config();
    cfg.outbound_queue = 64;
    cfg.rate_per_sec = 100_000;
    cfg.rate_burst = 100_000;
    let server = server(cfg).await;
    let addr = server.local_addr();

    // A client with a tiny receive window that never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut sleeper, _) =
        tokio_tungstenite::client_async(ws_url(addr, "sleeper", "lobby"), stream)
            .await
            .unwrap();

    let mut sender = Client::connect(addr, "sender", "lobby").await;
    let mut watcher = Client::connect(addr, "watcher", "lobby").await;
    // The sleeper wakes up as soon as it is kicked: after what was already
    // in flight, it must find a 1013 close frame (the server gives it
    // `CLOSE_TIMEOUT` to read that far).
    let sleeper_end = tokio::spawn(async move {
        wait_for_metric(addr, "actorchat_slow_consumer_disconnects_total", |v| {
            v == 1.0
        })
        .await;
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match sleeper.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("the slow consumer's connection should end")
    });
    let text = "z".repeat(3500);
    const MESSAGES: usize = 4000;
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < MESSAGES {
            if let ServerFrame::Chat(_) = watcher.next().await {
                got += 1;
            }
        }
        got
    });
    // The sender keeps at most a window of messages in flight (it waits for
    // its own echoes), so only a client that does not read falls behind.
    const WINDOW: usize = 8;
    for _ in 0..MESSAGES / WINDOW {
        for _ in 0..WINDOW {
            sender.chat(&text).await;
        }
        for _ in 0..WINDOW {
            sender.next_chat().await;
        }
    }
    assert_eq!(
        reader.await.unwrap(),
        MESSAGES,
        "the watcher kept receiving everything"
    );
    assert_eq!(
        sleeper_end.await.unwrap(),
        Some(1013),
        "the slow consumer is told why with 1013"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_room_that_panics_is_restarted_and_the_server_keeps_serving() {
    let server = server(config_with_admin()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "a", "fragile").await;
    let mut b = Client::connect(addr, "b", "fragile").await;
    let mut elsewhere = Client::connect(addr, "c", "sturdy").await;
    a.chat("before").await;
    let before = b.next_chat().await;
    let (status, body) = observer_action(addr, "rooms/fragile/kill").await;
    assert_eq!(status, 202, "{body}");
    // Both members rejoin the restarted room and get a fresh welcome.
    for client in [&mut a, &mut b] {
        let w = client
            .next_matching(|f| match f {
                ServerFrame::Welcome(w) => Some(w),
                _ => None,
            })
            .await;
        assert_eq!(w.room, "fragile");
    }
    a.chat("after").await;
    let after = b.next_chat().await;
    assert_eq!(after.text, "after");
    assert!(
        after.id > before.id,
        "the sequence continues across the restart"
    );
    assert_eq!(metric(addr, "actorchat_room_restarts_total").await, 1.0);
    elsewhere.ping(5).await;
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_sends_1001() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "a", "lobby").await;
    let mut b = Client::connect(addr, "b", "other").await;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(a.close_code().await, Some(1001));
    assert_eq!(b.close_code().await, Some(1001));
    stopping.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn http_routes() {
    let server = server(config()).await;
    let addr = server.local_addr();
    assert_eq!(
        http_get(addr, "/hello").await,
        (200, "Hello, World!".into())
    );
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await, (200, "ready".into()));
    let (status, page) = http_get(addr, "/test.html").await;
    assert_eq!(status, 200);
    assert!(page.contains("new WebSocket"));
    let (status, index) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(
        index.contains("<html") || index.contains("<!doctype"),
        "{index}"
    );
    assert_eq!(http_get(addr, "/missing.js").await.0, 404);
    let _c = Client::connect(addr, "a", "lobby").await;
    let (status, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "actorchat_connections 1",
        "actorchat_rooms 1",
        "actorchat_frames_in_total",
        "actorchat_frames_out_total",
        "actorchat_broadcasts_total",
        "actorchat_slow_consumer_disconnects_total 0",
        "actorchat_outbound_queue_depth 0",
        "actorchat_room_inbox_deepest 0",
        "actorchat_errors_total{code=\"rate_limited\"} 0",
        "actorchat_errors_total{code=\"room_limit\"} 0",
        "actorchat_actor_restarts_total{actor=\"room_registry\"} 0",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }
    server.shutdown().await;
}
