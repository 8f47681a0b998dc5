//! The connection actor: one lightweight task per WebSocket.
//!
//! Why not a ractor actor: there are tens of thousands of these, and a ractor
//! actor costs ~5.6 KiB of heap on its own (two unbounded channels allocated
//! at spawn). This one is the "actors with Tokio" shape: a single task owns
//! the session (name, room, rate limiter) and the socket, and handles one
//! event at a time; its mailbox is the bounded queue in [`crate::mailbox`],
//! reachable only through the [`MemberHandle`](crate::mailbox::MemberHandle)
//! the room holds.
//!
//! Inbound: every text frame passes the token bucket, then the decoder
//! ([`actorchat_protocol::decode_client_frame`]), then is routed: `chat` to
//! the room (through the calculation hold-back, [`crate::calc::holdback`],
//! and the room's inbox bound), `ping` answered here, `set_name` and `join`
//! change the session (`join` has its own token bucket: every join may
//! create a room and passes through the one registry actor).
//! Bad input gets an `error` frame to this client only and the connection
//! stays usable; binary frames, oversize frames and sustained abuse close it.
//!
//! Outbound: frames queued by the room are drained in batches and encoded
//! into one buffer, so a busy connection makes one write per batch rather
//! than one per frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actorchat_protocol::{
    CalcResult, ClientFrame, ErrorCode, Pong, Refreshed, ServerFrame, Since, close_code,
    decode_client_frame,
};
use ractor::rpc::CallResult;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::auth::User;
use crate::calc::holdback::{
    Calculations, Chat, HoldBack, HoldBackFull, MAX_HELD, Release, Submitted,
};
use crate::calc::{SchedulerMsg, Work};
use crate::clock::unix_millis;
use crate::history::history_frame;
use crate::identity::SessionId;
use crate::mailbox::{Delivery, Frame, Kick, Mailbox, mailbox};
use crate::observer::CloseReason;
use crate::rate_limit::TokenBucket;
use crate::registry::{LookupError, lookup};
use crate::room::{Author, ChatIn, ChatRefused, RoomHandle, RoomMsg};
use crate::server::AppState;
use crate::websocket::frame::FrameError;
use crate::websocket::{self, Closing, DecodeError, Incoming, ReadError, Reader, Writer};

/// A write that makes no progress for this long means the peer is gone or
/// not reading; the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the registry or a room to answer a join.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries to join before giving up with 1011; the pauses between them
/// (20, 40, 80, 160, 320 ms) span a room's or the registry's restart.
const JOIN_ATTEMPTS: u32 = 6;
/// Invalid frames tolerated per [`STRIKE_WINDOW`] before closing with 1008.
const MAX_STRIKES: u32 = 30;
const STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// At most one `rate_limited` error per this interval, so a flood is not
/// answered by a flood.
const RATE_NOTICE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a connection ended, and what (if anything) to tell the peer.
#[derive(Debug)]
enum Exit {
    /// End with the closing handshake.
    Close(Closing),
    /// The peer vanished or cannot be written to: nothing to send.
    Gone,
}

impl Exit {
    /// The server closes first.
    fn close(code: u16, reason: &'static str) -> Exit {
        Exit::Close(Closing::new(code, reason))
    }

    /// How the observer counts this end (from the close code the server
    /// chose; a close the client began is the client's).
    fn reason(&self, shutting_down: bool) -> CloseReason {
        let Exit::Close(closing) = self else {
            return CloseReason::PeerGone;
        };
        if closing.peer_closed {
            return CloseReason::ClientClose;
        }
        match closing.code {
            close_code::NORMAL => CloseReason::Admin,
            close_code::GOING_AWAY if shutting_down => CloseReason::Shutdown,
            close_code::GOING_AWAY => CloseReason::Idle,
            close_code::MESSAGE_TOO_BIG => CloseReason::Oversize,
            close_code::TRY_AGAIN_LATER if closing.reason == SLOW_CONSUMER => {
                CloseReason::SlowConsumer
            }
            close_code::TRY_AGAIN_LATER | close_code::INTERNAL_ERROR => CloseReason::JoinFailed,
            close_code::TOKEN_EXPIRED => CloseReason::TokenExpired,
            _ => CloseReason::Policy,
        }
    }
}

/// The close reason sent to a slow consumer.
const SLOW_CONSUMER: &str = "Too slow: your outbound queue overflowed.";

