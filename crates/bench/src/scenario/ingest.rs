//! `ingest`: persisted throughput. Many small rooms (default 500 × 4
//! members), every member sending at `--rate`; each message is delivered to
//! the members of its room only. Besides the usual delivery latency and
//! loss, the server's history metrics say how many messages it persisted
//! per second and how it grouped them into commits.
//!
//! `/metrics` is also scraped about once a second while the clients send,
//! so the summary shows whether the rate was *sustained*, not only its mean.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::IngestArgs;
use crate::metrics::{self, COMMIT_MESSAGES, COMMIT_SECONDS, ServerSnapshot, delta};
use crate::phase::{PhaseResult, PhaseSpec};
use crate::scenario::fanout::SERVER_RATE_LIMIT;
use crate::scenario::{Context, check_rate, millis};
use crate::summary::{IngestSummary, PhaseSummary, Summary};
use crate::target::Target;
use crate::{BenchError, clock};

/// Most rooms: the room suffix `-N` must fit the room name limit.
const MAX_ROOMS: u32 = 99_999;

pub async fn run(args: &IngestArgs) -> Result<Summary, BenchError> {
    check_rate("--rate", args.rate)?;
    if !(1..=MAX_ROOMS).contains(&args.rooms) || args.members == 0 {
        return Err(BenchError::InvalidOption(format!(
            "ingest needs 1 to {MAX_ROOMS} --rooms and at least one member per room"
        )));
    }
    let members = args
        .rooms
        .checked_mul(args.members)
        .ok_or_else(|| BenchError::InvalidOption("--rooms × --members is too large".into()))?;
    let mut ctx = Context::new(&args.common).await?;
    let mut plan = ctx.plan(members, 0, 8 * 1024);
    plan.rooms = args.rooms;
    // Leave room for `-99999`.
    let max = actorchat_protocol::MAX_ROOM_CHARS - 6;
    if let Some((cut, _)) = plan.room.char_indices().nth(max) {
        plan.room.truncate(cut);
    }
    let (mut driver, ramp) = ctx.start(&plan).await?;
    let mut summary = Summary::new(
        "ingest",
        &ctx.common.url(),
        ctx.common.procs,
        u64::from(members),
        &ramp,
    );
    if args.rate > SERVER_RATE_LIMIT {
        summary.notes.push(format!(
            "{} messages/s per member is above the server's default limit of \
             {SERVER_RATE_LIMIT}/s; expect rate_limited errors unless the server runs with a \
             higher --rate-per-sec (or use more --rooms)",
            args.rate
        ));
    }
    if ramp.opened < u64::from(members) {
        summary.notes.push(format!(
            "only {} of {members} members connected: rooms with a missing member count its \
             deliveries as lost",
            ramp.opened
        ));
    }
    // Let the last coalesced room_update of the ramp pass.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let before = ctx.scrape().await;
    let spec = PhaseSpec {
        chat_rate: args.rate * f64::from(members),
        senders: members,
        text_bytes: args.text_bytes,
        grace_ms: ctx.grace_ms(),
        room_size: args.members,
        ..PhaseSpec::idle(
            ctx.phase_id(),
            "ingest",
            ctx.start_at(),
            millis(args.duration),
        )
    };
    let sampler = tokio::spawn(sample_appends(
        ctx.target.clone(),
        clock::instant_at(spec.start_unix_us),
        args.duration,
    ));
    let result = driver.run_phase(spec.clone(), &ctx.progress).await?;
    let samples = sampler.await.unwrap_or_default();
    let after = ctx.scrape().await;
    summary.add_phase(
        PhaseSummary::new(&spec, &result, before.as_ref(), after.as_ref()),
        &result,
    );
    let mut ingest = ingest_summary(args, &spec, &result, before.as_ref(), after.as_ref());
    ingest.set_samples(&samples);
    if ingest.persisted.is_none() {
        summary.notes.push(
            "the server exposes no actorchat_history_appends_total: is it a version with \
             message history?"
                .into(),
        );
    }
    summary.ingest = Some(ingest);

    ctx.finish(driver, plan.total(), &mut summary, before, after)
        .await?;
    Ok(summary)
}

/// The history figures of the phase, from the scrapes around it.
fn ingest_summary(
    args: &IngestArgs,
    spec: &PhaseSpec,
    result: &PhaseResult,
    before: Option<&ServerSnapshot>,
    after: Option<&ServerSnapshot>,
) -> IngestSummary {
    let duration_secs = spec.duration_ms as f64 / 1000.0;
    let persisted = delta(
        before.and_then(|s| s.history_appends),
        after.and_then(|s| s.history_appends),
    );
    let cpu = delta(
        before.and_then(|s| s.cpu_seconds),
        after.and_then(|s| s.cpu_seconds),
    );
    let histogram = |name| after?.histogram_since(before, name)?.summary();
    IngestSummary {
        rooms: args.rooms,
        members_per_room: args.members,
        rate_per_member: args.rate,
        offered_per_sec: spec.chat_rate,
        duration_secs,
        persisted,
        persisted_per_sec: persisted
            .filter(|_| duration_secs > 0.0)
            .map(|p| p / duration_secs),
        persisted_per_sec_samples: Vec::new(),
        sustained_min_per_sec: None,
        commit_messages: histogram(COMMIT_MESSAGES),
        commit_seconds: histogram(COMMIT_SECONDS),
        write_errors: delta(
            before.and_then(|s| s.history_write_errors),
            after.and_then(|s| s.history_write_errors),
        ),
        unavailable: result.unavailable,
        server_cpu_per_message_us: cpu
            .zip(persisted.filter(|p| *p > 0.0))
            .map(|(c, p)| c * 1e6 / p),
        client_cpu_per_message_us: result
            .client_cpu_seconds
            .filter(|_| result.sent > 0)
            .map(|c| c * 1e6 / result.sent as f64),
    }
}

/// Reads `actorchat_history_appends_total` about once a second from `start`
/// to `start + length`: `(seconds since start, appends)` pairs.
async fn sample_appends(target: Arc<Target>, start: Instant, length: Duration) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let end = start + length;
    let mut next = start;
    while next <= end {
        tokio::time::sleep_until(next).await;
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(900), metrics::scrape(&target)).await
            && let Some(appends) = s.history_appends
        {
            out.push((
                Instant::now()
                    .saturating_duration_since(start)
                    .as_secs_f64(),
                appends,
            ));
        }
        next += Duration::from_secs(1);
    }
    out
}
