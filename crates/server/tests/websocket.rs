//! The WebSocket layer against raw bytes on a real socket: fragmentation,
//! control frames, and every protocol violation closing with its code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actorchat_protocol::ServerFrame;
use std::time::{Duration, Instant};

use common::raw::{CLOSE, CONTINUATION, PING, PONG, Raw, TEXT, find_close, upgrade_request};
use common::{config, http_get, metric, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn fragmented_text_with_an_interleaved_ping_is_reassembled() {
    let server = server(config()).await;
    let mut raw = Raw::connect(server.local_addr()).await;
    raw.send(false, TEXT, br#"{"type":"chat","#, true).await;
    raw.send(true, PING, b"are you there", true).await;
    raw.send(false, CONTINUATION, br#""text":"in three "#, true)
        .await;
    raw.send(true, CONTINUATION, "parts ✓\"}".as_bytes(), true)
        .await;
    let mut pong = None;
    let mut chat = None;
    while pong.is_none() || chat.is_none() {
        let (op, payload) = raw.frame().await;
        match op {
            PONG => pong = Some(payload),
            TEXT => {
                if let ServerFrame::Chat(c) = serde_json::from_slice(&payload).unwrap() {
                    chat = Some(c);
                }
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    assert_eq!(pong.unwrap(), b"are you there");
    assert_eq!(chat.unwrap().text, "in three parts ✓");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_close_is_answered() {
    let server = server(config()).await;
    let mut raw = Raw::connect(server.local_addr()).await;
    raw.send(true, CLOSE, &1000u16.to_be_bytes(), true).await;
    assert_eq!(raw.close_code().await, 1000);
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_violations_close_with_their_codes() {
    let server = server(config()).await;
    let addr = server.local_addr();

    let mut unmasked = Raw::connect(addr).await;
    unmasked
        .send(true, TEXT, br#"{"type":"ping","nonce":1}"#, false)
        .await;
    assert_eq!(unmasked.close_code().await, 1002);

    let mut not_utf8 = Raw::connect(addr).await;
    not_utf8.send(true, TEXT, &[0xff, 0xfe, 0x80], true).await;
    assert_eq!(not_utf8.close_code().await, 1007);

    let mut stray = Raw::connect(addr).await;
    stray
        .send(true, CONTINUATION, b"no message started", true)
        .await;
    assert_eq!(stray.close_code().await, 1002);

    // Fragments that add up past the 16 KiB limit.
    let mut big = Raw::connect(addr).await;
    let chunk = vec![b'x'; 10_000];
    big.send(false, TEXT, &chunk, true).await;
    big.send(true, CONTINUATION, &chunk, true).await;
    assert_eq!(big.close_code().await, 1009);

    // Whoever is left is unaffected.
    let mut fine = Raw::connect(addr).await;
    fine.send(true, PING, b"ok", true).await;
    assert_eq!(fine.frame().await, (PONG, b"ok".to_vec()));
    server.shutdown().await;
}

#[tokio::test]
async fn a_plain_get_is_told_to_upgrade() {
    let server = server(config()).await;
    let (status, body) = http_get(server.local_addr(), "/ws").await;
    assert_eq!(status, 400);
    assert!(body.contains("WebSocket"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn client_close_frames_are_validated_and_valid_codes_echoed() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let with_reason = |code: u16, reason: &[u8]| {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        payload
    };
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![], 1000),
        (with_reason(1000, b"bye"), 1000),
        (with_reason(1001, b""), 1001),
        (with_reason(3000, "κόσμε".as_bytes()), 3000),
        (with_reason(4999, b""), 4999),
        (vec![0x03], 1002),
        (with_reason(999, b""), 1002),
        (with_reason(1004, b""), 1002),
        (with_reason(1005, b""), 1002),
        (with_reason(1006, b""), 1002),
        (with_reason(1015, b""), 1002),
        (with_reason(2999, b""), 1002),
        (with_reason(5000, b""), 1002),
        (with_reason(1000, &[0xce, 0xba, 0xff]), 1007),
    ];
    for (payload, expected) in cases {
        let mut raw = Raw::connect(addr).await;
        raw.send(true, CLOSE, &payload, true).await;
        // The answer arrives and then the server closes TCP (no RST).
        let rest = raw.read_to_eof().await;
        let (code, _) = find_close(&rest).expect("a close frame");
        assert_eq!(code, expected, "client close payload {payload:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_close_frame_survives_bytes_still_in_flight() {
    let server = server(config()).await;
    let mut raw = Raw::connect(server.local_addr()).await;
    // An unmasked frame (1002) followed at once by 256 KiB more that the
    // server has not read when it decides to close. Dropping the socket
    // then would make the kernel send RST and could destroy the close frame.
    let mut bytes = vec![0x81, 0x02, b'h', b'i'];
    bytes.extend(std::iter::repeat_n(0x89, 256 * 1024));
    let (mut read, mut write) = raw.stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write
    });
    let mut received = std::mem::take(&mut raw.buf);
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .expect("closed with FIN, not reset");
    assert_eq!(find_close(&received).map(|(code, _)| code), Some(1002));
    drop(writer);
    server.shutdown().await;
}

#[tokio::test]
async fn a_64_bit_length_with_its_top_bit_set_is_a_protocol_error() {
    let server = server(config()).await;
    let mut raw = Raw::connect(server.local_addr()).await;
    raw.stream
        .write_all(&[0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4])
        .await
        .unwrap();
    assert_eq!(raw.close_code().await, 1002);
    server.shutdown().await;
}

/// The status line and headers of the answer to a raw request.
async fn answer(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "connection closed before the answer ended");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_lowercase()
}

#[tokio::test]
async fn handshake_refusals_say_what_to_fix() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let short_key = upgrade_request(addr, "/ws", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    assert!(answer(addr, &short_key).await.starts_with("http/1.1 400"));
    let version_8 = upgrade_request(addr, "/ws", "")
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let head = answer(addr, &version_8).await;
    assert!(head.starts_with("http/1.1 426"), "{head}");
    assert!(head.contains("sec-websocket-version: 13"), "{head}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_unfinished_frame_or_message_is_closed_after_the_frame_timeout() {
    let mut cfg = config();
    cfg.frame_timeout_secs = 1;
    let server = server(cfg).await;
    let addr = server.local_addr();

    let mut half_frame = Raw::connect(addr).await;
    half_frame
        .stream
        .write_all(&[0x81, 0x80 | 100, 1, 2])
        .await
        .unwrap();
    let mut half_message = Raw::connect(addr).await;
    half_message.send(false, TEXT, br#"{"type":"#, true).await;
    // Pings between the fragments do not keep the message alive.
    let mut pinging = Raw::connect(addr).await;
    pinging.send(false, TEXT, br#"{"type":"#, true).await;
    let started = Instant::now();
    // Pings every 200 ms for 6 s, stopping at the server's close frame.
    let pinger = tokio::spawn(async move {
        for _ in 0..30 {
            pinging.send(true, PING, b"still typing", true).await;
            let next = tokio::time::Instant::now() + Duration::from_millis(200);
            while let Ok((op, payload)) = tokio::time::timeout_at(next, pinging.frame()).await {
                if op == CLOSE {
                    return Some(u16::from_be_bytes([payload[0], payload[1]]));
                }
            }
        }
        None
    });
    assert_eq!(half_frame.close_code().await, 1008);
    assert_eq!(half_message.close_code().await, 1008);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        pinger.await.unwrap(),
        Some(1008),
        "pings must not keep an unfinished message alive"
    );

    // A client that finishes its frames in time is not affected.
    let mut steady = Raw::connect(addr).await;
    for _ in 0..3 {
        steady.send(true, PING, b"tick", true).await;
        assert_eq!(steady.until(PONG).await, b"tick");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_client_is_pinged_and_closed_when_it_never_answers() {
    let mut cfg = config();
    cfg.ping_interval_secs = 1;
    cfg.idle_timeout_secs = 3;
    let server = server(cfg).await;
    let addr = server.local_addr();

    // One client answers every ping, the whole time, on its own task.
    let mut answering = Raw::connect(addr).await;
    let answerer = tokio::spawn(async move {
        let mut answered = 0;
        while answered < 4 {
            let (op, payload) = answering.frame().await;
            assert_ne!(op, CLOSE, "closed although it answered every ping");
            if op == PING {
                answering.send(true, PONG, &payload, true).await;
                answered += 1;
            }
        }
        answering
    });
    let mut silent = Raw::connect(addr).await;
    let started = Instant::now();
    // The silent one is pinged, never answers, and is closed with 1001.
    let mut pings = 0;
    let (code, reason) = loop {
        let (op, payload) = silent.frame().await;
        match op {
            PING => pings += 1,
            CLOSE => {
                break (
                    u16::from_be_bytes([payload[0], payload[1]]),
                    String::from_utf8_lossy(&payload[2..]).into_owned(),
                );
            }
            _ => {}
        }
    };
    assert!(pings >= 1, "pinged before being closed");
    assert_eq!(code, 1001);
    assert!(reason.contains("idle"), "{reason}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(metric(addr, "actorchat_idle_disconnects_total").await >= 1.0);

    // The answering one outlived the idle timeout and still answers.
    let mut answering = answerer.await.unwrap();
    answering.send(true, PING, b"still here", true).await;
    assert_eq!(answering.until(PONG).await, b"still here");
    assert!(metric(addr, "actorchat_pings_sent_total").await >= 4.0);
    server.shutdown().await;
}
