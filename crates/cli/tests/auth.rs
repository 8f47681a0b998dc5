//! Identity with the real binary: `actorchat token` mints tokens the server
//! accepts, authentication set-up errors stop the start with status 2, and
//! no token ever reaches the server's log, at any log level.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../server/tests/common/mod.rs"]
mod common;
mod process;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actorchat_protocol::{ClientFrame, ServerFrame};
use common::{Client, TempDir, http_request};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BIN: &str = env!("CARGO_BIN_EXE_actorchat");

fn write_secret(dir: &TempDir, name: &str, secret: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.path()).unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, secret).unwrap();
    path
}

/// `actorchat token …`: (exit code, stdout, stderr).
fn token_command(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("token").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mint(secret: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--auth-hs256-secret-file", secret.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, token, stderr) = token_command(&args);
    assert_eq!(code, 0, "{stderr}");
    token
}

/// Starts the server with every log line (trace level, the most there is)
/// going to `log`. The caller terminates the child; clippy cannot see that
/// the child escapes through the `return` inside the loop.
#[allow(clippy::zombie_processes)]
fn spawn_logged(log: &Path, args: &str) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec '{BIN}' --bind 127.0.0.1:0 --storage memory {args} > '{}' 2>&1",
            log.display()
        ))
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|l| l.split("open http://").nth(1))
            .and_then(|a| a.trim().parse().ok())
        {
            return (child, addr);
        }
        if Instant::now() > deadline {
            process::kill_hard(&mut child);
            panic!("the server did not start: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn token_command_needs_a_secret_and_checks_claims() {
    let dir = TempDir::new("token-cmd");
    let (code, _, stderr) = token_command(&["--sub", "ada"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--auth-hs256-secret-file"), "{stderr}");
    let short = write_secret(&dir, "short", "too-short");
    let (code, _, stderr) = token_command(&[
        "--sub",
        "ada",
        "--auth-hs256-secret-file",
        short.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
    let secret = write_secret(&dir, "secret", &"s".repeat(40));
    let (code, _, stderr) = token_command(&[
        "--sub",
        "ada",
        "--rooms",
        "bad room",
        "--auth-hs256-secret-file",
        secret.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a room name"), "{stderr}");
}

#[test]
fn auth_without_a_key_or_with_a_bad_key_stops_the_start_with_status_2() {
    let dir = TempDir::new("auth-setup");
    let garbage = write_secret(&dir, "garbage.pem", "not a key");
    for (args, expected) in [
        (vec!["--auth", "required"], "needs a key"),
        (
            vec![
                "--auth",
                "optional",
                "--auth-public-key-file",
                garbage.to_str().unwrap(),
            ],
            "not a PEM RSA or EC",
        ),
        (
            vec![
                "--auth",
                "optional",
                "--auth-hs256-secret-file",
                "/nonexistent/secret",
            ],
            "cannot read /nonexistent/secret",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["--bind", "127.0.0.1:0", "--storage", "memory"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn no_token_ever_appears_in_the_log() {
    let dir = TempDir::new("auth-logs");
    let secret = write_secret(&dir, "secret", &"k".repeat(48));
    let other = write_secret(&dir, "other", &"o".repeat(48));
    let log = dir.path().join("server.log");
    let (mut child, addr) = spawn_logged(
        &log,
        &format!(
            "--auth optional --auth-hs256-secret-file '{}'",
            secret.display()
        ),
    );
    let valid = mint(
        &secret,
        &["--sub", "u-ada", "--name", "Ada", "--rooms", "team-*"],
    );
    let renewed = mint(&secret, &["--sub", "u-ada", "--name", "Ada", "--ttl", "2h"]);
    let foreign = mint(&other, &["--sub", "u-eve"]);
    let mut forged = valid.clone();
    forged.pop();
    forged.push(if valid.ends_with('A') { 'B' } else { 'A' });
    let tokens = [&valid, &renewed, &foreign, &forged];

    // Accepted: the query (as a browser does) and a refresh.
    let mut ada = Client::connect_url(&format!("ws://{addr}/ws?room=team-a&token={valid}")).await;
    assert_eq!(ada.welcome.user_id.as_deref(), Some("u-ada"));
    ada.send(&ClientFrame::Refresh {
        token: renewed.clone(),
    })
    .await;
    ada.next_matching(|f| matches!(f, ServerFrame::Refreshed(_)).then_some(()))
        .await;
    // Refused: a refresh, upgrades by query and by header, HTTP reads.
    ada.send(&ClientFrame::Refresh {
        token: foreign.clone(),
    })
    .await;
    ada.next_matching(|f| matches!(f, ServerFrame::Error(_)).then_some(()))
        .await;
    for token in [&foreign, &forged] {
        let url = format!("ws://{addr}/ws?room=team-a&token={token}");
        assert!(tokio_tungstenite::connect_async(url).await.is_err());
        let mut request = format!("ws://{addr}/ws?room=lobby")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert!(tokio_tungstenite::connect_async(request).await.is_err());
        for path in ["/api/identity", "/rooms/team-a/messages"] {
            let (status, _) = http_request(
                addr,
                "GET",
                path,
                &format!("Authorization: Bearer {token}\r\n"),
            )
            .await;
            assert_eq!(status, 401, "{path}");
        }
    }
    // A room outside the claim, over HTTP.
    let (status, _) = http_request(
        addr,
        "GET",
        "/rooms/secret/messages",
        &format!("Authorization: Bearer {valid}\r\n"),
    )
    .await;
    assert_eq!(status, 403);
    drop(ada);
    process::terminate(&mut child);

    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    // The scan means something only if the refusals were logged.
    assert!(
        text.matches("request refused by authentication").count() >= 9,
        "refusals missing from the log:\n{text}"
    );
    assert!(text.contains("refresh refused"), "{text}");
    assert!(text.contains("token refreshed"), "{text}");
    for token in tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !text.contains(signature),
            "a token's signature is in the log:\n{text}"
        );
        let claims = token.split('.').nth(1).unwrap();
        assert!(!text.contains(claims), "a token's claims are in the log");
    }
}
