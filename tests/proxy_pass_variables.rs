//! `proxy_pass` with variables in its host, through a running ringproxy: the evaluated host
//! names an `upstream` group, or is an address, or is resolved with `resolver` (a DNS server
//! of the test whose answers change: the proxy follows them without a reload, once the answer's
//! `valid=` time is over); `resolver_timeout` bounds a lookup the server never answers; without
//! a resolver a name is nginx's 502 with its "no resolver defined" line.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::dns::Dns;
use common::http1::exchange;
use common::Proxy;

const T: Duration = Duration::from_secs(20);

/// A backend on `addr` answering every request with `name` in its body, on its own thread.
fn backend(addr: SocketAddr, name: &'static str) -> std::thread::JoinHandle<()> {
    let l = std::net::TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(1) => head.push(b[0]),
                        _ => return,
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = s.write_all(reply.as_bytes());
            });
        }
    })
}

/// Two backends on one port: `a` on 127.0.0.1, `b` on 127.0.0.2.
fn two_backends() -> u16 {
    for _ in 0..20 {
        let port = common::free_port();
        let b = SocketAddr::from(([127, 0, 0, 2], port));
        if std::net::TcpListener::bind(b).is_ok() {
            backend(SocketAddr::from(([127, 0, 0, 1], port)), "a");
            backend(b, "b");
            return port;
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

fn get(port: u16, target: &str) -> common::http1::Response {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    exchange(port, raw.as_bytes(), T)
}

fn conf(port: u16, http_extra: &str) -> String {
    format!(
        "events {{}}
http {{
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://$arg_h;
            add_header X-Addr $upstream_addr always;
        }}
    }}
}}
"
    )
}

#[test]
fn a_host_with_variables_names_a_group_or_an_address() {
    let bport = two_backends();
    let port = common::free_port();
    let groups = format!("upstream grp {{ server 127.0.0.2:{bport}; }}");
    let _p = Proxy::start(&conf(port, &groups), port, "", &[]);
    let r = get(port, "/?h=grp");
    assert_eq!((r.code, r.text().as_str()), (200, "b"));
    let addr = format!("127.0.0.2:{bport}");
    assert_eq!(r.get("x-addr"), Some(addr.as_str()));
    let r = get(port, &format!("/?h=127.0.0.1:{bport}"));
    assert_eq!((r.code, r.text().as_str()), (200, "a"));
    // An upstream block's name with a port is not the group (nginx): a name to resolve.
    let mut p = _p;
    p.allow_log("no resolver defined");
    let r = get(port, &format!("/?h=grp:{bport}"));
    assert_eq!(r.code, 502);
}

#[test]
fn without_a_resolver_a_name_is_a_502() {
    let port = common::free_port();
    let p = Proxy::start(&conf(port, ""), port, "", &[]);
    let r = get(port, "/?h=nowhere.test");
    assert_eq!(r.code, 502);
    let log = p.stderr();
    assert!(
        log.contains("[error]") && log.contains("no resolver defined to resolve nowhere.test"),
        "{log}"
    );
}

// effect: resolver
#[test]
fn the_resolver_is_followed_without_a_reload() {
    let bport = two_backends();
    let dns = Dns::start();
    dns.set("backend.test", &[Ipv4Addr::new(127, 0, 0, 1)], 3600);
    let port = common::free_port();
    // valid=1s: the answers are asked again a second after each, whatever their TTL.
    let resolver = format!("resolver {} valid=1s;", dns.addr);
    let _p = Proxy::start(&conf(port, &resolver), port, "", &[]);
    let target = format!("/?h=backend.test:{bport}");
    let r = get(port, &target);
    assert_eq!((r.code, r.text().as_str()), (200, "a"));
    let addr = format!("127.0.0.1:{bport}");
    assert_eq!(r.get("x-addr"), Some(addr.as_str()));
    assert!(dns.queries.load(Ordering::SeqCst) > 0);
    dns.set("backend.test", &[Ipv4Addr::new(127, 0, 0, 2)], 3600);
    let deadline = Instant::now() + T;
    loop {
        let r = get(port, &target);
        assert_eq!(r.code, 200);
        if r.text() == "b" {
            break;
        }
        assert!(Instant::now() < deadline, "the new answer was not followed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// effect: resolver_timeout
#[test]
fn resolver_timeout_bounds_an_unanswered_lookup() {
    let dns = Dns::start();
    dns.silent.store(true, Ordering::SeqCst);
    let port = common::free_port();
    // nginx's default is 30 s: well beyond the bound checked here.
    let resolver = format!("resolver {}; resolver_timeout 1s;", dns.addr);
    let p = Proxy::start(&conf(port, &resolver), port, "", &[]);
    let started = Instant::now();
    let r = get(port, "/?h=silent.test");
    assert_eq!(r.code, 502);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let log = p.stderr();
    assert!(
        log.contains("silent.test could not be resolved (110: Operation timed out)"),
        "{log}"
    );
}
