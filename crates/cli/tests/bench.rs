//! `actorchat bench` scenarios, briefly, against the real server: the counts
//! must add up. No test here asserts a speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../server/tests/common/mod.rs"]
mod common;

use actorchat_bench::{BenchArgs, run_scenario};
use common::{TempDir, config, server, sqlite_config};

async fn run(args: &[&str]) -> actorchat_bench::Summary {
    let args = BenchArgs::from_cli(args.iter().copied()).unwrap();
    run_scenario(&args).await.unwrap()
}

#[tokio::test]
async fn connections_are_opened_held_and_alive() {
    let server = server(config()).await;
    let url = format!("ws://{}", server.local_addr());
    let s = run(&[
        "connections",
        "--url",
        &url,
        "--clients",
        "50",
        "--ramp",
        "500",
        "--hold",
        "1s",
    ])
    .await;
    assert_eq!((s.opened, s.failed, s.alive, s.pongs), (50, 0, 50, 50));
    assert!(s.server.rss_per_connection_bytes.is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn fanout_delivers_everything_it_sends() {
    let server = server(config()).await;
    let url = format!("ws://{}", server.local_addr());
    let s = small_fanout(&["--url", &url]).await;
    assert_eq!(s.send_failed, 0);
    assert_eq!(s.expected_deliveries, s.sent * 20);
    let latency = s.latency.unwrap();
    assert_eq!(latency.count, s.received_deliveries);
    assert!(latency.p50_us <= latency.p99_us && latency.p99_us <= latency.max_us);
    server.shutdown().await;
}

/// 20 clients, 4 senders at 40 msg/s for 2 s against `target`; checks that
/// every member got every message, in the room's order.
async fn small_fanout(target: &[&str]) -> actorchat_bench::Summary {
    let mut args = vec!["fanout"];
    args.extend_from_slice(target);
    args.extend([
        "--clients",
        "20",
        "--senders",
        "4",
        "--rate",
        "40",
        "--duration",
        "2s",
    ]);
    let s = run(&args).await;
    assert!(s.sent > 0);
    assert_eq!(s.received_deliveries, s.sent * 20);
    assert_eq!(s.loss, 0);
    assert_eq!(s.reordered, 0, "every member got the room's order");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_cluster_nodes_delivers_everything_and_reports_each_node() {
    let Some(redis) = common::redis_server::RedisServer::start("fanout_over_cluster_nodes", false)
    else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut cfg = config();
        cfg.cluster.redis_url = Some(redis.url());
        nodes.push(server(cfg).await);
    }
    let urls = nodes
        .iter()
        .map(|n| format!("ws://{}", n.local_addr()))
        .collect::<Vec<_>>()
        .join(",");
    let s = small_fanout(&["--url", &urls, "--redis", &redis.url()]).await;
    let after = s.server.after.unwrap();
    assert_eq!(after.nodes.len(), 2);
    // Clients were spread over both nodes, and both delivered.
    for node in &after.nodes {
        assert_eq!(node.connections, Some(0.0), "closed at the end");
        assert!(node.deliveries.unwrap_or(0.0) > 0.0, "{node:?}");
    }
    assert!(after.redis_cpu_seconds.is_some());
    assert!(after.redis_used_memory_bytes.unwrap_or(0.0) > 0.0);
    // Every member, on either node, counts the whole room.
    assert_eq!(
        s.participants_at_end,
        std::collections::BTreeMap::from([(20, 20)])
    );
}

#[tokio::test]
async fn capacity_steps_up_and_reports_the_last_sustainable_rate() {
    let server = server(config()).await;
    let url = format!("ws://{}", server.local_addr());
    let s = run(&[
        "capacity",
        "--url",
        &url,
        "--clients",
        "10",
        "--start-rate",
        "20",
        "--factor",
        "2",
        "--step",
        "1s",
        "--max-steps",
        "2",
    ])
    .await;
    let capacity = s.capacity.expect("capacity summary");
    assert!(!s.phases.is_empty() && s.phases.len() <= 2);
    for phase in &s.phases {
        assert_eq!(
            phase.received_deliveries + phase.loss,
            phase.expected_deliveries,
            "{phase:?}"
        );
    }
    assert!(!capacity.stopped_because.is_empty());
    // At these tiny rates nothing is lost, so the last step is sustainable.
    let best = capacity
        .max_sustainable_deliveries_per_sec
        .expect("a sustainable rate");
    assert!(best > 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn calc_mix_measures_both_phases() {
    let server = server(config()).await;
    let url = format!("ws://{}", server.local_addr());
    let s = run(&[
        "calc-mix",
        "--url",
        &url,
        "--chatters",
        "10",
        "--pingers",
        "2",
        "--calcers",
        "1",
        "--rate",
        "20",
        "--duration",
        "1s",
        "--exprs",
        "2000!",
    ])
    .await;
    assert_eq!(s.phases.len(), 2);
    for phase in &s.phases {
        assert_eq!(
            phase.received_deliveries, phase.expected_deliveries,
            "{phase:?}"
        );
        assert!(
            phase.pongs > 0 && phase.pongs <= phase.pings_sent,
            "{phase:?}"
        );
    }
    assert!(
        s.phases[1].calc_results > 0,
        "the second phase ran calculations"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_binary_spreads_clients_over_worker_processes() {
    let server = server(config()).await;
    let url = format!("ws://{}", server.local_addr());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_actorchat"))
        .args([
            "bench",
            "fanout",
            "--url",
            &url,
            "--clients",
            "12",
            "--senders",
            "4",
            "--rate",
            "20",
        ])
        .args(["--duration", "1s", "--procs", "2", "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let s: actorchat_bench::Summary = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(s.opened, 12);
    assert!(s.sent > 0);
    assert_eq!(s.received_deliveries, s.expected_deliveries);
    assert_eq!(s.expected_deliveries, s.sent * 12);
    // Both workers' clients heard the whole room.
    assert_eq!(
        s.participants_at_end,
        std::collections::BTreeMap::from([(12, 12)])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ingest_persists_and_delivers_every_message_in_its_room() {
    // SQLite, the default storage: its writer's commits are what is measured.
    let dir = TempDir::new("bench-ingest");
    let server = server(sqlite_config(&dir)).await;
    let url = format!("ws://{}", server.local_addr());
    let s = run(&[
        "ingest",
        "--url",
        &url,
        "--rooms",
        "5",
        "--members",
        "3",
        "--rate",
        "5",
        "--duration",
        "2s",
    ])
    .await;
    assert_eq!(s.opened, 15);
    assert!(s.sent > 0);
    assert_eq!(s.rate_limited, 0);
    // Each message goes to the 3 members of its room, not to all 15.
    assert_eq!(s.expected_deliveries, s.sent * 3);
    assert_eq!(s.received_deliveries, s.expected_deliveries);
    assert_eq!(s.loss, 0);
    let ingest = s.ingest.expect("ingest summary");
    assert_eq!((ingest.rooms, ingest.members_per_room), (5, 3));
    // This server had no other traffic: every accepted message was
    // persisted once, within the phase.
    assert_eq!(ingest.persisted, Some(s.sent as f64), "{ingest:?}");
    assert_eq!(ingest.write_errors, Some(0.0));
    assert_eq!(ingest.unavailable, 0);
    let batches = ingest.commit_messages.expect("commit batch histogram");
    assert!(batches.count >= 1.0 && batches.mean >= 1.0, "{batches:?}");
    assert!(batches.count <= s.sent as f64, "{batches:?}");
    let commits = ingest.commit_seconds.expect("commit latency histogram");
    assert!(commits.p50.estimate <= commits.p99.estimate, "{commits:?}");
    assert!(!ingest.persisted_per_sec_samples.is_empty());
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    server.shutdown().await;
}

#[tokio::test]
async fn reconnect_resumes_without_gaps_or_duplicates() {
    let dir = TempDir::new("bench-reconnect");
    let server = server(sqlite_config(&dir)).await;
    let url = format!("ws://{}", server.local_addr());
    let s = run(&[
        "reconnect",
        "--url",
        &url,
        "--clients",
        "6",
        "--droppers",
        "2",
        "--rate",
        "5",
        "--duration",
        "3s",
        "--connected",
        "400ms",
        "--pause",
        "200ms",
        "--grace",
        "1s",
    ])
    .await;
    let r = s.reconnect.clone().expect("reconnect summary");
    assert!(s.failures.is_empty(), "{:?}\n{}", s.failures, s.table());
    assert!(r.sent > 0, "{r:?}");
    // A fresh room: its ids are exactly the accepted messages.
    assert_eq!(r.room_last_id, r.sent - r.refused, "{r:?}");
    assert!(r.drops > 0 && r.resumes > 0, "{r:?}");
    // A few dozen missed messages are far below --recover-max.
    assert_eq!(r.recovered, r.resumes, "{r:?}");
    assert_eq!(r.not_recovered + r.recovered_missing, 0, "{r:?}");
    assert_eq!(
        (r.gaps, r.duplicates, r.reorderings, r.out_of_range),
        (0, 0, 0, 0),
        "{r:?}"
    );
    assert_eq!(r.clients_exact, 6, "{r:?}");
    assert_eq!(r.sent_unseen, 0, "{r:?}");
    assert!(!r.epoch.is_empty());
    let latency = r.resume_latency.expect("client-side resume latency");
    assert_eq!(latency.count, r.resumes);
    let server_side = r.server_resume_seconds.expect("server resume histogram");
    assert_eq!(server_side.count, r.resumes as f64, "{server_side:?}");
    assert_eq!(
        r.server_resumes.get("recovered"),
        Some(&(r.recovered as f64))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn reconnect_refuses_a_run_without_chatters() {
    let args = BenchArgs::from_cli(["reconnect", "--clients", "2", "--droppers", "2"]).unwrap();
    match run_scenario(&args).await {
        Err(actorchat_bench::BenchError::InvalidOption(reason)) => {
            assert!(reason.contains("--droppers"), "{reason}")
        }
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

#[tokio::test]
async fn no_server_is_a_clear_error() {
    // Bind and drop to find a port nobody listens on.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("ws://{addr}");
    let args = BenchArgs::from_cli([
        "fanout",
        "--url",
        &url,
        "--clients",
        "3",
        "--duration",
        "1s",
    ])
    .unwrap();
    match run_scenario(&args).await {
        Err(actorchat_bench::BenchError::NoClients { reason, .. }) => {
            assert!(reason.contains("refused"), "{reason}")
        }
        other => panic!("expected NoClients, got {other:?}"),
    }
}