/// The session a connection owns.
struct Session {
    id: SessionId,
    peer: SocketAddr,
    name: String,
    /// The verified user (`None`: a guest). Boxed: most sessions of a
    /// server without `--auth` carry 8 bytes for it.
    user: Option<Box<User>>,
    room_name: String,
    room: RoomHandle,
    mailbox: Mailbox,
    bucket: TokenBucket,
    /// `join` frames only (each may create a room). Made at the first join,
    /// full: most connections never join, and an idle one carries 8 bytes
    /// for it instead of 40.
    join_bucket: Option<Box<TokenBucket>>,
    strikes: u32,
    strike_window_start: Instant,
    last_rate_notice: Option<Instant>,
    /// This client's calculation in progress and the chat held behind it.
    holdback: HoldBack<RoomHandle>,
    /// When anything (a frame of any kind, pongs included) last arrived:
    /// the keepalive pings after `ping_interval` of silence and closes after
    /// `idle_timeout`.
    last_inbound: Instant,
}

/// Why joining a room failed.
#[derive(Debug)]
enum JoinError {
    /// The room does not exist and the server has its most rooms.
    RoomLimit(usize),
    /// The registry or the room did not answer, through every retry.
    Unavailable,
}

/// What the upgrade decided for a new session: who it is and where it
/// goes (the room already looked up, so a room limit was a plain 503).
pub(crate) struct Admitted {
    pub id: SessionId,
    pub peer: SocketAddr,
    pub name: String,
    /// Boxed: every connection's task keeps this field's space for its
    /// whole life, so a guest's costs 8 bytes, not a whole `User`.
    pub user: Option<Box<User>>,
    pub room: String,
    /// Resume from here (`/ws?since=&epoch=`).
    pub since: Option<Since>,
    pub found: RoomHandle,
}

/// Runs one WebSocket session to its end.
pub(crate) async fn run(
    mut reader: Reader,
    mut writer: Writer,
    state: Arc<AppState>,
    admitted: Admitted,
) {
    let Admitted {
        id,
        peer,
        name,
        user,
        room,
        since,
        found,
    } = admitted;
    state.metrics.connections.fetch_add(1, Relaxed);
    state.metrics.connections_accepted.fetch_add(1, Relaxed);
    // Scoped to the join, so that the session's future does not keep it.
    let joined = {
        let author = Author {
            name,
            user_id: user.as_ref().map(|u| u.id.clone()),
        };
        Box::pin(join_room(&state, id, &author, &room, since, Some(found))).await
    };
    let exit = match joined.map_err(|e| join_failed(id, &room, e)) {
        Ok((room_ref, mailbox, name)) => {
            debug!(session = id, %peer, name = %name, room = %room, "session started");
            let now = Instant::now();
            let mut session = Session {
                id,
                peer,
                name,
                user,
                room_name: room,
                room: room_ref,
                mailbox,
                bucket: TokenBucket::new(state.config.rate_per_sec, state.config.rate_burst, now),
                join_bucket: None,
                strikes: 0,
                strike_window_start: now,
                last_rate_notice: None,
                holdback: HoldBack::default(),
                last_inbound: now,
            };
            let exit = session.run(&state, &mut reader, &mut writer).await;
            session.room.cast(RoomMsg::Leave { session: id });
            let queued = session.mailbox.close() as i64;
            state
                .metrics
                .outbound_queue_depth
                .fetch_sub(queued, Relaxed);
            debug!(session = id, ?exit, "session ended");
            exit
        }
        Err(exit) => exit,
    };
    let reason = exit.reason(state.shutdown.is_cancelled());
    if let Exit::Close(closing) = exit {
        websocket::close(reader, writer, closing).await;
    }
    state.metrics.observed.connection_closed(reason);
    state.metrics.connections.fetch_sub(1, Relaxed);
}

