//! Test harness: a real server on an ephemeral port and real WebSocket clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod raw;
pub mod redis_server;

use std::net::SocketAddr;
use std::time::Duration;

use actorchat::{Config, RunningServer};
use actorchat_protocol::{ChatMessage, ClientFrame, ServerFrame, Welcome};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for one expected frame before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

pub fn config() -> Config {
    let mut config = Config::for_tests().unwrap();
    config.room_idle_secs = 60;
    config
}

/// A fresh directory under the system temp dir, removed when dropped: a
/// data directory for a test server.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("actorchat-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test configuration with durable SQLite storage in `dir`.
pub fn sqlite_config(dir: &TempDir) -> Config {
    let mut config = config();
    config.storage = actorchat::history::StorageKind::Sqlite;
    config.data_dir = dir.path().to_owned();
    config
}

pub async fn server(config: Config) -> RunningServer {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    actorchat::start(config)
        .await
        .unwrap_or_else(|e| panic!("the server did not start: {e}"))
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Welcome,
}

pub fn ws_url(addr: SocketAddr, name: &str, room: &str) -> String {
    format!("ws://{addr}/ws?name={name}&room={room}")
}

impl Client {
    pub async fn connect(addr: SocketAddr, name: &str, room: &str) -> Client {
        Client::connect_url(&ws_url(addr, name, room)).await
    }

    /// Connects and resumes after `since.id` of `since.epoch`.
    pub async fn resume(
        addr: SocketAddr,
        name: &str,
        room: &str,
        since: &actorchat_protocol::Since,
    ) -> Client {
        let url = format!(
            "{}&since={}&epoch={}",
            ws_url(addr, name, room),
            since.id,
            since.epoch
        );
        Client::connect_url(&url).await
    }

    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = connect_async(url).await.unwrap();
        let mut client = Client {
            ws,
            welcome: dummy_welcome(),
        };
        match client.next().await {
            ServerFrame::Welcome(w) => client.welcome = w,
            other => panic!("expected welcome, got {other:?}"),
        }
        client
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        let text = serde_json::to_string(frame).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    pub async fn chat(&mut self, text: &str) {
        self.send(&ClientFrame::Chat {
            text: text.into(),
            client_id: None,
            sent_at: None,
        })
        .await;
    }

    /// The next protocol frame (control frames skipped).
    pub async fn next(&mut self) -> ServerFrame {
        self.next_within(FRAME_TIMEOUT).await
    }

    /// The next protocol frame, waiting at most `limit` for it.
    pub async fn next_within(&mut self, limit: Duration) -> ServerFrame {
        loop {
            let msg = tokio::time::timeout(limit, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("read error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Close(c) => panic!("connection closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// Skips frames until one matches.
    pub async fn next_matching<T>(&mut self, mut pick: impl FnMut(ServerFrame) -> Option<T>) -> T {
        loop {
            if let Some(t) = pick(self.next().await) {
                return t;
            }
        }
    }

    pub async fn next_chat(&mut self) -> ChatMessage {
        self.next_matching(|f| match f {
            ServerFrame::Chat(c) => Some(c),
            _ => None,
        })
        .await
    }

    /// Sends a ping and waits for its pong, skipping other frames.
    pub async fn ping(&mut self, nonce: u64) {
        self.send(&ClientFrame::Ping { nonce }).await;
        self.next_matching(|f| match f {
            ServerFrame::Pong(p) if p.nonce == nonce => Some(()),
            _ => None,
        })
        .await;
    }

    /// Reads until the server closes; returns the close code (None if the
    /// connection ended without a close frame).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let msg = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return Some(u16::from(frame.code)),
                Some(Ok(Message::Close(None))) => return Some(u16::from(CloseCode::Status)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

fn dummy_welcome() -> Welcome {
    Welcome {
        session_id: 0,
        name: String::new(),
        room: String::new(),
        num_participants: 0,
        participants: vec![],
        limits: actorchat_protocol::Limits {
            max_text_chars: 0,
            max_frame_bytes: 0,
            max_messages_per_sec: 0,
        },
        epoch: String::new(),
        last_id: 0,
        recovered: None,
        user_id: None,
        history: vec![],
    }
}

/// GETs a path over plain HTTP/1.1 with the given `Host` header; returns
/// the whole response as text.
pub async fn http_response(addr: SocketAddr, path: &str, host: &str) -> String {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Sends one raw HTTP/1.1 request and reads the whole response as text.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(FRAME_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// Fetches a path over plain HTTP/1.1 and returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    status_and_body(&http_response(addr, path, &addr.to_string()).await)
}

/// Reads one metric's value from `/metrics`.
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

/// Polls a metric until `ok` holds (bounded).
pub async fn wait_for_metric(addr: SocketAddr, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..200 {
        let v = metric(addr, name).await;
        if ok(v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("metric {name} never reached the expected value");
}

/// The admin token the observer tests configure.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A config with `--admin-token` set to [`ADMIN_TOKEN`].
pub fn config_with_admin() -> Config {
    let mut config = config();
    config.admin_token = Some(ADMIN_TOKEN.parse().unwrap());
    config
}

/// Sends `method path` with extra header lines (each ending in `\r\n`) and
/// an empty body; returns (status, body).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &str,
) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n"
    );
    status_and_body(&exchange(addr, &request).await)
}

/// An HTTP response's status code and body.
fn status_and_body(text: &str) -> (u16, String) {
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// An observer action as the admin: `POST /api/observer/{action}`.
pub async fn observer_action(addr: SocketAddr, action: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    http_request(addr, "POST", &format!("/api/observer/{action}"), &auth).await
}
