//! Durability of the real binary: nothing anyone saw is lost by `kill -9`,
//! a write failure loses nothing acknowledged and the server keeps running,
//! and storage that cannot be used stops the start with status 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../server/tests/common/mod.rs"]
mod common;
mod process;

use std::process::Command;
use std::time::{Duration, Instant};

use actorchat_protocol::{ChatFrame, ErrorCode, ServerFrame, Since};
use common::{Client, TempDir, http_get};
use process::{kill_hard, spawn, terminate};

/// Every message of `room`, oldest first, through the HTTP export.
async fn whole_history(addr: std::net::SocketAddr, room: &str) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    let mut before = u64::MAX / 2;
    loop {
        let (status, body) = http_get(
            addr,
            &format!("/rooms/{room}/messages?before={before}&limit=100"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let ServerFrame::History(page) = serde_json::from_str(&body).unwrap() else {
            panic!("not a history page: {body}");
        };
        let ids: Vec<(u64, String)> = page
            .messages
            .iter()
            .map(|ChatFrame::Chat(m)| (m.id, m.text.clone()))
            .collect();
        let Some(first) = ids.first() else { break };
        before = first.0;
        all.splice(0..0, ids);
        if !page.has_more {
            break;
        }
    }
    all
}

#[tokio::test]
async fn nothing_seen_is_lost_by_kill_9_and_every_client_resumes_without_gap_or_duplicate() {
    const CLIENTS: usize = 4;
    let data = TempDir::new("kill9");
    let (mut child, addr) = spawn(None, &data, "");
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(Client::connect(addr, &format!("c{i}"), "crash").await);
    }
    let epoch = clients[0].welcome.epoch.clone();
    // Every client chats (15 a second, under the rate limit) and records
    // every chat it receives, until the server dies under it.
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut seen: Vec<(u64, String)> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(66));
            let mut n = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let text = format!("c{i}-{n}");
                        n += 1;
                        if futures_util::SinkExt::send(
                            &mut client.ws,
                            tokio_tungstenite::tungstenite::Message::text(
                                serde_json::json!({"type": "chat", "text": text}).to_string(),
                            ),
                        )
                        .await
                        .is_err()
                        {
                            break;
                        }
                    }
                    msg = futures_util::StreamExt::next(&mut client.ws) => match msg {
                        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                            if let Ok(ServerFrame::Chat(m)) = serde_json::from_str(&t) {
                                seen.push((m.id, m.text));
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill_hard(&mut child);
    let mut seen_before = Vec::new();
    for task in tasks {
        seen_before.push(task.await.unwrap());
    }
    assert!(
        seen_before.iter().all(|s| s.len() > 10),
        "the clients chatted before the kill: {:?}",
        seen_before.iter().map(Vec::len).collect::<Vec<_>>()
    );

    // Restart on the same data directory; everyone resumes.
    let (mut child, addr) = spawn(None, &data, "");
    let history = whole_history(addr, "crash").await;
    let last_id = history.last().unwrap().0;
    assert_eq!(
        history.iter().map(|m| m.0).collect::<Vec<_>>(),
        (1..=last_id).collect::<Vec<_>>(),
        "the stored ids are contiguous from 1"
    );
    for (i, before) in seen_before.iter().enumerate() {
        let since = Since {
            id: before.last().unwrap().0,
            epoch: epoch.clone(),
        };
        let client = Client::resume(addr, &format!("c{i}"), "crash", &since).await;
        assert_eq!(client.welcome.epoch, epoch, "the epoch survived the crash");
        assert_eq!(client.welcome.recovered, Some(true), "client {i}");
        assert_eq!(client.welcome.last_id, last_id);
        let mut union = before.clone();
        union.extend(
            client
                .welcome
                .history
                .iter()
                .map(|ChatFrame::Chat(m)| (m.id, m.text.clone())),
        );
        // What this client saw, before and after, is exactly the room's
        // history from its first message on: in order, no gap, no duplicate.
        let first = union[0].0;
        assert_eq!(
            union,
            history[usize::try_from(first - 1).unwrap()..].to_vec(),
            "client {i}"
        );
    }
    // Ids continue where they stopped.
    let mut late = Client::connect(addr, "late", "crash").await;
    late.chat("after the crash").await;
    assert_eq!(late.next_chat().await.id, last_id + 1);
    let status = tokio::task::spawn_blocking(move || terminate(&mut child))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Sets the soft file-size limit of `pid` (the hard one stays unlimited, so
/// it can be raised again without privileges).
fn prlimit_fsize(pid: u32, soft: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={soft}:unlimited")])
        .status()
        .expect("prlimit (util-linux) is needed for the write-failure test");
    assert!(status.success());
}

#[tokio::test]
async fn a_write_failure_answers_unavailable_broadcasts_nothing_and_recovers() {
    let data = TempDir::new("fsize");
    let (mut child, addr) = spawn(None, &data, "");
    let mut ada = Client::connect(addr, "Ada", "disk").await;
    let mut bob = Client::connect(addr, "Bob", "disk").await;
    ada.chat("stored").await;
    assert_eq!(ada.next_chat().await.text, "stored");
    assert_eq!(bob.next_chat().await.text, "stored");
    // The disk "fills": every write beyond one byte of any file fails.
    prlimit_fsize(child.id(), "1");
    ada.chat("lost?").await;
    let refused = ada
        .next_matching(|f| match f {
            ServerFrame::Error(e) => Some(e),
            ServerFrame::Chat(m) => panic!("broadcast although not stored: {m:?}"),
            _ => None,
        })
        .await;
    assert_eq!(refused.code, ErrorCode::Unavailable, "{}", refused.message);
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("storage"), "{body}");
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    // Bob got nothing meanwhile; then the disk has room again.
    prlimit_fsize(child.id(), "unlimited");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        ada.chat("after").await;
        match ada.next().await {
            ServerFrame::Chat(m) => break m.text,
            ServerFrame::Error(e) if e.code == ErrorCode::Unavailable => {
                assert!(Instant::now() < deadline, "writes never recovered");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(text, "after");
    let next = bob.next_chat().await;
    assert_eq!(
        (next.id, next.text.as_str()),
        (2, "after"),
        "the failed message took no id"
    );
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let status = tokio::task::spawn_blocking(move || terminate(&mut child))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn unusable_storage_exits_with_status_2_and_says_why() {
    let data = TempDir::new("unusable");
    // A data directory that is a file.
    std::fs::write(data.path(), b"not a directory").unwrap();
    let run = |dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_actorchat"))
            .args(["--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let output = run(data.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("data directory"), "{stderr}");
    // A database that is not one.
    std::fs::remove_file(data.path()).unwrap();
    std::fs::create_dir_all(data.path()).unwrap();
    std::fs::write(data.path().join("actorchat.db"), vec![0x5a; 16384]).unwrap();
    let output = run(data.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open the database"), "{stderr}");
}
