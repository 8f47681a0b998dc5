//! The HTTP phase before an upgrade: slow headers time out, and stalled
//! sockets (slowloris) cannot lock new clients out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, config, metric, server, wait_for_metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a socket that sends half a request line and then nothing.
async fn stalled(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    stream
}

/// Waits (bounded) until the server closes `stream`.
async fn closed_by_server(mut stream: TcpStream, within: Duration) {
    let mut sink = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the server kept a stalled socket open");
}

#[tokio::test]
async fn headers_that_never_finish_are_closed_after_the_header_timeout() {
    let mut cfg = config();
    cfg.header_timeout_secs = 1;
    let server = server(cfg).await;
    let addr = server.local_addr();
    let started = std::time::Instant::now();
    closed_by_server(stalled(addr).await, Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(metric(addr, "actorchat_header_timeouts_total").await >= 1.0);
    server.shutdown().await;
}

#[tokio::test]
async fn stalled_sockets_cannot_lock_new_clients_out() {
    let mut cfg = config();
    cfg.max_pending_connections = 50;
    cfg.header_timeout_secs = 2;
    let server = server(cfg).await;
    let addr = server.local_addr();
    let mut sockets = Vec::new();
    for _ in 0..300 {
        sockets.push(stalled(addr).await);
    }
    // A real client still gets in and chats, although many more stalled
    // sockets than the cap are open.
    let mut client = tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect(addr, "newcomer", "lobby"),
    )
    .await
    .expect("a new client connects despite the stalled sockets");
    client.chat("made it").await;
    assert_eq!(client.next_chat().await.text, "made it");
    assert!(metric(addr, "actorchat_pending_evicted_total").await >= 250.0);
    // Every stalled socket is gone: evicted, or timed out after 2 s.
    for socket in sockets {
        closed_by_server(socket, Duration::from_secs(10)).await;
    }
    // Only the metrics request itself is still in its HTTP phase.
    wait_for_metric(addr, "actorchat_pending_connections", |v| v <= 1.0).await;
    server.shutdown().await;
}
