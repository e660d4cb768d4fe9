//! `auth_request` and `auth_request_set` through a running ringproxy (one shard), as nginx
//! 1.22's `ngx_http_auth_request_module.c` answers (nginx-tests `auth_request.t`,
//! `auth_request_set.t`, `auth_request_satisfy.t`): the subrequest (`GET`, the request's
//! headers, no body) to an `internal` proxied location; its 2xx lets the request through, its
//! 401 (with its `WWW-Authenticate`) and 403 are the client's answer, anything else is a 500;
//! `auth_request_set` variables reach the backend; `satisfy any`; a WebSocket upgrade is
//! authorized before its tunnel opens.

mod common;
mod directive_kit;

use std::sync::{Arc, Mutex};

use common::{read_head, Echo, Proxy};
use directive_kit::{read_to_end_within, send, wait_for, Backend, End, T};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The auth service: answers by the request's `X-Token` and records every head it gets.
async fn auth_service(seen: Arc<Mutex<Vec<String>>>) -> Backend {
    Backend::start(move |mut s| {
        let seen = seen.clone();
        async move {
            while let Some(head) = read_head(&mut s).await {
                seen.lock().unwrap().push(head.clone());
                let token = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(": ")?;
                        n.eq_ignore_ascii_case("x-token").then_some(v)
                    })
                    .unwrap_or("");
                let r = match token {
                    "good" => "HTTP/1.1 204 No Content\r\nX-Auth-User: alice\r\nX-Auth-Role: admin\r\n\r\n".to_string(),
                    "bad" => "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"svc\"\r\nContent-Length: 0\r\n\r\n".to_string(),
                    "no" => "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_string(),
                    _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                };
                if s.write_all(r.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// The application: answers each request with the head it received as the body.
async fn app() -> Backend {
    Backend::start(|mut s| async move {
        while let Some(head) = read_head(&mut s).await {
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                head.len()
            );
            if s.write_all(r.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
}

struct Setup {
    proxy: Proxy,
    seen: Arc<Mutex<Vec<String>>>,
    _app: Backend,
    _auth: Backend,
    _echo: Echo,
}

async fn setup() -> Setup {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let auth = auth_service(seen.clone()).await;
    let app = app().await;
    let echo = Echo::start();
    let port = common::free_port();
    let (a, b, e) = (app.addr, auth.addr, echo.addr);
    let conf = format!(
        "worker_processes 1;
error_log logs/error.log info;
events {{}}
http {{
    access_log off;
    upstream auth {{ server {b}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /auth;
            auth_request_set $user $upstream_http_x_auth_user;
            auth_request_set $who \"$user/$sent_http_x_auth_role\";
            proxy_pass http://{a};
            proxy_set_header X-User $user;
            proxy_set_header X-Who $who;
        }}
        location /open/ {{ auth_request off; proxy_pass http://{a}; }}
        location /any/ {{ satisfy any; allow 127.0.0.1; deny all; auth_request /auth; proxy_pass http://{a}; }}
        location /ws/ {{
            auth_request /auth;
            proxy_pass http://{e};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection upgrade;
        }}
        location = /auth {{
            internal;
            proxy_pass http://auth;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header X-Original-URI $request_uri;
        }}
    }}
}}
"
    );
    Setup {
        proxy: Proxy::start(&conf, port, "", &[]),
        seen,
        _app: app,
        _auth: auth,
        _echo: echo,
    }
}

async fn request(p: &Proxy, raw: &str) -> String {
    let mut s = send(p.port, raw.as_bytes()).await;
    let (got, end) = read_to_end_within(&mut s, T).await;
    assert_eq!(end, Some(End::Eof), "not closed in time");
    String::from_utf8_lossy(&got).into_owned()
}

async fn get(p: &Proxy, path: &str, token: &str) -> String {
    let raw =
        format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Token: {token}\r\n\r\n");
    request(p, &raw).await
}

fn status(resp: &str) -> &str {
    resp.get(9..12).unwrap_or("")
}

// effect: auth_request
/// A 2xx lets the request through; 401 comes back with the service's challenge, 403 as is,
/// anything else as 500 (logged). The subrequest is a GET of the auth URI with the client's
/// headers and without its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subrequest_decides() {
    let s = setup().await;
    let p = &s.proxy;
    let body = "x".repeat(10);
    let raw = format!(
        "POST /app?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Token: good\r\nContent-Length: 10\r\n\r\n{body}"
    );
    let r = request(p, &raw).await;
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains("POST /app?q=1 HTTP/1.0\r\n"), "{r}");
    let sub = s.seen.lock().unwrap().last().cloned().unwrap();
    assert!(sub.starts_with("GET /auth HTTP/1.1\r\n"), "{sub}");
    assert!(sub.contains("X-Token: good\r\n"), "{sub}");
    assert!(sub.contains("X-Original-URI: /app?q=1\r\n"), "{sub}");
    assert!(
        !sub.to_ascii_lowercase().contains("content-length"),
        "{sub}"
    );

    let r = get(p, "/app", "bad").await;
    assert_eq!(status(&r), "401", "{r}");
    assert!(
        r.contains("\r\nWWW-Authenticate: Bearer realm=\"svc\"\r\n"),
        "{r}"
    );
    let r = get(p, "/app", "no").await;
    assert_eq!(status(&r), "403", "{r}");
    assert!(!r.contains("WWW-Authenticate"), "{r}");
    let r = get(p, "/app", "other").await;
    assert_eq!(status(&r), "500", "{r}");
    let r = get(p, "/open/x", "other").await;
    assert_eq!(status(&r), "200", "{r}");
    // The internal location itself is not reachable from outside.
    let r = get(p, "/auth", "good").await;
    assert_eq!(status(&r), "404", "{r}");
    let log = p.dir.path().join("logs/error.log");
    wait_for("the unexpected status line", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("auth request unexpected status: 404, client: 127.0.0.1")
    })
    .await;
}

// effect: auth_request_set
/// Variables set from the subrequest's response headers (`$upstream_http_*`,
/// `$sent_http_*`, one set from another) reach the backend in request headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_from_the_answer() {
    let s = setup().await;
    let r = get(&s.proxy, "/app", "good").await;
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains("X-User: alice\r\n"), "{r}");
    assert!(r.contains("X-Who: alice/admin\r\n"), "{r}");
}

// effect: satisfy
/// `satisfy any`: an address rule that allows is enough (no subrequest); otherwise the
/// subrequest decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satisfy_any_skips_the_subrequest() {
    let s = setup().await;
    let r = get(&s.proxy, "/any/x", "no").await;
    assert_eq!(status(&r), "200", "{r}");
    assert!(s.seen.lock().unwrap().is_empty());
}

// effect: auth_request
/// A WebSocket upgrade goes through the subrequest before its tunnel opens: refused without
/// the token, echoed with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_behind_auth_request() {
    let s = setup().await;
    let port = s.proxy.port;
    let upgrade = |token: &str| {
        let mut r = format!("ws://127.0.0.1:{port}/ws/x")
            .into_client_request()
            .unwrap();
        r.headers_mut().insert("x-token", token.parse().unwrap());
        r
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let refused = tokio::time::timeout(T, tokio_tungstenite::client_async(upgrade("no"), tcp))
        .await
        .expect("an answer in time");
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403, "{}", s.proxy.stderr())
        }
        other => panic!("the upgrade was not refused: {:?}", other.map(|(_, r)| r)),
    }
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut ws, resp) =
        tokio::time::timeout(T, tokio_tungstenite::client_async(upgrade("good"), tcp))
            .await
            .expect("upgrade in time")
            .expect("upgrade");
    assert_eq!(resp.status(), 101);
    common::echo_each(&mut ws, [Message::text("behind auth")], "ws").await;
    let subs = s.seen.lock().unwrap().clone();
    assert_eq!(subs.len(), 2, "{subs:?}");
    assert!(
        subs.iter()
            .all(|h| !h.to_ascii_lowercase().contains("upgrade")),
        "{subs:?}"
    );
}
