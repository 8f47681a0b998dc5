//! One `reconnect` client: a task that joins, chats or drops and resumes,
//! and keeps the record of everything it received ([`Log`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use actorchat_protocol::{ChatFrame, ChatMessage, ClientFrame, ErrorCode, ServerFrame, Welcome};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{self, ConnectError};
use crate::clock;
use crate::pacing::{Pacer, Schedule};
use crate::sequence::{self, Arrival, Segment};
use crate::stats::Hist;
use crate::target::Target;
use crate::websocket::{Incoming, Ws};

/// What every client is doing, set by the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Joined; waiting for the others.
    Wait,
    /// Chatters send on their schedule, droppers drop and resume.
    Run { start: Instant, end: Instant },
    /// No more sending or dropping; away droppers come back.
    Settle,
    /// Close and hand in the record.
    Close,
}

/// What the client tasks share.
pub struct Shared {
    pub target: Arc<Target>,
    pub room: String,
    pub name_prefix: String,
    pub source_ips: Vec<IpAddr>,
    pub read_buffer: usize,
    pub connect_timeout: Duration,
    pub text: String,
    /// Aggregate rate of all chatters, messages per second.
    pub chat_rate: f64,
    pub chatters: u32,
    pub connected_for: Duration,
    pub pause: Duration,
    /// Clients online now.
    pub online: AtomicU64,
    /// Clients whose first join failed (their task has ended).
    pub join_failed: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// One client's record of the run.
#[derive(Default)]
pub struct Log {
    pub join_error: Option<String>,
    pub segments: Vec<Segment>,
    pub first_epoch: Option<String>,
    pub epoch: String,
    pub epoch_changes: u64,
    pub sent: u64,
    /// Fingerprints of what this client sent (client id and text).
    pub sent_fingerprints: Vec<u64>,
    pub refused: u64,
    pub other_errors: u64,
    pub drops: u64,
    pub unexpected_disconnects: u64,
    pub resumes: u64,
    pub recovered: u64,
    pub not_recovered: u64,
    pub recovered_missing: u64,
    pub resume_failures: u64,
    pub replayed: u64,
    pub received: u64,
    pub resume_latency: Hist,
    pub delivery: Hist,
}

impl Log {
    /// Where a resume continues from: the last id of the current segment.
    fn since(&self) -> (u64, String) {
        let id = self.segments.last().map_or(0, Segment::last_id);
        (id, self.epoch.clone())
    }

    fn on_welcome(&mut self, w: Welcome, resumed: bool, latency: Duration) {
        match &self.first_epoch {
            None => self.first_epoch = Some(w.epoch.clone()),
            Some(first) if *first != w.epoch => self.epoch_changes += 1,
            Some(_) => {}
        }
        self.epoch = w.epoch;
        let floor = match w.history.first() {
            Some(ChatFrame::Chat(m)) => m.id.saturating_sub(1),
            None => w.last_id,
        };
        let continues = if resumed {
            self.resumes += 1;
            self.resume_latency
                .record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
            match w.recovered {
                Some(true) => {
                    self.recovered += 1;
                    self.replayed += w.history.len() as u64;
                    true
                }
                Some(false) => {
                    self.not_recovered += 1;
                    false
                }
                None => {
                    self.recovered_missing += 1;
                    false
                }
            }
        } else {
            false
        };
        if !continues || self.segments.is_empty() {
            self.segments.push(Segment::new(floor));
        }
        for ChatFrame::Chat(m) in &w.history {
            self.arrive(m, None);
        }
    }

    /// A chat message, from a welcome's history (`now_us` `None`) or live.
    fn arrive(&mut self, m: &ChatMessage, now_us: Option<u64>) {
        let arrival = Arrival {
            id: m.id,
            fingerprint: sequence::fingerprint(&[m.client_id.as_deref().unwrap_or(""), &m.text]),
        };
        if let Some(segment) = self.segments.last_mut() {
            segment.arrivals.push(arrival);
        }
        self.received += 1;
        if let (Some(now), Some(sent_at)) = (now_us, m.sent_at) {
            self.delivery.record(now.saturating_sub(sent_at));
        }
    }

