//! The response-head directives of nginx's long tail through a running ringproxy: `expires`,
//! `charset`, `proxy_cookie_*` and `gzip_static`, on static files, `return` and proxied
//! responses. The expected heads are what nginx 1.22.1 answered for the same configuration and
//! requests in runs made by hand; times are checked against the response's own `Date`.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use common::http1::{exchange, Response};
use common::Proxy;

const T: Duration = Duration::from_secs(20);

/// The response-head checks on top of the shared response: `Date`-relative times.
trait Times {
    fn time(&self, name: &str) -> SystemTime;
    fn after_date(&self, name: &str) -> i64;
}

impl Times for Response {
    fn time(&self, name: &str) -> SystemTime {
        let v = self.get(name).unwrap_or_else(|| panic!("no {name}"));
        httpdate::parse_http_date(v).unwrap_or_else(|e| panic!("{name}: {v}: {e}"))
    }

    /// `name`'s time minus `Date`'s, in seconds.
    fn after_date(&self, name: &str) -> i64 {
        let (t, d) = (self.time(name), self.time("date"));
        match t.duration_since(d) {
            Ok(x) => x.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    }
}

/// `GET target` with `extra` header lines, `Connection: close`, read to the close.
fn get(port: u16, target: &str, extra: &str) -> Response {
    let req = format!("GET {target} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n");
    exchange(port, req.as_bytes(), T)
}

/// A backend on a thread: for each connection reads the head, answers `reply(path)`, closes.
fn backend(reply: fn(&str) -> String) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(T)).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let _ = s.write_all(reply(&path).as_bytes());
        }
    });
    addr
}

