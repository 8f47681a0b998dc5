//! `reconnect`: resume after a dropped connection, checked end to end.
//!
//! `--clients` join one fresh room. The first `clients − droppers` chat at
//! `--rate` each for `--duration`; the `--droppers` stay connected for
//! `--connected` (±50 %), close their socket abruptly (no close frame), stay
//! away for `--pause` and come back with `/ws?…&since=<last id>&epoch=<epoch>`,
//! over and over. When the chatting stops, every client is brought back
//! online, in-flight messages get `--grace`, and a fresh client's `welcome`
//! gives the room's last id. Then every client's arrivals (welcome history
//! and live frames, across all its resumes) are checked against the room's
//! sequence ([`crate::sequence`]): every id exactly once and in order.
//!
//! The clients are few, so they all live in this process (no `--procs`),
//! each a task of its own that keeps its whole record.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use actorchat_protocol::{ChatFrame, ChatMessage, ClientFrame, ErrorCode, ServerFrame, Welcome};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cli::ReconnectArgs;
use crate::client::{self, ConnectError};
use crate::fleet::{RampResult, chat_text};
use crate::metrics::RESUME_SECONDS;
use crate::pacing::{Pacer, Schedule};
use crate::phase::Live;
use crate::scenario::{Context, check_rate};
use crate::sequence::{self, Arrival, Findings, Segment};
use crate::stats::Hist;
use crate::summary::{ReconnectSummary, ServerSummary, Summary};
use crate::target::Target;
use crate::websocket::{Incoming, Ws};
use crate::{BenchError, clock};

