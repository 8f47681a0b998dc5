//! `calc-mix`: chatters and pingers in one room; phase 1 without
//! calculations, phase 2 while calculating clients (in their own room) keep
//! the calculator busy with expressions like `30000!`. Compares chat and ping
//! latency between the phases.

use std::time::Duration;

use crate::BenchError;
use crate::cli::CalcMixArgs;
use crate::phase::PhaseSpec;
use crate::scenario::{Context, check_rate, millis};
use crate::summary::{PhaseSummary, Summary};

pub async fn run(args: &CalcMixArgs) -> Result<Summary, BenchError> {
    check_rate("--rate", args.rate)?;
    check_rate("--ping-rate", args.ping_rate)?;
    let members = args.chatters + args.pingers;
    if members == 0 {
        return Err(BenchError::InvalidOption(
            "calc-mix needs at least one chatter or pinger".into(),
        ));
    }
    let mut ctx = Context::new(&args.common).await?;
    let plan = ctx.plan(members, args.calcers, 8 * 1024);
    let (mut driver, ramp) = ctx.start(&plan).await?;
    let mut summary = Summary::new(
        "calc-mix",
        &ctx.common.url(),
        ctx.common.procs,
        u64::from(members + args.calcers),
        &ramp,
    );
    if args.calcers == 0 || args.exprs.is_empty() {
        summary
            .notes
            .push("no calculating clients: both phases are the same load".into());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = ctx.scrape().await;

    let phases = [
        ("chat only", Vec::new()),
        ("with calculations", args.exprs.clone()),
    ];
    for (name, exprs) in phases {
        let before = ctx.scrape().await;
        let spec = PhaseSpec {
            chat_rate: if args.chatters > 0 { args.rate } else { 0.0 },
            senders: args.chatters,
            text_bytes: args.text_bytes,
            pingers: args.pingers,
            ping_rate: args.ping_rate,
            calc_exprs: exprs,
            grace_ms: ctx.grace_ms(),
            ..PhaseSpec::idle(ctx.phase_id(), name, ctx.start_at(), millis(args.duration))
        };
        let result = driver.run_phase(spec.clone(), &ctx.progress).await?;
        let after = ctx.scrape().await;
        summary.add_phase(
            PhaseSummary::new(&spec, &result, before.as_ref(), after.as_ref()),
            &result,
        );
    }

    ctx.finish(driver, plan.total(), &mut summary, first, None)
        .await?;
    Ok(summary)
}
