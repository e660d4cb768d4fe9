//! `proxy::request` edge cases beyond the nginx byte-for-byte table
//! (`tests/nginx_upstream_requests.rs`), and `proxy::response`.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::model::{Config, Location};
use crate::http::script::{run, Level, Outcome};
use crate::http::tests::{conf, conn, with_head};
use crate::http::vars::RequestVars;
use crate::proxy::request::*;
use crate::proxy::response::*;

const CONF: &str = r#"events {} http {
    upstream backend { server 127.0.0.1:9001; }
    server { listen 8080;
        location /plain { proxy_pass http://backend; proxy_http_version 1.1; }
        location /old { proxy_pass http://backend; }
        location /nohdr { proxy_pass http://backend; proxy_pass_request_headers off;
            proxy_set_header X-Only yes; }
        location /part/ { proxy_pass http://backend/new/; rewrite ^/part/skip/(.*) /s/$1 break; }
        location /unsafe { proxy_pass http://backend; proxy_set_header X-U $uri; }
        location /override { proxy_pass http://127.0.0.1:9001; proxy_set_header Connection "";
            proxy_set_header Content-Length $http_x_len; proxy_set_header Host ""; }
        location /nobody { proxy_pass http://backend; proxy_pass_request_body off; }
        location = /exact { proxy_pass http://backend/e; }
    }
}"#;

fn location<'c>(cfg: &'c Config, uri: &str) -> &'c Location {
    cfg.http.as_ref().unwrap().servers[0]
        .locations
        .iter()
        .filter(|l| match &l.matcher {
            crate::config::model::LocationMatch::Prefix { path, .. } => {
                uri.starts_with(path.as_str())
            }
            crate::config::model::LocationMatch::Exact(p) => uri == p,
            _ => false,
        })
        .max_by_key(|l| format!("{:?}", l.matcher).len())
        .unwrap()
}

fn build(req: &str, uri: &str, body: UpstreamBody) -> Result<String, BuildError> {
    let cfg = conf(CONF);
    let c = conn();
    with_head(req.as_bytes(), |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Owned(uri.into()), SystemTime::now());
        let loc = location(&cfg, uri);
        let o = run(&loc.conf.script, Level::Location, &mut v);
        assert!(matches!(o, Outcome::Continue | Outcome::Break), "{o:?}");
        let mut out = b"junk".to_vec();
        let pass = loc.conf.proxy_pass.as_ref().unwrap();
        build_request(&mut v, &loc.conf, pass, &loc.matcher, body, &mut out)?;
        assert!(out.starts_with(b"junk"), "appends");
        Ok(String::from_utf8(out[4..].to_vec()).unwrap())
    })
}

const GET: &str = "GET /plain/x?q=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nX_Under: 1\r\nTE: trailers\r\nAccept: */*\r\n\r\n";

// effect: proxy_http_version
#[test]
fn defaults_and_client_headers() {
    assert_eq!(
        build(GET, "/plain/x", UpstreamBody::None).unwrap(),
        "GET /plain/x?q=1 HTTP/1.1\r\nHost: backend\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    let req = GET.replace("/plain", "/old");
    assert!(build(&req, "/old/x", UpstreamBody::None)
        .unwrap()
        .starts_with("GET /old/x?q=1 HTTP/1.0\r\n"));
}

#[test]
fn chunked_bodies_need_http11() {
    let req = "POST /plain HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        build(req, "/plain", UpstreamBody::Chunked).unwrap(),
        "POST /plain HTTP/1.1\r\nHost: backend\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let req = req.replace("/plain", "/old");
    assert_eq!(
        build(&req, "/old", UpstreamBody::Chunked),
        Err(BuildError::ChunkedToHttp10)
    );
    assert!(build(&req, "/old", UpstreamBody::Length(5))
        .unwrap()
        .contains("\r\nContent-Length: 5\r\n"));
    let req = req.replace("/old", "/nobody");
    assert!(!build(&req, "/nobody", UpstreamBody::Length(5))
        .unwrap()
        .contains("Content-Length"));
}

// effect: proxy_pass_request_headers proxy_set_header
#[test]
fn request_headers_off_sends_only_configured_ones() {
    let req = GET.replace("/plain", "/nohdr");
    assert_eq!(
        build(&req, "/nohdr/x", UpstreamBody::None).unwrap(),
        "GET /nohdr/x?q=1 HTTP/1.0\r\nX-Only: yes\r\nHost: backend\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn uri_part_replaces_the_prefix_unless_rewritten_with_break() {
    let req = "GET /part/a%20b?z HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(build(req, "/part/a b", UpstreamBody::None)
        .unwrap()
        .starts_with("GET /new/a%20b?z HTTP/1.0\r\n"));
    let req = "GET /part/x HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(build(req, "/part/x", UpstreamBody::None)
        .unwrap()
        .starts_with("GET /new/x HTTP/1.0\r\n"));
    let req = "GET /part/skip/q?z HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(build(req, "/part/skip/q", UpstreamBody::None)
        .unwrap()
        .starts_with("GET /s/q?z HTTP/1.0\r\n"));
    let req = "GET /exact?a HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(build(req, "/exact", UpstreamBody::None)
        .unwrap()
        .starts_with("GET /e?a HTTP/1.0\r\n"));
}

