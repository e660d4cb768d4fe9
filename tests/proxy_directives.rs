//! Proxy directives through a running ringproxy (one shard) against scripted backends:
//! `proxy_next_upstream_timeout` stops trying further peers once its time is spent, and
//! `proxy_ignore_client_abort off` (nginx's default) closes the upstream connection when the
//! client goes away before the response head, `on` lets the upstream request finish.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(20);

fn proxy(servers: &[SocketAddr], location: &str) -> Proxy {
    let port = common::free_port();
    let servers: String = servers
        .iter()
        .map(|a| format!("        server {a};\n"))
        .collect();
    let conf = format!(
        "worker_processes 1;\nerror_log logs/error.log info;\nevents {{}}\nhttp {{\n    upstream b {{\n{servers}    }}\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            proxy_pass http://b;\n            {location}\n        }}\n    }}\n}}\n"
    );
    Proxy::start(&conf, port, "", &[])
}

/// A listener whose accept queue is full: further SYNs are dropped, so connecting to it times
/// out. The returned values keep it that way while alive.
fn black_hole() -> (SocketAddr, socket2::Socket, std::net::TcpStream) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap();
    (addr, s, filler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_next_upstream_timeout_stops_the_retries() {
    let holes = [black_hole(), black_hole(), black_hole()];
    let addrs: Vec<SocketAddr> = holes.iter().map(|h| h.0).collect();
    // Each connect times out after 1s; after the second, 1.5s are spent: no third try.
    let p = proxy(
        &addrs,
        "proxy_connect_timeout 1s; proxy_next_upstream_timeout 1500ms;",
    );
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 504"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let tries = p
        .stderr()
        .matches("upstream timed out (110: Connection timed out) while connecting to upstream")
        .count();
    assert_eq!(tries, 2, "{}", p.stderr());
}

async fn read_until_head_end(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_abort_closes_the_upstream_connection_unless_ignored() {
    for ignore in [false, true] {
        // A backend that reads the request and holds the connection.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let flag = if ignore { "on" } else { "off" };
        let p = proxy(
            &[addr],
            &format!("proxy_ignore_client_abort {flag}; proxy_read_timeout 30s;"),
        );
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let (mut up, _) = tokio::time::timeout(T, l.accept()).await.unwrap().unwrap();
        read_until_head_end(&mut up).await;
        drop(c);
        let mut b = [0u8; 1];
        if ignore {
            // The upstream request goes on: nothing from the proxy for a while, then the
            // response is taken (and dropped, the client is gone).
            let r = tokio::time::timeout(Duration::from_millis(1500), up.read(&mut b)).await;
            assert!(
                r.is_err(),
                "the proxy closed the upstream connection: {r:?}"
            );
            up.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
        } else {
            let n = tokio::time::timeout(T, up.read(&mut b))
                .await
                .expect("the proxy closes the upstream connection")
                .unwrap_or(0);
            assert_eq!(n, 0, "end of stream from the proxy");
            let log = p.stderr();
            assert!(
                log.contains("client prematurely closed connection"),
                "{log}"
            );
        }
    }
}
