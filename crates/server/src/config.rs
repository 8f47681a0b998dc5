//! Command-line and environment configuration.
//!
//! Every option has an `ACTORCHAT_*` environment-variable fallback; the
//! README's configuration table lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::history::{Durability, Retention, StorageConfig, StorageKind};

/// Options of the chat server (`actorchat` with no subcommand).
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "ACTORCHAT_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,

    /// Most WebSocket connections at once; further upgrades get HTTP 503.
    /// Default: the open-file limit minus a reserve for listeners and files.
    #[arg(long, env = "ACTORCHAT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Largest inbound frame in bytes; a larger one closes the connection with 1009.
    #[arg(long, env = "ACTORCHAT_MAX_FRAME_BYTES", default_value_t = 16 * 1024)]
    pub max_frame_bytes: usize,

    /// Sustained inbound frames per second per connection (token bucket rate).
    #[arg(long, env = "ACTORCHAT_RATE_PER_SEC", default_value_t = 20)]
    pub rate_per_sec: u32,

    /// Inbound frames a connection may send in a burst (token bucket size).
    #[arg(long, env = "ACTORCHAT_RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,

    /// Outbound frames queued per connection before it counts as a slow
    /// consumer and is closed with 1013.
    #[arg(long, env = "ACTORCHAT_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// Shortest interval between two `room_update` frames of one room, in ms.
    #[arg(long, env = "ACTORCHAT_PRESENCE_INTERVAL_MS", default_value_t = 100)]
    pub presence_interval_ms: u64,

    /// Seconds an empty room lives on before its actor stops.
    #[arg(long, env = "ACTORCHAT_ROOM_IDLE_SECS", default_value_t = 60)]
    pub room_idle_secs: u64,

    /// Most rooms at once. A `join` that would create another is answered
    /// `room_limit`; a connect that would, HTTP 503 before the upgrade.
    #[arg(long, env = "ACTORCHAT_MAX_ROOMS", default_value_t = 10_000)]
    pub max_rooms: usize,

    /// Chat messages waiting in one room's inbox before further chat to
    /// that room is answered `room_busy` and not broadcast.
    #[arg(long, env = "ACTORCHAT_ROOM_INBOX", default_value_t = 4096)]
    pub room_inbox: usize,

    /// Sustained `join` frames per second per connection (token bucket rate;
    /// the joins also count against `--rate-per-sec`).
    #[arg(long, env = "ACTORCHAT_JOIN_RATE_PER_SEC", default_value_t = 2)]
    pub join_rate_per_sec: u32,

    /// `join` frames a connection may send in a burst (token bucket size).
    #[arg(long, env = "ACTORCHAT_JOIN_BURST", default_value_t = 5)]
    pub join_burst: u32,

    /// Origins whose pages may open a WebSocket, comma-separated; a port of
    /// `*` matches any port, and `*` alone allows every origin. The origin
    /// that matches the request's own `Host` is always allowed, and so is a
    /// request without an `Origin` header (not a browser).
    #[arg(
        long,
        env = "ACTORCHAT_ALLOWED_ORIGINS",
        default_value = "http://localhost:*,http://127.0.0.1:*"
    )]
    pub allowed_origins: String,

    /// Milliseconds to wait before restarting a failed top-level actor (the
    /// room registry or the calculation scheduler); `/readyz` answers 503
    /// until it is back. A pause keeps a crash loop from spinning a core.
    #[arg(long, env = "ACTORCHAT_RESTART_DELAY_MS", default_value_t = 100)]
    pub restart_delay_ms: u64,

    /// Bytes reserved for each socket read. Small on purpose: an idle
    /// connection keeps this much allocated while it waits.
    #[arg(long, env = "ACTORCHAT_READ_BUFFER_BYTES", default_value_t = 512)]
    pub read_buffer_bytes: usize,

    /// Most bytes of queued frames written in one system call; a busy
    /// connection writes many frames per call, a slow one never buffers more
    /// than this (or one frame, if a single frame is larger).
    #[arg(long, env = "ACTORCHAT_WRITE_BUFFER_BYTES", default_value_t = 4096)]
    pub write_buffer_bytes: usize,

    /// Disable Nagle's algorithm on client sockets (`TCP_NODELAY`): each
    /// batch goes out at once. `false` lets the kernel coalesce small writes
    /// while earlier data is unacknowledged: fewer packets, possibly more latency.
    #[arg(long, env = "ACTORCHAT_TCP_NODELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub tcp_nodelay: bool,

    /// Seconds a client has to send a complete set of HTTP request headers
    /// (also the longest an idle keep-alive HTTP connection stays open);
    /// slower ones are closed. Stops slowloris.
    #[arg(long, env = "ACTORCHAT_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,

    /// Most TCP connections in their HTTP phase (not yet upgraded to a
    /// WebSocket) at once. One more closes the oldest at once to make room
    /// (counted in `actorchat_pending_evicted_total`), so stalled sockets
    /// cannot lock new clients out.
    #[arg(long, env = "ACTORCHAT_MAX_PENDING_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_pending_connections: u64,

    /// Seconds of silence from a client (nothing received, pongs included)
    /// after which the server sends it a WebSocket ping.
    #[arg(long, env = "ACTORCHAT_PING_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub ping_interval_secs: u64,

    /// Seconds of silence after which a connection is closed with 1001 (a
    /// peer that vanished without a FIN). Must exceed the ping interval.
    #[arg(long, env = "ACTORCHAT_IDLE_TIMEOUT_SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub idle_timeout_secs: u64,

    /// Seconds within which a frame or fragmented message that has begun must
    /// be complete; otherwise the connection is closed with 1008.
    #[arg(long, env = "ACTORCHAT_FRAME_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub frame_timeout_secs: u64,

    /// Seconds to wait for connections to close on SIGINT/SIGTERM.
    #[arg(long, env = "ACTORCHAT_SHUTDOWN_GRACE_SECS", default_value_t = 4)]
    pub shutdown_grace_secs: u64,

    /// Calculations running at once. Default: the number of cores minus one
    /// (at least one), so one core is always left for the chat.
    #[arg(long, env = "ACTORCHAT_CALC_WORKERS")]
    pub calc_workers: Option<usize>,

    /// Admitted calculations that may wait for a worker; beyond it, `busy`.
    #[arg(long, env = "ACTORCHAT_CALC_QUEUE", default_value_t = 64)]
    pub calc_queue: usize,

    /// A calculation running longer than this (ms) is cancelled: `timeout`.
    #[arg(long, env = "ACTORCHAT_CALC_TIMEOUT_MS", default_value_t = 2000)]
    pub calc_timeout_ms: u64,

    /// Estimated peak memory one calculation may use, in bytes; larger ones
    /// are `rejected` before any work.
    #[arg(long, env = "ACTORCHAT_CALC_MAX_BYTES", default_value_t = 64 << 20)]
    pub calc_max_bytes: u64,

    /// Estimated peak memory all running calculations may use together.
    #[arg(long, env = "ACTORCHAT_CALC_BUDGET_BYTES", default_value_t = 256 << 20)]
    pub calc_budget_bytes: u64,

    /// Results with more digits are broadcast abbreviated (first and last 50
    /// digits); the full value stays at `GET /calc/{id}`.
    #[arg(long, env = "ACTORCHAT_CALC_DISPLAY_DIGITS", default_value_t = 10_000)]
    pub calc_display_digits: usize,

    /// Bytes of full results kept for `GET /calc/{id}`; oldest evicted first.
    #[arg(long, env = "ACTORCHAT_CALC_STORE_BYTES", default_value_t = 64 << 20)]
    pub calc_store_bytes: usize,

    /// Nice value of calculator threads (0 to 19): higher yields the CPU to
    /// the network threads sooner.
    #[arg(long, env = "ACTORCHAT_CALC_NICE", default_value_t = 19, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub calc_nice: i32,

    /// Where rooms' messages are kept: `sqlite` (in `--data-dir`; survives
    /// restarts and crashes) or `memory` (resume works across reconnects,
    /// everything is lost on restart).
    #[arg(long, env = "ACTORCHAT_STORAGE", value_enum, default_value = "sqlite")]
    pub storage: StorageKind,

    /// Directory of the SQLite database; created if missing.
    #[arg(long, env = "ACTORCHAT_DATA_DIR", default_value = "./actorchat-data")]
    pub data_dir: PathBuf,

    /// Durability of a commit: `normal` survives a crash or `kill -9` of the
    /// server; `full` also survives a power loss (an fsync per commit).
    #[arg(long, env = "ACTORCHAT_SYNC", value_enum, default_value = "normal")]
    pub sync: Durability,

    /// Most messages kept per room (oldest removed first); 0 = unlimited.
    #[arg(
        long,
        env = "ACTORCHAT_HISTORY_MAX_PER_ROOM",
        default_value_t = 100_000
    )]
    pub history_max_per_room: u64,

    /// Messages older than this are removed (`90s`, `30m`, `12h`, `7d`);
    /// default: kept until the count limit removes them.
    #[arg(long, env = "ACTORCHAT_HISTORY_MAX_AGE", value_parser = parse_age)]
    pub history_max_age: Option<Duration>,

    /// Messages in a plain join's `welcome.history`.
    #[arg(long, env = "ACTORCHAT_WELCOME_HISTORY", default_value_t = 50)]
    pub welcome_history: usize,

    /// Most missed messages a resume recovers; beyond it `recovered: false`.
    #[arg(long, env = "ACTORCHAT_RECOVER_MAX", default_value_t = 1000)]
    pub recover_max: usize,

    /// Run calculations whatever their estimated time (they still time
    /// out). For tests and benchmarks of timeouts and cancellation; never in
    /// production.
    #[arg(long, env = "ACTORCHAT_CALC_SKIP_TIME_ADMISSION", hide = true)]
    pub calc_skip_time_admission: bool,

    /// Secret for the observer (`/observer`): its snapshot stream and its
    /// actions (kill a room, close a connection, cancel a calculation) need
    /// `Authorization: Bearer <token>`. Unset: the observer is read-only and
    /// served to loopback clients only. At least 8 printable characters;
    /// never logged.
    #[arg(long, env = "ACTORCHAT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<crate::observer::AdminToken>,

    #[command(flatten)]
    pub auth: crate::auth::AuthConfig,

    #[command(flatten)]
    pub cluster: crate::cluster::ClusterConfig,

    /// Fault injection for tests: a room actor pauses for 500 ms (without
    /// blocking a thread) when it receives a chat with exactly this text, so
    /// its inbox fills. Never set it in production.
    #[arg(long, env = "ACTORCHAT_DEBUG_PAUSE_PHRASE", hide = true)]
    pub debug_pause_phrase: Option<String>,
}

