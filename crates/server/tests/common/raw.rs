//! A client speaking raw RFC 6455 frames over a plain socket, for tests of
//! the WebSocket layer that a well-behaved client library cannot write.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use actorchat_protocol::ServerFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::FRAME_TIMEOUT;

// Not every test binary uses every opcode.
#[allow(unused_imports)]
pub use actorchat::websocket::frame::{
    OP_CLOSE as CLOSE, OP_CONTINUATION as CONTINUATION, OP_PING as PING, OP_PONG as PONG,
    OP_TEXT as TEXT,
};

/// A valid upgrade request for `path`, with extra header lines.
pub fn upgrade_request(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// A client speaking raw RFC 6455 frames.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = upgrade_request(addr, "/ws?name=raw", "");
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

    pub async fn read_until_blank_line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            self.fill().await;
        }
    }

    pub async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(FRAME_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Sends one frame (masked unless told otherwise); an error if the
    /// server has closed the connection.
    pub async fn try_send(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
        masked: bool,
    ) -> std::io::Result<()> {
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
        self.stream.write_all(&out).await
    }

    /// Sends one frame (masked unless told otherwise).
    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8], masked: bool) {
        self.try_send(fin, opcode, payload, masked).await.unwrap();
    }

    /// Reads one (unmasked) server frame.
    pub async fn frame(&mut self) -> (u8, Vec<u8>) {
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
    pub async fn close_code(&mut self) -> u16 {
        loop {
            let (op, payload) = self.frame().await;
            if op == CLOSE {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }
}

impl Raw {
    /// Skips frames until one with opcode `op`; returns its payload.
    pub async fn until(&mut self, op: u8) -> Vec<u8> {
        loop {
            let (got, payload) = self.frame().await;
            assert!(
                got != CLOSE || op == CLOSE,
                "closed while waiting for opcode {op}"
            );
            if got == op {
                return payload;
            }
        }
    }

    /// Reads until the server closes the TCP connection; returns what came.
    /// Fails on a reset (the kernel's RST can destroy unread frames).
    pub async fn read_to_eof(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        tokio::time::timeout(FRAME_TIMEOUT, self.stream.read_to_end(&mut rest))
            .await
            .expect("the server did not close the connection")
            .expect("the connection was reset instead of closed");
        rest
    }
}

/// The first close frame in `bytes` (unmasked server frames): its code and reason.
pub fn find_close(mut bytes: &[u8]) -> Option<(u16, String)> {
    while bytes.len() >= 2 {
        let (len, header) = match bytes[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => return None,
            n => (usize::from(n), 2),
        };
        let frame = bytes.get(header..header + len)?;
        if bytes[0] & 0x0F == CLOSE {
            let code = u16::from_be_bytes([frame[0], frame[1]]);
            return Some((code, String::from_utf8_lossy(&frame[2..]).into_owned()));
        }
        bytes = &bytes[header + len..];
    }
    None
}
