//! The supervision tree over real sockets: each top-level actor is killed,
//! `/readyz` reports the outage while `/healthz` stays up, and service
//! resumes by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use actorchat::TopLevel;
use actorchat_protocol::{CalcStatus, ServerFrame};
use common::{Client, config, http_get, metric, server, wait_for_metric};

/// Polls `/readyz` until its status is `want`; returns the body.
async fn wait_for_readyz(addr: SocketAddr, want: u16) -> String {
    for _ in 0..500 {
        let (status, body) = http_get(addr, "/readyz").await;
        if status == want {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("/readyz never answered {want}");
}

fn supervised_config() -> actorchat::Config {
    let mut cfg = config();
    // Long enough for a poll every 10 ms to see the outage, short enough
    // for the members' join retries (620 ms in all) to span it.
    cfg.restart_delay_ms = 300;
    cfg
}

#[tokio::test]
async fn a_killed_registry_is_restarted_readyz_reports_it_and_chat_resumes() {
    let server = server(supervised_config()).await;
    let addr = server.local_addr();
    assert_eq!(http_get(addr, "/readyz").await, (200, "ready".to_owned()));
    let mut a = Client::connect(addr, "a", "lobby").await;
    let mut b = Client::connect(addr, "b", "lobby").await;
    a.chat("before").await;
    let before = b.next_chat().await;
    server.debug_kill(TopLevel::Registry);
    let why = wait_for_readyz(addr, 503).await;
    assert!(why.contains("room_registry"), "{why}");
    assert_eq!(
        http_get(addr, "/healthz").await.0,
        200,
        "liveness is not readiness"
    );
    wait_for_readyz(addr, 200).await;
    // The rooms died with the registry: both members rejoin by themselves
    // and get a fresh welcome.
    for client in [&mut a, &mut b] {
        client
            .next_matching(|f| matches!(f, ServerFrame::Welcome(_)).then_some(()))
            .await;
    }
    a.chat("after").await;
    let after = b.next_chat().await;
    assert_eq!(after.text, "after");
    assert!(
        after.id > before.id,
        "ids continue across the restart: {} then {}",
        before.id,
        after.id
    );
    let mut c = Client::connect(addr, "c", "lobby").await;
    c.ping(1).await;
    assert_eq!(
        metric(
            addr,
            "actorchat_actor_restarts_total{actor=\"room_registry\"}"
        )
        .await,
        1.0
    );
    wait_for_metric(addr, "actorchat_rooms", |v| v == 1.0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_killed_scheduler_is_restarted_and_its_requesters_are_answered() {
    let mut cfg = supervised_config();
    cfg.calc_workers = Some(1);
    cfg.calc_timeout_ms = 60_000;
    cfg.calc_skip_time_admission = true;
    cfg.calc_max_bytes = 200 << 20;
    let server = server(cfg).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "a", "calc").await;
    a.chat("1000000!").await;
    wait_for_metric(addr, "actorchat_calc_running", |v| v == 1.0).await;
    server.debug_kill(TopLevel::Scheduler);
    let calc = a.next_chat().await.calc.unwrap();
    assert_eq!(calc.status, CalcStatus::Error);
    assert!(calc.reason.unwrap().contains("unavailable"));
    let why = wait_for_readyz(addr, 503).await;
    assert!(why.contains("calc_scheduler"), "{why}");
    wait_for_readyz(addr, 200).await;
    // The running calculation was cancelled, not left to its deadline.
    wait_for_metric(addr, "actorchat_calc_running", |v| v == 0.0).await;
    a.chat("20!").await;
    let calc = a.next_chat().await.calc.unwrap();
    assert_eq!(calc.status, CalcStatus::Ok);
    assert_eq!(calc.value.as_deref(), Some("2432902008176640000"));
    assert_eq!(
        metric(
            addr,
            "actorchat_actor_restarts_total{actor=\"calc_scheduler\"}"
        )
        .await,
        1.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_rooms_and_the_scheduler_and_cancels_what_runs() {
    let mut cfg = config();
    cfg.calc_workers = Some(1);
    cfg.calc_timeout_ms = 60_000;
    cfg.calc_skip_time_admission = true;
    cfg.calc_max_bytes = 200 << 20;
    let server = server(cfg).await;
    let addr = server.local_addr();
    let metrics = server.metrics();
    let mut a = Client::connect(addr, "a", "lobby").await;
    let mut b = Client::connect(addr, "b", "other").await;
    b.chat("1000000!").await;
    wait_for_metric(addr, "actorchat_calc_running", |v| v == 1.0).await;
    assert_eq!(metric(addr, "actorchat_rooms").await, 2.0);
    server.shutdown().await;
    assert_eq!(a.close_code().await, Some(1001));
    // The registry stopped with its rooms, the scheduler with its work.
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(metrics.rooms.load(Relaxed), 0);
    assert_eq!(metrics.calc.running.load(Relaxed), 0);
}
