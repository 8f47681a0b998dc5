//! One benchmark client's session: read every frame, send what the current
//! phase asks for when it is due, record what arrives.
//!
//! A client is a single task that owns its socket (no split, no extra
//! tasks): it waits on whichever comes first of a frame from the server, a
//! new phase, or its next scheduled send. Receiving is the hot path (every
//! member receives every message), so a frame is first read for its latency
//! stamp only ([`stamp`]); anything else is decoded as a full
//! [`ServerFrame`].

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use actorchat_protocol::{CalcStatus, ClientFrame, ErrorCode, ServerFrame};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock;
use crate::fleet::{FleetShared, Phase};
use crate::pacing::{Pacer, Schedule};
use crate::stamp::{self, Stamp};
use crate::websocket::{Incoming, Ws};

/// How long a calculating client waits for a result before sending the
/// next expression anyway.
const CALC_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest gap between a result and the next calculation, so a client
/// whose calculations are quick stays well under the server's rate limit
/// (20 frames/s).
const CALC_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// After `calc_busy`, wait this long before trying again.
const CALC_BUSY_BACKOFF: Duration = Duration::from_millis(500);

/// Which client this is.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// Unique across all processes of a run.
    pub global: u32,
    pub role: Role,
    /// Main-room members in the whole run.
    pub members: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A main-room member; `index` in `0..members`. Members `0..senders` chat,
    /// the last `pingers` ping.
    Chat { index: u32 },
    /// A calculating client in the calculation room.
    Calc { index: u32 },
}

/// What this client has to send during the current phase.
struct Duties {
    chat: Option<Pacer>,
    ping: Option<Pacer>,
    calc_due: Option<Instant>,
    calc_seq: u64,
    /// `client_id` of the calculation waiting for its result.
    calc_waiting: Option<String>,
    /// The room's `num_participants` as this client last heard it (from
    /// its `welcome` and every `room_update`); carried across phases.
    participants: u64,
    /// The id of the last chat this client received; a chat with an id
    /// not above it is out of room order. Carried across phases.
    last_chat_id: u64,
}

impl Duties {
    fn for_phase(me: &Member, phase: &Phase) -> Duties {
        let mut d = Duties {
            chat: None,
            ping: None,
            calc_due: None,
            calc_seq: 0,
            calc_waiting: None,
            participants: 0,
            last_chat_id: 0,
        };
        let Some(spec) = &phase.spec else {
            return d;
        };
        // Spread one-off actions over the phase (at most its first second)
        // so they do not all hit the server in the same millisecond.
        let window = phase
            .end
            .saturating_duration_since(phase.start)
            .min(Duration::from_secs(1));
        let stagger = window.mul_f64(f64::from(me.global % 1000) / 1000.0);
        match me.role {
            Role::Chat { index } => {
                d.chat = Schedule::shared(
                    phase.start,
                    phase.end,
                    spec.chat_rate,
                    u64::from(spec.senders),
                    u64::from(index),
                )
                .map(Pacer::new);
                let is_pinger = index >= me.members.saturating_sub(spec.pingers);
                if spec.ping_all {
                    d.ping = Some(Pacer::new(Schedule::once(phase.start + stagger, phase.end)));
                } else if is_pinger && spec.ping_rate > 0.0 {
                    // Each pinger at its own rate, phase-shifted by its index.
                    let offset =
                        Duration::from_secs_f64((f64::from(index % 97) / 97.0) / spec.ping_rate);
                    d.ping =
                        Schedule::shared(phase.start + offset, phase.end, spec.ping_rate, 1, 0)
                            .map(Pacer::new);
                }
            }
            Role::Calc { .. } => {
                if spec.ping_all {
                    d.ping = Some(Pacer::new(Schedule::once(phase.start + stagger, phase.end)));
                }
                if !spec.calc_exprs.is_empty() {
                    d.calc_due = Some(phase.start + stagger / 10).filter(|t| *t < phase.end);
                }
            }
        }
        d
    }

