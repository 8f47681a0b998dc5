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
//! the room, `ping` answered here, `set_name` and `join` change the session.
//! Bad input gets an `error` frame to this client only and the connection
//! stays usable; binary frames, oversize frames and sustained abuse close it.
//!
//! Outbound: frames queued by the room are drained in batches and encoded
//! into one buffer, so a busy connection makes one write per batch rather
//! than one per frame.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actorchat_calc::Parsed;
use actorchat_protocol::{
    CalcResult, CalcStatus, ClientFrame, ErrorCode, Pong, ServerFrame, close_code,
    decode_client_frame,
};
use bytes::Bytes;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::calc::{CancelFlag, CancelOnDrop, SchedulerMsg, Work, result_without_value};
use crate::clock::unix_millis;
use crate::mailbox::{Delivery, Kick, Mailbox, mailbox};
use crate::rate_limit::TokenBucket;
use crate::registry::RegistryMsg;
use crate::room::RoomMsg;
use crate::server::AppState;
use crate::session::SessionId;
use crate::websocket::frame::FrameError;
use crate::websocket::{self, Closing, DecodeError, Incoming, ReadError, Reader, Writer};

/// A write that makes no progress for this long means the peer is gone or
/// not reading; the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the registry or a room to answer a join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Invalid frames tolerated per [`STRIKE_WINDOW`] before closing with 1008.
const MAX_STRIKES: u32 = 30;
const STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// At most one `rate_limited` error per this interval, so a flood is not
/// answered by a flood.
const RATE_NOTICE_INTERVAL: Duration = Duration::from_secs(1);
/// Messages held behind a running calculation before `calc_busy`.
const MAX_HELD: usize = 16;

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
}

/// The session a connection owns.
struct Session {
    id: SessionId,
    peer: SocketAddr,
    name: String,
    room_name: String,
    room: ActorRef<RoomMsg>,
    mailbox: Mailbox,
    bucket: TokenBucket,
    strikes: u32,
    strike_window_start: Instant,
    last_rate_notice: Option<Instant>,
    /// This client's calculation in progress, if any.
    pending_calc: Option<PendingCalc>,
    /// Chat this client sent while its calculation runs, broadcast after it
    /// in order; at most [`MAX_HELD`].
    held: VecDeque<Chat>,
    /// When anything (a frame of any kind, pongs included) last arrived:
    /// the keepalive pings after `ping_interval` of silence and closes after
    /// `idle_timeout`.
    last_inbound: Instant,
}

/// A chat message as the client sent it (validated).
struct Chat {
    text: String,
    client_id: Option<String>,
    sent_at: Option<u64>,
}

/// A calculation this connection waits for. Dropping it (the connection
/// ends) cancels the calculation.
struct PendingCalc {
    chat: Chat,
    result: oneshot::Receiver<CalcResult>,
    _cancel: CancelOnDrop,
}

/// Runs one WebSocket session to its end.
pub async fn run(
    mut reader: Reader,
    mut writer: Writer,
    state: Arc<AppState>,
    id: SessionId,
    peer: SocketAddr,
    name: String,
    room: String,
) {
    state.metrics.connections.fetch_add(1, Relaxed);
    state.metrics.connections_accepted.fetch_add(1, Relaxed);
    let exit = match Box::pin(join_room(&state, id, &name, &room)).await {
        Ok((room_ref, mailbox)) => {
            debug!(session = id, %peer, name = %name, room = %room, "session started");
            let now = Instant::now();
            let mut session = Session {
                id,
                peer,
                name,
                room_name: room,
                room: room_ref,
                mailbox,
                bucket: TokenBucket::new(state.config.rate_per_sec, state.config.rate_burst, now),
                strikes: 0,
                strike_window_start: now,
                last_rate_notice: None,
                pending_calc: None,
                held: VecDeque::new(),
                last_inbound: now,
            };
            let exit = session.run(&state, &mut reader, &mut writer).await;
            let _ = session.room.cast(RoomMsg::Leave { session: id });
            let queued = session.mailbox.len() as i64;
            state
                .metrics
                .outbound_queue_depth
                .fetch_sub(queued, Relaxed);
            debug!(session = id, ?exit, "session ended");
            exit
        }
        Err(exit) => exit,
    };
    if let Exit::Close(closing) = exit {
        websocket::close(reader, writer, closing).await;
    }
    state.metrics.connections.fetch_sub(1, Relaxed);
}

