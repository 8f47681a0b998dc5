//! Opening one benchmark client: TCP (optionally from a chosen source
//! address), the WebSocket handshake, and the `welcome` frame.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actorchat_protocol::{ServerFrame, Welcome};
use tokio::net::TcpSocket;

use crate::limits::ClientLimit;
use crate::target::Target;
use crate::websocket::{Incoming, Ws, WsError};

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

/// Connects one client, optionally from `source`, and waits for its `welcome`.
pub async fn connect(
    target: &Target,
    source: Option<IpAddr>,
    name: &str,
    room: &str,
    read_buffer: usize,
    timeout: Duration,
) -> Result<(Ws, Welcome), ConnectError> {
    let path = target.ws_path(name, room);
    connect_path(target, source, &path, read_buffer, timeout).await
}

/// Connects one client to the WebSocket `path` (with its query, e.g. from
/// [`Target::resume_path`]) and waits for its `welcome`.
pub async fn connect_path(
    target: &Target,
    source: Option<IpAddr>,
    path: &str,
    read_buffer: usize,
    timeout: Duration,
) -> Result<(Ws, Welcome), ConnectError> {
    tokio::time::timeout(timeout, connect_inner(target, source, path, read_buffer))
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

async fn connect_inner(
    target: &Target,
    source: Option<IpAddr>,
    path: &str,
    read_buffer: usize,
) -> Result<(Ws, Welcome), ConnectError> {
    let node = target.pick();
    let socket = match node.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(io_error)?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(io_error)?;
    }
    let stream = socket.connect(node.addr).await.map_err(io_error)?;
    stream.set_nodelay(true).map_err(io_error)?;
    let path = format!("{}{path}", node.prefix);
    let mut ws = Ws::handshake(stream, &node.authority, &path, read_buffer)
        .await
        .map_err(ws_error)?;
    let welcome = match ws.recv().await.map_err(ws_error)? {
        Incoming::Text(text) => match serde_json::from_str::<ServerFrame>(text) {
            Ok(ServerFrame::Welcome(welcome)) => welcome,
            Ok(_) => return Err(ConnectError::NoWelcome(truncate(text))),
            Err(e) => return Err(ConnectError::NoWelcome(e.to_string())),
        },
        Incoming::Close(code) => return Err(ConnectError::ClosedEarly(code)),
        Incoming::Ping(_) | Incoming::Other => {
            return Err(ConnectError::NoWelcome("a control or binary frame".into()));
        }
    };
    Ok((ws, welcome))
}

fn ws_error(e: WsError) -> ConnectError {
    match e {
        WsError::Io(e) => io_error(e),
        WsError::Eof => ConnectError::ClosedEarly(1006),
        WsError::Http(code) => ConnectError::Http(code),
        other => ConnectError::Handshake(other.to_string()),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
