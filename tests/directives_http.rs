//! The http-level directives through a running ringproxy, each in a configuration where its
//! effect shows in the answer: `server`/`listen`/`server_name`/`location` routing,
//! `merge_slashes`, `rewrite`/`return`/`set`/`break`/`map`, the three redirect directives,
//! `server_tokens`, static files (`root`, `alias`, `index`, `try_files`, `types`,
//! `default_type`, `etag`, `add_header`; `root`/`alias` with variables) and `access_log` with `log_format`. The expected
//! answers are nginx 1.22.1's for the same configuration and requests (checked by hand).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::http1::{exchange, Response};
use common::Proxy;

const T: Duration = Duration::from_secs(20);

/// Sends `raw` on a new connection and reads the response to the close.
fn send(port: u16, raw: &str) -> Response {
    exchange(port, raw.as_bytes(), T)
}

/// `GET target` with `host`, `Connection: close`.
fn get(port: u16, host: &str, target: &str) -> Response {
    send(
        port,
        &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

fn status_code(r: &Response) -> &str {
    r.status.split(' ').nth(1).unwrap_or("")
}

// effect: http server listen server_name location
#[test]
fn servers_and_locations_are_chosen_as_nginx_does() {
    let (p1, p2) = (common::free_port(), common::free_port());
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{p1};\n        server_name one.example;\n        location / {{ return 200 \"one /\"; }}\n        location /api/ {{ return 200 \"one api\"; }}\n        location = /api/exact {{ return 200 \"one exact\"; }}\n        location ~ \\.php$ {{ return 200 \"one php\"; }}\n    }}\n    server {{\n        listen 127.0.0.1:{p1};\n        server_name two.example *.two.example;\n        location / {{ return 200 \"two /\"; }}\n    }}\n    server {{\n        listen 127.0.0.1:{p2};\n        location / {{ return 200 \"other port\"; }}\n    }}\n}}\n"
    );
    let p = Proxy::start(&conf, p1, "", &[]);
    let cases = [
        (p1, "one.example", "/", "one /"),
        (p1, "one.example", "/api/x", "one api"),
        (p1, "one.example", "/api/exact", "one exact"),
        (p1, "one.example", "/api/x.php", "one php"),
        (p1, "two.example", "/api/x", "two /"),
        (p1, "www.two.example", "/", "two /"),
        // No server_name matches: the address's first server is its default.
        (p1, "nobody.example", "/api/x", "one api"),
        (p2, "two.example", "/", "other port"),
    ];
    for (port, host, target, want) in cases {
        let r = get(port, host, target);
        assert_eq!(
            (status_code(&r), r.text().as_str()),
            ("200", want),
            "{host}{target} on {port}"
        );
    }
    drop(p);
}

// effect: merge_slashes
#[test]
fn merge_slashes_off_keeps_repeated_slashes_for_matching() {
    let (on, off) = (common::free_port(), common::free_port());
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{on};\n        location = /a/b {{ return 200 \"exact\"; }}\n        location / {{ return 200 \"other $uri\"; }}\n    }}\n    server {{\n        listen 127.0.0.1:{off};\n        merge_slashes off;\n        location = /a/b {{ return 200 \"exact\"; }}\n        location / {{ return 200 \"other $uri\"; }}\n    }}\n}}\n"
    );
    let _p = Proxy::start(&conf, on, "", &[]);
    assert_eq!(get(on, "a", "//a///b").text(), "exact");
    assert_eq!(get(off, "a", "//a///b").text(), "other //a///b");
    assert_eq!(get(off, "a", "/a/b").text(), "exact");
}

// effect: rewrite return set break map
#[test]
fn rewrite_module_directives_change_the_request_as_nginx() {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::create_dir_all(dir.path().join("html")).unwrap();
    std::fs::write(dir.path().join("html/a.txt"), "file a\n").unwrap();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    map $http_x_pick $picked {{\n        default \"none\";\n        red \"is red\";\n        ~^b(.*)$ \"b then $1\";\n    }}\n    server {{\n        listen 127.0.0.1:{port};\n        root html;\n        rewrite ^/old/(.*)$ /new/$1 last;\n        location /new/ {{ return 200 \"new $uri\"; }}\n        location /gone {{ return 301 http://elsewhere.example/; }}\n        location /teapot {{ return 418; }}\n        location /empty {{ return 204 \"dropped\"; }}\n        location /map {{ return 200 \"map $picked\"; }}\n        location /set {{\n            set $who \"$arg_name-$request_method\";\n            return 200 \"set $who\";\n        }}\n        location /break {{\n            set $v one;\n            break;\n            set $v two;\n            try_files /a.txt =404;\n            add_header X-V $v;\n        }}\n        location /redirect {{ rewrite ^ /new/target redirect; }}\n    }}\n}}\n"
    );
    std::fs::write(dir.path().join("ringproxy.conf"), conf).unwrap();
    let _p = Proxy::start_in(dir, port, "", &[]);

    let r = get(port, "a", "/old/x/y?q=1");
    assert_eq!(
        (status_code(&r), r.text().as_str()),
        ("200", "new /new/x/y")
    );
    let r = get(port, "a", "/gone");
    assert_eq!(status_code(&r), "301");
    assert_eq!(r.get("location"), Some("http://elsewhere.example/"));
    assert_eq!(status_code(&get(port, "a", "/teapot")), "418");
    // A 204 has no body, so no type or length either.
    let r = get(port, "a", "/empty");
    assert_eq!(
        (status_code(&r), r.text().as_str()),
        ("204", ""),
        "{:?}",
        r.headers
    );
    assert_eq!(r.get("content-length"), None);
    assert_eq!(r.get("content-type"), None);
    let pick = |v: &str| {
        send(
            port,
            &format!("GET /map HTTP/1.1\r\nHost: a\r\nX-Pick: {v}\r\nConnection: close\r\n\r\n"),
        )
        .text()
    };
    assert_eq!(pick("red"), "map is red");
    assert_eq!(pick("blue"), "map b then lue");
    assert_eq!(pick("green"), "map none");
    assert_eq!(get(port, "a", "/set?name=al").text(), "set al-GET");
    // `break` ends the rewrite directives: the second `set` never runs.
    let r = get(port, "a", "/break");
    assert_eq!((status_code(&r), r.text().as_str()), ("200", "file a\n"));
    assert_eq!(r.get("x-v"), Some("one"));
    let r = get(port, "a", "/redirect");
    assert_eq!(status_code(&r), "302");
    assert_eq!(
        r.get("location"),
        Some(&*format!("http://a:{port}/new/target"))
    );
}

/// The cases of nginx-tests' rewrite.t that ringproxy once got wrong, checked against nginx
/// 1.22 by hand: a URI rewritten without a flag then `break` goes to `proxy_pass` whole (the
/// location no longer describes it); under an error_page status a bare `return 200` is an empty
/// body, and the `Location` of the `return 302` that led to the error_page stays; a Location
/// nginx did not make absolute follows `Connection`.
#[test]
fn return_and_break_under_error_page_and_proxy_pass_as_nginx() {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        \
         location /return204 {{ return 204; }}\n        \
         location /return200 {{ return 200; }}\n        \
         location /return200text {{ return 200 \"text\"; }}\n        \
         location /return405 {{ return 405; }}\n        \
         location /e405r200 {{ error_page 405 /return200; return 405; }}\n        \
         location /e302r200text {{ error_page 302 /return200text; return 302 \"text\"; }}\n        \
         location /e302r405 {{ error_page 302 /return405; return 302 \"text\"; }}\n        \
         location /abs {{ return 301 http://example.com/; }}\n        \
         location /break {{\n            rewrite ^ /return200;\n            break;\n            \
         proxy_pass http://127.0.0.1:{port}/return204;\n        }}\n    }}\n}}\n"
    );
    let _p = Proxy::start(&conf, port, "", &[]);
    let r = get(port, "a", "/break");
    assert_eq!((r.code, r.text().as_str()), (200, ""), "{:?}", r.headers);
    let r = get(port, "a", "/e405r200");
    assert_eq!((r.code, r.text().as_str()), (405, ""), "{:?}", r.headers);
    assert_eq!(r.get("content-length"), Some("0"));
    let r = get(port, "a", "/e302r200text");
    assert_eq!((r.code, r.text().as_str()), (302, "text"));
    assert_eq!(r.get("location"), Some("text"));
    let r = get(port, "a", "/e302r405");
    assert_eq!(r.code, 405);
    assert_eq!(r.get("location"), Some("text"));
    assert!(r.text().contains("<title>405 Not Allowed</title>"));
    for path in ["/abs", "/e302r200text"] {
        let r = get(port, "a", path);
        let names = r.names();
        let at = |n: &str| names.iter().position(|h| *h == n).unwrap();
        assert!(at("connection") < at("location"), "{path}: {names:?}");
    }
}

// effect: absolute_redirect port_in_redirect server_name_in_redirect
#[test]
fn relative_redirects_follow_the_three_redirect_directives() {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        server_name name.example;\n        location /abs {{ return 301 /target; }}\n        location /noport {{ port_in_redirect off; return 301 /target; }}\n        location /sname {{ server_name_in_redirect on; return 301 /target; }}\n        location /rel {{ absolute_redirect off; return 301 /target; }}\n    }}\n}}\n"
    );
    let _p = Proxy::start(&conf, port, "", &[]);
    let loc = |path: &str| {
        let r = get(port, "A.Host:99", path);
        assert_eq!(status_code(&r), "301", "{path}");
        r.get("location").unwrap_or("").to_string()
    };
    // nginx: the request's host in lowercase without its port, then the local port.
    assert_eq!(loc("/abs"), format!("http://a.host:{port}/target"));
    assert_eq!(loc("/noport"), "http://a.host/target");
    assert_eq!(loc("/sname"), format!("http://name.example:{port}/target"));
    assert_eq!(loc("/rel"), "/target");
}

// effect: server_tokens
#[test]
fn server_tokens_off_drops_the_version() {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        location /on {{ return 404; }}\n        location /off {{ server_tokens off; return 404; }}\n    }}\n}}\n"
    );
    let _p = Proxy::start(&conf, port, "", &[]);
    let version = format!("ringproxy/{}", env!("CARGO_PKG_VERSION"));
    // (nginx's pages also end with its version when on; ringproxy's always say `ringproxy`.)
    let r = get(port, "a", "/on");
    assert_eq!(r.get("server"), Some(version.as_str()));
    let r = get(port, "a", "/off");
    assert_eq!(r.get("server"), Some("ringproxy"));
    assert!(
        r.text().contains("<hr><center>ringproxy</center>"),
        "{}",
        r.text()
    );
}