/// Finds (or creates) the room and joins it with a fresh mailbox. Retries a
/// few times because the room may stop (idle) or crash between lookup and join.
async fn join_room(
    state: &AppState,
    id: SessionId,
    name: &str,
    room: &str,
) -> Result<(ActorRef<RoomMsg>, Mailbox), Exit> {
    for attempt in 0..3u64 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
        }
        let lookup = state
            .registry
            .call(
                |reply| RegistryMsg::Lookup {
                    room: room.to_owned(),
                    reply,
                },
                Some(JOIN_TIMEOUT),
            )
            .await;
        let Ok(CallResult::Success(room_ref)) = lookup else {
            continue;
        };
        let (member, mailbox) =
            mailbox(state.config.outbound_queue, state.config.write_buffer_bytes);
        let joined = room_ref
            .call(
                |reply| RoomMsg::Join {
                    session: id,
                    name: name.to_owned(),
                    member,
                    reply,
                },
                Some(JOIN_TIMEOUT),
            )
            .await;
        if let Ok(CallResult::Success(())) = joined {
            return Ok((room_ref, mailbox));
        }
    }
    warn!(
        session = id,
        room, "could not join room: the registry or the room did not answer; closing"
    );
    Err(Exit::close(
        close_code::INTERNAL_ERROR,
        "The room is unavailable; try again.",
    ))
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
        let keepalive = tokio::time::sleep_until(keepalive_tick(
            Instant::now() + ping_interval,
            ping_interval,
        ));
        tokio::pin!(keepalive);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return going_away(),
                result = calc_result(&mut self.pending_calc) => self.on_calc_result(state, result),
                delivery = self.mailbox.recv() => match delivery {
                    Delivery::Frames(frames) => {
                        let write = write_batch(tx, &frames, state);
                        tokio::select! {
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
                        Ok(next) => keepalive.as_mut().reset(keepalive_tick(next, ping_interval)),
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
                Exit::close(
                    close_code::TRY_AGAIN_LATER,
                    "Too slow: your outbound queue overflowed.",
                )
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
                if self.pending_calc.is_none() {
                    self.send_chat(state, chat);
                    return None;
                }
                if self.held.len() >= MAX_HELD {
                    state.metrics.error(ErrorCode::CalcBusy);
                    let message = format!(
                        "Your calculation is still running and {MAX_HELD} messages already wait behind it; this one was not sent."
                    );
                    return self
                        .reply(state, tx, &ServerFrame::error(ErrorCode::CalcBusy, message))
                        .await;
                }
                self.held.push_back(chat);
                None
            }
            ClientFrame::Ping { nonce } => {
                let pong = ServerFrame::Pong(Pong {
                    nonce,
                    server_time: unix_millis(),
                });
                self.reply(state, tx, &pong).await
            }
            ClientFrame::SetName { name } => {
                info!(session = self.id, from = %self.name, to = %name, "rename");
                self.name.clone_from(&name);
                self.cast(RoomMsg::Rename {
                    session: self.id,
                    name,
                });
                None
            }
            ClientFrame::Join { room } => {
                // A join to the room the session is already in changes
                // nothing: leaving and re-joining would announce a false
                // leave + join to everyone and send a second welcome.
                if room == self.room_name {
                    debug!(session = self.id, room = %room, "join to the current room ignored");
                    return None;
                }
                self.cast(RoomMsg::Leave { session: self.id });
                self.room_name = room;
                self.rejoin(state).await.err()
            }
        }
    }

    /// Sends a chat to the room, or, when its text is a calculation, to the
    /// scheduler first (the room gets it once the result is in).
    fn send_chat(&mut self, state: &AppState, chat: Chat) {
        let work = match actorchat_calc::parse(&chat.text) {
            Parsed::NotACalculation => {
                let Chat {
                    text,
                    client_id,
                    sent_at,
                } = chat;
                self.cast(RoomMsg::Chat {
                    session: self.id,
                    text,
                    client_id,
                    sent_at,
                    calc: None,
                });
                return;
            }
            Parsed::Calc(request) => Work::Run(request),
            Parsed::TooLarge(rejection) => Work::Refused(rejection),
        };
        let cancel = Arc::new(CancelFlag::default());
        let (reply, result) = oneshot::channel();
        let submit = SchedulerMsg::Submit {
            expr: chat.text.clone(),
            work,
            cancel: cancel.clone(),
            reply,
        };
        if state.calc.cast(submit).is_err() {
            warn!(session = self.id, "calculation scheduler unavailable");
        }
        // If the cast failed, `result` resolves at once as closed and the
        // chat goes out with an `error` calc.
        self.pending_calc = Some(PendingCalc {
            chat,
            result,
            _cancel: CancelOnDrop(cancel),
        });
    }

    /// The calculation is done: broadcast its message, then what was held
    /// behind it, until the next calculation (if any) is pending again.
    fn on_calc_result(
        &mut self,
        state: &AppState,
        result: Result<CalcResult, oneshot::error::RecvError>,
    ) {
        let Some(pending) = self.pending_calc.take() else {
            return;
        };
        let calc = result.unwrap_or_else(|_| lost_calc(&pending.chat.text));
        let Chat {
            text,
            client_id,
            sent_at,
        } = pending.chat;
        self.cast(RoomMsg::Chat {
            session: self.id,
            text,
            client_id,
            sent_at,
            calc: Some(calc),
        });
        while self.pending_calc.is_none() {
            let Some(chat) = self.held.pop_front() else {
                break;
            };
            self.send_chat(state, chat);
        }
    }

    /// Sends to the current room. A dead room is noticed through the mailbox
    /// closing, which triggers a rejoin; the message itself is lost with it.
    fn cast(&self, msg: RoomMsg) {
        if self.room.cast(msg).is_err() {
            debug!(session = self.id, room = %self.room_name, "room gone; message dropped");
        }
    }

    /// (Re)joins `self.room_name` with a fresh mailbox; the room queues a
    /// new `welcome` as the first frame.
    async fn rejoin(&mut self, state: &AppState) -> Result<(), Exit> {
        let stale = self.mailbox.len() as i64;
        state.metrics.outbound_queue_depth.fetch_sub(stale, Relaxed);
        let (room, mailbox) =
            Box::pin(join_room(state, self.id, &self.name, &self.room_name)).await?;
        self.room = room;
        self.mailbox = mailbox;
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

/// Resolves with the pending calculation's result; never, if there is none.
async fn calc_result(
    pending: &mut Option<PendingCalc>,
) -> Result<CalcResult, oneshot::error::RecvError> {
    match pending {
        Some(p) => (&mut p.result).await,
        None => std::future::pending().await,
    }
}

/// The result when the scheduler dropped a request (it stopped or failed).
fn lost_calc(expr: &str) -> CalcResult {
    result_without_value(
        String::new(),
        expr.to_owned(),
        CalcStatus::Error,
        Duration::ZERO,
        "The calculation service is unavailable; try again.",
    )
}

/// Writes a batch of frames with one call (more only if the socket takes it
/// in parts), so a busy connection writes many frames per system call; the
/// mailbox sizes batches to `write_buffer_bytes` (or one larger frame), which
/// bounds what a slow connection buffers.
async fn write_batch(tx: &mut Writer, frames: &[Bytes], state: &AppState) -> std::io::Result<()> {
    let metrics = &state.metrics;
    // The frames left the queue when they were taken, whether or not the
    // write completes.
    metrics
        .outbound_queue_depth
        .fetch_sub(frames.len() as i64, Relaxed);
    tx.queue_texts(frames);
    tx.flush().await?;
    metrics.frames_out.fetch_add(frames.len() as u64, Relaxed);
    Ok(())
}
