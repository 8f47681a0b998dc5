//! `capacity`: step the fan-out rate up (×factor per step) until p99
//! delivery latency exceeds the threshold or deliveries are lost; the
//! highest deliveries/s of a passing step is the sustainable capacity.

use std::time::Duration;

use crate::BenchError;
use crate::cli::CapacityArgs;
use crate::phase::PhaseSpec;
use crate::scenario::{Context, check_rate, millis};
use crate::summary::{CapacitySummary, PhaseSummary, Summary};

pub async fn run(args: &CapacityArgs) -> Result<Summary, BenchError> {
    check_rate("--start-rate", args.start_rate)?;
    if !(args.factor.is_finite() && args.factor > 1.0) {
        return Err(BenchError::InvalidOption("--factor must be above 1".into()));
    }
    if !(args.per_sender_rate.is_finite() && args.per_sender_rate > 0.0) {
        return Err(BenchError::InvalidOption(
            "--per-sender-rate must be positive".into(),
        ));
    }
    let mut ctx = Context::new(&args.common).await?;
    let plan = ctx.plan(args.clients, 0, 8 * 1024);
    let (mut driver, ramp) = ctx.start(&plan).await?;
    let mut summary = Summary::new(
        "capacity",
        &ctx.common.url(),
        ctx.common.procs,
        u64::from(args.clients),
        &ramp,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let first = ctx.scrape().await;
    let mut best: Option<(f64, f64)> = None;
    let mut stopped = format!("all {} steps passed", args.max_steps);
    let mut rate = args.start_rate.max(1.0);
    let members = u32::try_from(ramp.opened).unwrap_or(u32::MAX);
    for step in 1..=args.max_steps {
        let senders = (rate / args.per_sender_rate).ceil() as u32;
        if senders > members {
            stopped = format!(
                "{rate:.0} msg/s needs {senders} senders at {} msg/s each but only {members} \
                 clients are connected (raise --clients or --per-sender-rate)",
                args.per_sender_rate
            );
            break;
        }
        let before = ctx.scrape().await;
        let spec = PhaseSpec {
            chat_rate: rate,
            senders,
            text_bytes: args.text_bytes,
            grace_ms: ctx.grace_ms(),
            ..PhaseSpec::idle(
                ctx.phase_id(),
                &format!("step {step}"),
                ctx.start_at(),
                millis(args.step),
            )
        };
        let result = driver.run_phase(spec.clone(), &ctx.progress).await?;
        let after = ctx.scrape().await;
        let phase = PhaseSummary::new(&spec, &result, before.as_ref(), after.as_ref());
        let verdict = judge(&phase, args);
        let deliveries = phase.deliveries_per_sec;
        summary.add_phase(phase, &result);
        ctx.progress.note(&format!(
            "step {step}: {rate:.0} msg/s × {} = {deliveries:.0} deliveries/s: {}",
            result.members_at_start,
            verdict.as_deref().unwrap_or("ok")
        ));
        match verdict {
            None => best = Some((deliveries, rate)),
            Some(reason) => {
                stopped = format!("step {step} ({rate:.0} msg/s): {reason}");
                break;
            }
        }
        rate *= args.factor;
    }

    summary.capacity = Some(CapacitySummary {
        p99_threshold_ms: args.p99_ms,
        max_loss: args.max_loss,
        max_sustainable_deliveries_per_sec: best.map(|b| b.0),
        at_rate: best.map(|b| b.1),
        stopped_because: stopped,
    });
    ctx.finish(driver, plan.total(), &mut summary, first, None)
        .await?;
    Ok(summary)
}

/// Why a step fails, or `None` if it is sustainable.
pub fn judge(p: &PhaseSummary, args: &CapacityArgs) -> Option<String> {
    let Some(latency) = p.latency else {
        return Some("no deliveries received".into());
    };
    let p99_ms = latency.p99_us as f64 / 1000.0;
    if p99_ms > args.p99_ms {
        return Some(format!("p99 {p99_ms:.1} ms > {} ms", args.p99_ms));
    }
    if p.loss_ratio > args.max_loss {
        return Some(format!(
            "lost {} of {} deliveries ({:.4} %)",
            p.loss,
            p.expected_deliveries,
            p.loss_ratio * 100.0
        ));
    }
    if p.rate_limited > 0 {
        return Some(format!("{} messages rate-limited", p.rate_limited));
    }
    if p.disconnects > 0 {
        return Some(format!("{} clients disconnected", p.disconnects));
    }
    None
}
