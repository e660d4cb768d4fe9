//! Reload (HUP and `ringproxy -s reload`): the new configuration is checked whole before
//! anything changes; new connections and new requests on kept-alive connections use it; open
//! WebSocket tunnels go on untouched; listen addresses are added and removed; shards are
//! started and retired; a broken configuration changes nothing; many reloads leave memory flat.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

/// A configuration: `/v` answers `version`, `/ws` goes to the echo backend.
fn conf(listen: &[u16], version: &str, echo: std::net::SocketAddr, workers: usize) -> String {
    let listens: String = listen
        .iter()
        .map(|p| format!("listen 127.0.0.1:{p}; "))
        .collect();
    format!(
        "worker_processes {workers};\nerror_log logs/error.log info;\nevents {{}}\nhttp {{\n\
         server {{ {listens}\n\
           location /v {{ return 200 \"{version}\"; }}\n\
           location /ws {{ proxy_pass http://{echo}; proxy_http_version 1.1;\n\
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}\n\
         }}\n}}\n"
    )
}

fn write_conf(dir: &Path, text: &str) {
    std::fs::write(dir.join("ringproxy.conf"), text).unwrap();
}

fn hup(p: &common::Proxy) {
    ringproxy::sys::kill(p.pid(), libc::SIGHUP).unwrap();
}