/// A prefix with `www/` and `data/` files for the static-file tests (`www`, not nginx's
/// default root `html`, so that a `root` without effect cannot pass).
fn static_prefix(conf: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for d in ["logs", "www/i", "www/dir", "www/try", "data"] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    for (f, text) in [
        ("www/a.txt", "file a\n"),
        ("www/page.cst", "custom type\n"),
        ("www/blob.zzz", "unknown type\n"),
        ("www/i/start.html", "start page\n"),
        ("www/i/index.html", "default index\n"),
        ("www/fallback.txt", "fallback\n"),
        ("www/try/here.txt", "here\n"),
        ("data/b.txt", "b data\n"),
    ] {
        std::fs::write(p.join(f), text).unwrap();
    }
    std::fs::write(p.join("ringproxy.conf"), conf).unwrap();
    dir
}

// effect: root alias index try_files types default_type
#[test]
fn static_files_are_found_and_typed_as_nginx() {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    types {{\n        text/x-custom cst;\n        text/plain txt;\n        text/html html;\n    }}\n    default_type application/x-default;\n    server {{\n        listen 127.0.0.1:{port};\n        root www;\n        location /i/ {{ index start.html; }}\n        location /files/ {{ alias data/; }}\n        location /try/ {{ try_files $uri /fallback.txt; }}\n        location /bare {{ return 201; }}\n    }}\n}}\n"
    );
    let _p = Proxy::start_in(static_prefix(&conf), port, "", &[]);
    let ok = |target: &str, body: &str, ctype: &str| {
        let r = get(port, "a", target);
        assert_eq!(
            (status_code(&r), r.text().as_str(), r.get("content-type")),
            ("200", body, Some(ctype)),
            "{target}"
        );
    };
    ok("/a.txt", "file a\n", "text/plain");
    ok("/page.cst", "custom type\n", "text/x-custom");
    ok("/blob.zzz", "unknown type\n", "application/x-default");
    ok("/i/", "start page\n", "text/html");
    ok("/files/b.txt", "b data\n", "text/plain");
    ok("/try/missing", "fallback\n", "text/plain");
    ok("/try/here.txt", "here\n", "text/plain");
    assert_eq!(status_code(&get(port, "a", "/missing")), "404");
    // A bare `return 2xx` is an empty body of the default type.
    let r = get(port, "a", "/bare");
    assert_eq!(
        (
            status_code(&r),
            r.get("content-type"),
            r.get("content-length")
        ),
        ("201", Some("application/x-default"), Some("0"))
    );
    // A directory without its slash is redirected to it.
    let r = get(port, "a", "/dir");
    assert_eq!(status_code(&r), "301");
    assert_eq!(r.get("location"), Some(&*format!("http://a:{port}/dir/")));
}

