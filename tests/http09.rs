//! HTTP/0.9 as nginx 1.22.1 answered it in runs made by hand (the expectations are ringproxy's
//! own; no script repeats those runs): a `GET /path` line alone is
//! served as a GET, and the answer is the bare body, no status line and no head, for a
//! `return`, a proxied response and an error page alike; any other method gets the bare 400
//! page. The connection closes after the answer.

mod common;

use common::{roundtrip as raw, Echo, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http09_gets_the_bare_body() {
    let echo = Echo::start();
    let port = common::free_port();
    let dead = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n access_log off;\n server {{\n listen 127.0.0.1:{port};\n \
         location / {{ return 200 \"hello\\n\"; }}\n \
         location /x {{ proxy_pass http://127.0.0.1:{dead}; }}\n \
         location /headers {{ proxy_pass http://{}; }}\n }}\n}}\n",
        echo.addr
    );
    let proxy = Proxy::start(&conf, port, "", &[]);
    // nginx 1.22.1: b"hello\n"
    assert_eq!(raw(proxy.port, b"GET /\r\n").await, "hello\n");
    // A bare LF ends the line too.
    assert_eq!(raw(proxy.port, b"GET /\n").await, "hello\n");
    // nginx 1.22.1: the 502 page alone, starting "<html>\r\n<head><title>502 Bad Gateway".
    let page = raw(proxy.port, b"GET /x\r\n").await;
    assert!(
        page.starts_with("<html>\r\n<head><title>502 Bad Gateway</title></head>"),
        "{page:?}"
    );
    // A proxied answer: the backend's body (its headers mirror), no status line.
    let body = raw(proxy.port, b"GET /headers\r\n").await;
    assert!(!body.starts_with("HTTP/"), "{body:?}");
    assert!(
        body.to_ascii_lowercase().contains("connection: close"),
        "{body:?}"
    );
    // nginx 1.22.1: the 400 page alone.
    let page = raw(proxy.port, b"POST /\r\n").await;
    assert!(
        page.starts_with("<html>\r\n<head><title>400 Bad Request</title></head>"),
        "{page:?}"
    );
}