/// Finds (or creates) the room and joins it with a fresh mailbox. `found`
/// is a handle already looked up (the upgrade checks the room before it
/// accepts). Retries with growing pauses, because the room may stop (idle)
/// or crash between lookup and join, and the registry may be restarting.
/// Returns the name the room gave (see `RoomState::admit`).
async fn join_room(
    state: &AppState,
    id: SessionId,
    author: &Author,
    room: &str,
    since: Option<Since>,
    mut found: Option<RoomHandle>,
) -> Result<(RoomHandle, Mailbox, String), JoinError> {
    for attempt in 0..JOIN_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
        }
        let handle = match found.take() {
            Some(handle) => handle,
            None => match lookup(&state.actors.registry, room, JOIN_TIMEOUT).await {
                Ok(handle) => handle,
                Err(LookupError::RoomLimit { max }) => return Err(JoinError::RoomLimit(max)),
                Err(_) => continue,
            },
        };
        let (member, mailbox) =
            mailbox(state.config.outbound_queue, state.config.write_buffer_bytes);
        let joined = handle
            .actor
            .call(
                |reply| RoomMsg::Join {
                    session: id,
                    author: author.clone(),
                    member,
                    since: since.clone(),
                    reply,
                },
                Some(JOIN_TIMEOUT),
            )
            .await;
        if let Ok(CallResult::Success(name)) = joined {
            return Ok((handle, mailbox, name));
        }
        // The welcome may have been queued (and counted) before the room
        // died; the fresh mailbox is dropped here.
        let stale = mailbox.close() as i64;
        state.metrics.outbound_queue_depth.fetch_sub(stale, Relaxed);
    }
    Err(JoinError::Unavailable)
}

/// A join that failed for good ends the connection (1011); a room limit is
/// answered before the upgrade or with an `error` frame instead.
fn join_failed(id: SessionId, room: &str, e: JoinError) -> Exit {
    match e {
        JoinError::RoomLimit(max) => {
            warn!(
                session = id,
                room,
                max_rooms = max,
                "room limit reached while rejoining; closing"
            );
            Exit::close(
                close_code::TRY_AGAIN_LATER,
                "The server has its most rooms; try again later.",
            )
        }
        JoinError::Unavailable => {
            warn!(
                session = id,
                room, "could not join room: the registry or the room did not answer; closing"
            );
            Exit::close(
                close_code::INTERNAL_ERROR,
                "The room is unavailable; try again.",
            )
        }
    }
}

/// Submits calculations to whichever scheduler is running now.
struct Scheduler<'a>(&'a AppState, SessionId);

impl Calculations for Scheduler<'_> {
    fn submit(&mut self, expr: &str, work: Work) -> Submitted {
        let (submitted, cancel, reply) = Submitted::channel();
        let msg = SchedulerMsg::Submit {
            expr: expr.to_owned(),
            work,
            cancel,
            reply,
        };
        // If the scheduler is down, the reply sender is dropped with the
        // message: the result resolves at once as closed, and the chat goes
        // out with an `error` calc.
        let sent = self
            .0
            .actors
            .calc
            .get()
            .is_some_and(|calc| calc.cast(msg).is_ok());
        if !sent {
            warn!(session = self.1, "calculation scheduler unavailable");
        }
        submitted
    }
}

