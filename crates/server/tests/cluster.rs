//! Cluster mode: nodes sharing rooms through a private Redis (see
//! `common::redis_server`): one order per room across nodes, history and
//! resume from the Redis stream, a gap filled from it, Redis stopped and
//! restarted with and without persistence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use actorchat::{Config, RunningServer};
use actorchat_protocol::{ChatFrame, ChatMessage, ErrorCode, ServerFrame, Since};
use common::redis_server::RedisServer;
use common::{Client, config, http_get, server};

fn node(redis: &RedisServer) -> Config {
    let mut cfg = config();
    cfg.cluster.redis_url = Some(redis.url());
    cfg
}

async fn nodes(redis: &RedisServer) -> (RunningServer, RunningServer) {
    (server(node(redis)).await, server(node(redis)).await)
}

/// A private Redis, two nodes, and a member on each: Ada on `a`, Bob on `b`.
struct TwoNodes {
    redis: RedisServer,
    a: RunningServer,
    b: RunningServer,
    ada: Client,
    bob: Client,
}

/// [`TwoNodes`] in `room`, or `None` when Redis is not installed.
async fn two_nodes(test: &str, persistent: bool, room: &str) -> Option<TwoNodes> {
    let redis = RedisServer::start(test, persistent)?;
    let (a, b) = nodes(&redis).await;
    let ada = Client::connect(a.local_addr(), "Ada", room).await;
    let bob = Client::connect(b.local_addr(), "Bob", room).await;
    Some(TwoNodes {
        redis,
        a,
        b,
        ada,
        bob,
    })
}

/// The next `n` chats a client receives.
async fn chats(client: &mut Client, n: usize) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(client.next_chat().await);
    }
    out
}

