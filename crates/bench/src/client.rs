//! Opening one benchmark client: TCP (optionally from a chosen source
//! address), the WebSocket handshake, and the `welcome` frame.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actorchat_protocol::{ServerFrame, Welcome};
use futures_util::StreamExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};

use crate::limits::ClientLimit;
use crate::target::Target;

/// An open client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// Why one client could not join. Counted per kind in the summary.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{}", .0.explain())]
    Limit(ClientLimit, #[source] io::Error),
    #[error("connection refused")]
    Refused,
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    #[error("server answered HTTP {0}")]
    Http(u16),
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    #[error("closed before welcome (code {0})")]
    ClosedEarly(u16),
    #[error("first frame was not a welcome: {0}")]
    NoWelcome(String),
    #[error("timed out")]
    Timeout,
}

impl ConnectError {
    /// A short, stable key for the summary's error counts.
    pub fn kind(&self) -> String {
        match self {
            ConnectError::Limit(ClientLimit::OpenFiles, _) => {
                "client open-file limit (EMFILE)".into()
            }
            ConnectError::Limit(ClientLimit::SourcePorts, _) => {
                "client source ports exhausted (EADDRNOTAVAIL)".into()
            }
            ConnectError::Refused => "connection refused".into(),
            ConnectError::Io(e) => format!("I/O: {}", e.kind()),
            ConnectError::Http(code) => format!("HTTP {code}"),
            ConnectError::Handshake(_) => "handshake failed".into(),
            ConnectError::ClosedEarly(code) => format!("closed before welcome ({code})"),
            ConnectError::NoWelcome(_) => "no welcome".into(),
            ConnectError::Timeout => "timed out".into(),
        }
    }

    /// The client-side limit behind this failure, if any.
    pub fn limit(&self) -> Option<ClientLimit> {
        match self {
            ConnectError::Limit(limit, _) => Some(*limit),
            _ => None,
        }
    }
}

fn io_error(e: io::Error) -> ConnectError {
    if let Some(limit) = ClientLimit::of(&e) {
        ConnectError::Limit(limit, e)
    } else if e.kind() == io::ErrorKind::ConnectionRefused {
        ConnectError::Refused
    } else {
        ConnectError::Io(e)
    }
}

/// WebSocket settings for tens of thousands of clients in one process:
/// tungstenite's default read buffer is 128 KiB per connection.
pub fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        // 0: frames are written as they are sent, no buffer is kept around.
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Connects one client, optionally from `source`, and waits for its `welcome`.
pub async fn connect(
    target: &Target,
    source: Option<IpAddr>,
    name: &str,
    room: &str,
    config: WebSocketConfig,
    timeout: Duration,
) -> Result<(Ws, Welcome), ConnectError> {
    tokio::time::timeout(timeout, connect_inner(target, source, name, room, config))
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

async fn connect_inner(
    target: &Target,
    source: Option<IpAddr>,
    name: &str,
    room: &str,
    config: WebSocketConfig,
) -> Result<(Ws, Welcome), ConnectError> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(io_error)?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(io_error)?;
    }
    let stream = socket.connect(target.addr).await.map_err(io_error)?;
    stream.set_nodelay(true).map_err(io_error)?;
    let url = target.ws_url(name, room);
    let (mut ws, _response) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await
            .map_err(|e| match e {
                tungstenite::Error::Io(e) => io_error(e),
                tungstenite::Error::Http(response) => {
                    ConnectError::Http(response.status().as_u16())
                }
                other => ConnectError::Handshake(other.to_string()),
            })?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return match serde_json::from_str::<ServerFrame>(text.as_str()) {
                    Ok(ServerFrame::Welcome(welcome)) => Ok((ws, welcome)),
                    Ok(_) => Err(ConnectError::NoWelcome(truncate(text.as_str()))),
                    Err(e) => Err(ConnectError::NoWelcome(e.to_string())),
                };
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(ConnectError::ClosedEarly(
                    frame.map(|f| u16::from(f.code)).unwrap_or(1005),
                ));
            }
            Some(Ok(_)) => continue,
            Some(Err(tungstenite::Error::Io(e))) => return Err(io_error(e)),
            Some(Err(e)) => return Err(ConnectError::Handshake(e.to_string())),
            None => return Err(ConnectError::ClosedEarly(1006)),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
