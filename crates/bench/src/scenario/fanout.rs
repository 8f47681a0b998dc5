//! `fanout`: N clients in one room, S of them sending at an aggregate paced
//! rate R for D seconds; every client measures every delivery.

use std::time::Duration;

use crate::BenchError;
use crate::cli::FanoutArgs;
use crate::phase::PhaseSpec;
use crate::scenario::{Context, check_rate, millis};
use crate::summary::{PhaseSummary, Summary};

/// The server's per-connection limit (messages per second).
pub const SERVER_RATE_LIMIT: f64 = 20.0;

pub async fn run(args: &FanoutArgs) -> Result<Summary, BenchError> {
    check_rate("--rate", args.rate)?;
    let mut ctx = Context::new(&args.common).await?;
    let plan = ctx.plan(args.clients, 0, 8 * 1024);
    let (mut driver, ramp) = ctx.start(&plan).await?;
    let mut summary = Summary::new(
        "fanout",
        &ctx.common.url(),
        ctx.common.procs,
        u64::from(args.clients),
        &ramp,
    );
    let senders = args.senders.clamp(1, args.clients.max(1));
    if args.rate / f64::from(senders) > SERVER_RATE_LIMIT {
        summary.notes.push(format!(
            "{:.1} messages/s per sender is above the server's limit of {SERVER_RATE_LIMIT}/s; \
             expect rate_limited errors (use --senders {} or more)",
            args.rate / f64::from(senders),
            (args.rate / 18.0).ceil()
        ));
    }
    // Let the last coalesced room_update of the ramp pass.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let before = ctx.scrape().await;
    let spec = PhaseSpec {
        chat_rate: args.rate,
        senders,
        text_bytes: args.text_bytes,
        grace_ms: ctx.grace_ms(),
        ..PhaseSpec::idle(
            ctx.phase_id(),
            "fanout",
            ctx.start_at(),
            millis(args.duration),
        )
    };
    let result = driver.run_phase(spec.clone(), &ctx.progress).await?;
    let during = ctx.scrape().await;
    summary.add_phase(
        PhaseSummary::new(&spec, &result, before.as_ref(), during.as_ref()),
        &result,
    );

    ctx.finish(driver, plan.total(), &mut summary, before, during)
        .await?;
    Ok(summary)
}