/// What every client is doing, set by the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
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
struct Shared {
    target: Arc<Target>,
    room: String,
    name_prefix: String,
    source_ips: Vec<IpAddr>,
    read_buffer: usize,
    connect_timeout: Duration,
    text: String,
    /// Aggregate rate of all chatters, messages per second.
    chat_rate: f64,
    chatters: u32,
    connected_for: Duration,
    pause: Duration,
    /// Clients online now.
    online: AtomicU64,
    /// Clients whose first join failed (their task has ended).
    join_failed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

/// One client's record of the run.
#[derive(Default)]
struct Log {
    join_error: Option<String>,
    segments: Vec<Segment>,
    first_epoch: Option<String>,
    epoch: String,
    epoch_changes: u64,
    sent: u64,
    /// Fingerprints of what this client sent (client id and text).
    sent_fingerprints: Vec<u64>,
    refused: u64,
    other_errors: u64,
    drops: u64,
    unexpected_disconnects: u64,
    resumes: u64,
    recovered: u64,
    not_recovered: u64,
    recovered_missing: u64,
    resume_failures: u64,
    replayed: u64,
    received: u64,
    resume_latency: Hist,
    delivery: Hist,
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

pub async fn run(args: &ReconnectArgs) -> Result<Summary, BenchError> {
    check_rate("--rate", args.rate)?;
    if args.droppers >= args.clients {
        return Err(BenchError::InvalidOption(
            "reconnect needs at least one chatting client: --droppers must be below --clients"
                .into(),
        ));
    }
    if args.common.procs > 1 {
        return Err(BenchError::InvalidOption(
            "reconnect runs its few clients in one process; leave out --procs".into(),
        ));
    }
    let mut ctx = Context::new(&args.common).await?;
    let plan = ctx.plan(args.clients, 0, 8 * 1024);
    let chatters = args.clients - args.droppers;
    let shared = Arc::new(Shared {
        target: ctx.target.clone(),
        room: plan.room.clone(),
        name_prefix: plan.name_prefix.clone(),
        source_ips: plan.source_ips.clone(),
        read_buffer: plan.read_buffer,
        connect_timeout: ctx.common.connect_timeout,
        text: chat_text(args.text_bytes),
        chat_rate: args.rate * f64::from(chatters),
        chatters,
        connected_for: args.connected,
        pause: args.pause,
        online: AtomicU64::new(0),
        join_failed: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let before = ctx.scrape().await;

    // Join: one task per client, at the ramp rate.
    ctx.progress.ramp(u64::from(args.clients));
    let ramp_started = Instant::now();
    let (stage_tx, stage_rx) = watch::channel(Stage::Wait);
    let mut tasks = Vec::new();
    for index in 0..args.clients {
        tasks.push(tokio::spawn(client_task(
            index,
            shared.clone(),
            stage_rx.clone(),
        )));
        tokio::time::sleep(Duration::from_secs_f64(1.0 / ctx.common.ramp)).await;
    }
    let join_deadline = Instant::now() + ctx.common.connect_timeout + Duration::from_secs(1);
    loop {
        let online = shared.online.load(Relaxed);
        let failed = shared.join_failed.load(Relaxed);
        ctx.progress.ramp_update(&Live {
            opened: online,
            failed,
            ..Live::default()
        });
        if online + failed >= u64::from(args.clients) || Instant::now() >= join_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = shared.online.load(Relaxed);
    let ramp = RampResult {
        opened,
        failed: u64::from(args.clients) - opened,
        ramp_secs: ramp_started.elapsed().as_secs_f64(),
        ..RampResult::default()
    };
    if opened == 0 {
        stage_tx.send_replace(Stage::Close);
        ctx.progress.finish();
        let mut reason = "no client joined".to_owned();
        for task in tasks {
            if let Ok(log) = task.await
                && let Some(e) = log.join_error
            {
                reason = e;
                break;
            }
        }
        return Err(BenchError::NoClients {
            url: ctx.common.url.clone(),
            reason,
        });
    }

    // Chat and drop.
    let start = clock::instant_at(ctx.start_at());
    let end = start + args.duration;
    stage_tx.send_replace(Stage::Run { start, end });
    ctx.progress
        .phase("reconnect", args.duration + ctx.common.grace);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(250).min(end - Instant::now())).await;
        ctx.progress.phase_update(
            start.elapsed(),
            &Live {
                sent: shared.sent.load(Relaxed),
                received: shared.received.load(Relaxed),
                ..Live::default()
            },
        );
    }

    // Bring everyone back, let the last messages arrive, read the room's end.
    stage_tx.send_replace(Stage::Settle);
    let settle_deadline =
        Instant::now() + args.pause + ctx.common.connect_timeout + Duration::from_secs(2);
    while shared.online.load(Relaxed) < opened && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let online_at_end = shared.online.load(Relaxed);
    tokio::time::sleep(ctx.common.grace).await;
    let audit = client::connect(
        &shared.target,
        None,
        &format!("{}audit", shared.name_prefix),
        &shared.room,
        64 * 1024,
        ctx.common.connect_timeout,
    )
    .await;
    stage_tx.send_replace(Stage::Close);
    let mut logs = Vec::new();
    for task in tasks {
        if let Ok(log) = task.await {
            logs.push(log);
        }
    }
    ctx.progress.finish();
    let (room_last_id, epoch) = match audit {
        Ok((mut ws, welcome)) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close()).await;
            (welcome.last_id, welcome.epoch)
        }
        Err(e) => {
            return Err(BenchError::InvalidOption(format!(
                "the final client could not join to read the room's last id: {e}"
            )));
        }
    };
    let after = ctx.scrape().await;

