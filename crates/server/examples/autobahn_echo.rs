//! A WebSocket echo server on `crates/server/src/websocket`, the layer the
//! chat uses, for the Autobahn|Testsuite (docs/conformance.md):
//!
//! ```sh
//! cargo run --release -p actorchat --example autobahn_echo -- 127.0.0.1:9001
//! ../shared/autobahn/run.sh ws://127.0.0.1:9001
//! ```
//!
//! Text comes back as text and binary as binary. Messages may be up to
//! 16 MiB (case 9.1.6); the number of fragments is bounded only by that size
//! and the frame timeout. Close handling is the chat's own
//! ([`websocket::close`]).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use actorchat::websocket::{self, Closing, Incoming, Reader, Settings, Upgrade, Writer};
use axum::Router;
use axum::routing::get;
use tokio_util::task::TaskTracker;

const MAX_MESSAGE: usize = 16 << 20;

#[tokio::main]
async fn main() -> ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()
    {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("autobahn_echo: usage: autobahn_echo [HOST:PORT] ({e})");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("autobahn_echo: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tracker = TaskTracker::new();
    let app = Router::new().route(
        "/",
        get(move |upgrade: Upgrade| async move {
            let settings = Settings {
                read: 4096,
                max_message: MAX_MESSAGE,
                frame_timeout: Duration::from_secs(60),
            };
            upgrade.on_upgrade(&tracker, settings, echo)
        }),
    );
    // Port 0 picks a free port; the line says which (CI reads it).
    match listener.local_addr() {
        Ok(bound) => println!("autobahn_echo listening on ws://{bound}"),
        Err(e) => {
            eprintln!("autobahn_echo: {e}");
            return ExitCode::FAILURE;
        }
    }
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autobahn_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn echo(mut reader: Reader, mut writer: Writer) {
    let closing = loop {
        let sent = match reader.next().await {
            Ok(Incoming::Text(text)) => writer.send_text(text.as_bytes()).await,
            Ok(Incoming::Binary(data)) => writer.send_binary(&data).await,
            Ok(Incoming::Ping(payload)) => writer.pong(&payload).await,
            Ok(Incoming::Pong) => Ok(()),
            Ok(Incoming::Close(code)) => break Closing::answer(code),
            Err(e) => match e.closing() {
                Some(closing) => break closing,
                None => return,
            },
        };
        if sent.is_err() {
            return;
        }
    };
    websocket::close(reader, writer, closing).await;
}