fn ids(history: &[ChatFrame]) -> Vec<u64> {
    history.iter().map(|ChatFrame::Chat(m)| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_see_one_order() {
    let Some(TwoNodes {
        redis: _redis,
        a,
        b: _b,
        mut ada,
        mut bob,
    }) = two_nodes("members_on_two_nodes_see_one_order", false, "lobby").await
    else {
        return;
    };
    assert_eq!(
        ada.welcome.epoch, bob.welcome.epoch,
        "one stream, one epoch"
    );
    // Both write at once, each from its own node.
    for i in 0..15 {
        ada.chat(&format!("a{i}")).await;
        bob.chat(&format!("b{i}")).await;
    }
    let seen_by_ada = chats(&mut ada, 30).await;
    let seen_by_bob = chats(&mut bob, 30).await;
    let key = |m: &ChatMessage| (m.id, m.author.clone(), m.text.clone());
    assert_eq!(
        seen_by_ada.iter().map(key).collect::<Vec<_>>(),
        seen_by_bob.iter().map(key).collect::<Vec<_>>(),
        "both members see the same sequence"
    );
    let ids: Vec<u64> = seen_by_ada.iter().map(|m| m.id).collect();
    assert_eq!(ids, (1..=30).collect::<Vec<_>>(), "no gap, no repeat");
    for (author, prefix) in [("Ada", 'a'), ("Bob", 'b')] {
        let texts: Vec<&str> = seen_by_ada
            .iter()
            .filter(|m| m.author == author)
            .map(|m| m.text.as_str())
            .collect();
        let sent: Vec<String> = (0..15).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(texts, sent, "{author}'s messages in the order sent");
    }
    assert!(common::metric(a.local_addr(), "actorchat_cluster_subscribed_channels").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_resume_and_scroll_back_come_from_the_shared_stream() {
    let Some(redis) = RedisServer::start("history_resume_and_scroll_back", false) else {
        return;
    };
    let (a, b) = nodes(&redis).await;
    let mut ada = Client::connect(a.local_addr(), "Ada", "archive").await;
    for i in 0..30 {
        ada.chat(&format!("m{i}")).await;
    }
    let sent = chats(&mut ada, 30).await;
    let epoch = ada.welcome.epoch.clone();

    // A plain join on the other node: the latest history, the same ids.
    let grace = Client::connect(b.local_addr(), "Grace", "archive").await;
    assert_eq!(grace.welcome.epoch, epoch);
    assert_eq!(grace.welcome.last_id, 30);
    assert_eq!(ids(&grace.welcome.history), (1..=30).collect::<Vec<_>>());

    // A resume on the other node: exactly what followed id 10.
    let since = Since {
        id: 10,
        epoch: epoch.clone(),
    };
    let back = Client::resume(b.local_addr(), "Ada2", "archive", &since).await;
    assert_eq!(back.welcome.recovered, Some(true));
    assert_eq!(ids(&back.welcome.history), (11..=30).collect::<Vec<_>>());
    let ChatFrame::Chat(first) = &back.welcome.history[0];
    assert_eq!(first.text, sent[10].text);

    // From another epoch: not recovered.
    let lost = Since {
        id: 10,
        epoch: "another-epoch".into(),
    };
    let stale = Client::resume(b.local_addr(), "Ada3", "archive", &lost).await;
    assert_eq!(stale.welcome.recovered, Some(false));

    // Scroll-back over HTTP, served by the node that did not store them.
    let (status, body) =
        http_get(b.local_addr(), "/rooms/archive/messages?before=11&limit=5").await;
    assert_eq!(status, 200, "{body}");
    let page: ServerFrame = serde_json::from_str(&body).unwrap();
    let ServerFrame::History(page) = page else {
        panic!("not a history page: {body}");
    };
    assert_eq!(ids(&page.messages), [6, 7, 8, 9, 10]);
    assert!(page.has_more);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_on_the_channel_is_filled_from_the_stream() {
    let Some(TwoNodes {
        redis,
        a: _a,
        b,
        mut ada,
        mut bob,
    }) = two_nodes("a_gap_on_the_channel_is_filled", false, "gaps").await
    else {
        return;
    };
    ada.chat("one").await;
    for client in [&mut ada, &mut bob] {
        assert_eq!(chats(client, 1).await[0].id, 1);
    }

    // Message 2 reaches the stream but never the channel, as if pub/sub
    // had dropped it.
    let lost = ServerFrame::Chat(ChatMessage {
        id: 2,
        room: "gaps".into(),
        author: "Ghost".into(),
        user_id: None,
        text: "never published".into(),
        client_id: None,
        sent_at: None,
        server_time: 1,
        calc: None,
    })
    .to_json();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe()
        .cmd("XADD")
        .arg("ac:{r:gaps}:log")
        .arg("2-0")
        .arg("f")
        .arg(&lost)
        .ignore()
        .cmd("HSET")
        .arg("ac:{r:gaps}:meta")
        .arg("t")
        .arg(2)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();

    ada.chat("three").await;
    for client in [&mut ada, &mut bob] {
        let got = chats(client, 2).await;
        assert_eq!(
            got.iter()
                .map(|m| (m.id, m.text.as_str()))
                .collect::<Vec<_>>(),
            [(2, "never published"), (3, "three")]
        );
    }
    assert!(common::metric(b.local_addr(), "actorchat_cluster_catch_ups_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_lost_its_newest_messages_gets_a_new_epoch_and_never_reuses_an_id() {
    let Some(TwoNodes {
        redis,
        a: _a,
        b: _b,
        mut ada,
        mut bob,
    }) = two_nodes("a_stream_that_lost_its_tail", false, "rewind").await
    else {
        return;
    };
    for text in ["one", "two", "three"] {
        ada.chat(text).await;
    }
    for client in [&mut ada, &mut bob] {
        assert_eq!(chats(client, 3).await[2].id, 3);
    }
    let old_epoch = bob.welcome.epoch.clone();
    // As if Redis came back from an AOF a second old: the stream says 1.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg("ac:{r:rewind}:meta")
        .arg("t")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    ada.chat("four").await;
    for client in [&mut ada, &mut bob] {
        let welcome = client
            .next_matching(|f| match f {
                ServerFrame::Welcome(w) => Some(w),
                _ => None,
            })
            .await;
        assert_eq!(welcome.recovered, Some(false));
        assert_ne!(welcome.epoch, old_epoch);
        // The older history stays; "four" continues after the newest id
        // anyone was shown, not after the stream's rewound top.
        assert_eq!(ids(&welcome.history), [1, 2, 3, 4]);
        let ChatFrame::Chat(last) = &welcome.history[3];
        assert_eq!(last.text, "four");
    }
}

/// Waits until `/readyz` answers `status`.
async fn ready_becomes(node: &RunningServer, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (got, body) = http_get(node.local_addr(), "/readyz").await;
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {got}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next error frame's code, skipping others.
async fn next_error(client: &mut Client) -> ErrorCode {
    client
        .next_matching(|f| match f {
            ServerFrame::Error(e) => Some(e.code),
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_refuses_chat_and_a_persistent_restart_continues_the_stream() {
    let Some(TwoNodes {
        mut redis,
        a,
        b,
        mut ada,
        mut bob,
    }) = two_nodes("redis_down_persistent", true, "outage").await
    else {
        return;
    };
    ada.chat("before").await;
    assert_eq!(chats(&mut bob, 1).await[0].id, 1);
    let epoch = bob.welcome.epoch.clone();

    redis.kill();
    ada.chat("while down").await;
    assert_eq!(next_error(&mut ada).await, ErrorCode::Unavailable);
    let body = ready_becomes(&a, 503).await;
    assert!(body.contains("Redis"), "{body}");

    redis.restart();
    ready_becomes(&a, 200).await;
    ready_becomes(&b, 200).await;
    // The connections stayed open; the stream and its epoch survived.
    ada.chat("after").await;
    for client in [&mut ada, &mut bob] {
        let m = client.next_chat().await;
        assert_eq!(
            (m.id, m.text.as_str()),
            (2, "after"),
            "nothing of the outage was broadcast"
        );
    }
    let late = Client::connect(b.local_addr(), "Late", "outage").await;
    assert_eq!(late.welcome.epoch, epoch);
    assert_eq!(ids(&late.welcome.history), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_gives_members_a_fresh_welcome_not_recovered() {
    let Some(TwoNodes {
        mut redis,
        a,
        b: _b,
        mut ada,
        mut bob,
    }) = two_nodes("redis_restarted_empty", false, "amnesia").await
    else {
        return;
    };
    ada.chat("before").await;
    assert_eq!(chats(&mut bob, 1).await[0].id, 1);
    let old_epoch = bob.welcome.epoch.clone();

    redis.restart();
    // When the nodes reconnect they find the stream gone: every member is
    // told it cannot be recovered, with the stream's new epoch.
    for client in [&mut ada, &mut bob] {
        let welcome = client
            .next_matching(|f| match f {
                ServerFrame::Welcome(w) => Some(w),
                _ => None,
            })
            .await;
        assert_eq!(welcome.recovered, Some(false));
        assert_ne!(welcome.epoch, old_epoch);
        assert!(welcome.last_id >= 1, "ids continue after the lost stream's");
        client.welcome = welcome;
    }
    assert_eq!(ada.welcome.epoch, bob.welcome.epoch);
    ready_becomes(&a, 200).await;
    ada.chat("after").await;
    for client in [&mut ada, &mut bob] {
        let m = client.next_chat().await;
        assert_eq!(m.text, "after");
        assert!(m.id > 1, "ids are not handed out twice");
    }
    assert!(common::metric(a.local_addr(), "actorchat_cluster_resyncs_total").await >= 1.0);
    // The nodes announced their members again: a node that starts now
    // counts everyone from what Redis holds.
    let c = server(node(&redis)).await;
    let carol = Client::connect(c.local_addr(), "Carol", "amnesia").await;
    assert_eq!(carol.welcome.num_participants, 3);
}

/// The next `room_update` that satisfies `ok`.
async fn update_where(
    client: &mut Client,
    ok: impl Fn(&actorchat_protocol::RoomUpdate) -> bool,
) -> actorchat_protocol::RoomUpdate {
    client
        .next_matching(|f| match f {
            ServerFrame::RoomUpdate(u) if ok(&u) => Some(u),
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_the_nodes() {
    let Some(TwoNodes {
        redis: _redis,
        a: _a,
        b,
        mut ada,
        mut bob,
    }) = two_nodes("presence_spans_the_nodes", false, "hall").await
    else {
        return;
    };
    // Ada hears Bob join on the other node, and both count two.
    update_where(&mut ada, |u| {
        u.joined.contains(&"Bob".to_owned()) && u.num_participants == 2
    })
    .await;
    if bob.welcome.num_participants != 2 {
        update_where(&mut bob, |u| u.num_participants == 2).await;
    }
    // A third member, on Bob's node, finds everyone counted and Ada listed.
    let carol = Client::connect(b.local_addr(), "Carol", "hall").await;
    assert_eq!(carol.welcome.num_participants, 3);
    assert!(
        carol.welcome.participants.contains(&"Ada".to_owned()),
        "{:?}",
        carol.welcome.participants
    );
    update_where(&mut ada, |u| u.num_participants == 3).await;
    // Bob leaves: Ada, on the other node, hears it.
    drop(bob);
    let left = update_where(&mut ada, |u| u.left.contains(&"Bob".to_owned())).await;
    assert_eq!(left.num_participants, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calculation_s_full_value_is_served_by_every_node() {
    let Some(TwoNodes {
        redis: _redis,
        a,
        b,
        mut ada,
        mut bob,
    }) = two_nodes("a_calculation_s_full_value", false, "maths").await
    else {
        return;
    };
    ada.chat("20!").await;
    let calc = bob.next_chat().await.calc.expect("a calculation result");
    assert_eq!(calc.value.as_deref(), Some("2432902008176640000"));
    // Served by the node that ran it, and by the other one from Redis.
    for node in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = http_get(node.local_addr(), &format!("/calc/{}", calc.id)).await;
            if status == 200 {
                assert_eq!(body, "2432902008176640000");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{status}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Another node's calculation never takes the same id.
    bob.chat("21!").await;
    let other = ada
        .next_matching(|f| match f {
            ServerFrame::Chat(m) if m.calc.as_ref().is_some_and(|c| c.expr == "21!") => m.calc,
            _ => None,
        })
        .await;
    assert_ne!(other.id, calc.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_stops_delivering_is_noticed_and_reconnected() {
    let Some(TwoNodes {
        redis,
        a,
        b,
        mut ada,
        mut bob,
    }) = two_nodes("a_silent_subscription", false, "quiet").await
    else {
        return;
    };
    bob.chat("before").await;
    assert_eq!(ada.next_chat().await.text, "before");

    // Redis holds every publish for 6 s while the connections stay open:
    // no subscriber hears anything, and no socket says so.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(6000)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .unwrap();
    for node in [&a, &b] {
        common::wait_for_metric(
            node.local_addr(),
            "actorchat_cluster_stale_probes_total",
            |stale| stale >= 1.0,
        )
        .await;
    }
    // Once Redis delivers again, the nodes have resubscribed and chat flows.
    ready_becomes(&a, 200).await;
    bob.chat("after").await;
    assert_eq!(ada.next_chat().await.text, "after");
    assert!(common::metric(a.local_addr(), "actorchat_cluster_reconnects_total").await >= 1.0);
}