/// A prefix with `logs/` and the files `(path, text)` under `www/`, `conf` as the config.
fn prefix(conf: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    for (f, text) in files {
        let p = dir.path().join("www").join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::write(dir.path().join("ringproxy.conf"), conf).unwrap();
    dir
}

fn upstream_with_cache_headers(_path: &str) -> String {
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: private\r\nX-Mid: m\r\n\
     Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\nCache-Control: no-store\r\n\
     Last-Modified: Sun, 01 Nov 2026 10:00:00 GMT\r\nContent-Length: 2\r\n\r\nok"
        .to_string()
}

// effect: expires
#[test]
fn expires_sets_expires_and_cache_control_as_nginx() {
    let port = common::free_port();
    let b = backend(upstream_with_cache_headers);
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        root www;\n        location /s/ {{ alias www/; expires 1h; add_header X-A a; }}\n        location /m/ {{ alias www/; expires modified +2d; }}\n        location /neg {{ expires -1; return 200 x; }}\n        location /ep {{ expires epoch; return 200 x; }}\n        location /max {{ expires max; return 200 x; }}\n        location /zero {{ expires 0; return 200 x; }}\n        location /daily {{ expires @15h30m; return 200 x; }}\n        location /var {{ expires $arg_e; return 200 x; }}\n        location /e404 {{ expires 1h; add_header X-B b always; return 404; }}\n        location /p {{ expires 30m; add_header X-C c; proxy_pass http://{b}; }}\n        location /pm {{ expires modified 1d; proxy_pass http://{b}; }}\n        location /off {{ expires off; return 200 x; }}\n    }}\n}}\n"
    );
    let dir = prefix(&conf, &[("a.txt", b"hello\n")]);
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_527_200); // 2026-11-01 10:00
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("www/a.txt"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let _p = Proxy::start_in(dir, port, "", &[]);

    let r = get(port, "/s/a.txt", "");
    assert_eq!(r.after_date("expires"), 3600);
    assert_eq!(r.get("cache-control"), Some("max-age=3600"));
    // nginx's order: Expires, Cache-Control, then the add_header lines.
    let names = r.names();
    let at = names.iter().position(|n| *n == "expires").unwrap();
    assert_eq!(&names[at..at + 3], ["expires", "cache-control", "x-a"]);
    // A 304 carries them too (nginx's not-modified filter runs before the headers filter).
    let r = get(
        port,
        "/s/a.txt",
        "If-Modified-Since: Sun, 01 Nov 2026 10:00:00 GMT\r\n",
    );
    assert_eq!(r.code, 304);
    assert_eq!(r.after_date("expires"), 3600);
    assert_eq!(r.get("cache-control"), Some("max-age=3600"));

    // modified: from Last-Modified; in the past, so no-cache.
    let r = get(port, "/m/a.txt", "");
    assert_eq!(r.get("expires"), Some("Tue, 03 Nov 2026 10:00:00 GMT"));
    assert_eq!(r.get("cache-control"), Some("no-cache"));

    let r = get(port, "/neg", "");
    assert_eq!(r.after_date("expires"), -1);
    assert_eq!(r.get("cache-control"), Some("no-cache"));
    let r = get(port, "/ep", "");
    assert_eq!(r.get("expires"), Some("Thu, 01 Jan 1970 00:00:01 GMT"));
    assert_eq!(r.get("cache-control"), Some("no-cache"));
    let r = get(port, "/max", "");
    assert_eq!(r.get("expires"), Some("Thu, 31 Dec 2037 23:55:55 GMT"));
    assert_eq!(r.get("cache-control"), Some("max-age=315360000"));
    let r = get(port, "/zero", "");
    assert!(r.after_date("expires").abs() <= 1, "{:?}", r.get("expires"));
    assert_eq!(r.get("cache-control"), Some("max-age=0"));

    // @15h30m: the next 15:30 (ringproxy's local time is UTC).
    let r = get(port, "/daily", "");
    let exp = r.get("expires").unwrap().to_string();
    assert!(exp.ends_with(" 15:30:00 GMT"), "{exp}");
    let ahead = r.after_date("expires");
    assert!((1..=86400).contains(&ahead), "{ahead}");
    let max_age: i64 = r.get("cache-control").unwrap()["max-age=".len()..]
        .parse()
        .unwrap();
    assert!((max_age - ahead).abs() <= 1, "{max_age} vs {ahead}");

    // A value in a variable is parsed per request; an invalid one sets nothing.
    let r = get(port, "/var?e=2h", "");
    assert_eq!(r.after_date("expires"), 7200);
    assert_eq!(r.get("cache-control"), Some("max-age=7200"));
    let r = get(port, "/var?e=epoch", "");
    assert_eq!(r.get("cache-control"), Some("no-cache"));
    for q in ["/var?e=bad", "/var?e=off", "/off"] {
        let r = get(port, q, "");
        assert_eq!(
            (r.get("expires"), r.get("cache-control")),
            (None, None),
            "{q}"
        );
    }

    // Not for an error status, even beside an `always` add_header.
    let r = get(port, "/e404", "");
    assert_eq!(r.code, 404);
    assert_eq!((r.get("expires"), r.get("x-b")), (None, Some("b")));

    // Proxied: the upstream's Expires and first Cache-Control are replaced in place, the
    // second Cache-Control goes.
    let r = get(port, "/p", "");
    assert_eq!(r.body, b"ok");
    assert_eq!(r.all("cache-control"), ["max-age=1800"]);
    assert_eq!(r.after_date("expires"), 1800);
    let names = r.names();
    let cc = names.iter().position(|n| *n == "cache-control").unwrap();
    assert_eq!(&names[cc..cc + 3], ["cache-control", "x-mid", "expires"]);
    assert_eq!(names.last(), Some(&"x-c"));
    let r = get(port, "/pm", "");
    assert_eq!(r.get("expires"), Some("Mon, 02 Nov 2026 10:00:00 GMT"));
    assert_eq!(r.all("cache-control"), ["no-cache"]);
}

fn upstream_by_type(path: &str) -> String {
    let ct = match path {
        "/p/plain" => "text/html",
        "/p/param" => "text/html; foo=bar",
        "/p/cs" => "text/html; charset=koi8-r",
        "/p/upper" => "Text/HTML",
        _ => "application/json",
    };
    format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: 2\r\n\r\nok")
}

// effect: charset charset_types source_charset
#[test]
fn charset_adds_the_parameter_to_the_types_in_charset_types() {
    let port = common::free_port();
    let b = backend(upstream_by_type);
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    types {{ text/html html; text/plain txt; application/json json; }}\n    charset utf-8;\n    server {{\n        listen 127.0.0.1:{port};\n        root www;\n        location /r {{ return 200 x; }}\n        location /r301 {{ return 301 /x; }}\n        location /r303 {{ return 303 /x; }}\n        location /r404 {{ return 404; }}\n        location /off {{ charset off; return 200 x; }}\n        location /star/ {{ charset_types *; alias www/; }}\n        location /json/ {{ charset_types application/json; alias www/; }}\n        location /koi {{ charset koi8-r; source_charset KOI8-R; return 200 x; }}\n        location /var {{ charset $arg_c; return 200 x; }}\n        location /src {{ source_charset $arg_s; return 200 x; }}\n        location /p/ {{ proxy_pass http://{b}; }}\n    }}\n}}\n"
    );
    let dir = prefix(
        &conf,
        &[
            ("a.txt", b"a\n"),
            ("i.html", b"<p>i</p>\n"),
            ("j.json", b"{}\n"),
        ],
    );
    let _p = Proxy::start_in(dir, port, "", &[]);
    let cases = [
        ("/a.txt", "text/plain; charset=utf-8"),
        ("/i.html", "text/html; charset=utf-8"),
        ("/j.json", "application/json"),
        ("/r", "text/plain; charset=utf-8"),
        // nginx leaves 301 and 302 without a charset, not 303.
        ("/r301", "text/html"),
        ("/r303", "text/html; charset=utf-8"),
        ("/r404", "text/html; charset=utf-8"),
        ("/off", "text/plain"),
        ("/star/j.json", "application/json; charset=utf-8"),
        ("/json/j.json", "application/json; charset=utf-8"),
        ("/json/a.txt", "text/plain"),
        ("/koi", "text/plain; charset=koi8-r"),
        ("/var?c=latin1", "text/plain; charset=latin1"),
        // A source charset other than the charset would need recoding: none is added.
        ("/src?s=UTF-8", "text/plain; charset=utf-8"),
        ("/src?s=koi8-r", "text/plain"),
        ("/p/plain", "text/html; charset=utf-8"),
        // The type is compared whole: with another parameter it is not in the list.
        ("/p/param", "text/html; foo=bar"),
        // An upstream's own charset stays (override_charset off).
        ("/p/cs", "text/html; charset=koi8-r"),
        ("/p/upper", "Text/HTML; charset=utf-8"),
        ("/p/json", "application/json"),
    ];
    for (target, want) in cases {
        let r = get(port, target, "");
        assert_eq!(r.get("content-type"), Some(want), "{target}");
    }
}

fn upstream_with_cookies(_path: &str) -> String {
    let cookies = [
        "a=1; Path=/app/x; Domain=.backend.local",
        "b=2;path=/App;domain=backend.local;Secure;HttpOnly",
        "c=3; Path=/other; SameSite=Lax",
        "noval; Path=/app",
        "d=4;  Domain = Other.Example ; Path = /app/deep ",
        "e=5; SameSite=strict; Secure",
        "sess=6; path=/app",
    ];
    let mut r = "HTTP/1.1 200 OK\r\n".to_string();
    for c in cookies {
        r.push_str(&format!("Set-Cookie: {c}\r\n"));
    }
    r.push_str("Content-Length: 2\r\n\r\nok");
    r
}

// effect: proxy_cookie_path proxy_cookie_domain proxy_cookie_flags
#[test]
fn proxy_cookie_directives_rewrite_set_cookie_as_nginx() {
    let port = common::free_port();
    let b = backend(upstream_with_cookies);
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        location /k1 {{\n            proxy_pass http://{b};\n            proxy_cookie_path /app/ /;\n            proxy_cookie_path ~*^/app$ /root$arg_x;\n            proxy_cookie_domain .backend.local .front.example;\n            proxy_cookie_domain ~^other\\.(.*)$ o.$1;\n            proxy_cookie_flags b nosecure nohttponly samesite=none;\n            proxy_cookie_flags ~^[ce]$ secure httponly samesite=strict;\n            proxy_cookie_flags $arg_f nosamesite secure;\n        }}\n        location /k2 {{ proxy_pass http://{b}; proxy_cookie_path off; }}\n    }}\n    proxy_cookie_path /app /inherited;\n}}\n"
    );
    let _p = Proxy::start_in(prefix(&conf, &[]), port, "", &[]);
    // nginx 1.22.1's lines for the same configuration and backend.
    let r = get(port, "/k1?x=X&f=d", "");
    assert_eq!(
        r.all("set-cookie"),
        [
            "a=1; Path=/x; Domain=.front.example",
            "b=2; path=/rootX; domain=front.example; SameSite=None",
            "c=3; Path=/other; SameSite=Strict; Secure; HttpOnly",
            "noval; Path=/app",
            "d=4; Domain=o.Example; Path=/deep; Secure",
            "e=5; SameSite=strict; Secure; HttpOnly",
            "sess=6; path=/rootX",
        ]
    );
    // `off` stops the http level's rule from being inherited: lines go as they came.
    let r = get(port, "/k2", "");
    assert_eq!(
        r.all("set-cookie")[1],
        "b=2;path=/App;domain=backend.local;Secure;HttpOnly"
    );
    assert_eq!(r.all("set-cookie")[6], "sess=6; path=/app");
}

// effect: gzip_static
#[test]
fn gzip_static_sends_the_gz_file_beside_the_plain_one() {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    types {{ application/javascript js; }}\n    server {{\n        listen 127.0.0.1:{port};\n        root www;\n        location /g/ {{ gzip_static on; gzip_vary on; expires 1h; add_header X-A a; }}\n        location /gn/ {{ alias www/g/; gzip_static on; }}\n        location /ga/ {{ alias www/g/; gzip_static always; gzip_vary on; }}\n        location /off/ {{ alias www/g/; }}\n    }}\n}}\n"
    );
    // The .gz content is not checked by nginx either: distinct bytes show which file went.
    let dir = prefix(
        &conf,
        &[
            ("g/a.js", b"plain js\n"),
            ("g/a.js.gz", b"GZ-BYTES-OF-A"),
            ("g/only.js.gz", b"GZ-ONLY"),
        ],
    );
    let _p = Proxy::start_in(dir, port, "", &[]);
    let gzip = "Accept-Encoding: gzip, deflate\r\n";

    let r = get(port, "/g/a.js", gzip);
    assert_eq!(r.body, b"GZ-BYTES-OF-A");
    assert_eq!(r.get("content-type"), Some("application/javascript"));
    assert_eq!(r.get("content-length"), Some("13"));
    assert_eq!(r.get("vary"), Some("Accept-Encoding"));
    assert_eq!(r.get("accept-ranges"), None);
    // nginx 1.22.1's order: ETag, Content-Encoding, then Expires, Cache-Control, add_header.
    let names = r.names();
    let at = names.iter().position(|n| *n == "etag").unwrap();
    assert_eq!(
        &names[at..],
        [
            "etag",
            "content-encoding",
            "expires",
            "cache-control",
            "x-a"
        ]
    );
    assert_eq!(r.get("content-encoding"), Some("gzip"));
    assert!(r.get("etag").unwrap().ends_with("-d\""), "the .gz's size");

    // A client that does not take gzip gets the plain file, with Vary (the .gz exists).
    let r = get(port, "/g/a.js", "");
    assert_eq!(r.body, b"plain js\n");
    assert_eq!(r.get("content-encoding"), None);
    assert_eq!(r.get("vary"), Some("Accept-Encoding"));
    assert_eq!(r.get("accept-ranges"), Some("bytes"));
    // Quality 0 refuses gzip.
    let r = get(port, "/g/a.js", "Accept-Encoding: gzip;q=0\r\n");
    assert_eq!(r.body, b"plain js\n");

    // The .gz alone: to clients that take gzip; a 404 for the others.
    let r = get(port, "/g/only.js", gzip);
    assert_eq!((r.code, r.body.as_slice()), (200, b"GZ-ONLY".as_slice()));
    assert_eq!(get(port, "/g/only.js", "").code, 404);

    // Without gzip_vary, no Vary; `always` sends the .gz to every client, without Vary.
    let r = get(port, "/gn/a.js", "");
    assert_eq!(
        (r.body.as_slice(), r.get("vary")),
        (b"plain js\n".as_slice(), None)
    );
    let r = get(port, "/ga/a.js", "");
    assert_eq!(r.body, b"GZ-BYTES-OF-A");
    assert_eq!(r.get("content-encoding"), Some("gzip"));
    assert_eq!(r.get("vary"), None);
    // gzip_static off (the default): the plain file.
    let r = get(port, "/off/a.js", gzip);
    assert_eq!(r.body, b"plain js\n");
    assert_eq!(r.get("content-encoding"), None);
}
