//! `--procs N`: the clients spread over N worker processes.
//!
//! The coordinator re-executes its own binary as `bench worker` (a hidden
//! subcommand) N times. Each worker reads one JSON line on stdin, its
//! [`WorkerInit`] (the fleet plan and its share of the clients), opens its
//! clients and then obeys one [`WorkerCmd`] per stdin line. It answers with
//! [`WorkerMsg`] JSON lines on stdout: progress counters, then the ramp
//! result, then one result per phase with the latency histograms serialized
//! (HdrHistogram V2, base64). The coordinator merges the results; phases
//! start at a wall-clock time so all workers send together. Worker stderr is
//! passed through.
//!
//! The binary to run is `current_exe()` (override with
//! `ACTORCHAT_BENCH_EXE`), with arguments `bench worker` (override with
//! `ACTORCHAT_BENCH_WORKER_ARGS`, space-separated).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::BenchError;
use crate::fleet::{Fleet, FleetPlan, RampResult, Share};
use crate::phase::{Live, PhaseResult, PhaseSpec};
use crate::target::Target;

/// The first line a worker reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInit {
    pub plan: FleetPlan,
    pub share: Share,
}

/// Coordinator → worker, one per line after [`WorkerInit`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum WorkerCmd {
    Phase { spec: PhaseSpec },
    Close,
}

/// Worker → coordinator, one per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum WorkerMsg {
    Progress { live: Live },
    Ready { ramp: RampResult },
    Phase { result: Box<PhaseResult> },
    Closed,
    Failed { reason: String },
}

/// The worker side: runs in the child process until told to close or its
/// stdin ends.
pub async fn worker_main() -> Result<(), BenchError> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let Some(first) = lines.next_line().await? else {
        return Ok(());
    };
    let init: WorkerInit = serde_json::from_str(&first)?;
    let target = match Target::resolve(&init.plan.url, init.plan.token.clone()).await {
        Ok(t) => Arc::new(t),
        Err(e) => {
            emit(&WorkerMsg::Failed {
                reason: e.to_string(),
            });
            return Err(e);
        }
    };
    let (fleet, ramp) = Fleet::open(target, &init.plan, init.share, |live| {
        emit(&WorkerMsg::Progress { live });
    })
    .await;
    emit(&WorkerMsg::Ready { ramp });
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<WorkerCmd>(&line)? {
            WorkerCmd::Phase { spec } => {
                let result = fleet
                    .run_phase(spec, |live| emit(&WorkerMsg::Progress { live }))
                    .await;
                emit(&WorkerMsg::Phase {
                    result: Box::new(result),
                });
            }
            WorkerCmd::Close => break,
        }
    }
    fleet.close().await;
    emit(&WorkerMsg::Closed);
    Ok(())
}

