//! nginx's limit_req and limit_conn modules: requests over a zone's rate are delayed or refused
//! with `limit_req_status`, a key holds at most `limit_conn` requests at once (a WebSocket
//! tunnel holds its slot until it closes, across a reload), dry runs only log and set the
//! variables, and the configuration errors are nginx's.

mod common;

use std::time::{Duration, Instant};

use common::http1::{exchange, Response};
use common::{Echo, Proxy};

const T: Duration = Duration::from_secs(20);

fn get(port: u16, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: limits.test\r\nConnection: close\r\n\r\n");
    exchange(port, raw.as_bytes(), T)
}

fn start(http: &str) -> Proxy {
    let port = common::free_port();
    let conf = format!(
        "error_log logs/error.log info;\nevents {{}}\nhttp {{ access_log off;\n{}\n}}\n",
        http.replace("{port}", &port.to_string())
    );
    let p = Proxy::start(&conf, port, "", &[]);
    std::fs::create_dir_all(p.dir.path().join("html")).unwrap();
    std::fs::write(p.dir.path().join("html/index.html"), "hello\n").unwrap();
    p
}

/// Whether the error log has a line at `level` with `text`.
fn logged(p: &Proxy, level: &str, text: &str) {
    let log = p.stderr();
    assert!(
        log.lines().any(|l| l.contains(level) && l.contains(text)),
        "no {level} {text:?} in\n{log}"
    );
}

// effect: limit_req_zone limit_req limit_req_status
/// One request a second without burst: the second at once is refused with the status set;
/// another key (zone keyed by a header here) is not; `$limit_req_status` tells which.
#[test]
fn requests_over_the_rate_are_refused() {
    let p = start(
        "limit_req_zone $http_x_key zone=one:64k rate=1r/s;
         server { listen 127.0.0.1:{port};
           add_header X-Limit $limit_req_status always;
           location / { limit_req zone=one; }
           location /teapot { limit_req zone=one; limit_req_status 429; } }",
    );
    let key = |path: &str, k: &str| {
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: limits.test\r\nX-Key: {k}\r\nConnection: close\r\n\r\n"
        );
        exchange(p.port, raw.as_bytes(), T)
    };
    let r = key("/", "a");
    assert_eq!(r.code, 200, "{}", r.text());
    assert_eq!(r.get("x-limit"), Some("PASSED"));
    let r = key("/", "a");
    assert_eq!(r.code, 503, "{}", r.text());
    assert_eq!(r.get("x-limit"), Some("REJECTED"));
    assert_eq!(key("/", "b").code, 200);
    assert_eq!(key("/teapot", "b").code, 429);
    // No key, no limit.
    for _ in 0..3 {
        let r = get(p.port, "/");
        assert_eq!(r.code, 200);
        assert_eq!(r.get("x-limit"), None);
    }
    logged(&p, "[error]", "limiting requests, excess: ");
    logged(
        &p,
        "[error]",
        "by zone \"one\", client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", host: \"limits.test\"",
    );
}

// effect: limit_req_log_level
/// `burst` queues requests: within it they are delayed (at least the time the excess takes to
/// drain) and logged one level below `limit_req_log_level`; `nodelay` serves them at once;
/// past the burst they are refused.
#[test]
fn burst_delays_and_nodelay_does_not() {
    let p = start(
        "limit_req_zone $server_port zone=slow:64k rate=2r/s;
         limit_req_zone $server_port zone=fast:64k rate=2r/s;
         server { listen 127.0.0.1:{port};
           add_header X-Limit $limit_req_status always;
           location / { limit_req zone=slow burst=1; limit_req_log_level warn; }
           location /fast { limit_req zone=fast burst=1 nodelay; } }",
    );
    assert_eq!(get(p.port, "/").code, 200);
    let t = Instant::now();
    let r = get(p.port, "/");
    assert_eq!(r.code, 200);
    assert_eq!(r.get("x-limit"), Some("DELAYED"));
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    logged(&p, "[notice]", "delaying request, excess: ");
    logged(&p, "[notice]", ", by zone \"slow\", client: 127.0.0.1");
    std::fs::create_dir_all(p.dir.path().join("html/fast")).unwrap();
    std::fs::write(p.dir.path().join("html/fast/index.html"), "fast\n").unwrap();
    assert_eq!(get(p.port, "/fast/").get("x-limit"), Some("PASSED"));
    assert_eq!(get(p.port, "/fast/").get("x-limit"), Some("PASSED"));
    let r = get(p.port, "/fast/");
    assert_eq!(r.code, 503);
    logged(&p, "[error]", " by zone \"fast\", client: ");
}

// effect: limit_req_dry_run
/// Dry runs serve everything, log with ", dry run" and set the `_DRY_RUN` statuses.
#[test]
fn dry_runs_only_log() {
    let p = start(
        "limit_req_zone $server_port zone=one:64k rate=1r/m;
         server { listen 127.0.0.1:{port};
           add_header X-Limit $limit_req_status always;
           limit_req zone=one; limit_req_dry_run on; }",
    );
    assert_eq!(get(p.port, "/").code, 200);
    let r = get(p.port, "/");
    assert_eq!(r.code, 200);
    assert_eq!(r.get("x-limit"), Some("REJECTED_DRY_RUN"));
    logged(&p, "[error]", "limiting requests, dry run, excess: ");
}

