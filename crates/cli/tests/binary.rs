//! The `actorchat` binary itself: start-up message, signals, file-descriptor
//! exhaustion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../server/tests/common/mod.rs"]
mod common;

mod process;

use std::process::Command;
use std::time::Duration;

use common::{Client, TempDir, http_get};
use process::{spawn, terminate};

fn cpu_seconds(pid: u32) -> f64 {
    actorchat::metrics::cpu_seconds_of(&pid.to_string()).expect("the server's /proc stat")
}

#[test]
fn an_invalid_setting_exits_with_status_2_and_names_the_flag() {
    for (args, flag) in [
        (
            &["--calc-timeout-ms", "18446744073709551615"][..],
            "--calc-timeout-ms",
        ),
        (&["--max-rooms", "0"][..], "--max-rooms"),
        (
            &["--allowed-origins", "evil.example"][..],
            "--allowed-origins",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_actorchat"))
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn sigterm_closes_connections_with_1001_and_exits_cleanly() {
    let data = TempDir::new("binary");
    let (mut child, addr) = spawn(None, &data, "");
    let mut client = Client::connect(addr, "a", "lobby").await;
    let status = tokio::task::spawn_blocking(move || terminate(&mut child))
        .await
        .unwrap();
    assert_eq!(client.close_code().await, Some(1001));
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn running_out_of_file_descriptors_neither_spins_nor_kills_the_server() {
    // 64 descriptors, but a connection limit far above them: the accept loop
    // itself hits EMFILE.
    let data = TempDir::new("binary");
    let (mut child, addr) = spawn(Some(64), &data, "--max-connections 1000");
    let mut sockets = Vec::new();
    for _ in 0..120 {
        match tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => sockets.push(s),
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_seconds(child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_seconds(child.id()) - before;
    assert!(
        spent < 0.5,
        "the server burned {spent:.2} s of CPU in 2 s while out of descriptors"
    );
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    // Once descriptors are free again, it serves as before.
    drop(sockets);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tokio::time::timeout(Duration::from_secs(2), http_get(addr, "/healthz"))
            .await
            .is_ok_and(|r| r.0 == 200)
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "the server did not recover");
    let mut client = Client::connect(addr, "after", "lobby").await;
    client.ping(1).await;
    let status = tokio::task::spawn_blocking(move || terminate(&mut child))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}
