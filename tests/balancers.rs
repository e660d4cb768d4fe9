//! `ip_hash`, `least_conn` and `random [two least_conn]` through a running ringproxy with two
//! shards and real backends: a client (by its /24) stays on one backend, the one nginx's ip_hash
//! picks; least_conn and random two weigh the tunnels open through either shard; random follows
//! the weights. Clients connect from many 127.x.y.z source addresses (all loopback on Linux).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Proxy;
use ringproxy::upstream::balancer::{Balancer, IpHash, PickState};
use ringproxy::upstream::PeerSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const T: Duration = Duration::from_secs(20);

/// A backend answering with its letter: in the body of a plain request, in `X-Backend` of the
/// 101 to an upgrade (then it echoes until the proxy closes). `open` counts its connections.
struct Backend {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
}

async fn backend(id: char) -> Backend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let count = open.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let count = count.clone();
            tokio::spawn(async move {
                if let Some(head) = common::read_head(&mut s).await {
                    if head.to_ascii_lowercase().contains("\r\nupgrade: tcp-echo") {
                        let up = format!(
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp-echo\r\n\
                             Connection: Upgrade\r\nX-Backend: {id}\r\n\r\n"
                        );
                        if s.write_all(up.as_bytes()).await.is_ok() {
                            let (mut r, mut w) = s.split();
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        }
                    } else {
                        let ok = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n{id}"
                        );
                        let _ = s.write_all(ok.as_bytes()).await;
                    }
                    let _ = s.shutdown().await;
                }
                count.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Backend { addr, open }
}

/// `upstream_directives` above `servers` (each `(backend, parameters)`), one location proxying
/// to it, two shards, and a `[notice]` per request naming the shard that served it.
fn start(upstream_directives: &str, servers: &[(&Backend, &str)]) -> Proxy {
    let port = common::free_port();
    let servers: String = servers
        .iter()
        .map(|(b, params)| format!("        server {} {params};\n", b.addr))
        .collect();
    let conf = format!(
        "events {{}}\nhttp {{\n    upstream b {{\n        {upstream_directives}\n{servers}    }}\n    \
         server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            \
         proxy_pass http://b;\n            proxy_http_version 1.1;\n            \
         proxy_set_header Upgrade $http_upgrade;\n            \
         proxy_set_header Connection \"upgrade\";\n            \
         proxy_allow_upgrade tcp-echo;\n            proxy_read_timeout 60s;\n            \
         rewrite_log on;\n            rewrite ^(.*)$ $1 break;\n        }}\n    }}\n}}\n"
    );
    Proxy::start(
        &conf,
        port,
        "worker_processes 2; error_log logs/error.log notice;",
        &[],
    )
}

/// A new connection to the proxy from `from`.
async fn connect_from(from: IpAddr, port: u16) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from, 0)).unwrap();
    tokio::time::timeout(T, s.connect(SocketAddr::from(([127, 0, 0, 1], port))))
        .await
        .expect("connect in time")
        .unwrap()
}

/// `GET path` from `from`; the letter of the backend that answered.
async fn get_from(from: IpAddr, port: u16, path: &str) -> char {
    let mut s = connect_from(from, port).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("the response within 20 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.chars().last().unwrap()
}

async fn get(port: u16, path: &str) -> char {
    get_from(IpAddr::V4(Ipv4Addr::LOCALHOST), port, path).await
}

/// An upgrade to the echo tunnel at `path`; the open tunnel and its backend's letter.
async fn tunnel(port: u16, path: &str) -> (TcpStream, char) {
    let mut s = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), port).await;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nUpgrade: tcp-echo\r\nConnection: Upgrade\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(T, common::read_head(&mut s))
        .await
        .expect("the 101 within 20 s")
        .expect("a response head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Backend: "))
        .and_then(|v| v.chars().next())
        .unwrap_or_else(|| panic!("no X-Backend: {head}"));
    // The tunnel works (and is counted until it closes).
    s.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    tokio::time::timeout(T, s.read_exact(&mut pong))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&pong, b"ping");
    (s, id)
}

/// The shard that served the request for `path` (unique per request), from its rewrite notice.
fn shard_of(p: &Proxy, path: &str) -> String {
    let needle = format!(" matches \"{path}\"");
    let log = p.stderr();
    log.lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split_once("] ")?.1.split_once(": ")?.0.split_once('#'))
        .map(|(_, shard)| shard.to_string())
        .unwrap_or_else(|| panic!("no notice for {path}:\n{log}"))
}

