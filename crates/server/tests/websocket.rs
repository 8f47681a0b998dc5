//! The WebSocket layer against raw bytes on a real socket: fragmentation,
//! control frames, and every protocol violation closing with its code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use actorchat_protocol::ServerFrame;
use common::{FRAME_TIMEOUT, config, http_get, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A client speaking raw RFC 6455 frames.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /ws?name=raw HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        let head = raw.read_until_blank_line().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        // The welcome.
        let (op, payload) = raw.frame().await;
        assert_eq!(op, TEXT);
        assert!(matches!(
            serde_json::from_slice(&payload).unwrap(),
            ServerFrame::Welcome(_)
        ));
        raw
    }

    async fn read_until_blank_line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(FRAME_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Sends one masked frame.
    async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8], masked: bool) {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        if payload.len() < 126 {
            out.push(mask_bit | payload.len() as u8);
        } else {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        if masked {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        self.stream.write_all(&out).await.unwrap();
    }

    /// Reads one (unmasked) server frame.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are unmasked");
                let (len, header) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => (
                        usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                        4,
                    ),
                    126 => (usize::MAX, 0),
                    127 => panic!("unexpectedly large frame"),
                    n => (usize::from(n), 2),
                };
                if header > 0 && self.buf.len() >= header + len {
                    let op = self.buf[0] & 0x0F;
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return (op, payload);
                }
            }
            self.fill().await;
        }
    }

    /// Skips frames until a close frame; returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            let (op, payload) = self.frame().await;
            if op == CLOSE {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }
}

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
