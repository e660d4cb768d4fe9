//! `sticky cookie` and `sticky route` through a running ringproxy (two shards) with real
//! backends: a bound client keeps its backend for requests and WebSocket upgrades, an unbound
//! one is balanced and bound by the `Set-Cookie` on the answer, a dead bound backend hands the
//! client to another with a new cookie, and the cookie's attributes read as nginx writes them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use common::Proxy;
use tokio::io::AsyncWriteExt;

const T: Duration = Duration::from_secs(20);

/// A backend answering with its letter: in the body of a plain request, in `X-Backend` of the
/// 101 to a WebSocket upgrade.
async fn backend(id: char) -> SocketAddr {
    common::scripted_backend(move |head, _| {
        if head.to_ascii_lowercase().contains("\r\nupgrade: websocket") {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Backend: {id}\r\n\r\n"
            )
            .into_bytes()
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n{id}")
                .into_bytes()
        }
    })
    .await
}

/// `upstream_directives` above `servers` (each `(address, parameters)`), one location proxying
/// to them (WebSocket upgrades included), two shards.
fn start(upstream_directives: &str, servers: &[(SocketAddr, &str)]) -> Proxy {
    let port = common::free_port();
    let servers: String = servers
        .iter()
        .map(|(a, params)| format!("        server {a} {params};\n"))
        .collect();
    let conf = format!(
        "events {{}}\nhttp {{\n    upstream b {{\n        {upstream_directives}\n{servers}    }}\n    \
         server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            \
         proxy_pass http://b;\n            proxy_http_version 1.1;\n            \
         proxy_set_header Upgrade $http_upgrade;\n            \
         proxy_set_header Connection \"upgrade\";\n        }}\n    }}\n}}\n"
    );
    Proxy::start(&conf, port, "worker_processes 2;", &[])
}

/// nginx's server ID for a peer at `addr`: the MD5 of the address as text, in hex (computed
/// here with the system's md5sum, independently of ringproxy's code).
fn sid(addr: SocketAddr) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum");
    let text = addr.to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_string()
}

/// A plain GET with `Cookie: cookie` (none when empty): the backend's letter and the
/// `Set-Cookie` values of the answer.
async fn get(port: u16, cookie: &str) -> (char, Vec<String>) {
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    let req = format!("GET / HTTP/1.1\r\nHost: a\r\n{cookie}Connection: close\r\n\r\n");
    let text = common::roundtrip(port, req.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    (text.chars().last().unwrap(), set_cookies(&text))
}

/// A WebSocket upgrade with `Cookie: cookie`: the backend's letter and the `Set-Cookie` values
/// of the 101.
async fn upgrade(port: u16, cookie: &str) -> (char, Vec<String>) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: a\r\nCookie: {cookie}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
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
    (id, set_cookies(&head))
}

fn set_cookies(text: &str) -> Vec<String> {
    let head = text.split("\r\n\r\n").next().unwrap();
    head.lines()
        .filter_map(|l| l.strip_prefix("Set-Cookie: "))
        .map(str::to_string)
        .collect()
}

/// Seconds since the epoch of a cookie date as nginx writes it (`Thu, 04-Dec-26 20:00:00
/// GMT`: two-digit year, 20xx).
fn cookie_date(s: &str) -> u64 {
    let (_, rest) = s.split_once(", ").unwrap();
    let (date, time) = rest.split_once(' ').unwrap();
    assert!(time.ends_with(" GMT"), "{s}");
    let d: Vec<&str> = date.split('-').collect();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == d[1]).unwrap() as i64 + 1;
    let (day, year): (i64, i64) = (d[0].parse().unwrap(), 2000 + d[2].parse::<i64>().unwrap());
    let t: Vec<i64> = time[..8].split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    (days * 86400 + t[0] * 3600 + t[1] * 60 + t[2]) as u64
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// effect: sticky
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_requests_and_upgrades_keep_their_backend_and_unbound_ones_get_bound() {
    let (a, b, c) = (backend('a').await, backend('b').await, backend('c').await);
    let p = start("sticky cookie srv;", &[(a, ""), (b, ""), (c, "")]);
    let letter_of = |sid_value: &str| {
        [(a, 'a'), (b, 'b'), (c, 'c')]
            .into_iter()
            .find(|(addr, _)| sid(*addr) == sid_value)
            .map(|(_, l)| l)
    };
    // Unbound: balanced (round robin reaches every backend), each answer binds the client to
    // the backend that gave it.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..9 {
        let (id, cookies) = get(p.port, "").await;
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        let value = cookies[0].strip_prefix("srv=").expect("srv=");
        assert_eq!(letter_of(value), Some(id), "{cookies:?}");
        seen.insert(id);
    }
    assert_eq!(seen.len(), 3, "round robin reached {seen:?}");
    // Bound: every request and every upgrade goes to b, and the cookie is set again.
    let bound = format!("other=1; srv={}", sid(b));
    for _ in 0..6 {
        let (id, cookies) = get(p.port, &bound).await;
        assert_eq!((id, cookies), ('b', vec![format!("srv={}", sid(b))]));
        let (id, cookies) = upgrade(p.port, &bound).await;
        assert_eq!((id, cookies), ('b', vec![format!("srv={}", sid(b))]));
    }
    let bound_c = format!("srv={}", sid(c));
    for _ in 0..4 {
        assert_eq!(upgrade(p.port, &bound_c).await.0, 'c');
    }
    // A value naming no server: balanced and bound anew.
    let (id, cookies) = get(p.port, "srv=0123456789abcdef0123456789abcdef").await;
    assert_eq!(
        cookies,
        vec![format!(
            "srv={}",
            sid([a, b, c][(id as u8 - b'a') as usize])
        )]
    );
}

