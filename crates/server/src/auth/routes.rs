//! Authentication's HTTP face: refusing a request for its credentials, and
//! `GET /api/identity`, which tells a client (the web client before it
//! connects) who a token makes it, or why the token is refused: a browser
//! cannot read the body of a refused WebSocket upgrade.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tracing::warn;

use super::{Refusal, bearer};
use crate::server::AppState;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/identity", get(identity))
}

/// Answers a refused request: the status, a sentence, and for a 401 the
/// `WWW-Authenticate` challenge (RFC 6750). Counted and logged, without
/// the token.
pub(crate) fn refuse(state: &AppState, peer: SocketAddr, what: &str, refusal: Refusal) -> Response {
    state.metrics.auth.refused(refusal.reason);
    warn!(%peer, what, status = refusal.status.as_u16(), reason = refusal.reason, message = %refusal.message, "request refused by authentication");
    let challenge = (refusal.status == StatusCode::UNAUTHORIZED)
        .then_some([(header::WWW_AUTHENTICATE, "Bearer")]);
    (refusal.status, challenge, refusal.message).into_response()
}

#[derive(Serialize)]
struct Identity {
    /// `off`, `optional` or `required`.
    auth: &'static str,
    /// `null` for a guest (no token).
    user: Option<UserView>,
}

#[derive(Serialize)]
struct UserView {
    user_id: String,
    name: String,
    /// `null`: every room.
    rooms: Option<Vec<String>>,
    admin: bool,
    expires_at: u64,
}

/// `GET /api/identity` with `Authorization: Bearer <token>`: 200 with the
/// mode and the user (or `null` without a token), 401 with the reason.
async fn identity(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let user = match state.auth.admit(bearer(&headers)) {
        Ok(user) => user,
        Err(refusal) => return refuse(&state, peer, "identity", refusal),
    };
    let body = Identity {
        auth: state.auth.mode().as_str(),
        user: user.map(|u| UserView {
            user_id: u.id.to_string(),
            name: u.name,
            rooms: u.rooms.patterns(),
            admin: u.admin,
            expires_at: u.expires_at,
        }),
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}
