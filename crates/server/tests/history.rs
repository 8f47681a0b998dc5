//! Durable rooms: history in the welcome, resume after a reconnect or a
//! restart, scroll-back, the HTTP export, and the epoch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actorchat_protocol::{ChatFrame, ChatMessage, ClientFrame, ServerFrame, Since};
use common::{Client, TempDir, config, http_get, metric, server, sqlite_config};

fn texts(history: &[ChatFrame]) -> Vec<String> {
    history
        .iter()
        .map(|ChatFrame::Chat(m)| m.text.clone())
        .collect()
}

fn ids(history: &[ChatFrame]) -> Vec<u64> {
    history.iter().map(|ChatFrame::Chat(m)| m.id).collect()
}

/// Sends `n` chats as `client` and waits for their echoes; returns them.
async fn say(client: &mut Client, prefix: &str, n: usize) -> Vec<ChatMessage> {
    for i in 0..n {
        client.chat(&format!("{prefix}{i}")).await;
    }
    let mut echoes = Vec::new();
    while echoes.len() < n {
        let m = client.next_chat().await;
        if m.text.starts_with(prefix) {
            echoes.push(m);
        }
    }
    echoes
}

#[tokio::test]
async fn a_plain_join_shows_the_latest_history_and_ids_continue_after_a_restart() {
    let dir = TempDir::new("restart");
    let mut cfg = sqlite_config(&dir);
    cfg.welcome_history = 5;
    let first = server(cfg.clone()).await;
    let mut ada = Client::connect(first.local_addr(), "Ada", "durable").await;
    assert_eq!(ada.welcome.last_id, 0);
    assert_eq!(ada.welcome.recovered, None);
    assert!(ada.welcome.history.is_empty());
    let epoch = ada.welcome.epoch.clone();
    assert_eq!(epoch.len(), 16);
    let sent = say(&mut ada, "m", 8).await;
    assert_eq!(
        sent.iter().map(|m| m.id).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    first.shutdown().await;

    let second = server(cfg).await;
    let mut grace = Client::connect(second.local_addr(), "Grace", "durable").await;
    assert_eq!(grace.welcome.epoch, epoch, "same data dir, same epoch");
    assert_eq!(grace.welcome.last_id, 8);
    assert_eq!(ids(&grace.welcome.history), [4, 5, 6, 7, 8]);
    assert_eq!(
        texts(&grace.welcome.history),
        ["m3", "m4", "m5", "m6", "m7"]
    );
    let ChatFrame::Chat(stored) = &grace.welcome.history[4];
    assert_eq!(stored, &sent[7], "replayed exactly as broadcast");
    let next = say(&mut grace, "n", 1).await;
    assert_eq!(next[0].id, 9, "ids continue where they stopped");
    second.shutdown().await;
}

#[tokio::test]
async fn resume_recovers_exactly_the_missed_messages_from_memory_and_from_storage() {
    let dir = TempDir::new("resume");
    let mut cfg = sqlite_config(&dir);
    cfg.welcome_history = 3;
    let srv = server(cfg.clone()).await;
    let addr = srv.local_addr();
    let mut ada = Client::connect(addr, "Ada", "r").await;
    let mut bob = Client::connect(addr, "Bob", "r").await;
    say(&mut ada, "a", 4).await;
    // Bob has seen everything up to id 4, then drops.
    for _ in 0..4 {
        bob.next_chat().await;
    }
    let since = Since {
        id: 4,
        epoch: bob.welcome.epoch.clone(),
    };
    drop(bob);
    say(&mut ada, "b", 6).await;
    // A quick reconnect: recovered from the room's memory.
    let bob = Client::resume(addr, "Bob", "r", &since).await;
    assert_eq!(bob.welcome.recovered, Some(true));
    assert_eq!(ids(&bob.welcome.history), [5, 6, 7, 8, 9, 10]);
    // The same with a join frame.
    let mut carol = Client::connect(addr, "Carol", "elsewhere").await;
    carol
        .send(&ClientFrame::Join {
            room: "r".into(),
            since: Some(since.clone()),
        })
        .await;
    let welcome = carol
        .next_matching(|f| match f {
            ServerFrame::Welcome(w) => Some(w),
            _ => None,
        })
        .await;
    assert_eq!(welcome.recovered, Some(true));
    assert_eq!(ids(&welcome.history), [5, 6, 7, 8, 9, 10]);
    drop((ada, bob, carol));
    srv.shutdown().await;

    // After a restart the room's memory holds only the welcome history,
    // so the same resume is read from storage; live messages follow it
    // without a gap.
    let srv = server(cfg).await;
    let addr = srv.local_addr();
    let mut bob = Client::resume(addr, "Bob", "r", &since).await;
    assert_eq!(bob.welcome.recovered, Some(true));
    assert_eq!(ids(&bob.welcome.history), [5, 6, 7, 8, 9, 10]);
    let mut ada = Client::connect(addr, "Ada", "r").await;
    let live = say(&mut ada, "c", 1).await;
    assert_eq!(bob.next_chat().await.id, live[0].id);
    assert_eq!(live[0].id, 11);
    assert!(metric(addr, "actorchat_history_reads_total").await >= 1.0);
    assert_eq!(
        metric(
            addr,
            "actorchat_history_resumes_total{result=\"recovered\"}"
        )
        .await,
        1.0
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn another_epoch_or_too_many_missed_is_not_recovered() {
    let dir = TempDir::new("stale");
    let mut cfg = sqlite_config(&dir);
    cfg.welcome_history = 2;
    cfg.recover_max = 3;
    let srv = server(cfg.clone()).await;
    let addr = srv.local_addr();
    let mut ada = Client::connect(addr, "Ada", "r").await;
    let epoch = ada.welcome.epoch.clone();
    say(&mut ada, "m", 6).await;
    // Four missed, at most three recovered.
    let late = Client::resume(
        addr,
        "Bob",
        "r",
        &Since {
            id: 2,
            epoch: epoch.clone(),
        },
    )
    .await;
    assert_eq!(late.welcome.recovered, Some(false));
    assert_eq!(ids(&late.welcome.history), [5, 6]);
    // Three missed: recovered.
    let ok = Client::resume(
        addr,
        "Bob",
        "r",
        &Since {
            id: 3,
            epoch: epoch.clone(),
        },
    )
    .await;
    assert_eq!(ok.welcome.recovered, Some(true));
    assert_eq!(ids(&ok.welcome.history), [4, 5, 6]);
    // An id from the future of this stream is not trusted.
    let ahead = Client::resume(
        addr,
        "Bob",
        "r",
        &Since {
            id: 99,
            epoch: epoch.clone(),
        },
    )
    .await;
    assert_eq!(ahead.welcome.recovered, Some(false));
    let other = Client::resume(
        addr,
        "Bob",
        "r",
        &Since {
            id: 5,
            epoch: "someotherepoch00".into(),
        },
    )
    .await;
    assert_eq!(other.welcome.recovered, Some(false));
    assert_eq!(ids(&other.welcome.history), [5, 6]);
    drop((ada, late, ok, ahead, other));
    srv.shutdown().await;

    // The data directory is lost: a new stream, a new epoch, ids from 1.
    std::fs::remove_dir_all(dir.path()).unwrap();
    let srv = server(cfg).await;
    let bob = Client::resume(
        srv.local_addr(),
        "Bob",
        "r",
        &Since {
            id: 6,
            epoch: epoch.clone(),
        },
    )
    .await;
    assert_ne!(bob.welcome.epoch, epoch);
    assert_eq!(bob.welcome.recovered, Some(false));
    assert_eq!(bob.welcome.last_id, 0);
    assert!(bob.welcome.history.is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn scroll_back_pages_join_up_over_websocket_and_http() {
    let dir = TempDir::new("pages");
    let srv = server(sqlite_config(&dir)).await;
    let addr = srv.local_addr();
    let mut ada = Client::connect(addr, "Ada", "r").await;
    // Below the rate limit: 30 messages in bursts.
    for round in 0..3 {
        say(&mut ada, &format!("p{round}-"), 10).await;
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
    let mut seen: Vec<u64> = Vec::new();
    let mut before = 31;
    loop {
        ada.send(&ClientFrame::History { before, limit: 7 }).await;
        let page = ada
            .next_matching(|f| match f {
                ServerFrame::History(h) => Some(h),
                _ => None,
            })
            .await;
        assert_eq!(page.room, "r");
        let page_ids = ids(&page.messages);
        assert!(
            page_ids.windows(2).all(|w| w[1] == w[0] + 1),
            "{page_ids:?}"
        );
        before = page_ids[0];
        seen.splice(0..0, page_ids);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, (1..=30).collect::<Vec<_>>());
    // The HTTP export gives the same pages.
    let (status, body) = http_get(addr, "/rooms/r/messages?before=11&limit=10").await;
    assert_eq!(status, 200, "{body}");
    let ServerFrame::History(page) = serde_json::from_str(&body).unwrap() else {
        panic!("not a history page: {body}");
    };
    assert_eq!(ids(&page.messages), (1..=10).collect::<Vec<_>>());
    assert!(!page.has_more);
    let (_, body) = http_get(addr, "/rooms/r/messages?limit=2").await;
    let ServerFrame::History(page) = serde_json::from_str(&body).unwrap() else {
        panic!("not a history page: {body}");
    };
    assert_eq!(ids(&page.messages), [29, 30]);
    assert!(page.has_more);
    // Bad input is a clear 400, an unknown room an empty page.
    let (status, body) = http_get(addr, "/rooms/r/messages?limit=101").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("limit"), "{body}");
    let (status, _) = http_get(addr, "/rooms/no%20such/messages").await;
    assert_eq!(status, 400);
    let (status, body) = http_get(addr, "/rooms/empty/messages").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"messages\":[]"), "{body}");
    // A bad history frame is answered with an error and changes nothing.
    ada.send_raw(r#"{"type":"history","before":5,"limit":0}"#)
        .await;
    let ServerFrame::Error(e) = ada.next().await else {
        panic!("expected an error");
    };
    assert_eq!(e.code, actorchat_protocol::ErrorCode::InvalidField);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_resume_query_must_be_whole() {
    let srv = server(config()).await;
    let addr = srv.local_addr();
    for query in [
        "since=3",
        "epoch=abc",
        "since=x&epoch=abc",
        "since=1&epoch=",
    ] {
        let (status, body) = http_get(addr, &format!("/ws?room=r&{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn memory_storage_resumes_within_its_bound() {
    let mut cfg = config();
    cfg.history_max_per_room = 5;
    cfg.welcome_history = 2;
    let srv = server(cfg).await;
    let addr = srv.local_addr();
    let mut ada = Client::connect(addr, "Ada", "r").await;
    say(&mut ada, "m", 9).await;
    let (_, body) = http_get(addr, "/rooms/r/messages?limit=100").await;
    let ServerFrame::History(page) = serde_json::from_str(&body).unwrap() else {
        panic!("{body}");
    };
    assert_eq!(
        ids(&page.messages),
        [5, 6, 7, 8, 9],
        "memory keeps the newest 5"
    );
    assert!(!page.has_more);
    let bob = Client::resume(
        addr,
        "Bob",
        "r",
        &Since {
            id: 6,
            epoch: ada.welcome.epoch.clone(),
        },
    )
    .await;
    assert_eq!(bob.welcome.recovered, Some(true));
    assert_eq!(ids(&bob.welcome.history), [7, 8, 9]);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_calculation_is_stored_and_replayed_like_any_chat() {
    let dir = TempDir::new("calc");
    let srv = server(sqlite_config(&dir)).await;
    let addr = srv.local_addr();
    let mut ada = Client::connect(addr, "Ada", "r").await;
    ada.chat("20!").await;
    let live = ada.next_chat().await;
    let calc = live.calc.clone().expect("a calculation result");
    assert_eq!(calc.value.as_deref(), Some("2432902008176640000"));
    let bob = Client::connect(addr, "Bob", "r").await;
    let ChatFrame::Chat(replayed) = &bob.welcome.history[0];
    assert_eq!(
        replayed, &live,
        "replayed with its calc object, exactly as broadcast"
    );
    srv.shutdown().await;
}
