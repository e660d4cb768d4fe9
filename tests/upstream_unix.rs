//! Upstream peers on unix stream sockets, through a running ringproxy on both io drivers:
//! `server unix:PATH` in an `upstream` and `proxy_pass http://unix:PATH:/uri` carry plain
//! requests and WebSocket tunnels, `$upstream_addr` names the socket as nginx does
//! (`unix:PATH`), `$proxy_host` is `localhost`, and a socket nobody listens on is a 502 with
//! nginx's error log line.

mod common;

use std::path::Path;
use std::time::Duration;

use common::echo::UnixEcho;
use common::http1::exchange;
use common::Proxy;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(20);

fn conf(driver: &str, port: u16, sock: &Path) -> String {
    let sock = sock.display();
    format!(
        "error_log logs/error.log notice;
events {{ use {driver}; }}
http {{
    upstream u {{ server unix:{sock}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://u;
            add_header X-Addr $upstream_addr always;
        }}
        location /ws {{
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection upgrade;
        }}
        location /p/ {{
            proxy_pass http://unix:{sock}:/sub/;
            add_header X-Addr $upstream_addr always;
        }}
        location /missing {{
            proxy_pass http://unix:{sock}.absent;
        }}
    }}
}}
"
    )
}

fn get(port: u16, path: &str) -> common::http1::Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    exchange(port, raw.as_bytes(), T)
}

#[test]
fn unix_peers_carry_requests_and_tunnels_on_both_drivers() {
    for driver in ["epoll", "io_uring"] {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("backend.sock");
        let _backend = UnixEcho::start(&sock);
        let port = common::free_port();
        let mut proxy = Proxy::start(&conf(driver, port, &sock), port, "", &[]);
        proxy.allow_log("connect() to unix:");
        assert_eq!(proxy.event_method(), driver);
        let addr = format!("unix:{}", sock.display());

        let r = get(port, "/page");
        assert_eq!(r.code, 200, "{driver}: {}", r.text());
        assert_eq!(r.body, common::echo::ANSWER, "{driver}");
        assert_eq!(r.get("x-addr"), Some(addr.as_str()), "{driver}");

        // The URI after the path's `:` replaces the location's prefix; Host is `localhost`.
        let r = get(port, "/p/headers");
        assert_eq!(r.code, 200, "{driver}: {}", r.text());
        assert_eq!(r.get("x-addr"), Some(addr.as_str()), "{driver}");
        let head = r.text();
        assert!(
            head.starts_with("GET /sub/headers HTTP/1.0\r\n"),
            "{driver}: {head}"
        );
        assert!(head.contains("\r\nHost: localhost\r\n"), "{driver}: {head}");

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let url = format!("ws://127.0.0.1:{port}/ws");
            let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url))
                .await
                .expect("upgrade in time")
                .expect("upgrade");
            let messages = [
                Message::text("hello"),
                Message::binary(common::big(1 << 20)),
            ];
            common::echo_each(&mut ws, messages, driver).await;
        });

        let r = get(port, "/missing");
        assert_eq!(r.code, 502, "{driver}");
        let log = proxy.stderr();
        let line = format!(
            "connect() to unix:{}.absent failed (2: No such file or directory) while connecting to upstream",
            sock.display()
        );
        assert!(log.contains(&line), "{driver}: {log}");
    }
}
