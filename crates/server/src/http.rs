//! HTTP routes: the WebSocket upgrade, health and readiness, metrics, and
//! the embedded web client.
//!
//! `/healthz` is liveness (the process answers HTTP); `/readyz` is
//! readiness: 503 with the reasons while a top-level actor is down or
//! restarting, while storage writes fail, or while the server shuts down.

use std::net::SocketAddr;
use std::sync::Arc;

use actorchat_protocol::{MAX_HISTORY_PAGE, Since, check_since, validate_name, validate_room};
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::atomic::Ordering::Relaxed;
use tracing::warn;

use crate::assets;
use crate::auth::routes::refuse;
use crate::auth::{QueryToken, Refusal, bearer};
use crate::connection::{self, Admitted, JOIN_TIMEOUT};
use crate::history::history_frame;
use crate::identity::default_name;
use crate::registry::{LookupError, lookup};
use crate::server::AppState;
use crate::websocket::{Settings, Upgrade};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/hello", get(|| async { "Hello, World!" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/test.html", get(assets::test_page))
        .route("/calc/{id}", get(calc_result))
        .route("/rooms/{room}/messages", get(room_messages))
        .merge(crate::observer::routes::routes())
        .merge(crate::auth::routes::routes())
        .fallback(assets::web_client)
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct JoinQuery {
    name: Option<String>,
    room: Option<String>,
    /// A connect token, for browsers (which cannot set headers on a
    /// WebSocket); others send `Authorization: Bearer`.
    token: Option<QueryToken>,
    /// Resume after this id of `epoch` (both or neither).
    since: Option<u64>,
    epoch: Option<String>,
}

impl JoinQuery {
    fn since(&self) -> Result<Option<Since>, String> {
        match (self.since, &self.epoch) {
            (None, None) => Ok(None),
            (Some(id), Some(epoch)) => {
                let since = Since {
                    id,
                    epoch: epoch.clone(),
                };
                check_since(&since).map_err(|e| e.message)?;
                Ok(Some(since))
            }
            _ => Err("Resuming needs both `since` (the last id you have) and `epoch`.".into()),
        }
    }
}

/// Upgrades to a WebSocket after checking the origin, the query, the
/// token, the connection limit and the room, so a refusal is a plain HTTP
/// answer (401, 403, 400 or 503) with a readable reason. Nothing here logs
/// the URL: its query may carry a token.
async fn websocket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Query<JoinQuery>,
    upgrade: Upgrade,
) -> Response {
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Err(reason) = state.origins.check(origin, host) {
        state.metrics.origin_refusals.fetch_add(1, Relaxed);
        warn!(%peer, origin = origin.unwrap_or(""), host = host.unwrap_or(""), %reason, "cross-origin upgrade refused with 403");
        return (
            StatusCode::FORBIDDEN,
            format!("WebSocket refused: {reason}."),
        )
            .into_response();
    }
    let room = query.room.as_deref().unwrap_or("lobby");
    if let Err(reason) = validate_room(room) {
        return (StatusCode::BAD_REQUEST, reason).into_response();
    }
    let token = bearer(&headers).or(query.token.as_ref().map(|t| t.0.as_str()));
    let user = match state.auth.admit(token) {
        Ok(user) => user.map(Box::new),
        Err(refusal) => return refuse(&state, peer, "websocket", refusal),
    };
    let name = match (&user, query.name.as_deref().map(validate_name)) {
        // A verified user's name is its token's; `?name=` is ignored.
        (Some(user), _) if !user.rooms.allows(room) => {
            return refuse(&state, peer, "websocket", Refusal::forbidden(room));
        }
        (Some(user), _) => Some(user.name.clone()),
        (None, Some(Err(reason))) => return (StatusCode::BAD_REQUEST, reason).into_response(),
        (None, Some(Ok(name))) => Some(name.to_owned()),
        (None, None) => None,
    };
    let since = match query.since() {
        Ok(since) => since,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
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
    // The room is found (or created) before the upgrade, so that a room
    // limit or a registry that is restarting is a plain 503.
    let found = match lookup(&state.actors.registry, room, JOIN_TIMEOUT).await {
        Ok(found) => found,
        Err(e) => {
            let body = match e {
                LookupError::RoomLimit { max } => {
                    format!(
                        "The server already has its most rooms ({max}); join an existing room or try again later."
                    )
                }
                LookupError::SpawnFailed | LookupError::Unavailable => {
                    "The server is not ready (its room registry is restarting); try again shortly."
                        .to_owned()
                }
            };
            warn!(%peer, room, error = %e, "upgrade refused with 503");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                body,
            )
                .into_response();
        }
    };
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
        let admitted = Admitted {
            id,
            peer,
            name,
            user,
            room,
            since,
            found,
        };
        connection::run(reader, writer, state, admitted).await;
        drop(permit);
    })
}

/// 200 `ready`, or 503 with one line per reason.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut problems = state.actors.readiness.problems();
    problems.extend(state.streams.problems());
    if state.shutdown.is_cancelled() {
        problems.push("the server is shutting down".to_owned());
    }
    if problems.is_empty() {
        return "ready".into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n")).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render_off_runtime().await,
    )
}

/// The full decimal value of a calculation, while the store retains it.
async fn calc_result(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.calc_results.get_anywhere(&id).await {
        Some(value) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], value).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("No retained result {id:?}: it never existed or was evicted to make room for newer ones."),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    before: Option<u64>,
    limit: Option<u32>,
}

/// A page of a room's stored messages, newest `limit` before `before`
/// (default: the latest), as `{"type":"history","room","messages","has_more"}`:
/// the same body as the WebSocket's `history` frame, for bots and exports.
/// A room with no stream answers an empty page.
async fn room_messages(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    if let Err(reason) = validate_room(&room) {
        return (StatusCode::BAD_REQUEST, reason).into_response();
    }
    if let Err(refusal) = state.auth.may_read_room(&headers, &room) {
        return refuse(&state, peer, "room messages", refusal);
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
        return (
            StatusCode::BAD_REQUEST,
            format!("`limit` must be from 1 to {MAX_HISTORY_PAGE}; got {limit}."),
        )
            .into_response();
    }
    let before = query.before.unwrap_or(u64::MAX);
    state.metrics.history.reads.fetch_add(1, Relaxed);
    match state.streams.before(&room, before, limit as usize).await {
        Ok(page) => (
            [(header::CONTENT_TYPE, "application/json")],
            history_frame(&room, &page),
        )
            .into_response(),
        Err(e) => {
            warn!(room, error = %e, "history page could not be read; answering 503");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "The room's history could not be read; try again shortly.",
            )
                .into_response()
        }
    }
}
