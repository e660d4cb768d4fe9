//! QUIT with 2,000 WebSocket tunnels open (2 shards): every client receives a Close 1001 within
//! `worker_shutdown_spread`, completes the close handshake and sees the proxy close the
//! connection, none a reset; the process exits once they are closed.
//!
//! tokio-tungstenite clients in the test (the load tool's `hold` reports a server's Close only
//! as an error, without its code or moment) through ringproxy to the echo backend.

mod common;

use std::time::{Duration, Instant};

use common::{open_ws as open, WsClient as Client};
use common::{Echo, Proxy};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const N: usize = 2000;
const SPREAD: Duration = Duration::from_secs(6);
/// The wait for a side's answer to its Close (`CLOSE_WAIT` in src/proxy/tunnel.rs, 2 s).
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// Slack for a loaded machine: the sweeper's ticks, scheduling, 2,000 writes.
const MARGIN: Duration = Duration::from_secs(4);
/// Deadline of single steps.
const T: Duration = Duration::from_secs(20);

/// How a client's tunnel ended after QUIT: the Close code and when it came, and whether the
/// connection then ended cleanly (the proxy's FIN) rather than with an error.
struct Ended {
    code: Option<u16>,
    at: Duration,
    clean: Result<(), String>,
}

async fn until_closed(mut ws: Client, quit: Instant) -> Ended {
    let code = loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => break Some(f.map_or(0, |f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return Ended {
                    code: None,
                    at: quit.elapsed(),
                    clean: Err(e.to_string()),
                }
            }
            None => break None,
        }
    };
    let at = quit.elapsed();
    // tungstenite has answered the Close; the proxy reads the answer and closes.
    let clean = match ws.next().await {
        // A reset that came after the proxy's FIN is not read, but it is the socket's error.
        None => match ws.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(s) => match s.take_error() {
                Ok(None) => Ok(()),
                Ok(Some(e)) | Err(e) => Err(format!("after the proxy's close: {e}")),
            },
            _ => unreachable!("a ws:// client"),
        },
        Some(Ok(m)) => Err(format!("a message after the Close: {m:?}")),
        Some(Err(e)) => Err(e.to_string()),
    };
    Ended { code, at, clean }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_with_two_thousand_websockets_closes_each_with_going_away_inside_the_spread() {
    let echo = Echo::start();
    let port = common::free_port();
    let conf = format!(
        "worker_processes 2;\nworker_rlimit_nofile 20000;\nworker_shutdown_spread {}s;\n\
         worker_shutdown_timeout 60s;\nevents {{ worker_connections 12000; }}\n\
         http {{\n access_log off;\n server {{\n listen 127.0.0.1:{port} backlog=4096;\n\
           location / {{ proxy_pass http://{}; proxy_http_version 1.1;\n\
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade;\n\
             proxy_read_timeout 120s; }}\n }}\n}}\n",
        SPREAD.as_secs(),
        echo.addr
    );
    let p = Proxy::start(&conf, port, "", &[]);
    let clients: Vec<Client> = futures_util::stream::iter(0..N)
        .map(|_| open(port))
        .buffer_unordered(64)
        .collect()
        .await;
    let quit = Instant::now();
    ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
    let waits: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(tokio::time::timeout(SPREAD + T, until_closed(ws, quit))))
        .collect();
    let exit = tokio::task::spawn_blocking(move || {
        let status = p.stop_with(0, SPREAD + ANSWER_WAIT + T);
        (status, quit.elapsed())
    });
    let mut times = Vec::with_capacity(N);
    let mut wrong = Vec::new();
    for w in waits {
        let e = w.await.unwrap().expect("the tunnel ended in time");
        if e.code != Some(1001) || e.clean.is_err() {
            wrong.push((e.code, e.at, e.clean));
        } else {
            times.push(e.at);
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {N} tunnels did not end with a Close 1001 then the proxy's close, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    times.sort();
    let (first, last) = (times[0], times[N - 1]);
    assert!(
        last <= SPREAD + MARGIN,
        "the last Close came {last:?} after QUIT (spread {SPREAD:?})"
    );
    // Spread over the window, not sent at once.
    assert!(
        last - first > SPREAD / 2,
        "closes between {first:?} and {last:?}"
    );
    let (status, exited) = exit.await.unwrap();
    assert!(status.success(), "{status}");
    assert!(
        exited <= SPREAD + ANSWER_WAIT + MARGIN,
        "exited {exited:?} after QUIT, the last Close at {last:?}"
    );
}