/// Waits until every backend has `want` connections open (the proxy closed the others).
async fn wait_open(backends: &[(&Backend, usize)]) {
    let deadline = Instant::now() + T;
    while backends
        .iter()
        .any(|(b, want)| b.open.load(Ordering::SeqCst) != *want)
    {
        assert!(Instant::now() < deadline, "backends did not settle in 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// effect: ip_hash
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_keeps_a_network_on_its_backend_and_spreads_networks() {
    let bs = [backend('a').await, backend('b').await, backend('c').await];
    let p = start(
        "ip_hash;",
        &[(&bs[0], ""), (&bs[1], "weight=2"), (&bs[2], "")],
    );
    // What nginx picks for each client (our balancer is checked against nginx's picks in
    // tests/balancer_nginx_table.rs): peer i is backend 'a' + i.
    let specs: Vec<PeerSpec> = bs
        .iter()
        .zip([1, 2, 1])
        .map(|(b, w)| PeerSpec {
            weight: w,
            ..PeerSpec::new(b.addr.to_string(), b.addr)
        })
        .collect();
    let mut nginx = IpHash::new(specs).unwrap();
    let mut want = |ip: Ipv4Addr| {
        let id = nginx
            .pick(Some(&ip.octets()), Instant::now(), &mut PickState::new())
            .unwrap();
        nginx.release(id);
        (b'a' + id.index() as u8) as char
    };
    let mut by_net: BTreeMap<u8, BTreeSet<char>> = BTreeMap::new();
    let mut n = 0;
    for net in 1..=12u8 {
        for host in [1u8, 77, 200] {
            let ip = Ipv4Addr::new(127, 3, net, host);
            let expect = want(ip);
            // Several connections per client: they land on both shards.
            for _ in 0..3 {
                n += 1;
                let got = get_from(IpAddr::V4(ip), p.port, &format!("/r{n}")).await;
                assert_eq!(got, expect, "client {ip}");
                by_net.entry(net).or_default().insert(got);
            }
        }
    }
    assert!(by_net.values().all(|s| s.len() == 1), "{by_net:?}");
    let used: BTreeSet<char> = by_net.values().flatten().copied().collect();
    assert_eq!(used.len(), 3, "twelve /24s over three backends: {by_net:?}");
    let shards: BTreeSet<String> = (1..=n).map(|i| shard_of(&p, &format!("/r{i}"))).collect();
    assert_eq!(shards.len(), 2, "both shards served: {shards:?}");
}

// effect: least_conn
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_avoids_a_backend_loaded_through_the_other_shard() {
    let (a, b) = (backend('a').await, backend('b').await);
    let p = start("least_conn;", &[(&a, ""), (&b, "")]);
    // Open tunnels until some shard X holds two to backend a; then keep only X's tunnels to a.
    // (Two, so that a request whose slot is being given back as the next one is picked never
    // ties b with a.)
    let mut tunnels: Vec<(TcpStream, char, String)> = vec![];
    let mut loaded: Option<String> = None;
    for i in 0..60 {
        let path = format!("/t{i}");
        let (s, id) = tunnel(p.port, &path).await;
        let shard = shard_of(&p, &path);
        let same = |t: &&(TcpStream, char, String)| t.1 == 'a' && t.2 == shard;
        if id == 'a' && tunnels.iter().filter(same).count() == 1 {
            loaded = Some(shard.clone());
        }
        tunnels.push((s, id, shard));
        if loaded.is_some() {
            break;
        }
    }
    let x = loaded.expect("two tunnels to backend a through one shard in 60");
    let (kept, closed): (Vec<_>, Vec<_>) = tunnels
        .into_iter()
        .partition(|(_, id, shard)| *id == 'a' && *shard == x);
    drop(closed);
    wait_open(&[(&a, kept.len()), (&b, 0)]).await;
    // A few requests first, so the slots of the closed tunnels are surely given back.
    for i in 0..4 {
        get(p.port, &format!("/warm{i}")).await;
    }
    // Backend a has tunnels open (through X only), b none: every request, whichever shard takes
    // it, goes to b. Counted per shard, the other shard would see 0 and 0 and alternate.
    let mut through_other = 0;
    for i in 0..30 {
        let path = format!("/r{i}");
        let got = get(p.port, &path).await;
        let shard = shard_of(&p, &path);
        through_other += usize::from(shard != x);
        assert_eq!(
            got, 'b',
            "{path} through shard {shard} (tunnels to a via shard {x})"
        );
    }
    assert!(through_other > 0, "the other shard served none of 30");
    drop(kept);
}

// effect: random
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_spreads_by_weight_at_random() {
    let (a, b) = (backend('a').await, backend('b').await);
    let p = start("random;", &[(&a, "weight=3"), (&b, "")]);
    let mut seq = String::new();
    for i in 0..400 {
        seq.push(get(p.port, &format!("/r{i}")).await);
    }
    let share = seq.chars().filter(|&c| c == 'a').count() as f64 / 400.0;
    // Expected 0.75 (sd 0.022).
    assert!((0.65..=0.85).contains(&share), "share of a {share}: {seq}");
    // Round robin's 3:1 (per shard: a a b a ...) never serves a more than three times running,
    // nor two shards interleaved more than six; 400 fair draws do (about 13 times expected).
    assert!(seq.contains("aaaaaaa"), "{seq}");
}

// effect: random
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_two_least_conn_avoids_the_loaded_backend() {
    let bs = [backend('a').await, backend('b').await, backend('c').await];
    let p = start(
        "random two least_conn;",
        &[(&bs[0], ""), (&bs[1], ""), (&bs[2], "")],
    );
    // Two tunnels to a at least, so that a request whose slot is being given back as the next
    // one is picked never ties with a.
    let mut tunnels = vec![];
    for i in 0..60 {
        tunnels.push(tunnel(p.port, &format!("/t{i}")).await);
        if tunnels.iter().filter(|(_, id)| *id == 'a').count() >= 2 {
            break;
        }
    }
    let (kept, closed): (Vec<_>, Vec<_>) = tunnels.into_iter().partition(|(_, id)| *id == 'a');
    assert!(kept.len() >= 2, "two tunnels to a in 60");
    drop(closed);
    wait_open(&[(&bs[0], kept.len()), (&bs[1], 0), (&bs[2], 0)]).await;
    for i in 0..4 {
        get(p.port, &format!("/warm{i}")).await;
    }
    // Two different backends are drawn each time and a loses to either idle one.
    let mut got = BTreeMap::new();
    for i in 0..40 {
        *got.entry(get(p.port, &format!("/r{i}")).await).or_insert(0) += 1;
    }
    assert_eq!(got.get(&'a'), None, "{got:?}");
    assert_eq!(got.len(), 2, "b and c both drawn: {got:?}");
    drop(kept);
}