/// `root` and `alias` with variables: the server name's capture, a regex location's
/// captures, arguments; a relative result is under the prefix; `$document_root` and
/// `$request_filename` follow the rendered path (nginx 1.22.1's answers for the same requests).
// effect: root alias
#[test]
fn root_and_alias_with_variables_are_rendered_per_request() {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        server_name ~^(?<site>[a-z]+)\\.test$;\n        root $site/;\n        add_header X-Root $document_root always;\n        add_header X-File $request_filename always;\n        location ~ ^/cap/(a|b)(\\.txt)$ {{ alias data/$1$2; }}\n        location /files/ {{ alias $arg_d/; }}\n        location /try/ {{ root $arg_r; }}\n    }}\n}}\n"
    );
    let dir = static_prefix(&conf);
    let p = dir.path().to_str().unwrap().to_string();
    let _p = Proxy::start_in(dir, port, "", &[]);
    let check = |host: &str, target: &str, want: (&str, &str, &str, &str)| {
        let r = get(port, host, target);
        let body = if status_code(&r) == "200" {
            r.text()
        } else {
            String::new()
        };
        let got = (
            status_code(&r),
            body.as_str(),
            r.get("x-root").unwrap_or(""),
            r.get("x-file").unwrap_or(""),
        );
        assert_eq!(got, want, "{host}{target}");
    };
    let (www, data) = (format!("{p}/www"), format!("{p}/data"));
    check(
        "www.test",
        "/a.txt",
        ("200", "file a\n", &www, &format!("{www}/a.txt")),
    );
    check(
        "data.test",
        "/b.txt",
        ("200", "b data\n", &data, &format!("{data}/b.txt")),
    );
    let b = format!("{data}/b.txt");
    check("www.test", "/cap/b.txt", ("200", "b data\n", &b, &b));
    let a = format!("{data}/a.txt");
    check("www.test", "/cap/a.txt", ("404", "", &a, &a));
    check(
        "www.test",
        "/files/b.txt?d=data",
        ("200", "b data\n", &format!("{data}/"), &b),
    );
    check(
        "x.test",
        "/try/here.txt?r=www",
        ("200", "here\n", &www, &format!("{www}/try/here.txt")),
    );
    check(
        "www.test",
        "/try/here.txt",
        ("404", "", &format!("{p}/"), &format!("{p}//try/here.txt")),
    );
}