// effect: sticky
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_bound_backend_hands_the_client_to_another_with_a_new_cookie() {
    let a = backend('a').await;
    // Nothing listens there: connecting is refused.
    let dead = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let mut p = start("sticky cookie srv path=/;", &[(dead, ""), (a, "")]);
    p.allow_log("connect() failed");
    for _ in 0..3 {
        let (id, cookies) = get(p.port, &format!("srv={}", sid(dead))).await;
        assert_eq!(id, 'a');
        assert_eq!(cookies, vec![format!("srv={}; path=/", sid(a))]);
    }
}

// effect: sticky
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_attributes_are_written_as_nginx_writes_them() {
    let a = backend('a').await;
    let p = start(
        "sticky cookie srv_id expires=1h domain=.example.com path=/app httponly secure samesite=lax;",
        &[(a, "")],
    );
    let before = now_secs();
    let (_, cookies) = get(p.port, "").await;
    let after = now_secs();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let parts: Vec<&str> = cookies[0].split("; ").collect();
    assert_eq!(parts.len(), 8, "{cookies:?}");
    assert_eq!(parts[0], format!("srv_id={}", sid(a)));
    let expires = cookie_date(parts[1].strip_prefix("expires=").expect("expires second"));
    assert!(
        (before + 3600..=after + 3600).contains(&expires),
        "{cookies:?}"
    );
    assert_eq!(
        parts[2..],
        [
            "max-age=3600",
            "domain=.example.com",
            "httponly",
            "secure",
            "samesite=lax",
            "path=/app"
        ]
    );
    drop(p);

    // `expires=max`, and a `route=` in place of the generated ID.
    let p = start("sticky cookie srv expires=max;", &[(a, "route=blue")]);
    let (_, cookies) = get(p.port, "").await;
    assert_eq!(
        cookies,
        ["srv=blue; expires=Thu, 31-Dec-37 23:55:55 GMT; max-age=315360000"]
    );
}

// effect: sticky
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_route_follows_the_first_variable_that_names_a_route() {
    let (a, b) = (backend('a').await, backend('b').await);
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    upstream b {{\n        sticky route $cookie_route $arg_route;\n        \
         server {a} route=x;\n        server {b} route=y;\n    }}\n    server {{\n        \
         listen 127.0.0.1:{port};\n        location / {{ proxy_pass http://b; }}\n    }}\n}}\n"
    );
    let p = Proxy::start(&conf, port, "worker_processes 2;", &[]);
    let ask = |path: &'static str, cookie: &'static str| async move {
        let cookie = if cookie.is_empty() {
            String::new()
        } else {
            format!("Cookie: {cookie}\r\n")
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n{cookie}Connection: close\r\n\r\n");
        let text = common::roundtrip(p.port, req.as_bytes()).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        // `sticky route` sets no cookie.
        assert!(set_cookies(&text).is_empty(), "{text}");
        text.chars().last().unwrap()
    };
    for _ in 0..4 {
        assert_eq!(ask("/?route=y", "").await, 'b');
        assert_eq!(ask("/?route=x", "").await, 'a');
        // The cookie comes first in the list.
        assert_eq!(ask("/?route=x", "route=y").await, 'b');
    }
}