    fn next_due(&self) -> Option<Instant> {
        [
            self.chat.as_ref().and_then(Pacer::due),
            self.ping.as_ref().and_then(Pacer::due),
            self.calc_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Runs one client until the fleet closes it or the connection ends.
pub async fn run(
    mut ws: Ws,
    me: Member,
    participants: u64,
    shared: Arc<FleetShared>,
    mut phases: watch::Receiver<Arc<Phase>>,
) {
    let mut phase = phases.borrow_and_update().clone();
    let mut duties = Duties::for_phase(&me, &phase);
    duties.participants = participants;
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    let mut armed = None;
    // The outer loop runs once per phase change. The `changed()` future
    // lives for a whole phase: creating one per frame would register and
    // unregister this client with the shared watch channel (a lock all
    // clients contend on) for every frame received.
    let ended_by_us = 'phases: loop {
        let stop = {
            let changed = phases.changed();
            tokio::pin!(changed);
            loop {
                // Frames buffered by the last read (or with the handshake).
                if handle_buffered(&mut ws, &me, &phase, &mut duties, &shared)
                    .await
                    .is_err()
                {
                    break 'phases false;
                }
                let due = duties.next_due();
                if due != armed {
                    if let Some(t) = due {
                        sleep.as_mut().reset(t);
                    }
                    armed = due;
                }
                tokio::select! {
                    biased;
                    changed = &mut changed => break changed.is_err(),
                    read = ws.read_more() => if read.is_err() { break 'phases false },
                    () = &mut sleep, if armed.is_some() => {
                        armed = None;
                        if send_due(&mut ws, &me, &phase, &mut duties).await.is_err() {
                            phase.stats.send_failed.fetch_add(1, Relaxed);
                            break 'phases false;
                        }
                    }
                }
            }
        };
        if stop {
            // The fleet is gone.
            break true;
        }
        phase = phases.borrow_and_update().clone();
        if phase.close {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close()).await;
            break true;
        }
        let (participants, last_chat_id) = (duties.participants, duties.last_chat_id);
        duties = Duties::for_phase(&me, &phase);
        duties.participants = participants;
        duties.last_chat_id = last_chat_id;
    };
    if !ended_by_us {
        phase.stats.disconnects.fetch_add(1, Relaxed);
    }
    shared.alive.fetch_sub(1, Relaxed);
    if matches!(me.role, Role::Chat { .. }) {
        shared.members_alive.fetch_sub(1, Relaxed);
    }
}

/// When a batch of frames arrived: one clock reading stamps them all.
struct Arrival {
    unix_us: u64,
    at: Instant,
}

/// Handles every complete frame in the read buffer; `Err` when the
/// connection has ended (a close frame, a protocol error, a failed pong).
async fn handle_buffered(
    ws: &mut Ws,
    me: &Member,
    phase: &Phase,
    duties: &mut Duties,
    shared: &FleetShared,
) -> Result<(), ()> {
    let mut arrival = None;
    loop {
        let ping = match ws.next_frame() {
            Ok(None) => return Ok(()),
            Ok(Some(Incoming::Text(text))) => {
                let arrival = arrival.get_or_insert_with(|| Arrival {
                    unix_us: clock::now_us(),
                    at: Instant::now(),
                });
                on_text(text, arrival, me, phase, duties, shared);
                continue;
            }
            Ok(Some(Incoming::Ping(payload))) => payload.to_vec(),
            Ok(Some(Incoming::Other)) => continue,
            Ok(Some(Incoming::Close(code))) => {
                if code == actorchat_protocol::close_code::TRY_AGAIN_LATER {
                    phase.stats.slow_consumer_closes.fetch_add(1, Relaxed);
                }
                return Err(());
            }
            Err(_) => return Err(()),
        };
        ws.pong(&ping).await.map_err(drop)?;
    }
}

/// Sends everything that is due now (several if this client fell behind).
async fn send_due(ws: &mut Ws, me: &Member, phase: &Phase, duties: &mut Duties) -> io::Result<()> {
    let now = Instant::now();
    let stats = &phase.stats;
    let id = phase.id();
    while let Some((seq, late)) = duties.chat.as_mut().and_then(|p| p.take_due(now)) {
        stats
            .max_send_lag_us
            .fetch_max(u64::try_from(late.as_micros()).unwrap_or(u64::MAX), Relaxed);
        let frame = ClientFrame::Chat {
            text: phase.text.clone(),
            client_id: Some(format!("{id}.{}.{seq}", me.global)),
            sent_at: Some(clock::now_us()),
        };
        send(ws, &frame).await?;
        stats.sent.fetch_add(1, Relaxed);
    }
    while duties.ping.as_mut().and_then(|p| p.take_due(now)).is_some() {
        send(
            ws,
            &ClientFrame::Ping {
                nonce: clock::now_us(),
            },
        )
        .await?;
        stats.pings_sent.fetch_add(1, Relaxed);
    }
    if duties.calc_due.is_some_and(|t| t <= now) {
        let exprs = phase
            .spec
            .as_ref()
            .map(|s| s.calc_exprs.as_slice())
            .unwrap_or(&[]);
        if let Some(expr) = exprs.get(duties.calc_seq as usize % exprs.len().max(1)) {
            let client_id = format!("c{id}.{}.{}", me.global, duties.calc_seq);
            let frame = ClientFrame::Chat {
                text: expr.clone(),
                client_id: Some(client_id.clone()),
                sent_at: Some(clock::now_us()),
            };
            send(ws, &frame).await?;
            stats.calc_sent.fetch_add(1, Relaxed);
            duties.calc_seq += 1;
            duties.calc_waiting = Some(client_id);
            duties.calc_due = Some(now + CALC_TIMEOUT).filter(|t| *t < phase.end);
        } else {
            duties.calc_due = None;
        }
    }
    Ok(())
}

async fn send(ws: &mut Ws, frame: &ClientFrame) -> io::Result<()> {
    // Serializing these frames cannot fail (no maps, no floats); an empty
    // string would be refused by the server and counted there.
    let text = serde_json::to_string(frame).unwrap_or_default();
    ws.send_text(&text).await
}

/// The phase id of a main-room chat `client_id` (`{phase}.{client}.{seq}`).
fn chat_phase(client_id: &str) -> Option<u32> {
    client_id.split('.').next()?.parse().ok()
}

fn on_text(
    text: &str,
    arrival: &Arrival,
    me: &Member,
    phase: &Phase,
    duties: &mut Duties,
    shared: &FleetShared,
) {
    let now_us = arrival.unix_us;
    let stats = &phase.stats;
    let stamp = stamp::read(text);
    if matches!(stamp, Some(Stamp::Chat { .. }))
        && let Some(id) = stamp::chat_id(text)
    {
        // Every member is in one room, whose ids increase.
        if id <= duties.last_chat_id {
            stats.reordered.fetch_add(1, Relaxed);
        }
        duties.last_chat_id = duties.last_chat_id.max(id);
    }
    match stamp {
        Some(Stamp::Chat {
            client_id: Some(id),
            sent_at: Some(sent_at),
        }) => {
            if let Some(phase_id) = chat_phase(id) {
                if phase_id == phase.id() && phase.spec.is_some() {
                    let second =
                        arrival.at.saturating_duration_since(phase.start).as_secs() as usize;
                    stats.record_chat(me.global, second, now_us.saturating_sub(sent_at));
                } else {
                    stats.stale.fetch_add(1, Relaxed);
                }
                return;
            }
        }
        Some(Stamp::Other("room_update")) => {
            shared.room_updates.fetch_add(1, Relaxed);
            if let Some(n) = num_participants(text) {
                duties.participants = n;
            }
            return;
        }
        _ => {}
    }
    match serde_json::from_str::<ServerFrame>(text) {
        Ok(ServerFrame::Chat(msg)) => {
            let own = msg.client_id.is_some() && msg.client_id == duties.calc_waiting;
            if let (true, Some(calc)) = (own, &msg.calc) {
                stats.calc_results.fetch_add(1, Relaxed);
                if calc.status != CalcStatus::Ok {
                    stats.calc_not_ok.fetch_add(1, Relaxed);
                }
                duties.calc_waiting = None;
                let next = Instant::now() + CALC_MIN_INTERVAL;
                duties.calc_due = Some(next).filter(|t| *t < phase.end);
            }
        }
        Ok(ServerFrame::Pong(pong)) => {
            if pong.nonce >= phase.start_unix_us && phase.spec.is_some() {
                stats.record_pong(me.global, now_us.saturating_sub(pong.nonce));
                stats.note_participants(duties.participants);
            } else {
                stats.stale.fetch_add(1, Relaxed);
            }
        }
        Ok(ServerFrame::Error(e)) => match e.code {
            ErrorCode::RateLimited => {
                stats.rate_limited.fetch_add(1, Relaxed);
            }
            ErrorCode::Unavailable => {
                stats.unavailable.fetch_add(1, Relaxed);
            }
            ErrorCode::CalcBusy => {
                stats.calc_busy.fetch_add(1, Relaxed);
                duties.calc_waiting = None;
                duties.calc_due =
                    Some(Instant::now() + CALC_BUSY_BACKOFF).filter(|t| *t < phase.end);
            }
            _ => {
                stats.other_errors.fetch_add(1, Relaxed);
            }
        },
        Ok(ServerFrame::RoomUpdate(update)) => {
            shared.room_updates.fetch_add(1, Relaxed);
            duties.participants = u64::from(update.num_participants);
        }
        Ok(ServerFrame::Welcome(welcome)) => {
            duties.participants = u64::from(welcome.num_participants);
        }
        Ok(ServerFrame::History(_) | ServerFrame::Refreshed(_)) => {}
        Err(_) => {
            stats.other_errors.fetch_add(1, Relaxed);
        }
    }
}

/// `num_participants` of a `room_update`, read without decoding the frame
/// (a join storm sends many, with long name lists).
fn num_participants(text: &str) -> Option<u64> {
    let rest = text.split_once("\"num_participants\":")?.1;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_participants_is_read_from_a_room_update() {
        let update = r#"{"type":"room_update","room":"r","num_participants":3012,"joined":["a"],"left":[],"renamed":[]}"#;
        assert_eq!(num_participants(update), Some(3012));
        assert_eq!(num_participants(r#"{"type":"room_update"}"#), None);
    }

    #[test]
    fn chat_phase_reads_main_room_ids_only() {
        assert_eq!(chat_phase("3.12.45"), Some(3));
        assert_eq!(chat_phase("c3.12.45"), None);
    }

    #[test]
    fn client_frames_are_valid_protocol() {
        let frame = ClientFrame::Chat {
            text: crate::fleet::chat_text(64),
            client_id: Some("1.2.3".into()),
            sent_at: Some(clock::now_us()),
        };
        let json = serde_json::to_string(&frame).unwrap();
        assert_eq!(actorchat_protocol::decode_client_frame(&json), Ok(frame));
    }
}
