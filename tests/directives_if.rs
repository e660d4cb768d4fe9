//! The rewrite module's `if` and `limit_except` (with the access module's `allow`/`deny`)
//! through a running ringproxy, in the configurations real deployments use them for. The
//! expected answers are nginx 1.22's for the same configuration and requests.

mod common;

use std::time::Duration;

use common::echo::Echo;
use common::http1::{exchange, Response};
use common::Proxy;

const T: Duration = Duration::from_secs(20);

/// Sends `method target` with `host` and `extra` header lines on a new connection, reads to the
/// close.
fn send(port: u16, method: &str, target: &str, host: &str, extra: &str) -> Response {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    exchange(port, raw.as_bytes(), T)
}

fn get(port: u16, target: &str, host: &str, extra: &str) -> Response {
    send(port, "GET", target, host, extra)
}

/// ringproxy with one server on a free port holding `locations`, without an access log.
fn one_server(locations: &str) -> (Proxy, u16) {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n{locations}\n    }}\n}}\n"
    );
    (Proxy::start(&conf, port, "", &[]), port)
}

// effect: if
#[test]
fn if_in_server_and_location_as_real_configurations_use_it() {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::create_dir_all(dir.path().join("html/files")).unwrap();
    std::fs::write(dir.path().join("html/files/a.txt"), "file a\n").unwrap();
    let conf = format!(
        r#"events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        server_name plain.example;
        if ($scheme = http) {{ return 301 https://$host$request_uri; }}
        location / {{ return 200 "not redirected"; }}
    }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name _;
        root html;
        if ($host ~* ^www\.(.*)$) {{ return 301 https://$1$request_uri; }}
        location /cors {{
            if ($request_method = OPTIONS) {{
                add_header Access-Control-Allow-Origin *;
                return 204;
            }}
            return 200 "cors $request_method";
        }}
        location /ua {{
            if ($http_user_agent ~ MSIE) {{ return 403; }}
            return 200 "welcome";
        }}
        location /files/ {{
            if (!-f $request_filename) {{ rewrite ^/files/(.*)$ /missing/$1 last; }}
        }}
        location /missing/ {{ return 200 "missing $uri"; }}
        location /ws {{
            if ($http_upgrade = websocket) {{ return 200 "would tunnel"; }}
            return 200 "plain";
        }}
        location /cond {{
            set $v "";
            if ($arg_a) {{ set $v "${{v}}a"; }}
            if ($arg_b != x) {{ set $v "${{v}}b"; }}
            if ($arg_c !~* ^no) {{ set $v "${{v}}c"; }}
            if (-d $document_root) {{ set $v "${{v}}d"; }}
            if (!-e $document_root/nothing) {{ set $v "${{v}}e"; }}
            if (-x $document_root) {{ set $v "${{v}}x"; }}
            if ($arg_d ~ ^(\d+)-(\d+)$) {{ set $v "${{v}}[$2 $1]"; }}
            return 200 "$v";
        }}
        location /stop {{
            if ($arg_stop) {{ break; }}
            return 200 "not stopped";
        }}
    }}
}}
"#
    );
    std::fs::write(dir.path().join("ringproxy.conf"), conf).unwrap();
    let _p = Proxy::start_in(dir, port, "", &[]);

    let r = get(port, "/a/b?q=1", "plain.example", "");
    assert_eq!(r.code, 301);
    assert_eq!(r.get("location"), Some("https://plain.example/a/b?q=1"));

    let r = get(port, "/p?x=1", "www.Example.org", "");
    assert_eq!(r.code, 301);
    assert_eq!(r.get("location"), Some("https://example.org/p?x=1"));
    assert_eq!(get(port, "/ua", "example.org", "").text(), "welcome");

    let r = send(port, "OPTIONS", "/cors", "a", "");
    assert_eq!(r.code, 204);
    assert_eq!(r.get("access-control-allow-origin"), Some("*"));
    let r = get(port, "/cors", "a", "");
    assert_eq!((r.code, r.text().as_str()), (200, "cors GET"));
    assert_eq!(r.get("access-control-allow-origin"), None);

    let msie = "User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)\r\n";
    assert_eq!(get(port, "/ua", "a", msie).code, 403);
    assert_eq!(get(port, "/ua", "a", "User-Agent: curl/8\r\n").code, 200);

    let r = get(port, "/files/a.txt", "a", "");
    assert_eq!((r.code, r.text().as_str()), (200, "file a\n"));
    let r = get(port, "/files/nope", "a", "");
    assert_eq!(r.text(), "missing /missing/nope");

    let up = "Upgrade: websocket\r\n";
    assert_eq!(get(port, "/ws", "a", up).text(), "would tunnel");
    assert_eq!(get(port, "/ws", "a", "").text(), "plain");

    // `0` and empty are false; `!=`, `!~*`, file tests and captures.
    assert_eq!(get(port, "/cond?a=0&b=x&c=No", "a", "").text(), "dex");
    assert_eq!(
        get(port, "/cond?a=1&c=yes&d=12-34", "a", "").text(),
        "abcdex[34 12]"
    );
    assert_eq!(get(port, "/stop?stop=1", "a", "").code, 404);
    assert_eq!(get(port, "/stop", "a", "").text(), "not stopped");
}