impl Session {
    /// The actor loop. Rare and large sub-futures (handling an inbound frame,
    /// joining a room) are boxed, so the state an idle connection keeps
    /// between events stays small.
    async fn run(&mut self, state: &AppState, reader: &mut Reader, tx: &mut Writer) -> Exit {
        let shutdown = state.shutdown.clone();
        let shutdown = shutdown.cancelled();
        tokio::pin!(shutdown);
        // One timer per connection, reset only when it fires (never per
        // frame), so keepalive costs nothing on the hot path.
        let ping_interval = state.config.ping_interval();
        let keepalive = tokio::time::sleep_until(self.wake_at(keepalive_tick(
            Instant::now() + ping_interval,
            ping_interval,
        )));
        tokio::pin!(keepalive);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return going_away(),
                result = self.holdback.result() => self.on_calc_result(state, result),
                delivery = self.mailbox.recv() => match delivery {
                    Delivery::Frames(frames) => {
                        let write = write_batch(tx, &frames, state);
                        // Biased, write first: the usual write completes at
                        // once, and then the other branches are never polled
                        // (this runs once per delivery).
                        tokio::select! {
                            biased;
                            result = tokio::time::timeout(WRITE_TIMEOUT, write) => match result {
                                Ok(Ok(())) => {}
                                Ok(Err(_)) => return Exit::Gone,
                                Err(_) => {
                                    warn!(session = self.id, peer = %self.peer, "write timed out; dropping connection");
                                    return Exit::Gone;
                                }
                            },
                            // A cut-short write resumes in the closing handshake.
                            kick = self.mailbox.kicked() => return self.kicked(kick),
                            () = &mut shutdown => return going_away(),
                        }
                    }
                    Delivery::Kicked(kick) => return self.kicked(kick),
                    // The room dropped us without a kick: it died. Rejoin.
                    Delivery::Closed => if let Err(exit) = self.rejoin(state).await { return exit },
                },
                inbound = reader.next() => {
                    if inbound.is_ok() {
                        self.last_inbound = Instant::now();
                    }
                    let exit = match inbound {
                        Ok(Incoming::Text(text)) => Box::pin(self.on_text(state, tx, text)).await,
                        Ok(Incoming::Binary(_)) => {
                            state.metrics.policy_disconnects.fetch_add(1, Relaxed);
                            warn!(session = self.id, peer = %self.peer, "binary frame; closing with 1008");
                            Some(Exit::close(close_code::POLICY_VIOLATION, "Binary frames are not supported; send JSON text frames."))
                        }
                        Ok(Incoming::Ping(payload)) => match tokio::time::timeout(WRITE_TIMEOUT, tx.pong(&payload)).await {
                            Ok(Ok(())) => None,
                            _ => Some(Exit::Gone),
                        },
                        Ok(Incoming::Pong) => None,
                        // Answer the client's close (its code echoed), then end.
                        Ok(Incoming::Close(code)) => Some(Exit::Close(Closing::answer(code))),
                        Err(e) => Some(self.read_error(state, e)),
                    };
                    if let Some(exit) = exit {
                        return exit;
                    }
                }
                () = &mut keepalive => {
                    match self.keepalive(state, tx).await {
                        Ok(next) => keepalive.as_mut().reset(self.wake_at(keepalive_tick(next, ping_interval))),
                        Err(exit) => return exit,
                    }
                }
            }
        }
    }

    /// The keepalive timer fired: close a connection silent for the idle
    /// timeout (a peer that vanished without a FIN, a NAT that forgot us),
    /// ping one silent for the ping interval (browsers answer pings by
    /// themselves). Returns when to look again.
    async fn keepalive(&self, state: &AppState, tx: &mut Writer) -> Result<Instant, Exit> {
        if let Some(user) = self
            .user
            .as_ref()
            .filter(|u| unix_millis() >= u.expires_at_ms())
        {
            state.metrics.auth.expired.fetch_add(1, Relaxed);
            info!(session = self.id, user = %user.id, "token expired without a refresh; closing with 4001");
            return Err(Exit::close(close_code::TOKEN_EXPIRED, "token expired"));
        }
        let now = Instant::now();
        let silent = now.duration_since(self.last_inbound);
        let (ping_interval, idle_timeout) =
            (state.config.ping_interval(), state.config.idle_timeout());
        if silent >= idle_timeout {
            state.metrics.idle_disconnects.fetch_add(1, Relaxed);
            info!(session = self.id, peer = %self.peer, silent_secs = silent.as_secs(), "nothing received within the idle timeout; closing with 1001");
            return Err(Exit::close(
                close_code::GOING_AWAY,
                "Nothing received within the idle timeout (pings unanswered); closing.",
            ));
        }
        if silent < ping_interval {
            return Ok(self.last_inbound + ping_interval);
        }
        match tokio::time::timeout(WRITE_TIMEOUT, tx.ping(b"keepalive")).await {
            Ok(Ok(())) => {
                state.metrics.pings_sent.fetch_add(1, Relaxed);
                Ok((now + ping_interval).min(self.last_inbound + idle_timeout))
            }
            _ => Err(Exit::Gone),
        }
    }

    /// The room removed this connection.
    fn kicked(&self, kick: Kick) -> Exit {
        match kick {
            Kick::SlowConsumer => {
                warn!(session = self.id, peer = %self.peer, "slow consumer: outbound queue overflowed; closing with 1013");
                Exit::close(close_code::TRY_AGAIN_LATER, SLOW_CONSUMER)
            }
            Kick::Admin => {
                info!(session = self.id, peer = %self.peer, "closed by an administrator (observer)");
                Exit::close(close_code::NORMAL, "Closed by the server's administrator.")
            }
        }
    }

    /// Handles one inbound text frame; returns `Some` to end the connection.
    async fn on_text(&mut self, state: &AppState, tx: &mut Writer, text: String) -> Option<Exit> {
        state.metrics.frames_in.fetch_add(1, Relaxed);
        let now = Instant::now();
        if !self.bucket.try_take(now) {
            state.metrics.error(ErrorCode::RateLimited);
            if self
                .last_rate_notice
                .is_none_or(|t| now.duration_since(t) >= RATE_NOTICE_INTERVAL)
            {
                self.last_rate_notice = Some(now);
                warn!(session = self.id, peer = %self.peer, "rate limited; dropping frames");
                let message = format!(
                    "Slow down: at most {} messages per second (bursts of {}); messages over the limit are dropped. Next one accepted in {} ms.",
                    state.config.rate_per_sec,
                    state.config.rate_burst,
                    self.bucket.wait().as_millis()
                );
                return self
                    .reply(
                        state,
                        tx,
                        &ServerFrame::error(ErrorCode::RateLimited, message),
                    )
                    .await;
            }
            return None;
        }
        match decode_client_frame(&text) {
            Ok(frame) => self.on_frame(state, tx, frame).await,
            Err(e) => {
                state.metrics.error(e.code);
                warn!(session = self.id, peer = %self.peer, code = e.code.as_str(), reason = %e.message, "rejected client frame");
                if now.duration_since(self.strike_window_start) > STRIKE_WINDOW {
                    self.strike_window_start = now;
                    self.strikes = 0;
                }
                self.strikes += 1;
                if self.strikes > MAX_STRIKES {
                    state.metrics.policy_disconnects.fetch_add(1, Relaxed);
                    warn!(session = self.id, peer = %self.peer, "too many invalid frames; closing with 1008");
                    return Some(Exit::close(
                        close_code::POLICY_VIOLATION,
                        "Too many invalid frames.",
                    ));
                }
                self.reply(state, tx, &ServerFrame::error(e.code, e.message))
                    .await
            }
        }
    }

    async fn on_frame(
        &mut self,
        state: &AppState,
        tx: &mut Writer,
        frame: ClientFrame,
    ) -> Option<Exit> {
        match frame {
            ClientFrame::Chat {
                text,
                client_id,
                sent_at,
            } => {
                let chat = Chat {
                    text,
                    client_id,
                    sent_at,
                };
                let pushed =
                    self.holdback
                        .push(self.room.clone(), chat, &mut Scheduler(state, self.id));
                match pushed {
                    Ok(Some(release)) => self.send_now(state, tx, release).await,
                    Ok(None) => None,
                    Err(HoldBackFull) => {
                        state.metrics.error(ErrorCode::CalcBusy);
                        let message = format!(
                            "Your calculation is still running and {MAX_HELD} messages already wait behind it; this one was not sent."
                        );
                        self.reply(state, tx, &ServerFrame::error(ErrorCode::CalcBusy, message))
                            .await
                    }
                }
            }
            ClientFrame::Ping { nonce } => {
                let pong = ServerFrame::Pong(Pong {
                    nonce,
                    server_time: unix_millis(),
                });
                self.reply(state, tx, &pong).await
            }
            ClientFrame::SetName { name } => self.rename(state, tx, name).await,
            ClientFrame::Join { room, since } => self.join(state, tx, room, since).await,
            ClientFrame::History { before, limit } => self.history(state, tx, before, limit).await,
            ClientFrame::Refresh { token } => self.refresh(state, tx, &token).await,
        }
    }

    /// Renames a guest, if its room agrees (a guest may not take a
    /// verified member's name). A verified user's name is its token's.
    async fn rename(&mut self, state: &AppState, tx: &mut Writer, name: String) -> Option<Exit> {
        if self.user.is_some() {
            state.metrics.error(ErrorCode::InvalidName);
            let message = format!(
                "Your name, {}, comes from your sign-in token and cannot be changed here.",
                self.name
            );
            return self
                .reply(
                    state,
                    tx,
                    &ServerFrame::error(ErrorCode::InvalidName, message),
                )
                .await;
        }
        let session = self.id;
        let renamed = self
            .room
            .actor
            .call(
                |reply| RoomMsg::Rename {
                    session,
                    name: name.clone(),
                    reply,
                },
                Some(JOIN_TIMEOUT),
            )
            .await;
        match renamed {
            Ok(CallResult::Success(Ok(()))) => {
                info!(session = self.id, from = %self.name, to = %name, "rename");
                self.name = name;
                None
            }
            Ok(CallResult::Success(Err(message))) => {
                state.metrics.error(ErrorCode::InvalidName);
                info!(session = self.id, asked = %name, "rename refused: a verified member's name");
                self.reply(
                    state,
                    tx,
                    &ServerFrame::error(ErrorCode::InvalidName, message),
                )
                .await
            }
            // The room died or is stuck: the rejoin that follows uses the
            // old name; the client can ask again.
            _ => {
                debug!(session = self.id, room = %self.room_name, "rename not answered by the room");
                None
            }
        }
    }

    /// Takes a newer token for the same user: the session then lasts until
    /// its `exp`, with its `rooms` and `admin`. The display name stays (a
    /// new name takes effect on the next connection).
    async fn refresh(&mut self, state: &AppState, tx: &mut Writer, token: &str) -> Option<Exit> {
        let outcome = match (&self.user, state.auth.verify(token)) {
            (_, Err(e)) => {
                state.metrics.auth.refused(e.reason());
                Err((ErrorCode::InvalidToken, e.to_string()))
            }
            (None, Ok(_)) => Err((
                ErrorCode::InvalidToken,
                "A guest session cannot take a token; reconnect with it.".into(),
            )),
            (Some(user), Ok(new)) if new.id != user.id => Err((
                ErrorCode::InvalidToken,
                "The new token is for another user; a session keeps its user.".into(),
            )),
            (Some(_), Ok(new)) if !new.rooms.allows(&self.room_name) => Err((
                ErrorCode::Forbidden,
                crate::auth::forbidden_room(&self.room_name),
            )),
            (Some(_), Ok(new)) => Ok(new),
        };
        match outcome {
            Ok(new) => {
                state.metrics.auth.refreshes.fetch_add(1, Relaxed);
                info!(session = self.id, user = %new.id, expires_at = new.expires_at, "token refreshed");
                let expires_at = new.expires_at;
                if let Some(user) = self.user.as_mut() {
                    let name = std::mem::take(&mut user.name);
                    **user = User { name, ..new };
                }
                self.reply(state, tx, &ServerFrame::Refreshed(Refreshed { expires_at }))
                    .await
            }
            Err((code, message)) => {
                state.metrics.error(code);
                warn!(session = self.id, peer = %self.peer, code = code.as_str(), reason = %message, "refresh refused");
                self.reply(state, tx, &ServerFrame::error(code, message))
                    .await
            }
        }
    }

    /// When the keepalive timer should fire next: at `deadline`, or at the
    /// token's expiry if that comes first (to close the session on time).
    fn wake_at(&self, deadline: tokio::time::Instant) -> tokio::time::Instant {
        let Some(user) = &self.user else {
            return deadline;
        };
        let left = Duration::from_millis(user.expires_at_ms().saturating_sub(unix_millis()));
        // An `exp` centuries away cannot be an `Instant`: the deadline wins.
        tokio::time::Instant::now()
            .checked_add(left)
            .map_or(deadline, |expiry| deadline.min(expiry))
    }

    /// Moves to another room: joins it first (so a refusal leaves the
    /// client where it was), then leaves the old one. A pending calculation
    /// and the messages held behind it stay addressed to the old room.
    async fn join(
        &mut self,
        state: &AppState,
        tx: &mut Writer,
        room: String,
        since: Option<Since>,
    ) -> Option<Exit> {
        // A join to the room the session is already in changes nothing:
        // leaving and re-joining would announce a false leave + join to
        // everyone and send a second welcome.
        if room == self.room_name {
            debug!(session = self.id, room = %room, "join to the current room ignored");
            return None;
        }
        if let Some(user) = self.user.as_ref().filter(|u| !u.rooms.allows(&room)) {
            state.metrics.error(ErrorCode::Forbidden);
            warn!(session = self.id, user = %user.id, room = %room, "join refused: the token does not grant the room");
            let message = crate::auth::forbidden_room(&room);
            return self
                .reply(
                    state,
                    tx,
                    &ServerFrame::error(ErrorCode::Forbidden, message),
                )
                .await;
        }
        let now = Instant::now();
        let bucket = self.join_bucket.get_or_insert_with(|| {
            Box::new(TokenBucket::new(
                state.config.join_rate_per_sec,
                state.config.join_burst,
                now,
            ))
        });
        if !bucket.try_take(now) {
            let wait = bucket.wait();
            state.metrics.error(ErrorCode::RateLimited);
            state.metrics.joins_rate_limited.fetch_add(1, Relaxed);
            warn!(session = self.id, peer = %self.peer, room = %room, "join rate limited");
            let message = format!(
                "Slow down: at most {} room changes per second (bursts of {}); this join was not made. Next one accepted in {} ms.",
                state.config.join_rate_per_sec,
                state.config.join_burst,
                wait.as_millis()
            );
            return self
                .reply(
                    state,
                    tx,
                    &ServerFrame::error(ErrorCode::RateLimited, message),
                )
                .await;
        }
        match Box::pin(join_room(
            state,
            self.id,
            &self.author(),
            &room,
            since,
            None,
        ))
        .await
        {
            Ok((handle, mailbox, name)) => {
                self.cast(RoomMsg::Leave { session: self.id });
                self.replace_room(state, handle, mailbox);
                self.room_name = room;
                self.name = name;
                None
            }
            Err(JoinError::RoomLimit(max)) => {
                state.metrics.error(ErrorCode::RoomLimit);
                let message = format!(
                    "The server already has its most rooms ({max}), so {room} cannot be created; you are still in {}.",
                    self.room_name
                );
                self.reply(
                    state,
                    tx,
                    &ServerFrame::error(ErrorCode::RoomLimit, message),
                )
                .await
            }
            Err(e) => Some(join_failed(self.id, &room, e)),
        }
    }

    /// Sends a chat that is due now (nothing held before it) to its room,
    /// unless the room's inbox is full.
    async fn send_now(
        &mut self,
        state: &AppState,
        tx: &mut Writer,
        release: Release<RoomHandle>,
    ) -> Option<Exit> {
        let Release { room, chat, calc } = release;
        let msg = ChatIn {
            session: self.id,
            departed: None,
            text: chat.text,
            client_id: chat.client_id,
            sent_at: chat.sent_at,
            calc,
        };
        match room.chat(msg, Some(state.config.room_inbox)) {
            Ok(()) => None,
            Err(ChatRefused::Busy) => {
                state.metrics.error(ErrorCode::RoomBusy);
                state.metrics.room_busy_refusals.fetch_add(1, Relaxed);
                warn!(session = self.id, room = %self.room_name, limit = state.config.room_inbox, "room inbox full; chat refused with room_busy");
                let message = format!(
                    "The room {} is overloaded ({} messages waiting); your message was not sent. Try again shortly.",
                    self.room_name, state.config.room_inbox
                );
                self.reply(state, tx, &ServerFrame::error(ErrorCode::RoomBusy, message))
                    .await
            }
            Err(ChatRefused::Gone) => {
                debug!(session = self.id, room = %self.room_name, "room gone; message dropped");
                None
            }
        }
    }

    /// The calculation is done: its message, then what was held behind it,
    /// each to the room it was written in. These were admitted when sent,
    /// so the inbox bound does not refuse them (they still count in it).
    fn on_calc_result(
        &mut self,
        state: &AppState,
        result: Result<CalcResult, oneshot::error::RecvError>,
    ) {
        let releases = self
            .holdback
            .on_result(result, &mut Scheduler(state, self.id));
        for Release { room, chat, calc } in releases {
            let msg = ChatIn {
                session: self.id,
                // Used only if the client has left that room meanwhile.
                departed: Some(self.author()),
                text: chat.text,
                client_id: chat.client_id,
                sent_at: chat.sent_at,
                calc,
            };
            if room.chat(msg, None).is_err() {
                debug!(session = self.id, "room gone; held message dropped");
            }
        }
    }

    /// Who this session writes as.
    fn author(&self) -> Author {
        Author {
            name: self.name.clone(),
            user_id: self.user.as_ref().map(|u| u.id.clone()),
        }
    }

    /// Sends to the current room. A dead room is noticed through the mailbox
    /// closing, which triggers a rejoin; the message itself is lost with it.
    fn cast(&self, msg: RoomMsg) {
        if !self.room.cast(msg) {
            debug!(session = self.id, room = %self.room_name, "room gone; message dropped");
        }
    }

    /// Answers a scroll-back request from storage. The read runs off the
    /// runtime's workers; the frames are the stored ones, spliced as they are.
    async fn history(
        &self,
        state: &AppState,
        tx: &mut Writer,
        before: u64,
        limit: u32,
    ) -> Option<Exit> {
        state.metrics.history.reads.fetch_add(1, Relaxed);
        match state
            .streams
            .before(&self.room_name, before, limit as usize)
            .await
        {
            Ok(page) => {
                let frame = history_frame(&self.room_name, &page);
                match tokio::time::timeout(WRITE_TIMEOUT, tx.send_text(&frame)).await {
                    Ok(Ok(())) => {
                        state.metrics.frames_out.fetch_add(1, Relaxed);
                        None
                    }
                    _ => Some(Exit::Gone),
                }
            }
            Err(e) => {
                warn!(session = self.id, room = %self.room_name, error = %e, "history page could not be read");
                state.metrics.error(ErrorCode::Unavailable);
                self.reply(
                    state,
                    tx,
                    &ServerFrame::error(
                        ErrorCode::Unavailable,
                        "The room's history could not be read; try again in a moment.",
                    ),
                )
                .await
            }
        }
    }

    /// Swaps in a new room and mailbox; frames still queued in the old
    /// mailbox are discarded (and uncounted) under its lock, so the depth
    /// gauge stays exact even if the old room offers more meanwhile.
    fn replace_room(&mut self, state: &AppState, room: RoomHandle, mailbox: Mailbox) {
        let old = std::mem::replace(&mut self.mailbox, mailbox);
        let stale = old.close() as i64;
        state.metrics.outbound_queue_depth.fetch_sub(stale, Relaxed);
        self.room = room;
    }

    /// Rejoins `self.room_name` after its room died, with a fresh mailbox;
    /// the room queues a new `welcome` as the first frame.
    async fn rejoin(&mut self, state: &AppState) -> Result<(), Exit> {
        let joined = Box::pin(join_room(
            state,
            self.id,
            &self.author(),
            &self.room_name,
            None,
            None,
        ))
        .await;
        let (room, mailbox, name) = joined.map_err(|e| join_failed(self.id, &self.room_name, e))?;
        self.replace_room(state, room, mailbox);
        self.name = name;
        Ok(())
    }

    /// Writes a frame meant for this client only (pong, error).
    async fn reply(&self, state: &AppState, tx: &mut Writer, frame: &ServerFrame) -> Option<Exit> {
        match tokio::time::timeout(WRITE_TIMEOUT, tx.send_text(frame.to_json().as_bytes())).await {
            Ok(Ok(())) => {
                state.metrics.frames_out.fetch_add(1, Relaxed);
                None
            }
            _ => Some(Exit::Gone),
        }
    }

    fn read_error(&self, state: &AppState, e: ReadError) -> Exit {
        let Some(closing) = e.closing() else {
            debug!(session = self.id, error = %e, "connection ended");
            return Exit::Gone;
        };
        match e {
            ReadError::Decode(DecodeError::Frame(FrameError::TooBig { size, limit })) => {
                state.metrics.oversize_disconnects.fetch_add(1, Relaxed);
                warn!(session = self.id, peer = %self.peer, size, limit, "frame over the size limit; closing with 1009");
            }
            _ => {
                state.metrics.policy_disconnects.fetch_add(1, Relaxed);
                warn!(session = self.id, peer = %self.peer, error = %e, code = closing.code, "WebSocket protocol violation; closing");
            }
        }
        Exit::Close(closing)
    }
}

