//! Running the `actorchat` binary as a child process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TempDir;

/// Starts the binary on an ephemeral port (under `ulimit -n` if given), with
/// its data in `data`, and reads the address it prints.
pub fn spawn(fd_limit: Option<u32>, data: &TempDir, args: &str) -> (Child, SocketAddr) {
    let bin = env!("CARGO_BIN_EXE_actorchat");
    let ulimit = fd_limit
        .map(|n| format!("ulimit -n {n}; "))
        .unwrap_or_default();
    let data = data.path().display();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{ulimit}exec '{bin}' --bind 127.0.0.1:0 --data-dir '{data}' {args}"
        ))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (child, addr)
}

pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the server as a crash would (SIGKILL) and reaps it.
pub fn kill_hard(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}