// effect: if proxy_pass
#[test]
fn proxy_pass_inside_if_and_the_if_blocks_configuration() {
    let (a, b) = (Echo::start(), Echo::start());
    let locations = format!(
        r#"
        location / {{
            proxy_pass http://{a};
            add_header X-Level location;
            if ($http_x_canary = 1) {{
                proxy_pass http://{b};
                add_header X-Level canary;
            }}
            if ($arg_tag) {{ add_header X-Tag $arg_tag; }}
        }}
"#,
        a = a.addr,
        b = b.addr
    );
    let (_p, port) = one_server(&locations);
    let host = |r: &Response| {
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix("Host: ").map(str::to_string))
            .unwrap_or_default()
    };
    let r = get(port, "/headers", "x", "");
    assert_eq!(r.code, 200);
    assert_eq!(host(&r), a.addr.to_string());
    assert_eq!(r.get("x-level"), Some("location"));
    let r = get(port, "/headers", "x", "X-Canary: 1\r\n");
    assert_eq!(host(&r), b.addr.to_string());
    assert_eq!(r.get("x-level"), Some("canary"));
    // An `if` without `proxy_pass` keeps the location's; its own add_header replaces the
    // location's list (nginx's inheritance).
    let r = get(port, "/headers?tag=t1", "x", "");
    assert_eq!(host(&r), a.addr.to_string());
    assert_eq!(r.get("x-tag"), Some("t1"));
    assert_eq!(r.get("x-level"), None);
}

// effect: limit_except allow deny
#[test]
fn limit_except_and_access_rules_answer_403_as_nginx() {
    let echo = Echo::start();
    let locations = format!(
        r#"
        location /ro {{
            limit_except GET {{ deny all; }}
            return 200 "read $request_method";
        }}
        location /lan {{
            limit_except GET POST {{
                allow 127.0.0.0/8;
                deny all;
            }}
            proxy_pass http://{e};
        }}
        location /far {{
            limit_except GET {{
                allow 10.0.0.0/8;
                deny all;
            }}
            proxy_pass http://{e};
        }}
        location /closed {{
            deny 127.0.0.1;
            allow all;
            proxy_pass http://{e};
        }}
        location /open {{
            allow 127.0.0.1;
            deny all;
            proxy_pass http://{e};
        }}
        location /returns {{
            deny all;
            return 200 "rewrite phase first";
        }}
"#,
        e = echo.addr
    );
    let (_p, port) = one_server(&locations);
    let r = get(port, "/ro", "x", "");
    assert_eq!((r.code, r.text().as_str()), (200, "read GET"));
    assert_eq!(send(port, "HEAD", "/ro", "x", "").code, 200);
    assert_eq!(send(port, "POST", "/ro", "x", "").code, 403);
    assert_eq!(send(port, "DELETE", "/ro", "x", "").code, 403);
    assert_eq!(send(port, "PUT", "/lan", "x", "").code, 200);
    assert_eq!(send(port, "POST", "/lan", "x", "").code, 200);
    assert_eq!(send(port, "GET", "/far", "x", "").code, 200);
    assert_eq!(send(port, "POST", "/far", "x", "").code, 403);
    assert_eq!(get(port, "/closed", "x", "").code, 403);
    assert_eq!(get(port, "/open", "x", "").code, 200);
    // `return` runs in the rewrite phase, before the access phase.
    assert_eq!(get(port, "/returns", "x", "").text(), "rewrite phase first");
}