    fn on_text(&mut self, text: &str, now_us: u64) {
        match serde_json::from_str::<ServerFrame>(text) {
            Ok(ServerFrame::Chat(m)) => self.arrive(&m, Some(now_us)),
            Ok(ServerFrame::Error(e))
                if matches!(e.code, ErrorCode::RateLimited | ErrorCode::Unavailable) =>
            {
                self.refused += 1;
            }
            Ok(ServerFrame::RoomUpdate(_) | ServerFrame::Pong(_)) => {}
            Ok(_) | Err(_) => self.other_errors += 1,
        }
    }
}

/// How a connected stretch ended.
enum Outcome {
    /// The dropper's timer: close abruptly and resume later.
    Drop,
    /// The connection ended without us asking.
    Lost,
    /// The run is over.
    Close,
}
/// A tiny xorshift generator for the droppers' jitter.
struct Jitter(u64);

impl Jitter {
    fn new(seed: u32) -> Jitter {
        Jitter((u64::from(seed) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// `base` scaled by a factor in [0.5, 1.5).
    fn around(&mut self, base: Duration) -> Duration {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        base.mul_f64(0.5 + (x % 1_000) as f64 / 1_000.0)
    }
}

/// One client, from its first join to the end of the run.
pub async fn client_task(
    index: u32,
    shared: Arc<Shared>,
    mut stage: watch::Receiver<Stage>,
) -> Log {
    let mut log = Log::default();
    let name = format!("{}{index}", shared.name_prefix);
    let dropper = index >= shared.chatters;
    let mut jitter = Jitter::new(index);
    let mut pacer: Option<Pacer> = None;
    let mut ws: Option<Ws> = None;
    loop {
        let Some(conn) = ws.as_mut() else {
            if *stage.borrow() == Stage::Close {
                break;
            }
            let resuming = !log.segments.is_empty();
            let since = resuming.then(|| log.since());
            let path = shared.target.resume_path(
                &name,
                &shared.room,
                since.as_ref().map(|(id, epoch)| (*id, epoch.as_str())),
            );
            let source = (!shared.source_ips.is_empty())
                .then(|| shared.source_ips[index as usize % shared.source_ips.len()]);
            let started = Instant::now();
            match client::connect_path(
                &shared.target,
                source,
                &path,
                shared.read_buffer,
                shared.connect_timeout,
            )
            .await
            {
                Ok((conn, welcome)) => {
                    log.on_welcome(welcome, resuming, started.elapsed());
                    shared.online.fetch_add(1, Relaxed);
                    ws = Some(conn);
                }
                Err(e) if !resuming => {
                    log.join_error = Some(join_error(&e));
                    shared.join_failed.fetch_add(1, Relaxed);
                    return log;
                }
                Err(_) => {
                    log.resume_failures += 1;
                    tokio::time::sleep(shared.pause.max(Duration::from_millis(100))).await;
                }
            }
            continue;
        };
        let me = Me { index, dropper };
        let outcome = session(
            conn,
            me,
            &mut log,
            &shared,
            &mut stage,
            &mut pacer,
            &mut jitter,
        )
        .await;
        shared.online.fetch_sub(1, Relaxed);
        match outcome {
            Outcome::Close => {
                if let Some(mut conn) = ws.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
                }
                break;
            }
            Outcome::Drop => {
                // Abruptly: the socket is closed without a close frame.
                ws = None;
                log.drops += 1;
                tokio::time::sleep(shared.pause).await;
            }
            Outcome::Lost => {
                ws = None;
                log.unexpected_disconnects += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    log
}

fn join_error(e: &ConnectError) -> String {
    format!("{} ({e})", e.kind())
}

/// Which client a session belongs to.
#[derive(Clone, Copy)]
struct Me {
    index: u32,
    dropper: bool,
}

/// One connected stretch: read everything, send what is due, drop when the
/// dropper's time is up.
async fn session(
    ws: &mut Ws,
    me: Me,
    log: &mut Log,
    shared: &Shared,
    stage: &mut watch::Receiver<Stage>,
    pacer: &mut Option<Pacer>,
    jitter: &mut Jitter,
) -> Outcome {
    let mut drop_at: Option<Instant> = None;
    let mut current = *stage.borrow_and_update();
    let mut apply =
        |current: Stage, pacer: &mut Option<Pacer>, drop_at: &mut Option<Instant>| match current {
            Stage::Run { start, end } => {
                if me.dropper {
                    *drop_at = Some(Instant::now() + jitter.around(shared.connected_for));
                } else if pacer.is_none() {
                    *pacer = Schedule::shared(
                        start,
                        end,
                        shared.chat_rate,
                        u64::from(shared.chatters),
                        u64::from(me.index),
                    )
                    .map(Pacer::new);
                }
            }
            Stage::Wait | Stage::Settle | Stage::Close => *drop_at = None,
        };
    apply(current, pacer, &mut drop_at);
    loop {
        if current == Stage::Close {
            return Outcome::Close;
        }
        // Frames already buffered.
        loop {
            let ping = match ws.next_frame() {
                Ok(None) => break,
                Ok(Some(Incoming::Text(text))) => {
                    log.on_text(text, clock::now_us());
                    shared.received.fetch_add(1, Relaxed);
                    continue;
                }
                Ok(Some(Incoming::Ping(payload))) => payload.to_vec(),
                Ok(Some(Incoming::Other)) => continue,
                Ok(Some(Incoming::Close(_))) | Err(_) => return Outcome::Lost,
            };
            if ws.pong(&ping).await.is_err() {
                return Outcome::Lost;
            }
        }
        let due = pacer.as_ref().and_then(Pacer::due);
        tokio::select! {
            biased;
            changed = stage.changed() => {
                if changed.is_err() {
                    return Outcome::Close;
                }
                current = *stage.borrow_and_update();
                apply(current, pacer, &mut drop_at);
            }
            read = ws.read_more() => if read.is_err() { return Outcome::Lost },
            () = sleep_until_some(drop_at), if drop_at.is_some() => return Outcome::Drop,
            () = sleep_until_some(due), if due.is_some() => {
                let now = Instant::now();
                while let Some((seq, _late)) = pacer.as_mut().and_then(|p| p.take_due(now)) {
                    if send_chat(ws, log, shared, me.index, seq).await.is_err() {
                        return Outcome::Lost;
                    }
                }
            }
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

async fn send_chat(
    ws: &mut Ws,
    log: &mut Log,
    shared: &Shared,
    index: u32,
    seq: u64,
) -> std::io::Result<()> {
    let client_id = format!("r{index}.{seq}");
    let frame = ClientFrame::Chat {
        text: shared.text.clone(),
        client_id: Some(client_id.clone()),
        sent_at: Some(clock::now_us()),
    };
    // Serializing a chat frame cannot fail (no maps, no floats).
    let text = serde_json::to_string(&frame).unwrap_or_default();
    ws.send_text(&text).await?;
    log.sent += 1;
    log.sent_fingerprints
        .push(sequence::fingerprint(&[&client_id, &shared.text]));
    shared.sent.fetch_add(1, Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actorchat_protocol::Limits;

    fn chat(id: u64) -> ChatMessage {
        ChatMessage {
            id,
            room: "r".into(),
            author: "a".into(),
            user_id: None,
            text: "t".into(),
            client_id: Some(format!("r0.{id}")),
            sent_at: Some(1),
            server_time: 1,
            calc: None,
        }
    }

    fn welcome(epoch: &str, last_id: u64, recovered: Option<bool>, ids: &[u64]) -> Welcome {
        Welcome {
            session_id: 1,
            name: "n".into(),
            room: "r".into(),
            num_participants: 1,
            participants: Vec::new(),
            limits: Limits {
                max_text_chars: 1,
                max_frame_bytes: 1,
                max_messages_per_sec: 1,
            },
            epoch: epoch.into(),
            last_id,
            recovered,
            user_id: None,
            history: ids.iter().map(|&id| ChatFrame::Chat(chat(id))).collect(),
        }
    }

    #[test]
    fn welcomes_start_or_continue_segments() {
        let mut log = Log::default();
        let ms = Duration::from_millis(1);
        // A plain join: the latest history, then live frames.
        log.on_welcome(welcome("e", 10, None, &[8, 9, 10]), false, ms);
        assert_eq!(log.segments.len(), 1);
        assert_eq!(log.segments[0].floor, 7);
        log.on_text(
            &actorchat_protocol::ServerFrame::Chat(chat(11)).to_json(),
            5,
        );
        assert_eq!(log.since(), (11, "e".to_owned()));
        // A recovered resume continues the segment.
        log.on_welcome(welcome("e", 13, Some(true), &[12, 13]), true, ms);
        assert_eq!(log.segments.len(), 1);
        assert_eq!((log.resumes, log.recovered, log.replayed), (1, 1, 2));
        assert!(sequence::check(&log.segments, 13).is_clean());
        // An unrecovered one starts over from its history.
        log.on_welcome(welcome("e", 30, Some(false), &[29, 30]), true, ms);
        assert_eq!(log.segments.len(), 2);
        assert_eq!(log.segments[1].floor, 28);
        assert!(sequence::check(&log.segments, 30).is_clean());
        // A resume answered without `recovered`, in another epoch.
        log.on_welcome(welcome("f", 0, None, &[]), true, ms);
        assert_eq!((log.recovered_missing, log.epoch_changes), (1, 1));
        assert_eq!(log.segments[2].floor, 0);
        assert_eq!(log.resume_latency.len(), 3);
        assert_eq!(log.received, 8);
        // Refusals and stray frames are counted apart.
        let refused = ServerFrame::Error(actorchat_protocol::ErrorFrame {
            code: ErrorCode::Unavailable,
            message: "disk".into(),
        });
        log.on_text(&refused.to_json(), 5);
        log.on_text("not json", 5);
        assert_eq!((log.refused, log.other_errors), (1, 1));
    }

    #[test]
    fn jitter_stays_within_half_either_way() {
        let mut j = Jitter::new(3);
        let base = Duration::from_millis(1000);
        for _ in 0..1000 {
            let d = j.around(base);
            assert!(d >= base / 2 && d < base * 3 / 2, "{d:?}");
        }
    }
}