/// One keep-alive GET of `/v` on `s`; the body.
fn get_v(s: &mut TcpStream) -> String {
    s.write_all(b"GET /v HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a whole response: {got:?}");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .expect("a Content-Length")
                .parse()
                .unwrap();
            if body.len() >= len {
                return body[..len].to_string();
            }
        }
    }
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Waits until a new connection to `port` gets `want` from `/v`.
fn wait_for_version(port: u16, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) = connect(port) {
            if get_v(&mut s) == want {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{port} never answered {want:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the error log has `n` lines containing `what`.
fn wait_for_log(p: &common::Proxy, what: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = p.stderr();
        if log.matches(what).count() >= n {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {n} x {what:?} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn ws_echo<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    common::echo_each(ws, [Message::text(text.to_string())], "tunnel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hup_swaps_the_configuration_and_keeps_tunnels_and_connections() {
    swaps_and_keeps("io_uring").await;
}

// On the epoll driver too: its shards once stalled on their control channel after one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hup_swaps_the_configuration_and_keeps_tunnels_and_connections_on_epoll() {
    swaps_and_keeps("epoll").await;
}

async fn swaps_and_keeps(driver: &str) {
    let echo = common::Echo::start();
    let port = common::free_port();
    let env: &[(&str, &str)] = if driver == "epoll" {
        &[("RINGPROXY_DRIVER", "epoll")]
    } else {
        &[]
    };
    let p = common::Proxy::start(&conf(&[port], "one", echo.addr, 2), port, "", env);
    assert_eq!(p.event_method(), driver);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    ws_echo(&mut ws, "before").await;
    let mut kept = connect(port).unwrap();
    assert_eq!(get_v(&mut kept), "one");

    write_conf(p.dir.path(), &conf(&[port], "two", echo.addr, 2));
    hup(&p);
    wait_for_log(&p, "reconfigured", 1);
    wait_for_version(port, "two");
    // The kept-alive connection's next request uses the new configuration.
    assert_eq!(get_v(&mut kept), "two");
    // The tunnel opened before the reload goes on, in both directions.
    ws_echo(&mut ws, "after").await;

    // `ringproxy -s reload` does the same.
    write_conf(p.dir.path(), &conf(&[port], "three", echo.addr, 2));
    let dir = p.dir.path().to_str().unwrap();
    let out = common::run(&["-p", dir, "-c", "ringproxy.conf", "-s", "reload"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    wait_for_version(port, "three");
    assert_eq!(get_v(&mut kept), "three");
    ws_echo(&mut ws, "after the second").await;
    ws.close(None).await.unwrap();
}

#[test]
fn a_broken_configuration_changes_nothing() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let mut p = common::Proxy::start(&conf(&[port], "one", echo.addr, 1), port, "", &[]);
    // The two refused reloads are reported at nginx's level for them.
    p.allow_log("[emerg]");
    let good = conf(&[port], "two", echo.addr, 1);
    // An unknown directive on line 4, then a listen address that cannot be bound.
    write_conf(
        p.dir.path(),
        &good.replacen("events {}", "events {}\nbogus_directive on;", 1),
    );
    hup(&p);
    let log = wait_for_log(&p, "reload failed, the configuration is unchanged", 1);
    let file = p.dir.path().join("ringproxy.conf");
    let want = format!(
        "unknown directive \"bogus_directive\" in {}:4",
        file.display()
    );
    assert!(
        log.lines()
            .any(|l| l.contains("[emerg] ") && l.ends_with(&want)),
        "{log}"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    write_conf(p.dir.path(), &conf(&[port, busy], "two", echo.addr, 1));
    hup(&p);
    let log = wait_for_log(&p, "reload failed, the configuration is unchanged", 2);
    assert!(
        log.contains(&format!(
            "bind() to 127.0.0.1:{busy} failed (98: Address already in use)"
        )),
        "{log}"
    );
    let mut s = connect(port).unwrap();
    assert_eq!(get_v(&mut s), "one");
}

#[test]
fn listen_addresses_are_added_and_removed() {
    let echo = common::Echo::start();
    let (a, b) = (common::free_port(), common::free_port());
    let p = common::Proxy::start(&conf(&[a], "one", echo.addr, 2), a, "", &[]);
    let mut on_a = connect(a).unwrap();
    assert_eq!(get_v(&mut on_a), "one");
    write_conf(p.dir.path(), &conf(&[b], "two", echo.addr, 2));
    hup(&p);
    wait_for_log(&p, "reconfigured", 1);
    wait_for_version(b, "two");
    // The removed address refuses new connections; the one accepted there is still served,
    // by the configuration it was accepted with (the new one does not listen there).
    let refused = connect(a).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(get_v(&mut on_a), "one");
}

/// Shard threads of `pid` (named `ringproxy-shard-N`; the kernel keeps 15 bytes of a name).
fn shard_threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("ringproxy-shard"))
        })
        .count()
}

fn wait_for_threads(pid: i32, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while shard_threads(pid) != n {
        assert!(
            Instant::now() < deadline,
            "{} shard threads, want {n}",
            shard_threads(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_changes_start_and_retire_shards() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let p = common::Proxy::start(&conf(&[port], "one", echo.addr, 1), port, "", &[]);
    wait_for_threads(p.pid(), 1);
    write_conf(p.dir.path(), &conf(&[port], "two", echo.addr, 3));
    hup(&p);
    wait_for_log(&p, "reconfigured: 3 shards", 1);
    wait_for_threads(p.pid(), 3);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    ws_echo(&mut ws, "on three shards").await;
    // Back to one: the retired shards stop accepting and end once their connections have.
    write_conf(p.dir.path(), &conf(&[port], "three", echo.addr, 1));
    hup(&p);
    wait_for_log(&p, "reconfigured: 1 shards", 1);
    for _ in 0..20 {
        let mut s = connect(port).unwrap();
        assert_eq!(get_v(&mut s), "three");
    }
    // A retired shard closes its WebSocket tunnels with a Close 1001 at a random moment of
    // worker_shutdown_spread (tests/drain.rs); on the kept shard the tunnel goes on.
    use futures_util::{SinkExt, StreamExt};
    ws.send(Message::text("while its shard may be retiring"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("an answer in time")
        .expect("a message")
        .unwrap();
    match next {
        Message::Text(t) => {
            assert_eq!(t.as_str(), "while its shard may be retiring");
            ws.close(None).await.unwrap();
        }
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001, "{f:?}"),
        other => panic!("{other:?}"),
    }
    drop(ws);
    wait_for_threads(p.pid(), 1);
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn many_reloads_leave_memory_flat() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let p = common::Proxy::start(&conf(&[port], "v0", echo.addr, 2), port, "", &[]);
    let reload_to = |i: usize| {
        write_conf(p.dir.path(), &conf(&[port], &format!("v{i}"), echo.addr, 2));
        hup(&p);
        wait_for_log(&p, "reconfigured", i);
        // A connection on each generation, so each is built, used and freed.
        let mut s = connect(port).unwrap();
        let _ = get_v(&mut s);
    };
    for i in 1..=100 {
        reload_to(i);
    }
    let after_100 = rss_kib(p.pid());
    for i in 101..=1000 {
        reload_to(i);
    }
    wait_for_version(port, "v1000");
    let after_1000 = rss_kib(p.pid());
    assert!(
        after_1000 <= after_100 + 1024,
        "RSS grew from {after_100} KiB after 100 reloads to {after_1000} KiB after 1000"
    );
}