#[test]
fn empty_values_drop_the_header_and_framing_is_the_proxys() {
    let req = "POST /override HTTP/1.1\r\nHost: h\r\nConnection: x\r\nX-Len: 999\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(
        build(req, "/override", UpstreamBody::Length(3)).unwrap(),
        "POST /override HTTP/1.0\r\nContent-Length: 3\r\nX-Len: 999\r\n\r\n"
    );
}

#[test]
fn decoded_crlf_in_a_value_is_refused() {
    let req = "GET /unsafe%0d%0aX:%20y HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(
        build(req, "/unsafe\r\nX: y", UpstreamBody::None),
        Err(BuildError::UnsafeValue("X-U".into()))
    );
}

fn head(
    status: u16,
    headers: &[(&str, &[u8])],
    conf_text: &str,
    framing: ClientFraming,
    keep_alive: bool,
) -> String {
    let cfg = conf(&format!(
        "events {{}} http {{ {conf_text} server {{ listen 8080; }} }}"
    ));
    let lc = &cfg.http.as_ref().unwrap().servers[0].conf;
    let opts = ClientOptions {
        framing,
        keep_alive,
        now: UNIX_EPOCH + Duration::from_secs(971_186_136),
        extras: &Default::default(),
    };
    let mut out = Vec::new();
    write_client_head(status, "OK", headers, lc, &opts, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

const DATE: &str = "Date: Tue, 10 Oct 2000 13:55:36 GMT\r\n";

// effect: proxy_hide_header proxy_pass_header
#[test]
fn response_head_in_nginx_order_with_default_hidden_headers() {
    let up: &[(&str, &[u8])] = &[
        ("Server", b"backend"),
        ("Date", b"yesterday"),
        ("X-Custom", b"1"),
        ("Content-Length", b"5"),
        ("Connection", b"keep-alive, X-Hop"),
        ("X-Hop", b"h"),
        ("Keep-Alive", b"timeout=5"),
        ("Transfer-Encoding", b"chunked"),
        ("X-Accel-Redirect", b"/internal"),
        ("Location", b"/l"),
        ("Content-Type", b"text/plain"),
        ("Upgrade", b"h2c"),
        ("X-Powered-By", b"php"),
    ];
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(
        head(
            200,
            up,
            "proxy_hide_header X-Powered-By;",
            ClientFraming::Length(5),
            true
        ),
        format!(
            "HTTP/1.1 200 OK\r\nServer: ringproxy/{v}\r\n{DATE}Content-Type: text/plain\r\n\
             Content-Length: 5\r\nLocation: /l\r\nConnection: keep-alive\r\nX-Custom: 1\r\n\r\n"
        )
    );
    assert_eq!(
        head(
            200,
            up,
            "server_tokens off; proxy_pass_header Server; proxy_pass_header X-Accel-Redirect; keepalive_timeout 75s 60s;",
            ClientFraming::Chunked,
            true
        ),
        format!(
            "HTTP/1.1 200 OK\r\n{DATE}Content-Type: text/plain\r\nLocation: /l\r\n\
             Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\
             Server: backend\r\nX-Custom: 1\r\nX-Accel-Redirect: /internal\r\nX-Powered-By: php\r\n\r\n"
        )
    );
}

#[test]
fn switching_protocols_passes_upgrade() {
    let up: &[(&str, &[u8])] = &[
        ("Upgrade", b"websocket"),
        ("Connection", b"Upgrade"),
        ("Sec-WebSocket-Accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ];
    assert_eq!(
        head(101, up, "server_tokens off;", ClientFraming::None, false),
        format!(
            "HTTP/1.1 101 OK\r\nServer: ringproxy\r\n{DATE}Connection: upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        )
    );
    let plain = head(200, up, "", ClientFraming::Close, false);
    assert!(
        plain.contains("Connection: close\r\nSec-WebSocket-Accept"),
        "{plain}"
    );
    assert!(!plain.contains("Upgrade"), "{plain}");
}
