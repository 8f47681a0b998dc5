//! A reference point for `actorchat bench`: the leanest broadcast server
//! that speaks enough of the protocol for the `fanout` and `capacity`
//! scenarios (one room, no presence, no limits, no actors), on axum 0.8's
//! WebSocket support with tungstenite's buffers set small and each
//! connection draining every queued frame into one flush.
//!
//! It answers "how much of a measured figure is the machine, not actorchat":
//! on the benchmark machine it costs about as much CPU per delivery at
//! 100,000 deliveries/s as actorchat does (docs/benchmarks.md).
//!
//! ```sh
//! cargo run --release -p actorchat-bench --example lean_server -- 127.0.0.1:3001
//! actorchat bench fanout --url ws://127.0.0.1:3001 --clients 1000 --senders 10 --rate 100 --duration 15s
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use actorchat_protocol::{
    ChatMessage, ClientFrame, Limits, Pong, ServerFrame, Welcome, decode_client_frame,
};
use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3001".into());
    let (room, _) = broadcast::channel::<Utf8Bytes>(4096);
    let app = Router::new()
        .route(
            "/ws",
            get(move |ws: WebSocketUpgrade| {
                let room = room.clone();
                async move {
                    ws.read_buffer_size(512)
                        .write_buffer_size(0)
                        .on_upgrade(move |socket| client(socket, room))
                }
            }),
        )
        .route("/metrics", get(metrics));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("lean reference server on {addr}");
    axum::serve(listener, app).await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The two figures `actorchat bench` reads, from `/proc/self/stat`.
async fn metrics() -> String {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime in clock ticks (100 Hz on Linux), rss in 4 KiB pages.
    format!(
        "process_cpu_seconds_total {}\nprocess_resident_memory_bytes {}\n",
        (field(11) + field(12)) / 100.0,
        field(21) * 4096.0
    )
}

async fn client(socket: WebSocket, room: broadcast::Sender<Utf8Bytes>) {
    let id = NEXT_ID.fetch_add(1, Relaxed);
    let name = format!("guest-{id}");
    let mut inbox = room.subscribe();
    let (mut tx, mut rx) = socket.split();
    let welcome = ServerFrame::Welcome(Welcome {
        session_id: id,
        name: name.clone(),
        room: "lobby".into(),
        num_participants: room.receiver_count() as u32,
        participants: vec![],
        limits: Limits {
            max_text_chars: 4000,
            max_frame_bytes: 16 * 1024,
            max_messages_per_sec: 1000,
        },
        epoch: "lean".into(),
        last_id: 0,
        recovered: None,
        user_id: None,
        history: vec![],
    });
    if tx
        .send(Message::Text(welcome.to_json().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            inbound = rx.next() => {
                let Some(Ok(Message::Text(text))) = inbound else { return };
                let reply = match decode_client_frame(&text) {
                    Ok(ClientFrame::Chat { text, client_id, sent_at }) => {
                        let chat = ServerFrame::Chat(ChatMessage {
                            id: 0,
                            room: "lobby".into(),
                            author: name.clone(),
                            user_id: None,
                            text,
                            client_id,
                            sent_at,
                            server_time: now_ms(),
                            calc: None,
                        });
                        let _ = room.send(chat.to_json().into());
                        None
                    }
                    Ok(ClientFrame::Ping { nonce }) => Some(ServerFrame::Pong(Pong { nonce, server_time: now_ms() })),
                    _ => None,
                };
                if let Some(reply) = reply && tx.send(Message::Text(reply.to_json().into())).await.is_err() {
                    return;
                }
            }
            frame = inbox.recv() => {
                let Ok(frame) = frame else { return };
                if tx.feed(Message::Text(frame)).await.is_err() {
                    return;
                }
                while let Ok(frame) = inbox.try_recv() {
                    if tx.feed(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                if tx.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
