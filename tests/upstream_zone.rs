//! `zone` in an `upstream`, through a running ringproxy with two shards: with a zone,
//! `max_conns` limits the connections open on a peer through every shard together (nginx shares
//! `peer->conns` among its workers in the zone); a request beyond it is nginx's 502.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const T: Duration = Duration::from_secs(20);

/// A backend that counts the requests it got and answers none until `release`.
async fn holding_backend() -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<Notify>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (seen, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let (s2, r2) = (seen.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (seen, release) = (s2.clone(), r2.clone());
            tokio::spawn(async move {
                if common::read_head(&mut s).await.is_none() {
                    return;
                }
                seen.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, seen, release)
}

/// The status line and, after a space, the `X-Addr` header's value.
async fn status(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("X-Addr: "))
        .unwrap_or("-");
    format!("{} {addr}", text.lines().next().unwrap_or(""))
}

// effect: zone
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_makes_max_conns_count_across_shards() {
    let (backend, seen, release) = holding_backend().await;
    let port = common::free_port();
    let conf = format!(
        "worker_processes 2;
events {{}}
http {{
    upstream u {{
        zone u 64k;
        server {backend} max_conns=1;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://u;
            add_header X-Addr $upstream_addr always;
        }}
    }}
}}
"
    );
    let mut proxy = Proxy::start(&conf, port, "", &[]);
    proxy.allow_log("no live upstreams");
    let first = tokio::spawn(status(port));
    let deadline = Instant::now() + T;
    while seen.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the first request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The kernel spreads these over both shards (SO_REUSEPORT); without the zone's shared
    // count, the shard that did not take the first one would let one through.
    let others: Vec<_> = (0..16).map(|_| tokio::spawn(status(port))).collect();
    while !others.iter().all(|o| o.is_finished()) {
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a second request reached the peer"
        );
        assert!(
            Instant::now() < deadline,
            "the requests were not answered in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut statuses = Vec::new();
    for o in others {
        statuses.push(o.await.unwrap());
    }
    assert_eq!(seen.load(Ordering::SeqCst), 1, "{statuses:?}");
    assert!(
        // With no peer left, nginx's $upstream_addr is the group's name.
        statuses
            .iter()
            .all(|s| s.starts_with("HTTP/1.1 502 ") && s.ends_with(" u")),
        "{statuses:?}"
    );
    release.notify_waiters();
    assert!(first.await.unwrap().starts_with("HTTP/1.1 200 "));
    drop(proxy);
}
