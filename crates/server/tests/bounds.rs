//! Every resource bounded: rooms, joins per connection, each room's inbox;
//! and every gauge exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use actorchat_protocol::{ClientFrame, ErrorCode, ServerFrame};
use common::{Client, config, metric, server, wait_for_metric, ws_url};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Error as WsError;

async fn next_error(client: &mut Client) -> actorchat_protocol::ErrorFrame {
    client
        .next_matching(|f| match f {
            ServerFrame::Error(e) => Some(e),
            _ => None,
        })
        .await
}

async fn join(client: &mut Client, room: &str) {
    client
        .send(&ClientFrame::Join {
            room: room.to_owned(),
            since: None,
        })
        .await;
}

#[tokio::test]
async fn max_rooms_refuses_a_join_with_room_limit_and_a_connect_with_503() {
    let mut cfg = config();
    cfg.max_rooms = 2;
    let server = server(cfg).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "a", "one").await;
    join(&mut a, "two").await;
    a.next_matching(|f| matches!(f, ServerFrame::Welcome(w) if w.room == "two").then_some(()))
        .await;
    join(&mut a, "three").await;
    let e = next_error(&mut a).await;
    assert_eq!(e.code, ErrorCode::RoomLimit);
    assert!(e.message.contains("still in two"), "{}", e.message);
    // Still in "two".
    a.chat("here").await;
    assert_eq!(a.next_chat().await.room, "two");
    // Connecting to a new room: 503 before the upgrade; to an existing one: fine.
    match connect_async(ws_url(addr, "b", "four")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    let _b = Client::connect(addr, "b", "one").await;
    assert_eq!(metric(addr, "actorchat_rooms").await, 2.0);
    assert_eq!(
        metric(addr, "actorchat_room_limit_refusals_total").await,
        2.0
    );
    assert_eq!(
        metric(addr, "actorchat_errors_total{code=\"room_limit\"}").await,
        1.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn joins_beyond_the_burst_are_rate_limited() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "a", "start").await;
    // Default: 2 joins/s, bursts of 5. Six at once: five welcomes, one error.
    for i in 0..6 {
        join(&mut a, &format!("room-{i}")).await;
    }
    let (mut welcomes, mut limited) = (0, 0);
    while welcomes + limited < 6 {
        match a.next().await {
            ServerFrame::Welcome(_) => welcomes += 1,
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited, "{}", e.message);
                assert!(e.message.contains("room changes"), "{}", e.message);
                limited += 1;
            }
            _ => {}
        }
    }
    assert_eq!((welcomes, limited), (5, 1));
    assert_eq!(
        metric(addr, "actorchat_joins_rate_limited_total").await,
        1.0
    );
    // At most 5 + 1 rooms exist because of this connection, not 7.
    assert!(metric(addr, "actorchat_rooms").await <= 6.0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_room_inbox_answers_room_busy_and_does_not_broadcast() {
    let mut cfg = config();
    cfg.room_inbox = 3;
    cfg.debug_pause_phrase = Some("pause the room".into());
    let server = server(cfg).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "a", "busy").await;
    let mut b = Client::connect(addr, "b", "busy").await;
    a.chat("pause the room").await;
    // The room holds the pause message for 500 ms. A message counts in the
    // inbox until it is broadcast (it also waits for storage), so the
    // pause message and two more fit, the next three are refused at the door.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..5 {
        a.chat(&format!("m{i}")).await;
    }
    let mut refused = 0;
    while refused < 3 {
        let e = next_error(&mut a).await;
        assert_eq!(e.code, ErrorCode::RoomBusy, "{}", e.message);
        refused += 1;
    }
    assert_eq!(metric(addr, "actorchat_room_inbox_deepest").await, 3.0);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(b.next_chat().await.text);
    }
    assert_eq!(got, ["pause the room", "m0", "m1"]);
    assert_eq!(
        metric(addr, "actorchat_room_busy_refusals_total").await,
        3.0
    );
    wait_for_metric(addr, "actorchat_room_inbox_deepest", |v| v == 0.0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_outbound_queue_gauge_is_back_at_exactly_zero_when_everyone_is_idle() {
    let server = server(config()).await;
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for i in 0..12 {
        clients.push(Client::connect(addr, &format!("c{i}"), "gauge").await);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.chat(&format!("hello {i}")).await;
    }
    for c in clients.iter_mut() {
        for _ in 0..12 {
            c.next_chat().await;
        }
    }
    // Some leave, some move rooms (welcomes, old mailboxes discarded).
    for mut c in clients.drain(..4) {
        c.ws.close(None).await.unwrap();
    }
    for c in clients.iter_mut().take(4) {
        join(c, "elsewhere").await;
        c.next_matching(|f| matches!(f, ServerFrame::Welcome(_)).then_some(()))
            .await;
    }
    for c in clients.iter_mut() {
        c.chat("once more").await;
    }
    wait_for_metric(addr, "actorchat_connections", |v| v == 8.0).await;
    // Everyone drains what was sent; then nothing is queued anywhere.
    for c in clients.iter_mut() {
        c.ping(7).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in clients.iter_mut() {
        c.ping(8).await;
    }
    wait_for_metric(addr, "actorchat_outbound_queue_depth", |v| v == 0.0).await;
    server.shutdown().await;
}