// effect: limit_conn_zone limit_conn limit_conn_status limit_conn_log_level limit_conn_dry_run
/// `limit_conn addr 1`: an open WebSocket tunnel holds the slot, so a second upgrade from the
/// same address is refused (a dry run in another location serves it and says so), also after
/// a reload that keeps the zone; once the first closes, a new one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_holds_its_limit_conn_slot_until_it_closes() {
    let echo = Echo::start();
    let conf = |status: u16| {
        format!(
            "limit_conn_zone $binary_remote_addr zone=addr:64k;
             map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
             server {{ listen 127.0.0.1:{{port}};
               location / {{ limit_conn addr 1; limit_conn_status {status};
                 limit_conn_log_level warn;
                 proxy_pass http://{};
                 proxy_http_version 1.1;
                 proxy_set_header Upgrade $http_upgrade;
                 proxy_set_header Connection $connection_upgrade; }}
               location /dry {{ limit_conn addr 1; limit_conn_dry_run on;
                 add_header X-Conn $limit_conn_status always;
                 proxy_pass http://{}; }} }}",
            echo.addr, echo.addr
        )
    };
    let p = start(&conf(503));
    let port = p.port;
    let first = common::open_ws(port).await;
    let refused = |status: u16| async move {
        let url = format!("ws://127.0.0.1:{port}/");
        match tokio::time::timeout(T, tokio_tungstenite::connect_async(url.as_str()))
            .await
            .expect("an answer in time")
        {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), status)
            }
            other => panic!("expected {status}, got {:?}", other.map(|_| ())),
        }
    };
    refused(503).await;
    let r = tokio::task::spawn_blocking(move || get(port, "/dry"))
        .await
        .unwrap();
    assert_eq!(r.code, 200, "{}", r.text());
    assert_eq!(r.get("x-conn"), Some("REJECTED_DRY_RUN"));
    logged(
        &p,
        "[error]",
        "limiting connections, dry run, by zone \"addr\"",
    );
    // A reload that keeps the zone (and changes the status) keeps the count.
    let text = format!(
        "error_log logs/error.log info;\nevents {{}}\nhttp {{ access_log off;\n{}\n}}\n",
        conf(429).replace("{port}", &port.to_string())
    );
    std::fs::write(p.dir.path().join("ringproxy.conf"), text).unwrap();
    unsafe_free_hup(p.pid());
    let deadline = Instant::now() + T;
    loop {
        let url = format!("ws://127.0.0.1:{port}/");
        let status = match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            other => panic!("the slot is held: {:?}", other.map(|_| ())),
        };
        if status == 429 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "no reload in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    logged(&p, "[warn]", "limiting connections by zone \"addr\"");
    drop(first);
    // The tunnel ends when the proxy sees the close: poll for the slot.
    let deadline = Instant::now() + T;
    loop {
        let url = format!("ws://127.0.0.1:{port}/");
        if tokio_tungstenite::connect_async(url.as_str()).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGHUP to the proxy (a reload).
fn unsafe_free_hup(pid: i32) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// nginx's configuration errors.
#[test]
fn configuration_errors_are_nginx_s() {
    for (http, want) in [
        (
            "server { listen 127.0.0.1:1; limit_req zone=nope; }",
            "zero size shared memory zone \"nope\"",
        ),
        (
            "limit_req_zone $remote_addr zone=a:64k rate=0r/s;",
            "invalid rate \"rate=0r/s\"",
        ),
        (
            "limit_req_zone $remote_addr zone=a:4k rate=1r/s;",
            "zone \"zone=a:4k\" is too small",
        ),
        (
            "limit_req_zone $remote_addr rate=1r/s zone=a;",
            "invalid zone size \"zone=a\"",
        ),
        (
            "limit_conn_zone $remote_addr zone=a:64k; limit_req_zone $remote_addr zone=a:64k rate=1r/s;",
            "the shared memory zone \"a\" is already declared for a different use",
        ),
        (
            "limit_conn_zone $remote_addr zone=a:64k; server { listen 127.0.0.1:1; limit_conn a 0; }",
            "invalid number of connections \"0\"",
        ),
        (
            "limit_req_zone $remote_addr zone=a:64k rate=1r/s; limit_req zone=a; limit_req zone=a burst=2;",
            "\"limit_req\" directive is duplicate",
        ),
        ("limit_req_status 200;", "value must be between 400 and 599"),
        ("limit_conn_log_level debug;", "invalid value \"debug\""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("ringproxy.conf");
        std::fs::write(&conf, format!("events {{}}\nhttp {{\n{http}\n}}\n")).unwrap();
        let out = common::run(&["-t", "-p", dir.path().to_str().unwrap(), "-c", "ringproxy.conf"]);
        let err = common::stderr(&out);
        assert!(!out.status.success(), "{http}: {err}");
        assert!(err.contains(&format!("[emerg] {want}")), "{http}: {err}");
    }
}
