//! The `stream { }` module: TCP sessions through ringproxy to backends on 127.0.0.1 (echo on
//! the copy and splice paths, balancing, timeouts, next upstream, PROXY protocol out and in,
//! ssl_preread routing, the access log, reload), and the refusals of what it does not do.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ports::free_port;

/// A deadline for anything a test waits for.
const T: Duration = Duration::from_secs(20);

/// A backend on 127.0.0.1:0 running `handler` on each connection, in a thread of its own.
fn backend(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let h = handler.clone();
            std::thread::spawn(move || h(s));
        }
    });
    addr
}

/// Echoes every byte until the client closes.
fn echo() -> SocketAddr {
    backend(|mut s| {
        let mut buf = [0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Writes `tag` to each client, then echoes.
fn tagged(tag: &'static str) -> SocketAddr {
    backend(move |mut s| {
        let _ = s.write_all(tag.as_bytes());
        let mut buf = [0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// An address nobody listens on.
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn conf(stream: &str) -> String {
    format!("error_log logs/error.log info;\nevents {{}}\nstream {{\n{stream}\n}}\n")
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).unwrap();
    v
}

/// Sends `data` and reads it back.
fn round_trip(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
    assert_eq!(read_n(s, data.len()), data);
}

/// Reads until the proxy closes; what came and how long it took.
fn until_closed(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (out, start.elapsed())
}

/// Polls `f` until it returns something, for at most `T`.
fn poll<R>(what: &str, mut f: impl FnMut() -> Option<R>) -> R {
    let deadline = Instant::now() + T;
    loop {
        if let Some(r) = f() {
            return r;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

// effect: stream listen proxy_pass
#[test]
fn echo_through_copy_and_splice() {
    let be = echo();
    let (p1, p2) = (free_port(), free_port());
    let c = conf(&format!(
        "server {{ listen 127.0.0.1:{p1}; proxy_pass {be}; }}\n\
         server {{ listen 127.0.0.1:{p2}; proxy_pass {be}; proxy_splice on; }}"
    ));
    let _p = common::Proxy::start(&c, p1, "", &[]);
    for port in [p1, p2] {
        let mut s = connect(port);
        round_trip(&mut s, b"hello");
        let data = big(2 << 20);
        let mut w = s.try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
        assert_eq!(read_n(&mut s, data.len()), data, "port {port}");
        writer.join().unwrap();
        // The client's FIN ends the session (proxy_half_close off).
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let (rest, _) = until_closed(&mut s);
        assert!(rest.is_empty());
    }
}

// effect: upstream server
#[test]
fn upstream_weights_and_down_peers() {
    let (a, b, c) = (tagged("A"), tagged("B"), tagged("C"));
    let port = free_port();
    let conf = conf(&format!(
        "upstream u {{ server {a}; server {b} weight=2; server {c} down; }}\n\
         server {{ listen 127.0.0.1:{port}; proxy_pass u; }}"
    ));
    let _p = common::Proxy::start(&conf, port, "", &[]);
    let mut seen = String::new();
    for _ in 0..6 {
        let mut s = connect(port);
        seen.push(read_n(&mut s, 1)[0] as char);
    }
    // nginx's smooth weighted round robin: B A B, twice.
    assert_eq!(seen, "BABBAB");
}

// effect: hash
#[test]
fn hash_keeps_a_key_on_one_peer() {
    let (a, b) = (tagged("A"), tagged("B"));
    let port = free_port();
    let conf = conf(&format!(
        "upstream u {{ hash $remote_addr consistent; server {a}; server {b}; }}\n\
         server {{ listen 127.0.0.1:{port}; proxy_pass u; }}"
    ));
    let _p = common::Proxy::start(&conf, port, "", &[]);
    let first = read_n(&mut connect(port), 1);
    for _ in 0..5 {
        assert_eq!(read_n(&mut connect(port), 1), first);
    }
}

// effect: proxy_timeout
#[test]
fn proxy_timeout_closes_an_idle_session() {
    let be = echo();
    let port = free_port();
    let c = conf(&format!(
        "server {{ listen 127.0.0.1:{port}; proxy_pass {be}; proxy_timeout 1s; }}"
    ));
    let _p = common::Proxy::start(&c, port, "", &[]);
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    round_trip(&mut s, b"ping");
    let (rest, took) = until_closed(&mut s);
    assert!(rest.is_empty());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(12),
        "closed after {took:?}"
    );
}

// effect: proxy_next_upstream proxy_next_upstream_tries
#[test]
fn next_upstream_after_a_refused_connect() {
    let be = echo();
    let (on, off, tries, dead) = (free_port(), free_port(), free_port(), free_port());
    let group = |name: &str| {
        format!(
            "upstream {name} {{ server {}; server {be}; }}\n",
            closed_port()
        )
    };
    let c = conf(&format!(
        "{}{}{}\
         log_format tries '$upstream_addr!$upstream_bytes_sent!$upstream_bytes_received';\n\
         server {{ listen 127.0.0.1:{on}; proxy_pass g_on; access_log logs/tries.log tries; }}\n\
         server {{ listen 127.0.0.1:{off}; proxy_pass g_off; proxy_next_upstream off; }}\n\
         server {{ listen 127.0.0.1:{tries}; proxy_pass g_tries; proxy_next_upstream_tries 1; }}\n\
         upstream g_dead {{ server {be} down; }}\n\
         server {{ listen 127.0.0.1:{dead}; proxy_pass g_dead; access_log logs/dead.log tries; }}",
        group("g_on"),
        group("g_off"),
        group("g_tries")
    ));
    let mut p = common::Proxy::start(&c, on, "", &[]);
    let mut s = connect(on);
    round_trip(&mut s, b"reached");
    drop(s);
    let log = p.dir.path().join("logs/tries.log");
    let line = poll("the access log line", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.ends_with('\n'))
    });
    // Each try is listed; the refused one moved no byte.
    let (refused, _) = line.split_once(',').unwrap();
    assert_eq!(line, format!("{refused}, {be}!0, 7!0, 7\n"));
    for port in [off, tries] {
        let mut s = connect(port);
        let _ = s.write_all(b"lost");
        let (got, _) = until_closed(&mut s);
        assert!(got.is_empty(), "port {port}: {got:?}");
    }
    // No live peer at all: $upstream_addr names the group, as nginx's.
    let mut s = connect(dead);
    let (got, _) = until_closed(&mut s);
    assert!(got.is_empty());
    let log = p.dir.path().join("logs/dead.log");
    let line = poll("the access log line", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.ends_with('\n'))
    });
    assert_eq!(line, "g_dead!-!-\n");
    p.allow_log("connect() failed");
    assert!(p
        .stderr()
        .contains("(111: Connection refused) while connecting to upstream"));
}

// effect: proxy_connect_timeout proxy_next_upstream_timeout
#[test]
fn connect_timeout_and_next_upstream_timeout() {
    let (hole, _keep, _filler) = common::black_hole();
    let be = echo();
    let (next, limited) = (free_port(), free_port());
    let c = conf(&format!(
        "proxy_connect_timeout 1s;\n\
         upstream a {{ server {hole}; server {be}; }}\n\
         upstream b {{ server {hole}; server {be}; }}\n\
         server {{ listen 127.0.0.1:{next}; proxy_pass a; }}\n\
         server {{ listen 127.0.0.1:{limited}; proxy_pass b; proxy_next_upstream_timeout 500ms; }}"
    ));
    let p = common::Proxy::start(&c, next, "", &[]);
    let start = Instant::now();
    let mut s = connect(next);
    round_trip(&mut s, b"after one timeout");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let mut s = connect(limited);
    let _ = s.write_all(b"lost");
    let (got, took) = until_closed(&mut s);
    assert!(got.is_empty(), "{got:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(p
        .stderr()
        .contains("upstream timed out (110: Connection timed out) while connecting to upstream"));
}

/// A backend that reads one line and sends it back, then echoes.
fn line_echo() -> SocketAddr {
    backend(|mut s| {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap_or(0) == 1 {
            line.push(b[0]);
            if b[0] == b'\n' {
                break;
            }
        }
        let _ = s.write_all(&line);
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

// effect: proxy_protocol
#[test]
fn proxy_protocol_v1_goes_to_the_backend_and_comes_in_on_listen() {
    let be = line_echo();
    let (out, inp) = (free_port(), free_port());
    let c = conf(&format!(
        "server {{ listen 127.0.0.1:{out}; proxy_pass {be}; proxy_protocol on; }}\n\
         server {{ listen 127.0.0.1:{inp} proxy_protocol; proxy_pass {be}; }}"
    ));
    let _p = common::Proxy::start(&c, out, "", &[]);
    let mut s = connect(out);
    let local = s.local_addr().unwrap();
    let want = format!("PROXY TCP4 127.0.0.1 127.0.0.1 {} {out}\r\n", local.port());
    assert_eq!(String::from_utf8(read_n(&mut s, want.len())).unwrap(), want);
    round_trip(&mut s, b"then data");
    // A header that comes in is read, not passed on.
    let mut s = connect(inp);
    s.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\nfirst line\n")
        .unwrap();
    assert_eq!(read_n(&mut s, 11), b"first line\n");
}

// effect: access_log log_format
#[test]
fn access_log_line_when_the_session_ends() {
    let be = echo();
    let port = free_port();
    let c = conf(&format!(
        "log_format basic '$remote_addr $protocol $status $bytes_sent $bytes_received $upstream_addr $server_port';\n\
         server {{ listen 127.0.0.1:{port}; proxy_pass {be}; access_log logs/stream.log basic; }}"
    ));
    let p = common::Proxy::start(&c, port, "", &[]);
    let log = p.dir.path().join("logs/stream.log");
    let mut s = connect(port);
    round_trip(&mut s, b"0123456789");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap_or_default(),
        "",
        "written before the session ended"
    );
    drop(s);
    let line = poll("the access log line", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.ends_with('\n'))
    });
    assert_eq!(line, format!("127.0.0.1 TCP 200 10 10 {be} {port}\n"));
}

#[test]
fn refused_with_reasons() {
    for (conf_text, want) in [
        ("server { listen 127.0.0.1:1 udp; proxy_pass 127.0.0.1:2; }", "the \"udp\" parameter of the \"listen\" directive is not supported by ringproxy"),
        ("server { listen 127.0.0.1:1 ssl; proxy_pass 127.0.0.1:2; }", "the \"ssl\" parameter of the \"listen\" directive in \"stream\" is not supported by ringproxy"),
        ("server { listen 127.0.0.1:1; proxy_pass u; }", "no port in upstream \"u\""),
        ("server { listen 127.0.0.1:1; proxy_pass 127.0.0.1:2; proxy_bind 127.0.0.1; }", "\"proxy_bind\" directive is not supported by ringproxy"),
        ("server { listen 127.0.0.1:1; proxy_pass $nope; }", "unknown \"nope\" variable"),
        ("server { listen 127.0.0.1:1; proxy_pass 127.0.0.1:2; allow 127.0.0.1; }", "\"allow\" directive is not supported by ringproxy in stream"),
        ("server { listen 127.0.0.1:1; proxy_pass 127.0.0.1:2; proxy_ssl on; }", "\"proxy_ssl\" directive is not supported by ringproxy: TLS to stream backends is not implemented"),
        ("server { listen 127.0.0.1:1; proxy_pass 127.0.0.1:2; access_log logs/a.log; }", "log format is not specified"),
        ("server { listen 127.0.0.1:1; proxy_pass 127.0.0.1:2; }\nserver { listen 127.0.0.1:1; proxy_pass 127.0.0.1:2; }", "duplicate \"127.0.0.1:1\" address and port pair"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.conf"), conf(conf_text)).unwrap();
        let p = dir.path().to_str().unwrap();
        let out = common::run(&["-p", p, "-c", "t.conf", "-t"]);
        let err = common::stderr(&out);
        assert!(!out.status.success(), "{conf_text}");
        assert!(err.contains(want), "{conf_text}: {err}");
    }
}

/// A ClientHello for `name` offering `alpn`, as rustls sends it.
fn client_hello(name: &str, alpn: &[&str]) -> Vec<u8> {
    let mut cfg = (*common::tls::client(&[], &[])).clone();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut c = rustls::ClientConnection::new(Arc::new(cfg), server).unwrap();
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    out
}

// effect: ssl_preread map
#[test]
fn ssl_preread_routes_by_server_name() {
    let (a, b) = (tagged("A"), tagged("B"));
    let port = free_port();
    let c = conf(&format!(
        "map $ssl_preread_server_name $backend {{ a.test {a}; default {b}; }}\n\
         log_format pre '$ssl_preread_server_name|$ssl_preread_protocol|$ssl_preread_alpn_protocols|$upstream_addr';\n\
         server {{ listen 127.0.0.1:{port}; ssl_preread on; proxy_pass $backend; access_log logs/pre.log pre; }}"
    ));
    let p = common::Proxy::start(&c, port, "", &[]);
    for (name, tag) in [("a.test", b"A"), ("b.test", b"B")] {
        let hello = client_hello(name, &["h2", "http/1.1"]);
        let mut s = connect(port);
        s.write_all(&hello).unwrap();
        assert_eq!(&read_n(&mut s, 1), tag, "{name}");
        // The ClientHello reached the backend whole, ahead of anything else.
        assert_eq!(read_n(&mut s, hello.len()), hello, "{name}");
    }
    let log = p.dir.path().join("logs/pre.log");
    let text = poll("two log lines", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.lines().count() == 2)
    });
    assert_eq!(
        text,
        format!("a.test|TLSv1.3|h2,http/1.1|{a}\nb.test|TLSv1.3|h2,http/1.1|{b}\n")
    );
}

// effect: preread_buffer_size preread_timeout
#[test]
fn preread_buffer_and_timeout() {
    let (a, b) = (tagged("A"), tagged("B"));
    let (small, slow) = (free_port(), free_port());
    let c = conf(&format!(
        "map $ssl_preread_server_name $backend {{ a.test {a}; default {b}; }}\n\
         ssl_preread on;\n\
         server {{ listen 127.0.0.1:{small}; preread_buffer_size 64; proxy_pass $backend; }}\n\
         server {{ listen 127.0.0.1:{slow}; preread_timeout 1s; proxy_pass $backend; }}"
    ));
    let p = common::Proxy::start(&c, small, "", &[]);
    let hello = client_hello("a.test", &[]);
    let mut s = connect(small);
    s.write_all(&hello).unwrap();
    let (got, _) = until_closed(&mut s);
    assert!(got.is_empty(), "{got:?}");
    assert!(p.stderr().contains("preread buffer full"));
    // Half a ClientHello: once the preread time is up the session goes on without a name.
    let mut s = connect(slow);
    let start = Instant::now();
    s.write_all(&hello[..20]).unwrap();
    assert_eq!(&read_n(&mut s, 1), b"B");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(read_n(&mut s, 20), &hello[..20]);
}

// effect: stream
#[test]
fn reload_adds_a_listener_and_keeps_open_sessions() {
    let be = echo();
    let (p1, p2) = (free_port(), free_port());
    let one = conf(&format!(
        "server {{ listen 127.0.0.1:{p1}; proxy_pass {be}; }}"
    ));
    let p = common::Proxy::start(&one, p1, "", &[]);
    let mut kept = connect(p1);
    round_trip(&mut kept, b"before");
    assert!(TcpStream::connect(("127.0.0.1", p2)).is_err());
    let two = conf(&format!(
        "server {{ listen 127.0.0.1:{p1}; proxy_pass {be}; }}\n\
         server {{ listen 127.0.0.1:{p2}; proxy_pass {be}; }}"
    ));
    std::fs::write(p.dir.path().join("ringproxy.conf"), two).unwrap();
    ringproxy::sys::kill(p.pid(), libc::SIGHUP).unwrap();
    let mut s = poll("the new listener", || {
        TcpStream::connect(("127.0.0.1", p2)).ok()
    });
    s.set_read_timeout(Some(T)).unwrap();
    round_trip(&mut s, b"new");
    round_trip(&mut kept, b"after");
    // And a reload back removes it, the session on it still running.
    std::fs::write(p.dir.path().join("ringproxy.conf"), one).unwrap();
    ringproxy::sys::kill(p.pid(), libc::SIGHUP).unwrap();
    poll("the listener to go", || {
        TcpStream::connect(("127.0.0.1", p2)).err()
    });
    round_trip(&mut s, b"still");
    round_trip(&mut kept, b"and this");
}

#[test]
fn an_address_of_both_http_and_stream_fails_to_bind() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let text = format!(
        "events {{}}\nhttp {{ server {{ listen 127.0.0.1:{port}; }} }}\n\
         stream {{ server {{ listen 127.0.0.1:{port}; proxy_pass 127.0.0.1:1; }} }}\n"
    );
    std::fs::write(dir.path().join("t.conf"), text).unwrap();
    let p = dir.path().to_str().unwrap();
    let out = common::run(&["-p", p, "-c", "t.conf", "-g", "daemon off;"]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!(
            "bind() to 127.0.0.1:{port} failed (98: Address already in use)"
        )),
        "{err}"
    );
}

// effect: return map
#[test]
fn return_sends_a_value_and_closes() {
    let port = free_port();
    let c = conf(&format!(
        "map $remote_addr $m {{ ~^(?<first>\\d+)[.] ok; }}\n\
         server {{ listen 127.0.0.1:{port} proxy_protocol; \
         return \"$proxy_protocol_addr:$proxy_protocol_port $remote_addr $server_port $m:$first\"; }}"
    ));
    let _p = common::Proxy::start(&c, port, "", &[]);
    let mut s = connect(port);
    s.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n")
        .unwrap();
    let (got, _) = until_closed(&mut s);
    assert_eq!(
        String::from_utf8(got).unwrap(),
        format!("192.0.2.1:1234 127.0.0.1 {port} ok:127")
    );
}

/// Answers "bye" once the client has closed its side, then closes.
fn bye_on_eof() -> SocketAddr {
    backend(|mut s| {
        let mut buf = [0u8; 1024];
        while s.read(&mut buf).unwrap_or(0) > 0 {}
        let _ = s.write_all(b"bye");
    })
}

// effect: proxy_half_close
#[test]
fn half_close_only_with_proxy_half_close_on() {
    let be = bye_on_eof();
    let (on, off) = (free_port(), free_port());
    let c = conf(&format!(
        "server {{ listen 127.0.0.1:{on}; proxy_pass {be}; proxy_half_close on; }}\n\
         server {{ listen 127.0.0.1:{off}; proxy_pass {be}; }}"
    ));
    let _p = common::Proxy::start(&c, on, "", &[]);
    for (port, want) in [(on, &b"bye"[..]), (off, &b""[..])] {
        let mut s = connect(port);
        s.write_all(b"data").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let (got, _) = until_closed(&mut s);
        assert_eq!(got, want, "port {port}");
    }
}

#[test]
fn graceful_stop_waits_for_sessions_and_worker_shutdown_timeout_cuts_them() {
    let be = echo();
    let port = free_port();
    let c = conf(&format!(
        "server {{ listen 127.0.0.1:{port}; proxy_pass {be}; }}"
    ));
    let p = common::Proxy::start(&c, port, "", &[]);
    let mut s = connect(port);
    round_trip(&mut s, b"before");
    ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
    // Not accepting any more, the open session still served.
    poll("the listener to close", || {
        TcpStream::connect(("127.0.0.1", port)).err()
    });
    round_trip(&mut s, b"during the stop");
    drop(s);
    assert!(p.stop_with(0, T).success());

    let port = free_port();
    let c = format!(
        "worker_shutdown_timeout 1s;\n{}",
        conf(&format!(
            "server {{ listen 127.0.0.1:{port}; proxy_pass {be}; }}"
        ))
    );
    let p = common::Proxy::start(&c, port, "", &[]);
    let mut s = connect(port);
    round_trip(&mut s, b"before");
    let start = Instant::now();
    ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
    let (rest, _) = until_closed(&mut s);
    assert!(rest.is_empty());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(p.stop_with(0, T).success());
}
