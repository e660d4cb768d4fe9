//! A binary upgrade under a live-streaming node's load: 2,000 WebSocket tunnels open through the
//! old process (2 shards) all move to the new binary when the old one is told to QUIT, none is
//! drained: they move at once, faster than the new binary reads the hand-over channel, so the
//! channel fills and each tunnel waits for room instead of giving up.

mod common;

use std::time::Duration;

use common::upgrade::{error_log, start_with, upgrade};
use futures_util::future::join_all;
use tokio_tungstenite::tungstenite::Message;

const N: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_tunnels_all_move_to_the_new_binary() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let run = tempfile::tempdir().unwrap();
    let run = run.path();
    let conf = format!(
        "worker_processes 2;\nworker_shutdown_timeout 60s;\nerror_log logs/error.log info;\n\
         events {{ worker_connections 8192; }}\nhttp {{\n access_log off;\n\
         server {{ listen 127.0.0.1:{port} backlog=4096;\n\
           location / {{ proxy_pass http://{}; proxy_http_version 1.1;\n\
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade;\n\
             proxy_read_timeout 120s; }}\n\
         }}\n}}\n",
        echo.addr
    );
    let p = start_with(run, &conf, port, &[], |_| {});
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(common::open_ws(port).await);
    }
    let new = upgrade(run, p.pid());
    let status = p.stop_with(libc::SIGQUIT, Duration::from_secs(60));
    assert!(status.success(), "the old process exited with {status}");
    let log = error_log(run);
    let moved = log.matches("tunnel taken over from the old binary").count();
    assert_eq!(
        moved,
        N,
        "tunnels the new binary took; the old one said: {:?}",
        log.lines()
            .filter(|l| l.contains("handing") || l.contains("cannot hand"))
            .take(4)
            .collect::<Vec<_>>()
    );
    // Every tunnel still echoes, through the new binary, with no Close on the way.
    let echoed = join_all(clients.iter_mut().enumerate().map(|(i, ws)| async move {
        let m = [Message::text(format!("after the move {i}"))];
        tokio::time::timeout(
            Duration::from_secs(60),
            common::echo_each(ws, m, "a moved tunnel"),
        )
        .await
        .is_ok()
    }))
    .await;
    assert_eq!(
        echoed.iter().filter(|ok| **ok).count(),
        N,
        "tunnels echoing"
    );
    drop(clients);
    new.quit();
}
