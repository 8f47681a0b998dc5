//! Cluster mode with a node that dies: a node killed with SIGKILL leaves
//! the other nodes' members with everything they had, and its members
//! leave the room's presence within `--node-ttl-secs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../server/tests/common/mod.rs"]
mod common;
mod process;

use std::time::{Duration, Instant};

use actorchat_protocol::ServerFrame;
use common::redis_server::RedisServer;
use common::{Client, TempDir, config, server};
use process::{kill_hard, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_members_leave_within_the_node_ttl() {
    let Some(redis) = RedisServer::start("a_killed_node_s_members_leave", false) else {
        return;
    };
    let mut cfg = config();
    cfg.cluster.redis_url = Some(redis.url());
    cfg.cluster.node_ttl_secs = 2;
    let survivor = server(cfg).await;
    let data = TempDir::new("doomed");
    let (mut doomed, doomed_addr) = spawn(
        None,
        &data,
        &format!(
            "--redis-url {} --node-ttl-secs 2 --node-name doomed",
            redis.url()
        ),
    );
    let mut ada = Client::connect(survivor.local_addr(), "Ada", "wake").await;
    let _bob = Client::connect(doomed_addr, "Bob", "wake").await;
    ada.next_matching(|f| match f {
        ServerFrame::RoomUpdate(u) if u.num_participants == 2 => Some(()),
        _ => None,
    })
    .await;

    kill_hard(&mut doomed);
    let killed = Instant::now();
    let gone = ada
        .next_matching(|f| match f {
            ServerFrame::RoomUpdate(u) if u.left.contains(&"Bob".to_owned()) => Some(u),
            _ => None,
        })
        .await;
    assert_eq!(gone.num_participants, 1);
    assert!(
        killed.elapsed() < Duration::from_secs(2 + 5),
        "Bob left presence {:?} after the kill",
        killed.elapsed()
    );
    // The survivor's room goes on.
    ada.chat("still here").await;
    assert_eq!(ada.next_chat().await.text, "still here");
}
