//! Command-line and environment configuration.
//!
//! Every option has an `ACTORCHAT_*` environment-variable fallback; the
//! README's configuration table lists them all.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

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

    /// Run calculations whatever their estimated time (they still time
    /// out). For tests and benchmarks of timeouts and cancellation; never in
    /// production.
    #[arg(long, env = "ACTORCHAT_CALC_SKIP_TIME_ADMISSION", hide = true)]
    pub calc_skip_time_admission: bool,

    /// Fault injection for tests: a room actor panics when it receives a chat
    /// with exactly this text. Never set it in production.
    #[arg(long, env = "ACTORCHAT_DEBUG_PANIC_PHRASE", hide = true)]
    pub debug_panic_phrase: Option<String>,
}

impl Config {
    /// The defaults (environment variables included), listening on an
    /// ephemeral loopback port: for tests and embedding.
    pub fn for_tests() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        let defaults = <Defaults as clap::Parser>::try_parse_from(["actorchat"])?;
        Ok(Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..defaults.config
        })
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
