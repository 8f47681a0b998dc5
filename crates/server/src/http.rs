//! HTTP routes: the WebSocket upgrade, health, metrics, and the embedded
//! web client.

use std::net::SocketAddr;
use std::sync::Arc;

use actorchat_protocol::{validate_name, validate_room};
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::atomic::Ordering::Relaxed;
use tracing::warn;

use crate::assets;
use crate::connection;
use crate::server::AppState;
use crate::session::default_name;
use crate::websocket::{Settings, Upgrade};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/hello", get(|| async { "Hello, World!" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/test.html", get(assets::test_page))
        .route("/calc/{id}", get(calc_result))
        .fallback(assets::web_client)
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct JoinQuery {
    name: Option<String>,
    room: Option<String>,
}

/// Upgrades to a WebSocket after checking the query and the connection limit,
/// so a refusal is a plain HTTP answer (400 or 503) with a readable reason.
async fn websocket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Query<JoinQuery>,
    upgrade: Upgrade,
) -> Response {
    let room = query.room.as_deref().unwrap_or("lobby");
    if let Err(reason) = validate_room(room) {
        return (StatusCode::BAD_REQUEST, reason).into_response();
    }
    let name = match query.name.as_deref().map(validate_name) {
        Some(Err(reason)) => return (StatusCode::BAD_REQUEST, reason).into_response(),
        Some(Ok(name)) => Some(name.to_owned()),
        None => None,
    };
    let Ok(permit) = state.connection_slots.clone().try_acquire_owned() else {
        state.metrics.connections_refused.fetch_add(1, Relaxed);
        warn!(%peer, limit = state.max_connections, "connection limit reached; refusing upgrade with 503");
        let body = format!(
            "The server is at its connection limit ({}); try again later.",
            state.max_connections
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            body,
        )
            .into_response();
    };
    if state.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down.",
        )
            .into_response();
    }
    let id = state.sessions.next();
    let name = name.unwrap_or_else(|| default_name(id));
    let room = room.to_owned();
    let settings = Settings {
        read: state.config.read_buffer_bytes,
        max_message: state.config.max_frame_bytes,
        frame_timeout: state.config.frame_timeout(),
    };
    let tracker = state.connections.clone();
    upgrade.on_upgrade(&tracker, settings, move |reader, writer| async move {
        connection::run(reader, writer, state, id, peer, name, room).await;
        drop(permit);
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// The full decimal value of a calculation, while the store retains it.
async fn calc_result(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.calc_results.get(&id) {
        Some(value) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], value).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("No retained result {id:?}: it never existed or was evicted to make room for newer ones."),
        )
            .into_response(),
    }
}
