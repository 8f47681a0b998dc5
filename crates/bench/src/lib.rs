//! `actorchat bench`: a load generator for actorchat servers.
//!
//! It simulates thousands of chat users over real WebSockets, speaking the
//! protocol crate's frames, and reports what a person needs to judge a
//! server: how many connections it holds and at what memory cost, how fast
//! and how completely it fans messages out, where its capacity ends, and how
//! calculations affect chat latency.
//!
//! Where things are:
//! - [`cli`]: the options of each scenario;
//! - `scenario/`: one file per scenario, written against a [`driver`] that
//!   hides whether the clients live in this process or in `--procs` workers;
//! - `fleet`/`member`: the clients of one process and one client's session;
//! - `pacing`: drift-free send schedules; `stats`: HdrHistograms;
//! - `metrics`: the server's `/metrics`; `summary` and `report`: output.
//!
//! **Latency** is `now − sent_at`: the sender puts its wall clock in
//! microseconds since the Unix epoch into `sent_at`, and every receiver (the
//! sender included) subtracts it from its own clock on receipt. Client and
//! server share one clock on one machine. The web client's auto-send uses the
//! same definition in milliseconds (it measures its own echo).

pub mod cli;
mod client;
mod clock;
mod driver;
mod error;
mod fleet;
mod history_summary;
mod limits;
mod member;
pub mod metrics;
mod pacing;
mod phase;
mod progress;
pub mod report;
mod scenario;
mod sequence;
mod stamp;
pub mod stats;
pub mod summary;
mod target;
mod websocket;
mod workers;

use std::process::ExitCode;
use std::time::Duration;

pub use cli::{
    BenchArgs, CalcMixArgs, CapacityArgs, CommonArgs, ConnectionsArgs, FanoutArgs, IngestArgs,
    ReconnectArgs, Scenario,
};
pub use error::BenchError;
pub use limits::ClientLimit;
pub use stats::Latency;
pub use summary::{
    CapacitySummary, IngestSummary, PhaseSummary, ReconnectSummary, ServerSummary, Summary,
};

/// Runs `actorchat bench ...` to completion: builds a multi-threaded tokio
/// runtime, runs the scenario, prints the summary (a table, or JSON with
/// `--json`) and writes the `--report`. Errors go to stderr. The status is
/// a failure also when the run completed but a check failed
/// ([`Summary::failures`], e.g. a gap found by `reconnect`).
pub fn run(args: BenchArgs) -> ExitCode {
    limits::raise_nofile();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("actorchat bench: {}", BenchError::Runtime(e));
            return ExitCode::FAILURE;
        }
    };
    let result = if matches!(args.scenario, Scenario::Worker) {
        runtime.block_on(workers::worker_main()).map(|()| None)
    } else {
        runtime.block_on(run_scenario(&args)).map(Some)
    };
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result.and_then(|summary| match summary {
        Some(summary) => output(&args, &summary).map(|()| summary.failures.is_empty()),
        None => Ok(true),
    }) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("actorchat bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenario and returns its summary without printing anything
/// (progress is drawn on stderr unless `--json` or stderr is not a
/// terminal). Call from inside a tokio runtime, e.g. in integration tests:
///
/// ```no_run
/// # async fn f() -> Result<(), actorchat_bench::BenchError> {
/// let args = actorchat_bench::BenchArgs::from_cli([
///     "fanout", "--url", "ws://127.0.0.1:3000", "--clients", "5",
///     "--senders", "2", "--rate", "10", "--duration", "1s", "--json",
/// ]).expect("valid arguments");
/// let summary = actorchat_bench::run_scenario(&args).await?;
/// assert_eq!(summary.expected_deliveries, summary.received_deliveries);
/// # Ok(()) }
/// ```
///
/// `--procs N` re-executes the current program as `bench worker`, so it only
/// works from the `actorchat` binary (or with `ACTORCHAT_BENCH_EXE` set).
pub async fn run_scenario(args: &BenchArgs) -> Result<Summary, BenchError> {
    match &args.scenario {
        Scenario::Connections(a) => scenario::connections::run(a).await,
        Scenario::Fanout(a) => scenario::fanout::run(a).await,
        Scenario::Capacity(a) => scenario::capacity::run(a).await,
        Scenario::CalcMix(a) => scenario::calc_mix::run(a).await,
        Scenario::Ingest(a) => scenario::ingest::run(a).await,
        Scenario::Reconnect(a) => scenario::reconnect::run(a).await,
        Scenario::Worker => Err(BenchError::InvalidOption(
            "`worker` is internal to --procs".into(),
        )),
    }
}

/// Prints the summary and writes the report.
fn output(args: &BenchArgs, summary: &Summary) -> Result<(), BenchError> {
    let Some(common) = args.common() else {
        return Ok(());
    };
    if common.json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        print!("{}", summary.table());
    }
    if let Some(path) = &common.report {
        std::fs::write(path, report::render(summary)).map_err(|source| BenchError::Report {
            path: path.clone(),
            source,
        })?;
        if !common.json {
            println!("  report      {}", path.display());
        }
    }
    Ok(())
}