    let mut summary = Summary::new(
        "reconnect",
        &ctx.common.url,
        1,
        u64::from(args.clients),
        &ramp,
    );
    let mut delivery = Hist::precise();
    for log in &logs {
        delivery.merge(&log.delivery);
    }
    summary.sent = logs.iter().map(|l| l.sent).sum();
    summary.latency = delivery.latency();
    summary.connected_at_end = online_at_end;
    summary.alive = online_at_end;
    let mut report = reconnect_summary(args, &logs, room_last_id, epoch);
    report.delivery_latency = summary.latency;
    report.server_resume_seconds = after
        .as_ref()
        .and_then(|a| a.histogram_since(before.as_ref(), RESUME_SECONDS))
        .and_then(|h| h.summary());
    report.server_resumes = after
        .as_ref()
        .map(|a| {
            a.history_resumes
                .iter()
                .map(|(k, v)| {
                    let was = before
                        .as_ref()
                        .and_then(|b| b.history_resumes.get(k))
                        .copied()
                        .unwrap_or(0.0);
                    (k.clone(), v - was)
                })
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    if args.droppers > 0 && report.resumes == 0 {
        summary
            .notes
            .push("no resume happened: raise --duration or lower --connected".into());
    }
    if online_at_end < opened {
        summary.notes.push(format!(
            "{} clients were not back online at the end; their last segment counts as gaps",
            opened - online_at_end
        ));
    }
    let other_errors: u64 = logs.iter().map(|l| l.other_errors).sum();
    if other_errors > 0 {
        summary.notes.push(format!(
            "{other_errors} unexpected frames (errors other than rate_limited/unavailable, \
             or frames that did not decode)"
        ));
    }
    summary.failures = report.failures();
    summary.reconnect = Some(report);
    summary.server = ServerSummary {
        before,
        during: None,
        after,
        rss_per_connection_bytes: None,
        cpu_per_delivery_us: None,
        hold_cpu_percent: None,
        metrics_error: ctx.metrics_error.clone(),
    };
    Ok(summary)
}

/// Checks every client's record against the room's sequence.
fn reconnect_summary(
    args: &ReconnectArgs,
    logs: &[Log],
    room_last_id: u64,
    epoch: String,
) -> ReconnectSummary {
    let mut r = ReconnectSummary {
        clients: args.clients,
        droppers: args.droppers,
        chatters: args.clients - args.droppers,
        room_last_id,
        ..ReconnectSummary::default()
    };
    let mut findings = Findings::default();
    let mut seen: HashSet<u64> = HashSet::new();
    for log in logs {
        if log.join_error.is_some() {
            continue;
        }
        let f = sequence::check(&log.segments, room_last_id);
        if f.is_clean() {
            r.clients_exact += 1;
        }
        findings.add(&f);
        seen.extend(
            log.segments
                .iter()
                .flat_map(|s| &s.arrivals)
                .map(|a| a.fingerprint),
        );
        if log.first_epoch.as_deref().is_some_and(|e| e != epoch) {
            r.epoch_changes += 1;
        }
        r.sent += log.sent;
        r.refused += log.refused;
        r.drops += log.drops;
        r.unexpected_disconnects += log.unexpected_disconnects;
        r.resumes += log.resumes;
        r.recovered += log.recovered;
        r.not_recovered += log.not_recovered;
        r.recovered_missing += log.recovered_missing;
        r.resume_failures += log.resume_failures;
        r.epoch_changes += log.epoch_changes;
        r.replayed += log.replayed;
        r.received += log.received;
    }
    let unseen = logs
        .iter()
        .flat_map(|l| &l.sent_fingerprints)
        .filter(|f| !seen.contains(f))
        .count() as u64;
    // A refused message was never broadcast; the refusal does not say which.
    r.sent_unseen = unseen.saturating_sub(r.refused);
    r.gaps = findings.missing;
    r.duplicates = findings.duplicates;
    r.reorderings = findings.reordered;
    r.out_of_range = findings.out_of_range;
    r.conflicting_ids = sequence::conflicting_ids(logs.iter().map(|l| l.segments.as_slice()));
    let mut latency = Hist::precise();
    for log in logs {
        latency.merge(&log.resume_latency);
    }
    r.resume_latency = latency.latency();
    r.epoch = epoch;
    r
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
async fn client_task(index: u32, shared: Arc<Shared>, mut stage: watch::Receiver<Stage>) -> Log {
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
