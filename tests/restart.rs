//! Stopping and starting again on the same address never resets a connection (issue: 2 rounds
//! in 12 reset half a burst). Under io_uring a listening socket with an accept in flight
//! outlived its process by a few milliseconds; a new process on the same SO_REUSEPORT address
//! joined its group and the connections the kernel gave the dead socket were reset. Each round
//! here does what an operator's restart loop does: start, connect as soon as the port accepts,
//! a burst of WebSockets that echo, TERM, and again at once.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const ROUNDS: usize = 50;
const BURST: usize = 10;

/// Starts ringproxy on `prefix` and returns once its port accepts a connection.
fn start(prefix: &std::path::Path, port: u16) -> common::Child {
    let child = Command::new(common::ringproxy())
        .args(["-p", prefix.to_str().unwrap(), "-c", "ringproxy.conf"])
        .args(["-g", "daemon off; error_log logs/error.log info;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringproxy");
    let child = common::Child(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the port did not accept within 15 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child
}

/// One WebSocket through the proxy: the upgrade, then 200-byte messages echoed for a while.
async fn one_client(port: u16, n: usize) -> Result<(), String> {
    let url = format!("ws://127.0.0.1:{port}/chat/room");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .map_err(|e| format!("client {n}: handshake: {e}"))?;
    for i in 0..5u8 {
        let m = Message::binary(vec![i; 200]);
        ws.send(m.clone())
            .await
            .map_err(|e| format!("client {n}: send: {e}"))?;
        match ws.next().await {
            Some(Ok(got)) if got == m => {}
            other => return Err(format!("client {n}: echo {i}: {other:?}")),
        }
    }
    ws.close(None)
        .await
        .map_err(|e| format!("client {n}: close: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_on_one_address_reset_no_connection() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let conf = common::seed("001-chat-map.conf", port, echo.addr, echo.addr);
    std::fs::write(dir.path().join("ringproxy.conf"), conf).unwrap();
    // Two shards: two sockets in the address's SO_REUSEPORT group, as on a real node.
    std::fs::write(
        dir.path().join("ringproxy.conf"),
        format!(
            "worker_processes 2;\n{}",
            std::fs::read_to_string(dir.path().join("ringproxy.conf")).unwrap()
        ),
    )
    .unwrap();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let mut child = start(dir.path(), port);
        let clients = (0..BURST).map(|n| tokio::spawn(one_client(port, n)));
        for c in futures_util::future::join_all(clients).await {
            if let Err(e) = c.unwrap() {
                failures.push(format!("round {round}: {e}"));
            }
        }
        ringproxy::sys::kill(child.0.id() as i32, libc::SIGTERM).unwrap();
        let status = child.0.wait().unwrap();
        if !status.success() {
            failures.push(format!("round {round}: ringproxy exited with {status}"));
        }
    }
    let log = std::fs::read_to_string(dir.path().join("logs/error.log")).unwrap();
    assert!(
        !log.contains("using the epoll driver"),
        "this test is about io_uring, and the proxy ran epoll:\n{log}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