/// Keepalive deadlines are rounded up to the next multiple of a tenth of the
/// ping interval on a process-wide clock, so the timers of thousands of
/// connections fire together: their pings go out in one burst and their
/// pongs come back in a few `epoll_wait` wake-ups instead of one each (timer
/// coalescing, as the kernel's timer slack does). A ping or an idle close is
/// at most that tenth late (3 s of the default 30 s).
fn keepalive_tick(deadline: Instant, ping_interval: Duration) -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let tick = (ping_interval / 10).max(Duration::from_millis(1));
    let ticks = deadline
        .saturating_duration_since(epoch)
        .as_nanos()
        .div_ceil(tick.as_nanos());
    let ticks = u32::try_from(ticks).unwrap_or(u32::MAX);
    (epoch + tick.saturating_mul(ticks)).into()
}

/// The server is shutting down.
fn going_away() -> Exit {
    Exit::close(close_code::GOING_AWAY, "The server is shutting down.")
}

/// Writes a batch of frames with one call (more only if the socket takes it
/// in parts), so a busy connection writes many frames per system call; the
/// mailbox sizes batches to `write_buffer_bytes` (or one larger frame), which
/// bounds what a slow connection buffers.
async fn write_batch(tx: &mut Writer, frames: &[Frame], state: &AppState) -> std::io::Result<()> {
    let metrics = &state.metrics;
    // The frames left the queue when they were taken, whether or not the
    // write completes.
    metrics
        .outbound_queue_depth
        .fetch_sub(frames.len() as i64, Relaxed);
    tx.queue_texts(frames);
    tx.flush().await?;
    metrics.frames_out.fetch_add(frames.len() as u64, Relaxed);
    metrics.observed.latency.on_written(frames);
    Ok(())
}
