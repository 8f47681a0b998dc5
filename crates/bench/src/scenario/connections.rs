//! `connections`: open N clients at a ramp rate, hold them, prove each is
//! alive with a ping, and report the server's memory per connection.

use crate::cli::ConnectionsArgs;
use crate::phase::PhaseSpec;
use crate::scenario::{Context, millis};
use crate::summary::{ServerSummary, Summary};
use crate::{BenchError, metrics};

pub async fn run(args: &ConnectionsArgs) -> Result<Summary, BenchError> {
    let mut ctx = Context::new(&args.common).await?;
    let before = ctx.scrape().await;
    let plan = ctx.plan(args.clients, 0, 4096);
    let (mut driver, ramp) = ctx.start(&plan).await?;
    let mut summary = Summary::new(
        "connections",
        &ctx.common.url(),
        ctx.common.procs,
        u64::from(args.clients),
        &ramp,
    );

    let ramped = ctx.scrape().await;
    let hold_started = std::time::Instant::now();
    let hold = PhaseSpec::idle(ctx.phase_id(), "hold", ctx.start_at(), millis(args.hold));
    driver.run_phase(hold, &ctx.progress).await?;
    // Memory is read while every client is still connected and idle.
    let during = ctx.scrape().await;
    let held_secs = hold_started.elapsed().as_secs_f64();
    let hold_cpu_percent = metrics::delta(
        ramped.as_ref().and_then(|s| s.cpu_seconds),
        during.as_ref().and_then(|s| s.cpu_seconds),
    )
    .filter(|_| held_secs > 0.0)
    .map(|cpu| 100.0 * cpu / held_secs);
    let check = ctx.liveness_check(&mut driver, plan.total()).await?;
    summary.set_liveness(&check);
    driver.close().await;
    ctx.progress.finish();
    let after = ctx.scrape().await;

    let rss_delta = metrics::delta(
        before.as_ref().and_then(|s| s.resident_memory_bytes),
        during.as_ref().and_then(|s| s.resident_memory_bytes),
    );
    summary.server = ServerSummary {
        rss_per_connection_bytes: rss_delta
            .filter(|_| summary.alive > 0)
            .map(|d| d / summary.alive as f64),
        before,
        during,
        after,
        cpu_per_delivery_us: None,
        hold_cpu_percent,
        metrics_error: ctx.metrics_error.clone(),
    };
    if summary.alive < summary.opened {
        summary.notes.push(format!(
            "{} of {} opened clients did not answer the final ping",
            summary.opened - summary.alive,
            summary.opened
        ));
    }
    Ok(summary)
}
