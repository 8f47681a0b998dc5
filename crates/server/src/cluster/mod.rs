//! Cluster mode: several actorchat nodes share rooms through Redis.
//!
//! `--redis-url` turns it on; without it nothing here runs. The design (see
//! docs/cluster.md):
//! - a room's stream lives in Redis (`crate::history` `redis_streams`), and
//!   publishing into it is one atomic script that numbers the messages and
//!   publishes them on the room's channel, so a room has one order across
//!   all nodes;
//! - every node's room actor subscribes to its room's channel while it has
//!   local members ([`bus`]) and fans out what arrives to them exactly as
//!   on one node; a gap in the ids is filled from the stream before
//!   anything after it is delivered;
//! - the node that received a chat learns its id from the script's answer
//!   and broadcasts nothing itself: its own members get the message from
//!   the channel like everyone else's, so every node delivers one sequence.

pub(crate) mod bus;
pub(crate) mod presence;

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub(crate) use bus::{Bus, Delivery};
pub(crate) use presence::{Presence, PresenceNote};

/// Cluster options (all unset: a single node).
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterConfig {
    /// Turns cluster mode on: nodes sharing this Redis share rooms, their
    /// order and their history (`redis://HOST:PORT`). Unset: one node.
    #[arg(long, env = "ACTORCHAT_REDIS_URL")]
    pub redis_url: Option<String>,

    /// This node's name in logs and metrics (default: host name and port).
    #[arg(long, env = "ACTORCHAT_NODE_NAME")]
    pub node_name: Option<String>,

    /// Cluster mode: most messages kept per room in Redis (history and
    /// resume reach this far back).
    #[arg(
        long,
        env = "ACTORCHAT_REDIS_HISTORY_PER_ROOM",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub redis_history_per_room: u64,

    /// Cluster mode: a room's stream expires this many seconds after its
    /// last message.
    #[arg(
        long,
        env = "ACTORCHAT_REDIS_HISTORY_TTL_SECS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub redis_history_ttl_secs: u64,

    /// Cluster mode: a node silent this long is dead; its members are
    /// removed from every room's presence (and the rooms hear they left).
    #[arg(
        long,
        env = "ACTORCHAT_NODE_TTL_SECS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(2..=3600)
    )]
    pub node_ttl_secs: u64,
}

impl ClusterConfig {
    pub fn history_ttl(&self) -> Duration {
        Duration::from_secs(self.redis_history_ttl_secs)
    }
}

/// Why cluster mode could not start; the binary exits with status 2.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--redis-url {url} is not a Redis URL: {reason}")]
    Url { url: String, reason: String },
    #[error(
        "cannot reach Redis at {url}: {reason} (is it running, and is the URL right? without --redis-url the server runs as a single node)"
    )]
    Unreachable { url: String, reason: String },
}

/// How long one Redis command may take before it fails (and a chat is
/// answered `unavailable`).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a room needs of the cluster: the pub/sub bus and presence.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub bus: Bus,
    pub presence: Presence,
}

/// Opens the command connection (with its own reconnects), starts the
/// pub/sub bus and the node's heartbeat.
pub(crate) async fn connect(
    config: &ClusterConfig,
    url: &str,
    node: &str,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<(ConnectionManager, Cluster), ClusterError> {
    let client = redis::Client::open(url).map_err(|e| ClusterError::Url {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let manager = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let conn = client
        .get_connection_manager_with_config(manager)
        .await
        .map_err(|e| ClusterError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let node: Arc<str> = node.into();
    let bus = Bus::start(client, conn.clone(), metrics, node.clone());
    let presence = Presence::new(
        conn.clone(),
        node,
        Duration::from_secs(config.node_ttl_secs),
    );
    tokio::spawn(presence.clone().run());
    Ok((conn, Cluster { bus, presence }))
}
