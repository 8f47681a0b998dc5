//! Chat behaviour over real WebSockets: broadcast, identity, rooms, presence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actorchat_protocol::{ClientFrame, Rename, ServerFrame};
use common::{Client, config, server};

#[tokio::test]
async fn two_clients_chat_with_server_stamped_author_and_echo() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut ada = Client::connect(addr, "Ada", "lobby").await;
    let mut grace = Client::connect(addr, "Grace", "lobby").await;
    assert_eq!(ada.welcome.room, "lobby");
    assert_eq!(grace.welcome.num_participants, 2);
    assert_eq!(grace.welcome.limits.max_text_chars, 4000);

    ada.send(&ClientFrame::Chat {
        text: "  Hello 👋  ".into(),
        client_id: Some("c-1".into()),
        sent_at: Some(1_764_364_800_123),
    })
    .await;
    for client in [&mut ada, &mut grace] {
        let msg = client.next_chat().await;
        assert_eq!(msg.author, "Ada");
        assert_eq!(msg.text, "Hello 👋");
        assert_eq!(msg.room, "lobby");
        assert_eq!(msg.client_id.as_deref(), Some("c-1"));
        assert_eq!(msg.sent_at, Some(1_764_364_800_123));
        assert!(msg.server_time > 1_700_000_000_000);
        assert!(msg.calc.is_none());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_author_field_sent_by_the_client_is_ignored() {
    let server = server(config()).await;
    let mut mallory = Client::connect(server.local_addr(), "Mallory", "lobby").await;
    mallory
        .send_raw(r#"{"type":"chat","text":"I am Ada","author":"Ada","name":"Ada","session_id":1}"#)
        .await;
    let msg = mallory.next_chat().await;
    assert_eq!(msg.author, "Mallory");
    assert_eq!(msg.text, "I am Ada");
    server.shutdown().await;
}

#[tokio::test]
async fn sequence_numbers_strictly_increase() {
    let server = server(config()).await;
    let mut a = Client::connect(server.local_addr(), "a", "seq").await;
    let mut last = 0;
    for i in 0..10 {
        a.chat(&format!("m{i}")).await;
        let msg = a.next_chat().await;
        assert!(msg.id > last, "{} after {last}", msg.id);
        last = msg.id;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rooms_are_isolated() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut red = Client::connect(addr, "red", "red").await;
    let mut blue = Client::connect(addr, "blue", "blue").await;
    red.chat("only for red").await;
    assert_eq!(red.next_chat().await.text, "only for red");
    blue.chat("only for blue").await;
    // Blue's first chat is its own: red's never reached it.
    let msg = blue.next_chat().await;
    assert_eq!(msg.text, "only for blue");
    assert_eq!(msg.room, "blue");
    server.shutdown().await;
}

#[tokio::test]
async fn room_update_counts_joins_and_leaves() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut first = Client::connect(addr, "first", "presence").await;
    let joined_self = first
        .next_matching(|f| match f {
            ServerFrame::RoomUpdate(u) => Some(u),
            _ => None,
        })
        .await;
    assert_eq!(joined_self.joined, vec!["first"]);
    assert_eq!(joined_self.num_participants, 1);

    let second = Client::connect(addr, "second", "presence").await;
    assert_eq!(second.welcome.participants, vec!["first"]);
    let update = first
        .next_matching(|f| match f {
            ServerFrame::RoomUpdate(u) => Some(u),
            _ => None,
        })
        .await;
    assert_eq!(update.num_participants, 2);
    assert_eq!(update.joined, vec!["second"]);

    drop(second);
    let update = first
        .next_matching(|f| match f {
            ServerFrame::RoomUpdate(u) if !u.left.is_empty() => Some(u),
            _ => None,
        })
        .await;
    assert_eq!(update.num_participants, 1);
    assert_eq!(update.left, vec!["second"]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_joins_is_coalesced() {
    let mut cfg = config();
    cfg.presence_interval_ms = 1000;
    let server = server(cfg).await;
    let addr = server.local_addr();
    let mut watcher = Client::connect(addr, "watcher", "burst").await;
    // The watcher's own join is announced at once; the next ones wait.
    watcher
        .next_matching(|f| matches!(f, ServerFrame::RoomUpdate(_)).then_some(()))
        .await;
    let mut others = Vec::new();
    for i in 0..30 {
        others.push(Client::connect(addr, &format!("u{i}"), "burst").await);
    }
    let mut joined = 0;
    let mut updates = 0;
    while joined < 30 {
        let update = watcher
            .next_matching(|f| match f {
                ServerFrame::RoomUpdate(u) => Some(u),
                _ => None,
            })
            .await;
        joined += update.joined.len();
        updates += 1;
    }
    assert_eq!(joined, 30);
    assert!(updates <= 3, "30 joins took {updates} room_update frames");
    server.shutdown().await;
}

#[tokio::test]
async fn set_name_renames_and_later_messages_carry_it() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "guest", "names").await;
    let mut b = Client::connect(addr, "b", "names").await;
    a.send(&ClientFrame::SetName {
        name: "  Ada  ".into(),
    })
    .await;
    let update = b
        .next_matching(|f| match f {
            ServerFrame::RoomUpdate(u) if !u.renamed.is_empty() => Some(u),
            _ => None,
        })
        .await;
    assert_eq!(
        update.renamed,
        vec![Rename {
            from: "guest".into(),
            to: "Ada".into()
        }]
    );
    a.chat("hi").await;
    assert_eq!(b.next_chat().await.author, "Ada");
    server.shutdown().await;
}

#[tokio::test]
async fn join_moves_to_another_room_with_a_new_welcome() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "a", "one").await;
    let mut b = Client::connect(addr, "b", "two").await;
    a.send(&ClientFrame::Join {
        room: "two".into(),
        since: None,
    })
    .await;
    let welcome = a
        .next_matching(|f| match f {
            ServerFrame::Welcome(w) => Some(w),
            _ => None,
        })
        .await;
    assert_eq!(welcome.room, "two");
    assert_eq!(welcome.num_participants, 2);
    a.chat("moved").await;
    let msg = b.next_chat().await;
    assert_eq!((msg.author.as_str(), msg.room.as_str()), ("a", "two"));
    server.shutdown().await;
}

#[tokio::test]
async fn many_clients_receive_every_message_in_sender_order() {
    const CLIENTS: usize = 200;
    const PER_CLIENT: usize = 20;
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(Client::connect(addr, &format!("c{i}"), "crowd").await);
    }
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_CLIENT {
                client.chat(&format!("{i}:{n}")).await;
            }
            // Per sender, the next expected message number.
            let mut next = vec![0usize; CLIENTS];
            let mut received = 0;
            while received < CLIENTS * PER_CLIENT {
                let msg = client.next_chat().await;
                let (sender, n) = msg.text.split_once(':').unwrap();
                let (sender, n): (usize, usize) = (sender.parse().unwrap(), n.parse().unwrap());
                assert_eq!(n, next[sender], "message from {sender} out of order");
                next[sender] += 1;
                received += 1;
            }
            received
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), CLIENTS * PER_CLIENT);
    }
    server.shutdown().await;
}
