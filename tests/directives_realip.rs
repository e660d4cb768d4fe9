//! The client's address through a running ringproxy (one shard): the PROXY protocol header
//! (v1, v2) on `listen ... proxy_protocol`, a broken one closing the connection, and the
//! realip module (`set_real_ip_from`, `real_ip_header`, `real_ip_recursive`) changing
//! `$remote_addr` for what the backend is sent and the access log, as nginx 1.22 does
//! (`ngx_proxy_protocol.c`, `ngx_http_realip_module.c`; nginx-tests `proxy_protocol*.t`,
//! `realip*.t`).

mod common;
mod directive_kit;

use std::time::Duration;

use common::{read_head, Proxy};
use directive_kit::{read_to_end_within, send, wait_for, Backend, End, T};
use tokio::io::AsyncWriteExt;

/// A backend answering each request with the head it received as the body, then closing.
async fn mirror() -> Backend {
    Backend::start(|mut s| async move {
        if let Some(head) = read_head(&mut s).await {
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                head.len()
            );
            let _ = s.write_all(r.as_bytes()).await;
        }
    })
    .await
}

/// A one-shard ringproxy whose server listens with `listen_opts`, proxying `/` to `backend`
/// with `X-Real-IP $remote_addr` and the PROXY variables; `http` and `server` hold the
/// directives under test. The access log writes `$remote_addr $realip_remote_addr`.
fn proxy(listen_opts: &str, http: &str, server: &str, backend: &Backend) -> Proxy {
    let port = common::free_port();
    let b = backend.addr;
    let conf = format!(
        "worker_processes 1;\nerror_log logs/error.log info;\nevents {{}}\nhttp {{\n    log_format a \"$remote_addr:$remote_port $realip_remote_addr\";\n    access_log logs/access.log a;\n    {http}\n    server {{\n        listen 127.0.0.1:{port} {listen_opts};\n        {server}\n        location / {{\n            proxy_pass http://{b};\n            proxy_set_header X-Real-IP $remote_addr;\n            proxy_set_header X-PP \"$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port\";\n        }}\n    }}\n}}\n"
    );
    Proxy::start(&conf, port, "", &[])
}

/// Sends `raw` and reads the whole answer (the backend closes after one response).
async fn exchange(p: &Proxy, raw: &[u8]) -> String {
    let mut s = send(p.port, raw).await;
    let (got, end) = read_to_end_within(&mut s, T).await;
    assert_eq!(end, Some(End::Eof), "not closed in time");
    String::from_utf8_lossy(&got).into_owned()
}

fn with(head: &[u8], extra: &str) -> Vec<u8> {
    let mut v = head.to_vec();
    v.extend_from_slice(
        format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{extra}\r\n").as_bytes(),
    );
    v
}

fn v2_inet(cmd: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tlv: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20 | cmd, 0x11]);
    h.extend_from_slice(&(12 + tlv.len() as u16).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(tlv);
    h
}

fn access_log(p: &Proxy) -> String {
    std::fs::read_to_string(p.dir.path().join("logs/access.log")).unwrap_or_default()
}

