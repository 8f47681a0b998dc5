//! The scenarios, one file each, and what they share: resolving the target,
//! planning the clients, reading `/metrics`, the final liveness check.

pub mod calc_mix;
pub mod capacity;
pub mod connections;
pub mod fanout;
pub mod ingest;
pub mod reconnect;

use std::sync::Arc;
use std::time::Duration;

use crate::cli::CommonArgs;
use crate::driver::Driver;
use crate::fleet::{FleetPlan, RampResult};
use crate::metrics::{self, ServerSnapshot};
use crate::phase::{PhaseResult, PhaseSpec};
use crate::progress::Progress;
use crate::summary::{ServerSummary, Summary};
use crate::target::Target;
use crate::{BenchError, clock};

/// Everything a scenario needs besides its own options.
pub struct Context {
    pub common: CommonArgs,
    pub target: Arc<Target>,
    pub progress: Progress,
    /// A short random-ish tag naming this run's room and clients.
    pub tag: String,
    /// The first reason `/metrics` could not be read.
    pub metrics_error: Option<String>,
    next_phase: u32,
}

impl Context {
    pub async fn new(common: &CommonArgs) -> Result<Context, BenchError> {
        if common.procs == 0 {
            return Err(BenchError::InvalidOption(
                "--procs must be at least 1".into(),
            ));
        }
        if !(common.ramp.is_finite() && common.ramp > 0.0) {
            return Err(BenchError::InvalidOption("--ramp must be positive".into()));
        }
        if let Some(room) = &common.room {
            actorchat_protocol::validate_room(room).map_err(BenchError::InvalidOption)?;
        }
        let mut target = Target::resolve(&common.url(), common.token.clone()).await?;
        if let Some(redis) = &common.redis {
            let authority = redis
                .strip_prefix("redis://")
                .map(|rest| rest.trim_end_matches('/'))
                .filter(|a| !a.is_empty() && !a.contains('@'))
                .ok_or_else(|| {
                    BenchError::InvalidOption(format!(
                        "--redis {redis}: expected redis://HOST:PORT (no password)"
                    ))
                })?;
            target.redis = Some(authority.to_owned());
        }
        let target = Arc::new(target);
        let seed = clock::now_us() ^ (u64::from(std::process::id()) << 20);
        Ok(Context {
            common: common.clone(),
            target,
            progress: Progress::new(!common.json),
            tag: format!("{:06x}", seed & 0xff_ffff),
            metrics_error: None,
            next_phase: 1,
        })
    }

    /// The fleet plan: `members` clients in the main room, `calcers` in the
    /// calculation room.
    pub fn plan(&self, members: u32, calcers: u32, default_read_buffer: usize) -> FleetPlan {
        let room = self
            .common
            .room
            .clone()
            .unwrap_or_else(|| format!("bench-{}", self.tag));
        let calc_room = format!("{}-calc", truncate_room(&room));
        FleetPlan {
            url: self.common.url(),
            members,
            calcers,
            rooms: 0,
            room,
            calc_room,
            name_prefix: format!("b{}-", self.tag),
            ramp_rate: self.common.ramp,
            source_ips: self.common.source_ips.clone(),
            read_buffer: self.common.read_buffer.unwrap_or(default_read_buffer),
            max_pending: self.common.max_pending,
            connect_timeout_ms: u64::try_from(self.common.connect_timeout.as_millis())
                .unwrap_or(u64::MAX),
            token: self.common.token.clone(),
        }
    }

    /// Opens the clients; fails if not a single one connected.
    pub async fn start(&self, plan: &FleetPlan) -> Result<(Driver, RampResult), BenchError> {
        let (driver, ramp) =
            Driver::start(self.target.clone(), plan, self.common.procs, &self.progress).await?;
        if ramp.opened == 0 && plan.total() > 0 {
            driver.close().await;
            self.progress.finish();
            let reason = ramp
                .limit
                .map(|l| l.explain())
                .or_else(|| {
                    ramp.errors
                        .iter()
                        .max_by_key(|(_, n)| **n)
                        .map(|(k, n)| format!("{n} × {k}"))
                })
                .unwrap_or_else(|| "no attempts".into());
            return Err(BenchError::NoClients {
                url: self.common.url(),
                reason,
            });
        }
        Ok((driver, ramp))
    }

    /// A fresh phase id.
    pub fn phase_id(&mut self) -> u32 {
        let id = self.next_phase;
        self.next_phase += 1;
        id
    }

    /// When the next phase starts: soon, but late enough for every worker
    /// process to hear about it first.
    pub fn start_at(&self) -> u64 {
        let lead = if self.common.procs > 1 {
            500_000
        } else {
            100_000
        };
        clock::now_us() + lead
    }

    pub fn grace_ms(&self) -> u64 {
        u64::try_from(self.common.grace.as_millis()).unwrap_or(u64::MAX)
    }

    /// Reads the server's `/metrics`; `None` (and a note) if it cannot.
    pub async fn scrape(&mut self) -> Option<ServerSnapshot> {
        match metrics::scrape(&self.target).await {
            Ok(s) => Some(s),
            Err(e) => {
                self.metrics_error.get_or_insert(e.to_string());
                None
            }
        }
    }

    /// Ends a scenario that measured phases: proves which clients are still
    /// alive, closes them, and records the server's figures around the run.
    pub async fn finish(
        &mut self,
        mut driver: Driver,
        clients: u32,
        summary: &mut Summary,
        before: Option<ServerSnapshot>,
        during: Option<ServerSnapshot>,
    ) -> Result<(), BenchError> {
        let check = self.liveness_check(&mut driver, clients).await?;
        summary.set_liveness(&check);
        driver.close().await;
        self.progress.finish();
        let after = self.scrape().await;
        summary.server = ServerSummary {
            cpu_per_delivery_us: summary.server.cpu_per_delivery_us,
            before,
            during,
            after,
            rss_per_connection_bytes: None,
            hold_cpu_percent: None,
            metrics_error: self.metrics_error.clone(),
        };
        Ok(())
    }

    /// Every client sends one ping; the pongs prove which are alive.
    /// The check is over as soon as every connected client answered.
    pub async fn liveness_check(
        &mut self,
        driver: &mut Driver,
        clients: u32,
    ) -> Result<PhaseResult, BenchError> {
        // The pings are spread over this window: 1 ms per 20 clients, at
        // most a second.
        let window_ms = u64::from(clients / 20).clamp(10, 1_000);
        let spec = PhaseSpec {
            ping_all: true,
            grace_ms: self.grace_ms().max(5_000),
            ..PhaseSpec::idle(self.phase_id(), "liveness ping", self.start_at(), window_ms)
        };
        driver.run_phase(spec, &self.progress).await
    }
}

/// Room names have at most 64 characters; leave room for `-calc`.
fn truncate_room(room: &str) -> &str {
    let max = actorchat_protocol::MAX_ROOM_CHARS - 5;
    room.get(..max).unwrap_or(room)
}

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Checks a rate option.
pub fn check_rate(name: &str, rate: f64) -> Result<(), BenchError> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(())
    } else {
        Err(BenchError::InvalidOption(format!(
            "{name} must be a non-negative number"
        )))
    }
}