/// Reads an age such as `90s`, `30m`, `12h` or `7d` (a bare number is seconds).
pub(crate) fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a number with s, m, h or d, like 7d; got {text:?}"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?}; use s, m, h or d")),
    };
    match n.checked_mul(secs) {
        Some(s) if s > 0 => Ok(Duration::from_secs(s)),
        _ => Err(format!("{text:?} is not a positive age")),
    }
}

/// A configuration value out of its range; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub reason: String,
}

/// Longest duration any time flag accepts (one day): far beyond any sane
/// setting, and far below where `Instant + Duration` could overflow.
const MAX_DURATION_MS: u64 = 24 * 3600 * 1000;

impl Config {
    /// The built-in defaults (ignoring `ACTORCHAT_*` environment variables,
    /// so a developer's shell cannot change what a test sees), listening on
    /// an ephemeral loopback port: for tests and embedding.
    pub fn for_tests() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        let mut command = <Defaults as clap::CommandFactory>::command();
        // Dropping each argument's `env` makes clap read only the defaults.
        let ids: Vec<clap::Id> = command
            .get_arguments()
            .map(|a| a.get_id().clone())
            .collect();
        for id in ids {
            command = command.mut_arg(id, |arg| arg.env(None::<&str>));
        }
        let matches = command.try_get_matches_from(["actorchat"])?;
        let defaults = <Defaults as clap::FromArgMatches>::from_arg_matches(&matches)?;
        // In memory: a test server leaves nothing behind; the tests of
        // durability choose `sqlite` and a data directory of their own.
        Ok(Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            storage: StorageKind::Memory,
            ..defaults.config
        })
    }

    /// Checks every value against its range, so a bad setting is a clear
    /// message at start rather than a panic or a silent misbehaviour later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn at_least<T: PartialOrd + std::fmt::Display>(
            flag: &'static str,
            value: T,
            min: T,
        ) -> Result<(), ConfigError> {
            if value < min {
                return Err(ConfigError {
                    flag,
                    reason: format!("must be at least {min}, got {value}"),
                });
            }
            Ok(())
        }
        fn within<T: PartialOrd + std::fmt::Display>(
            flag: &'static str,
            value: T,
            min: T,
            max: T,
        ) -> Result<(), ConfigError> {
            if value < min || value > max {
                return Err(ConfigError {
                    flag,
                    reason: format!("must be between {min} and {max}, got {value}"),
                });
            }
            Ok(())
        }
        if let Some(n) = self.max_connections {
            at_least("--max-connections", n, 1)?;
        }
        within(
            "--max-frame-bytes",
            self.max_frame_bytes,
            64,
            u32::MAX as usize,
        )?;
        at_least("--rate-per-sec", self.rate_per_sec, 1)?;
        at_least("--rate-burst", self.rate_burst, 1)?;
        at_least("--outbound-queue", self.outbound_queue, 1)?;
        within(
            "--presence-interval-ms",
            self.presence_interval_ms,
            1,
            60_000,
        )?;
        within(
            "--room-idle-secs",
            self.room_idle_secs,
            0,
            MAX_DURATION_MS / 1000,
        )?;
        at_least("--max-rooms", self.max_rooms, 1)?;
        at_least("--room-inbox", self.room_inbox, 1)?;
        at_least("--join-rate-per-sec", self.join_rate_per_sec, 1)?;
        at_least("--join-burst", self.join_burst, 1)?;
        crate::origin::AllowedOrigins::parse(&self.allowed_origins).map_err(|reason| {
            ConfigError {
                flag: "--allowed-origins",
                reason,
            }
        })?;
        within(
            "--restart-delay-ms",
            self.restart_delay_ms,
            0,
            MAX_DURATION_MS,
        )?;
        // The ranges clap checks at parse time, again for configs built in
        // code, plus the one relation between two of them.
        within("--header-timeout-secs", self.header_timeout_secs, 1, 3600)?;
        within(
            "--max-pending-connections",
            self.max_pending_connections,
            1,
            1_000_000,
        )?;
        within("--ping-interval-secs", self.ping_interval_secs, 1, 86_400)?;
        within("--idle-timeout-secs", self.idle_timeout_secs, 2, 86_400)?;
        if self.idle_timeout_secs <= self.ping_interval_secs {
            return Err(ConfigError {
                flag: "--idle-timeout-secs",
                reason: format!(
                    "must exceed --ping-interval-secs ({}), or a quiet but live client is closed before it is pinged; got {}",
                    self.ping_interval_secs, self.idle_timeout_secs
                ),
            });
        }
        within("--frame-timeout-secs", self.frame_timeout_secs, 1, 3600)?;
        within("--read-buffer-bytes", self.read_buffer_bytes, 16, 1 << 20)?;
        within("--write-buffer-bytes", self.write_buffer_bytes, 1, 1 << 24)?;
        within(
            "--shutdown-grace-secs",
            self.shutdown_grace_secs,
            0,
            MAX_DURATION_MS / 1000,
        )?;
        if let Some(n) = self.calc_workers {
            within("--calc-workers", n, 1, 1024)?;
        }
        within(
            "--calc-timeout-ms",
            self.calc_timeout_ms,
            1,
            MAX_DURATION_MS,
        )?;
        at_least("--calc-max-bytes", self.calc_max_bytes, 1)?;
        at_least("--calc-budget-bytes", self.calc_budget_bytes, 1)?;
        at_least("--calc-display-digits", self.calc_display_digits, 1)?;
        within("--welcome-history", self.welcome_history, 0, 1000)?;
        within("--recover-max", self.recover_max, 0, 100_000)?;
        Ok(())
    }

    pub fn storage(&self) -> StorageConfig {
        StorageConfig {
            kind: self.storage,
            data_dir: self.data_dir.clone(),
            sync: self.sync,
            retention: Retention {
                max_per_room: Some(self.history_max_per_room).filter(|n| *n > 0),
                max_age: self.history_max_age,
            },
        }
    }

    pub fn restart_delay(&self) -> Duration {
        Duration::from_millis(self.restart_delay_ms)
    }

    pub fn presence_interval(&self) -> Duration {
        Duration::from_millis(self.presence_interval_ms)
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn frame_timeout(&self) -> Duration {
        Duration::from_secs(self.frame_timeout_secs)
    }

    pub fn room_idle(&self) -> Duration {
        Duration::from_secs(self.room_idle_secs)
    }

    pub fn calc_workers(&self) -> usize {
        self.calc_workers.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            cores.saturating_sub(1).max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_age("0s").is_err());
        assert!(parse_age("7w").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("99999999999999999999d").is_err());
    }

    #[test]
    fn the_defaults_are_valid() {
        Config::for_tests().unwrap().validate().unwrap();
    }

    #[test]
    fn out_of_range_values_name_their_flag() {
        type Break = fn(&mut Config);
        let cases: [(&str, Break); 7] = [
            ("--idle-timeout-secs", |c| {
                c.idle_timeout_secs = c.ping_interval_secs
            }),
            ("--calc-timeout-ms", |c| c.calc_timeout_ms = u64::MAX),
            ("--calc-timeout-ms", |c| c.calc_timeout_ms = 0),
            ("--max-rooms", |c| c.max_rooms = 0),
            ("--room-inbox", |c| c.room_inbox = 0),
            ("--presence-interval-ms", |c| {
                c.presence_interval_ms = u64::MAX
            }),
            ("--allowed-origins", |c| {
                c.allowed_origins = "example.com".into()
            }),
        ];
        for (flag, break_it) in cases {
            let mut config = Config::for_tests().unwrap();
            break_it(&mut config);
            let e = config.validate().unwrap_err();
            assert_eq!(e.flag, flag);
            assert!(e.to_string().starts_with(flag), "{e}");
        }
    }

    /// Run in a child process (see below) with an `ACTORCHAT_*` variable
    /// set; does nothing when run directly.
    #[test]
    fn child_for_tests_ignores_the_environment() {
        if std::env::var_os("ACTORCHAT_RATE_PER_SEC").is_none() {
            return;
        }
        let config = Config::for_tests().unwrap();
        assert_eq!(
            config.rate_per_sec, 20,
            "for_tests read ACTORCHAT_RATE_PER_SEC"
        );
    }

    /// Setting a variable in this process would race the other tests'
    /// threads, so the check runs in a child process of this test binary.
    #[test]
    fn for_tests_does_not_read_actorchat_variables() {
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new(exe)
            .args([
                "--exact",
                "config::tests::child_for_tests_ignores_the_environment",
                "--quiet",
            ])
            .env("ACTORCHAT_RATE_PER_SEC", "7")
            .status()
            .unwrap();
        assert!(status.success());
    }
}