fn emit(msg: &WorkerMsg) {
    use std::io::Write as _;
    if let Ok(line) = serde_json::to_string(msg) {
        let mut out = std::io::stdout().lock();
        // If the coordinator went away there is no one to tell.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The coordinator's handle on its worker processes.
pub struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    /// `(worker index, message)`; `None` when the worker's stdout ended.
    rx: mpsc::UnboundedReceiver<(usize, Option<WorkerMsg>)>,
    /// Latest progress counters per worker.
    live: Vec<Live>,
}

impl Workers {
    /// Starts `count` workers, each with its share of `plan`.
    pub async fn spawn(plan: &FleetPlan, count: u32) -> Result<Workers, BenchError> {
        let exe = match std::env::var_os("ACTORCHAT_BENCH_EXE") {
            Some(exe) => exe.into(),
            None => std::env::current_exe().map_err(|e| BenchError::Worker {
                index: 0,
                reason: format!("cannot find this program to re-run it: {e}"),
            })?,
        };
        let args: Vec<String> = std::env::var("ACTORCHAT_BENCH_WORKER_ARGS")
            .unwrap_or_else(|_| "bench worker".into())
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut workers = Workers {
            children: Vec::new(),
            stdins: Vec::new(),
            rx,
            live: vec![Live::default(); count as usize],
        };
        for index in 0..count {
            let i = index as usize;
            let fail = |reason: String| BenchError::Worker { index: i, reason };
            let mut child = Command::new(&exe)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| fail(format!("could not start {}: {e}", exe.display())))?;
            let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(fail("no pipes to the worker".into()));
            };
            let init = WorkerInit {
                plan: plan.clone(),
                share: Share { index, count },
            };
            let line = serde_json::to_string(&init)? + "\n";
            stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| fail(e.to_string()))?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    // Anything that is not one of our messages is ignored
                    // (a stray print must not break the run).
                    if let Ok(msg) = serde_json::from_str::<WorkerMsg>(&line)
                        && tx.send((i, Some(msg))).is_err()
                    {
                        return;
                    }
                }
                let _ = tx.send((i, None));
            });
            workers.children.push(child);
            workers.stdins.push(stdin);
        }
        Ok(workers)
    }

    /// Sends a command to every worker.
    pub async fn broadcast(&mut self, cmd: &WorkerCmd) -> Result<(), BenchError> {
        let line = serde_json::to_string(cmd)? + "\n";
        for (index, stdin) in self.stdins.iter_mut().enumerate() {
            stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| BenchError::Worker {
                    index,
                    reason: format!("worker is gone: {e}"),
                })?;
        }
        Ok(())
    }

    /// Waits until every worker sent a message that `pick` accepts, passing
    /// the summed progress counters to `progress` meanwhile.
    pub async fn gather<T>(
        &mut self,
        mut pick: impl FnMut(WorkerMsg) -> Option<T>,
        mut progress: impl FnMut(Live),
    ) -> Result<Vec<T>, BenchError> {
        let n = self.live.len();
        let mut got: Vec<Option<T>> = (0..n).map(|_| None).collect();
        while got.iter().any(Option::is_none) {
            let Some((index, msg)) = self.rx.recv().await else {
                return Err(BenchError::Worker {
                    index: 0,
                    reason: "all workers are gone".into(),
                });
            };
            match msg {
                None => {
                    if got[index].is_none() {
                        return Err(BenchError::Worker {
                            index,
                            reason: "exited before answering (see its messages above)".into(),
                        });
                    }
                }
                Some(WorkerMsg::Progress { live }) => {
                    self.live[index] = live;
                    let mut total = Live::default();
                    for l in &self.live {
                        total.add(l);
                    }
                    progress(total);
                }
                Some(WorkerMsg::Failed { reason }) => {
                    return Err(BenchError::Worker { index, reason });
                }
                Some(other) => {
                    if let Some(value) = pick(other) {
                        got[index] = Some(value);
                    }
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Tells the workers to close their clients and waits for them to exit
    /// (killing any that take longer than ten seconds).
    pub async fn close(mut self) {
        let _ = self.broadcast(&WorkerCmd::Close).await;
        drop(std::mem::take(&mut self.stdins));
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_roundtrip_as_json_lines() {
        let cmd = WorkerCmd::Phase {
            spec: PhaseSpec::idle(3, "hold", 1, 2),
        };
        let line = serde_json::to_string(&cmd).unwrap();
        assert!(!line.contains('\n'));
        let back: WorkerCmd = serde_json::from_str(&line).unwrap();
        assert!(matches!(back, WorkerCmd::Phase { spec } if spec.id == 3));

        let mut result = PhaseResult::empty();
        result.received = 42;
        result.chat.record(1234);
        let msg = WorkerMsg::Phase {
            result: Box::new(result),
        };
        let line = serde_json::to_string(&msg).unwrap();
        assert!(!line.contains('\n'));
        let WorkerMsg::Phase { result } = serde_json::from_str(&line).unwrap() else {
            panic!("wrong message")
        };
        assert_eq!(result.received, 42);
        assert_eq!(result.chat.len(), 1);
    }
}
