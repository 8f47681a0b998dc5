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

mod client;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::cli::ReconnectArgs;
use crate::client as connect;
use crate::fleet::{RampResult, chat_text};
use crate::metrics::RESUME_SECONDS;
use crate::phase::Live;
use crate::scenario::{Context, check_rate};
use crate::sequence::{self, Findings};
use crate::stats::Hist;
use crate::summary::{ReconnectSummary, ServerSummary, Summary};
use crate::{BenchError, clock};
use client::{Log, Shared, Stage, client_task};

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
            url: ctx.common.url(),
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
    let audit = connect::connect(
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
        &ctx.common.url(),
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
    if report.not_recovered > 0 {
        summary.notes.push(format!(
            "{} resumes were not recovered (more than the server's --recover-max missed?): \
             those clients started again from the latest history, which the check allows",
            report.not_recovered
        ));
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