// effect: etag add_header
#[test]
fn etag_and_add_header_shape_the_static_response() {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        root www;\n        location /e/ {{\n            alias www/;\n            etag off;\n            add_header X-Plain yes;\n            add_header X-Always yes always;\n        }}\n    }}\n}}\n"
    );
    let _p = Proxy::start_in(static_prefix(&conf), port, "", &[]);
    let r = get(port, "a", "/a.txt");
    let tag = r.get("etag").expect("an ETag by default").to_string();
    assert!(tag.starts_with('"') && tag.contains('-'), "{tag}");
    assert_eq!(r.get("x-plain"), None);
    // The tag is honoured: a matching If-None-Match gets 304.
    let r = send(
        port,
        &format!(
            "GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: {tag}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status_code(&r), "304");

    let r = get(port, "a", "/e/a.txt");
    assert_eq!(r.text(), "file a\n");
    assert_eq!(r.get("etag"), None, "etag off");
    assert_eq!(r.get("x-plain"), Some("yes"));
    assert_eq!(r.get("x-always"), Some("yes"));
    // On a 404 only the `always` header is added.
    let r = get(port, "a", "/e/missing");
    assert_eq!(status_code(&r), "404");
    assert_eq!(r.get("x-plain"), None);
    assert_eq!(r.get("x-always"), Some("yes"));
}

// effect: access_log log_format
#[test]
fn access_log_writes_its_format_to_its_file() {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    log_format brief '$request_method $uri $status $body_bytes_sent \"$http_x_tag\"';\n    access_log logs/brief.log brief;\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{ return 200 \"ok\"; }}\n        location /quiet {{ access_log off; return 200 \"quiet\"; }}\n        location /both {{\n            access_log logs/brief.log brief;\n            access_log logs/combined.log;\n            return 204;\n        }}\n    }}\n}}\n"
    );
    let p = Proxy::start(&conf, port, "", &[]);
    send(
        port,
        "GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-Tag: t1\r\nConnection: close\r\n\r\n",
    );
    get(port, "a", "/quiet");
    get(port, "a", "/both");
    let logs = p.dir.path().join("logs");
    let brief = std::fs::read_to_string(logs.join("brief.log")).unwrap_or_default();
    // $body_bytes_sent counts the body only (2 bytes of "ok"), as nginx.
    assert_eq!(brief, "GET /x 200 2 \"t1\"\nGET /both 204 0 \"-\"\n");
    let combined = std::fs::read_to_string(logs.join("combined.log")).unwrap_or_default();
    assert!(
        combined.starts_with("127.0.0.1 - - [")
            && combined.ends_with("] \"GET /both HTTP/1.1\" 204 0 \"-\" \"-\"\n"),
        "{combined}"
    );
    // Nothing went to the default log.
    assert!(!logs.join("access.log").exists());
}

/// The body of a chunked message (`body` is what follows the head).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

// effect: gzip_comp_level
#[test]
fn gzip_comp_level_trades_size_for_speed() {
    use std::io::Read as _;
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    types {{ text/plain txt; }}\n    gzip on;\n    gzip_types text/plain;\n    server {{\n        listen 127.0.0.1:{port};\n        location /l1/ {{ alias www/; gzip_comp_level 1; }}\n        location /l9/ {{ alias www/; gzip_comp_level 9; }}\n    }}\n}}\n"
    );
    let dir = static_prefix(&conf);
    // Text with repeats at many distances: the higher level finds more of them.
    let text: String = (0..40_000u32)
        .map(|i| format!("{} ", i.wrapping_mul(2_654_435_761) % 997))
        .collect();
    std::fs::write(dir.path().join("www/text.txt"), &text).unwrap();
    let _p = Proxy::start_in(dir, port, "", &[]);
    let fetch = |path: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
        assert!(head.contains("content-encoding: gzip"), "{path}: {head}");
        assert!(
            head.contains("transfer-encoding: chunked"),
            "{path}: {head}"
        );
        let gz = dechunk(&out[end + 4..]);
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert!(plain == text, "{path}: the body decodes to the file");
        gz.len()
    };
    let (fast, small) = (fetch("/l1/text.txt"), fetch("/l9/text.txt"));
    assert!(
        small * 100 < fast * 95,
        "level 9 gave {small} bytes, level 1 {fast}"
    );
}
