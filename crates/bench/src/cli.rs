//! Command-line options of `actorchat bench <scenario>`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// `actorchat bench`: simulate many chat users against an actorchat server.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// Open N clients at a ramp rate, hold them, prove each is alive with a
    /// ping; report opened/failed/alive and server memory per connection.
    Connections(ConnectionsArgs),
    /// N clients in one room, S of them sending at an aggregate paced rate;
    /// report deliveries, loss and delivery latency.
    Fanout(FanoutArgs),
    /// Step the fan-out rate up until p99 latency exceeds a threshold or
    /// messages are lost; report the highest sustainable deliveries/s.
    Capacity(CapacityArgs),
    /// Chatters and pingers, first alone, then while other clients keep the
    /// calculator busy; report chat and ping latency for both phases.
    CalcMix(CalcMixArgs),
    /// Persisted ingest: many small rooms (default 500 × 4 members), every
    /// member sending; report messages persisted per second, commit batch
    /// sizes and latency (server histograms), delivery latency and loss.
    Ingest(IngestArgs),
    /// Resume after reconnect: members chat in one room while "droppers"
    /// close their sockets abruptly and come back with `since`; check that
    /// every client got every message exactly once, in order (exit status 1
    /// if not), and report resume latency.
    Reconnect(ReconnectArgs),
    /// Internal: one worker process of `--procs N`; reads its part of the
    /// plan on stdin and answers on stdout.
    #[command(hide = true)]
    Worker,
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// The server's WebSocket base URL (clients connect to `{url}/ws`,
    /// server figures come from `http://.../metrics`). Several (repeated or
    /// comma-separated): the nodes of a cluster; clients are spread over
    /// them round-robin and the server figures are summed (and listed per
    /// node).
    #[arg(
        long = "url",
        env = "ACTORCHAT_BENCH_URL",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:3000"
    )]
    pub urls: Vec<String>,
    /// Print the summary as JSON on stdout (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report with latency charts.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Spread the clients over this many worker processes (each has its own
    /// open-file limit).
    #[arg(long, default_value_t = 1, env = "ACTORCHAT_BENCH_PROCS")]
    pub procs: u32,
    /// Bind client sockets to these source addresses, round-robin (each
    /// loopback address has its own ~28,000 source ports).
    #[arg(long, value_delimiter = ',', value_name = "IP,IP,...")]
    pub source_ips: Vec<IpAddr>,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 2000.0, value_name = "PER_SEC")]
    pub ramp: f64,
    /// Room name; default: a fresh `bench-<id>` room per run.
    #[arg(long)]
    pub room: Option<String>,
    /// How long to wait for in-flight messages after the last send.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Per-client WebSocket read buffer, bytes; default 4096 for
    /// `connections`, 8192 otherwise.
    #[arg(long, value_name = "BYTES")]
    pub read_buffer: Option<usize>,
    /// WebSocket handshakes in flight at once, per process.
    #[arg(long, default_value_t = 256)]
    pub max_pending: usize,
    /// Give up on a connection attempt after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// A connect token every client presents (`?token=`), for a server with
    /// `--auth optional|required` (`actorchat token` makes one).
    #[arg(long, env = "ACTORCHAT_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The Redis a cluster shares (`redis://HOST:PORT`): its CPU time and
    /// memory (from `INFO`) are reported beside the nodes' figures.
    #[arg(long, value_name = "redis://HOST:PORT")]
    pub redis: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Clients to open.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub clients: u32,
    /// How long to hold the connections open before the liveness ping.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Clients in the room (all receive every message).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub clients: u32,
    /// How many of them send.
    #[arg(long, short = 's', default_value_t = 10)]
    pub senders: u32,
    /// Aggregate send rate of all senders, messages per second. Each message
    /// is delivered to every client, so deliveries/s = rate × clients. The
    /// server allows 20 messages/s per connection.
    #[arg(long, short = 'r', default_value_t = 100.0)]
    pub rate: f64,
    /// How long to send.
    #[arg(long, short = 'd', default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Chat text length, bytes.
    #[arg(long, default_value_t = 64)]
    pub text_bytes: usize,
}

#[derive(Debug, Clone, Args)]
pub struct CapacityArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Clients in the room.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub clients: u32,
    /// Message rate of the first step, messages per second.
    #[arg(long, default_value_t = 100.0)]
    pub start_rate: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Length of each step.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub step: Duration,
    /// A step fails when its p99 delivery latency exceeds this, ms.
    #[arg(long, default_value_t = 100.0)]
    pub p99_ms: f64,
    /// A step fails when more than this fraction of deliveries is lost.
    #[arg(long, default_value_t = 0.0)]
    pub max_loss: f64,
    /// Stop after this many steps even if all passed.
    #[arg(long, default_value_t = 15)]
    pub max_steps: u32,
    /// Messages per second per sender; the number of senders grows with the
    /// rate to stay under the server's 20 messages/s per connection.
    #[arg(long, default_value_t = 15.0)]
    pub per_sender_rate: f64,
    /// Chat text length, bytes.
    #[arg(long, default_value_t = 64)]
    pub text_bytes: usize,
}

