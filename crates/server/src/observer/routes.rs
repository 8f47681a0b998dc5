//! The observer's HTTP side, under `/api/observer/`, and the page itself
//! (`/observer`, a route of the embedded web client, checked here first):
//!
//! - `GET  stream`: Server-Sent Events. First a `hello` event (what this
//!   client may do, and the five-minute history), then a `snapshot` event
//!   each second.
//! - `GET  rooms/{room}/members`: up to 100 members of one room, asked of
//!   the room on demand (never per second).
//! - `POST rooms/{room}/kill`: the room actor panics; the registry restarts
//!   it and its members rejoin.
//! - `POST rooms/{room}/members/{session}/close`: the room removes the
//!   member, whose connection closes with 1000.
//! - `POST calcs/{id}/cancel`: a queued or running calculation is
//!   cancelled; its requester's chat goes out with an `error` result.
//!
//! Why Server-Sent Events rather than a WebSocket: the stream goes one way;
//! it is plain HTTP, so it never counts as a chat connection (it does not
//! take a connection slot nor show up in the figures it reports) and the
//! page can send the admin token as an `Authorization` header through
//! `fetch` (a browser WebSocket cannot set headers, and the token must not
//! go in a URL).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream;
use ractor::rpc::CallResult;
use serde_json::json;
use tracing::{info, warn};

use super::access::{Refused, access, may_act, may_see_page};
use crate::calc::SchedulerMsg;
use crate::room::RoomMsg;
use crate::server::AppState;

/// How long an action waits for the room or the scheduler to answer.
const ACTION_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/observer", get(page))
        .route("/api/observer/stream", get(stream_snapshots))
        .route("/api/observer/rooms/{room}/members", get(members))
        .route("/api/observer/rooms/{room}/kill", post(kill_room))
        .route(
            "/api/observer/rooms/{room}/members/{session}/close",
            post(close_connection),
        )
        .route("/api/observer/calcs/{id}/cancel", post(cancel_calc))
}

fn refused(r: Refused) -> Response {
    let mut response = (r.status, axum::Json(json!({ "message": r.message }))).into_response();
    if r.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"actorchat observer\""),
        );
    }
    response
}

fn answer(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

/// The page (the web client's `/observer` route), refused to remote
/// clients when no token is set.
async fn page(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = may_see_page(peer, state.config.admin_token.as_ref()) {
        warn!(%peer, "observer page refused: no admin token and not a loopback client");
        return (r.status, r.message).into_response();
    }
    crate::assets::web_client(uri, headers).await
}

async fn stream_snapshots(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let access = match access(
        &headers,
        peer,
        state.config.admin_token.as_ref(),
        &state.auth,
    ) {
        Ok(a) => a,
        Err(r) => {
            warn!(%peer, status = r.status.as_u16(), "observer stream refused");
            return refused(r);
        }
    };
    info!(%peer, access = access.as_str(), "observer stream opened");
    let (history, rx) = state.observer.subscribe();
    let hello = format!(
        "{{\"access\":\"{}\",\"token_set\":{},\"history\":{history}}}",
        access.as_str(),
        state.config.admin_token.is_some()
    );
    let first = Event::default().event("hello").data(hello);
    let shutdown = state.shutdown.clone();
    let events = stream::unfold(
        (Some(first), rx, shutdown),
        |(first, mut rx, shutdown)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(first), (None, rx, shutdown)));
            }
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    changed = rx.changed() => if changed.is_err() { return None },
                }
                let latest = rx.borrow_and_update().clone();
                if let Some(json) = latest {
                    let event = Event::default().event("snapshot").data(&*json);
                    return Some((Ok(event), (None, rx, shutdown)));
                }
            }
        },
    );
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn members(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    if let Err(r) = access(
        &headers,
        peer,
        state.config.admin_token.as_ref(),
        &state.auth,
    ) {
        return refused(r);
    }
    let Some(found) = state.metrics.observed.rooms.find(&room) else {
        return answer(StatusCode::NOT_FOUND, format!("No live room {room:?}."));
    };
    match found
        .actor
        .call(|reply| RoomMsg::Members { reply }, Some(ACTION_TIMEOUT))
        .await
    {
        Ok(CallResult::Success(rows)) => axum::Json(rows).into_response(),
        _ => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The room {room:?} did not answer; it may be restarting."),
        ),
    }
}

async fn kill_room(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    if let Err(r) = may_act(
        &headers,
        peer,
        state.config.admin_token.as_ref(),
        &state.auth,
    ) {
        return refused(r);
    }
    let Some(found) = state.metrics.observed.rooms.find(&room) else {
        return answer(StatusCode::NOT_FOUND, format!("No live room {room:?}."));
    };
    warn!(%peer, room = %room, "observer action: killing a room actor");
    if found.actor.cast(RoomMsg::Kill).is_err() {
        return answer(
            StatusCode::CONFLICT,
            format!("The room {room:?} stopped before it could be killed."),
        );
    }
    answer(
        StatusCode::ACCEPTED,
        format!("Room {room:?} killed; its supervisor restarts it and its members rejoin."),
    )
}

async fn close_connection(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((room, session)): Path<(String, u64)>,
) -> Response {
    if let Err(r) = may_act(
        &headers,
        peer,
        state.config.admin_token.as_ref(),
        &state.auth,
    ) {
        return refused(r);
    }
    let Some(found) = state.metrics.observed.rooms.find(&room) else {
        return answer(StatusCode::NOT_FOUND, format!("No live room {room:?}."));
    };
    warn!(%peer, room = %room, session, "observer action: closing a connection");
    let asked = found
        .actor
        .call(
            |reply| RoomMsg::Kick { session, reply },
            Some(ACTION_TIMEOUT),
        )
        .await;
    match asked {
        Ok(CallResult::Success(true)) => {
            answer(StatusCode::OK, format!("Session {session} closed (1000)."))
        }
        Ok(CallResult::Success(false)) => answer(
            StatusCode::NOT_FOUND,
            format!("Session {session} is not a member of {room:?}."),
        ),
        _ => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The room {room:?} did not answer; it may be restarting."),
        ),
    }
}

async fn cancel_calc(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = may_act(
        &headers,
        peer,
        state.config.admin_token.as_ref(),
        &state.auth,
    ) {
        return refused(r);
    }
    let Some(job) = id.strip_prefix('c').and_then(|n| n.parse::<u64>().ok()) else {
        return answer(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a calculation id (like c12)."),
        );
    };
    let Some(scheduler) = state.actors.calc.get() else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "The calculation scheduler is restarting.".into(),
        );
    };
    warn!(%peer, calc = %id, "observer action: cancelling a calculation");
    let asked = scheduler
        .call(
            |reply| SchedulerMsg::Cancel { job, reply },
            Some(ACTION_TIMEOUT),
        )
        .await;
    match asked {
        Ok(CallResult::Success(true)) => answer(
            StatusCode::OK,
            format!("Calculation {id} cancelled; its requester is told."),
        ),
        Ok(CallResult::Success(false)) => answer(
            StatusCode::NOT_FOUND,
            format!("Calculation {id} is neither queued nor running."),
        ),
        _ => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "The calculation scheduler did not answer.".into(),
        ),
    }
}