// effect: set_real_ip_from real_ip_header
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_address_becomes_the_clients() {
    let b = mirror().await;
    let http = "set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;";
    let p = proxy("proxy_protocol", http, "", &b);
    let v1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 123 5678\r\n";
    let r = exchange(&p, &with(v1, "")).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("\r\nX-Real-IP: 192.0.2.1\r\n"), "{r}");
    assert!(
        r.contains("\r\nX-PP: 192.0.2.1 123 192.0.2.2 5678\r\n"),
        "{r}"
    );
    assert!(!r.contains("PROXY"), "the header reached the backend: {r}");
    // v2 with a TLV, split across two writes: the header is awaited whole.
    let v2 = v2_inet(
        1,
        [198, 51, 100, 7],
        [198, 51, 100, 8],
        4000,
        80,
        &[4, 0, 1, 0],
    );
    let mut s = send(p.port, &v2[..10]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(&with(&v2[10..], "")).await.unwrap();
    let (got, _) = read_to_end_within(&mut s, T).await;
    let r = String::from_utf8_lossy(&got);
    assert!(r.contains("\r\nX-Real-IP: 198.51.100.7\r\n"), "{r}");
    assert!(
        r.contains("\r\nX-PP: 198.51.100.7 4000 198.51.100.8 80\r\n"),
        "{r}"
    );
    // LOCAL and UNKNOWN carry no address: the connection's stays.
    let local = v2_inet(0, [1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[]);
    for h in [&local[..], b"PROXY UNKNOWN\r\n"] {
        let r = exchange(&p, &with(h, "")).await;
        assert!(r.contains("\r\nX-Real-IP: 127.0.0.1\r\n"), "{r}");
        assert!(r.contains("\r\nX-PP:    \r\n"), "{r}");
    }
    wait_for("four access-log lines", || {
        access_log(&p).lines().count() == 4
    })
    .await;
    let log = access_log(&p);
    let first: Vec<&str> = log.lines().take(2).collect();
    assert_eq!(
        first,
        ["192.0.2.1:123 127.0.0.1", "198.51.100.7:4000 127.0.0.1"]
    );
}

// effect: listen
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_proxy_header_closes_the_connection() {
    let b = mirror().await;
    let mut p = proxy("proxy_protocol", "", "client_header_timeout 2s;", &b);
    p.allow_log("broken header");
    p.allow_log("header is too large");
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"PROXY TCP4 192.0.2.1 192.0.2.2 123\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PROXY TCP4 192.0.2.x 192.0.2.2 1 2\r\n",
    ] {
        let mut s = send(p.port, bad).await;
        let (got, end) = read_to_end_within(&mut s, T).await;
        assert!(
            end.is_some() && got.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let mut big = v2_inet(1, [1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[]);
    big[14..16].copy_from_slice(&4000u16.to_be_bytes());
    let mut s = send(p.port, &big).await;
    let (got, end) = read_to_end_within(&mut s, T).await;
    assert!(end.is_some() && got.is_empty());
    // A header cut short is waited for until client_header_timeout, then dropped.
    let mut s = send(p.port, b"PROXY TCP4 192.0.2.1").await;
    let (got, end) = read_to_end_within(&mut s, Duration::from_secs(15)).await;
    assert!(end.is_some() && got.is_empty());
    assert_eq!(b.accepted(), 0, "nothing reaches the backend");
    wait_for("the error-log lines", || {
        p.stderr().matches("broken header").count() == 3
    })
    .await;
    let log = p.stderr();
    assert!(
        log.contains("[error]") && log.contains("broken header: \"GET / HTTP/1.1"),
        "{log}"
    );
    assert!(
        log.contains("header is too large while reading PROXY protocol"),
        "{log}"
    );
    // Without `proxy_protocol` on the listen, a request is served as it comes.
    let q = proxy("", "", "", &b);
    let r = exchange(&q, &with(b"", "")).await;
    assert!(r.contains("\r\nX-Real-IP: 127.0.0.1\r\n"), "{r}");
    assert!(r.contains("\r\nX-PP:    \r\n"), "{r}");
}

// effect: set_real_ip_from real_ip_header real_ip_recursive
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realip_takes_the_forwarded_address_from_trusted_sources() {
    let b = mirror().await;
    let http = "set_real_ip_from 127.0.0.1/32; set_real_ip_from 10.0.1.0/24;";
    let server = "location /xff { proxy_pass http://B; proxy_set_header X-Real-IP $remote_addr; \
                  real_ip_header X-Forwarded-For; }\n        \
                  location /rec { proxy_pass http://B; proxy_set_header X-Real-IP $remote_addr; \
                  real_ip_header X-Forwarded-For; real_ip_recursive on; }\n        \
                  location /custom { proxy_pass http://B; proxy_set_header X-Real-IP $remote_addr; \
                  real_ip_header X-Client; }";
    let p = proxy("", http, &server.replace('B', &b.addr.to_string()), &b);
    let real_ip = |r: &str| {
        r.lines()
            .find_map(|l| l.strip_prefix("X-Real-IP: "))
            .map(str::to_string)
    };
    let ask = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{extra}\r\n").into_bytes()
    };
    let cases = [
        ("/", "X-Real-IP: 192.0.2.1\r\n", "192.0.2.1"),
        ("/", "X-Real-IP: garbage\r\n", "127.0.0.1"),
        ("/", "X-Forwarded-For: 192.0.2.1\r\n", "127.0.0.1"),
        ("/custom", "X-Client: 192.0.2.9:80\r\n", "192.0.2.9"),
        ("/xff", "X-Forwarded-For: 10.0.0.1, 192.0.2.1\r\n", "192.0.2.1"),
        ("/xff", "X-Forwarded-For: 192.0.2.1, 10.0.1.1, 127.0.0.1\r\n", "127.0.0.1"),
        ("/rec", "X-Forwarded-For: 10.0.1.1, 192.0.2.1, 127.0.0.1\r\n", "192.0.2.1"),
        (
            "/rec",
            "X-Forwarded-For: 10.0.1.1\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 127.0.0.1\r\n",
            "192.0.2.1",
        ),
        ("/rec", "X-Forwarded-For: 10.0.1.2, 10.0.1.1\r\n", "10.0.1.2"),
    ];
    for (path, extra, want) in cases {
        let r = exchange(&p, &ask(path, extra)).await;
        assert_eq!(real_ip(&r).as_deref(), Some(want), "{path} {extra:?}: {r}");
    }
    // A source outside set_real_ip_from is not believed.
    let untrusted =
        "set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For; real_ip_recursive on;";
    let q = proxy("", untrusted, "", &b);
    let r = exchange(&q, &ask("/", "X-Forwarded-For: 192.0.2.1\r\n")).await;
    assert_eq!(real_ip(&r).as_deref(), Some("127.0.0.1"), "{r}");
    wait_for("the access-log lines", || {
        access_log(&p).lines().count() == cases.len()
    })
    .await;
    let log = access_log(&p);
    assert!(log.starts_with("192.0.2.1: 127.0.0.1\n"), "{log}");
}

// `deny`/`allow` judge the address the realip module found, as nginx's access phase comes after
// realip's: a trusted proxy's clients are told apart by `X-Real-IP`.
// effect: deny allow
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_see_the_real_address() {
    let b = mirror().await;
    let p = proxy(
        "",
        "set_real_ip_from 127.0.0.1; real_ip_header X-Real-IP;",
        "deny 10.0.0.0/8; allow all;",
        &b,
    );
    let denied = exchange(&p, &with(b"", "X-Real-IP: 10.1.2.3\r\n")).await;
    assert!(denied.starts_with("HTTP/1.1 403 "), "{denied}");
    let allowed = exchange(&p, &with(b"", "X-Real-IP: 192.0.2.7\r\n")).await;
    assert!(allowed.starts_with("HTTP/1.1 200 "), "{allowed}");
    assert!(allowed.contains("X-Real-IP: 192.0.2.7"), "{allowed}");
}