#[derive(Debug, Clone, Args)]
pub struct CalcMixArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Clients in the chat room that send chat (and receive everything).
    #[arg(long, default_value_t = 200)]
    pub chatters: u32,
    /// Clients in the chat room that send pings (and receive everything).
    #[arg(long, default_value_t = 20)]
    pub pingers: u32,
    /// Clients in a separate room that send calculations in phase 2.
    #[arg(long, default_value_t = 2)]
    pub calcers: u32,
    /// Aggregate chat rate, messages per second.
    #[arg(long, short = 'r', default_value_t = 100.0)]
    pub rate: f64,
    /// Pings per second per pinger.
    #[arg(long, default_value_t = 5.0)]
    pub ping_rate: f64,
    /// Length of each phase.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Expressions the calculating clients send in turn, each as soon as the
    /// previous result arrived.
    #[arg(long, value_delimiter = ',', default_value = "30000!,100000!")]
    pub exprs: Vec<String>,
    /// Chat text length, bytes.
    #[arg(long, default_value_t = 64)]
    pub text_bytes: usize,
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Rooms (`{room}-0` … `{room}-{N-1}`).
    #[arg(long, default_value_t = 500)]
    pub rooms: u32,
    /// Members per room; every member sends.
    #[arg(long, default_value_t = 4)]
    pub members: u32,
    /// Messages per second per member (the server allows 20 per
    /// connection); the total is rooms × members × rate.
    #[arg(long, short = 'r', default_value_t = 10.0)]
    pub rate: f64,
    /// How long to send.
    #[arg(long, short = 'd', default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Chat text length, bytes.
    #[arg(long, default_value_t = 64)]
    pub text_bytes: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ReconnectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Clients in the room, droppers included.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub clients: u32,
    /// How many of them repeatedly drop and resume (the others chat).
    #[arg(long, default_value_t = 5)]
    pub droppers: u32,
    /// Messages per second per chatting client.
    #[arg(long, short = 'r', default_value_t = 5.0)]
    pub rate: f64,
    /// How long the others chat (droppers drop meanwhile).
    #[arg(long, short = 'd', default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long a dropper stays connected between drops (each stay is
    /// jittered by ±50 %).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub connected: Duration,
    /// How long a dropper stays away before resuming.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub pause: Duration,
    /// Chat text length, bytes.
    #[arg(long, default_value_t = 64)]
    pub text_bytes: usize,
}

impl BenchArgs {
    /// Parses `bench` arguments without the program name, e.g.
    /// `["fanout", "--url", "ws://127.0.0.1:3000", "--clients", "5"]`.
    /// Handy for tests that call [`crate::run_scenario`].
    pub fn from_cli<I, T>(args: I) -> Result<BenchArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        #[command(name = "bench")]
        struct Wrapper {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let argv = std::iter::once(std::ffi::OsString::from("bench"))
            .chain(args.into_iter().map(Into::into));
        Wrapper::try_parse_from(argv).map(|w| w.bench)
    }

    /// The scenario's common options (`None` for the internal worker).
    pub fn common(&self) -> Option<&CommonArgs> {
        match &self.scenario {
            Scenario::Connections(a) => Some(&a.common),
            Scenario::Fanout(a) => Some(&a.common),
            Scenario::Capacity(a) => Some(&a.common),
            Scenario::CalcMix(a) => Some(&a.common),
            Scenario::Ingest(a) => Some(&a.common),
            Scenario::Reconnect(a) => Some(&a.common),
            Scenario::Worker => None,
        }
    }
}

/// Parses `30`, `30s`, `1.5s`, `500ms`, `2m` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 1.5s or 500ms"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("{text:?} must be a non-negative duration"));
    }
    Duration::try_from_secs_f64(value * scale).map_err(|e| e.to_string())
}

impl CommonArgs {
    /// The `--url`s, comma-separated.
    pub fn url(&self) -> String {
        self.urls.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn parses_scenarios() {
        let a = BenchArgs::from_cli([
            "fanout",
            "--url",
            "ws://127.0.0.1:3999",
            "-n",
            "5",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--source-ips",
            "127.0.0.1,127.0.0.2",
            "--json",
        ])
        .unwrap();
        let Scenario::Fanout(f) = &a.scenario else {
            panic!("not fanout")
        };
        assert_eq!(f.clients, 5);
        assert_eq!(f.senders, 10);
        assert_eq!(f.duration, Duration::from_secs(1));
        assert_eq!(f.common.source_ips.len(), 2);
        assert!(f.common.json);
        let c = BenchArgs::from_cli(["calc-mix", "--exprs", "10!,20!"]).unwrap();
        let Scenario::CalcMix(c) = &c.scenario else {
            panic!("not calc-mix")
        };
        assert_eq!(c.exprs, vec!["10!".to_owned(), "20!".to_owned()]);
        let i = BenchArgs::from_cli(["ingest", "--rooms", "3", "--rate", "2.5"]).unwrap();
        let Scenario::Ingest(i) = &i.scenario else {
            panic!("not ingest")
        };
        assert_eq!((i.rooms, i.members, i.rate), (3, 4, 2.5));
        let r = BenchArgs::from_cli(["reconnect", "--droppers", "2", "--pause", "100ms"]).unwrap();
        let Scenario::Reconnect(r) = &r.scenario else {
            panic!("not reconnect")
        };
        assert_eq!((r.clients, r.droppers), (20, 2));
        assert_eq!(r.pause, Duration::from_millis(100));
        assert!(BenchArgs::from_cli(["worker"]).is_ok());
        assert!(BenchArgs::from_cli(["nope"]).is_err());
        assert!(BenchArgs::from_cli(["connections", "--source-ips", "x"]).is_err());
    }
}
