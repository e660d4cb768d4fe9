//! Tests of `static_files`: `resolve` over a temp dir with configurations built from real config
//! text (the seed's `mime.types` included), the response head, and `serve` over a socket.
//! The expected results are ringproxy's own, written to agree with nginx 1.22 runs on the same
//! tree and locations made by hand (no script repeats them).

use std::path::{Path, PathBuf};

use super::*;
use crate::config::build::{build, BuildOptions};
use crate::config::model::{Config, Location};
use crate::config::parser::parse_str;

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-configs")
}

/// The tree nginx was checked against.
fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    for d in ["html/dir", "html/emptydir", "html/sub", "data/d2"] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    for (f, body) in [
        ("html/index.html", "<h1>index</h1>\n"),
        ("html/dir/index.html", "dir index\n"),
        ("html/sub/index.htm", "sub\n"),
        ("html/a.txt", "A\n"),
        ("html/x.HTML", "UP\n"),
        ("html/f.WOFF2", "w\n"),
        ("html/noext", "noext\n"),
        ("html/.hidden", "dot\n"),
        ("data/f.css", "data\n"),
        ("data/fallback.html", "fb\n"),
        ("data/d2/index.html", "d2\n"),
        ("outside.txt", "secret\n"),
    ] {
        std::fs::write(p.join(f), body).unwrap();
    }
    t
}

/// Builds `server_body` inside the seed's `http` preamble (its `mime.types`, `default_type`).
fn config(dir: &Path, server_body: &str) -> Config {
    let d = dir.display();
    let text = format!(
        "events {{}}\nhttp {{\n include mime.types;\n default_type application/octet-stream;\n \
         server {{\n listen 127.0.0.1:8080;\n root {d}/html;\n {server_body}\n }}\n}}\n"
    );
    let ast = parse_str("test.conf", &text, &seed_dir()).unwrap();
    let opts = BuildOptions {
        prefix: dir.to_path_buf(),
        conf_dir: seed_dir(),
        is_root: false,
    };
    build(&ast, &opts).unwrap().0
}

fn location<'a>(c: &'a Config, name: &str) -> &'a Location {
    c.http.as_ref().unwrap().servers[0]
        .locations
        .iter()
        .find(|l| match &l.matcher {
            LocationMatch::Prefix { path, .. } | LocationMatch::Exact(path) => path == name,
            LocationMatch::Named(n) => n == name,
            LocationMatch::Regex(r) => r.source == name,
        })
        .unwrap_or_else(|| panic!("no location {name}"))
}

/// A renderer knowing `$uri` (the request's) and `$args`.
fn run_with(fs: &dyn Fs, c: &Config, loc: &str, uri: &str, args: &str) -> Decision {
    let l = location(c, loc);
    let mut render = |t: &Template| {
        let mut out = Vec::new();
        for p in &t.parts {
            match p {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Var(v) if v == "uri" => out.extend_from_slice(uri.as_bytes()),
                Part::Var(v) if v == "args" => out.extend_from_slice(args.as_bytes()),
                _ => {}
            }
        }
        out
    };
    resolve_with(fs, &l.conf, &l.matcher, uri, &mut render)
}

fn run(c: &Config, loc: &str, uri: &str) -> Decision {
    status_only(run_with(&RealFs, c, loc, uri, ""))
}

/// The decision without its error-log line (checked by `failures_carry_nginx_log_lines`).
fn status_only(d: Decision) -> Decision {
    match d {
        Decision::Failed(code, _) => Decision::Status(code),
        d => d,
    }
}

#[test]
fn failures_carry_nginx_log_lines() {
    let t = tree();
    let c = config(t.path(), "location / { }");
    let root = t.path().join("html");
    let line = |d: Decision| match d {
        Decision::Failed(_, line) => line,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        line(run_with(&RealFs, &c, "/", "/missing", "")),
        format!(
            "open() \"{}/missing\" failed (2: No such file or directory)",
            root.display()
        )
    );
    assert_eq!(
        line(run_with(&RealFs, &c, "/", "/emptydir/", "")),
        format!(
            "directory index of \"{}/emptydir/\" is forbidden",
            root.display()
        )
    );
    assert_eq!(
        line(run_with(&RealFs, &c, "/", "/nope/", "")),
        format!(
            "\"{}/nope/index.html\" is not found (2: No such file or directory)",
            root.display()
        )
    );
}

fn file(d: &Decision) -> (&Path, &str) {
    match d {
        Decision::File(f) => (&f.path, &f.content_type),
        other => panic!("expected a file, got {other:?}"),
    }
}

/// The seed's `location /` (conf.d/default.conf of 003).
const SEED: &str =
    "location / {\n index index.html index.htm;\n try_files $uri $uri/ /index.html =404;\n }";

#[test]
fn seed_try_files_chain() {
    let t = tree();
    let c = config(t.path(), SEED);
    let html = t.path().join("html");
    // `$uri/` matches the root directory; the index module then redirects internally.
    assert_eq!(
        run(&c, "/", "/"),
        Decision::InternalRedirect("/index.html".into())
    );
    assert_eq!(
        file(&run(&c, "/", "/index.html")).0,
        html.join("index.html")
    );
    assert_eq!(
        file(&run(&c, "/", "/a.txt")),
        (&*html.join("a.txt"), "text/plain")
    );
    // Nothing matches `$uri` or `$uri/`: `/index.html` exists and is served from here.
    for uri in ["/missing", "/nodir/", "/a.txt/"] {
        let d = run(&c, "/", uri);
        assert_eq!(file(&d), (&*html.join("index.html"), "text/html"), "{uri}");
    }
    // `$uri/` matches a directory and changes `$uri` to it without the slash: 301.
    assert_eq!(run(&c, "/", "/dir"), Decision::RedirectDir("/dir/".into()));
    assert_eq!(
        run(&c, "/", "/emptydir"),
        Decision::RedirectDir("/emptydir/".into())
    );
    assert_eq!(
        run(&c, "/", "/dir/"),
        Decision::InternalRedirect("/dir/index.html".into())
    );
    // A directory without any index file is not listed.
    assert_eq!(run(&c, "/", "/emptydir/"), Decision::Status(403));
    // Without the `/index.html` fallback on disk the last parameter answers.
    std::fs::remove_file(html.join("index.html")).unwrap();
    assert_eq!(run(&c, "/", "/missing"), Decision::Status(404));
}

#[test]
fn try_files_candidate_kind_must_match() {
    let t = tree();
    let d = t.path().display();
    std::fs::create_dir_all(t.path().join("data/m1/d")).unwrap();
    std::fs::write(t.path().join("data/m1/f.css"), "m1\n").unwrap();
    let c = config(
        t.path(),
        &format!(
            "location /m1/ {{ root {d}/data; try_files $uri /m1/f.css =404; }}\n \
             location /m2/ {{ alias {d}/html/; try_files $uri/ =404; }}"
        ),
    );
    // A directory does not satisfy a file candidate: the literal fallback is served from here.
    let got = run(&c, "/m1/", "/m1/d");
    assert_eq!(file(&got), (&*t.path().join("data/m1/f.css"), "text/css"));
    // A file does not satisfy a `/` candidate.
    assert_eq!(run(&c, "/m2/", "/m2/a.txt"), Decision::Status(404));
    assert_eq!(
        run(&c, "/m2/", "/m2/dir"),
        Decision::RedirectDir("/m2/dir/".into())
    );
}

#[test]
fn root_and_index_without_try_files() {
    let t = tree();
    let c = config(t.path(), "location /sub/ { index index.html index.htm; }");
    assert_eq!(
        run(&c, "/sub/", "/sub/"),
        Decision::InternalRedirect("/sub/index.htm".into())
    );
    assert_eq!(run(&c, "/sub/", "/sub/nope/"), Decision::Status(404));
    assert_eq!(run(&c, "/sub/", "/sub/nope"), Decision::Status(404));
    // ENOTDIR: a file used as a directory.
    assert_eq!(run(&c, "/sub/", "/sub/index.htm/x"), Decision::Status(404));
}

#[test]
fn alias_replaces_the_prefix() {
    let t = tree();
    let d = t.path().display();
    let c = config(
        t.path(),
        &format!(
            "location /static/ {{ alias {d}/data/; }}\n location /plain/ {{ alias {d}/html/; \
             index nothere.html; }}\n location /noslash {{ alias {d}/data; }}"
        ),
    );
    let data = t.path().join("data");
    let d = run(&c, "/static/", "/static/f.css");
    assert_eq!(file(&d), (&*data.join("f.css"), "text/css"));
    assert_eq!(
        run(&c, "/static/", "/static/d2"),
        Decision::RedirectDir("/static/d2/".into())
    );
    assert_eq!(
        run(&c, "/static/", "/static/d2/"),
        Decision::InternalRedirect("/static/d2/index.html".into())
    );
    assert_eq!(run(&c, "/plain/", "/plain/"), Decision::Status(403));
    assert_eq!(
        file(&run(&c, "/plain/", "/plain/a.txt")).0,
        t.path().join("html/a.txt")
    );
    assert_eq!(
        file(&run(&c, "/noslash", "/noslash/f.css")).0,
        data.join("f.css")
    );
    // `/data` + `f.css`: nginx concatenates without a separator.
    assert_eq!(run(&c, "/noslash", "/noslashf.css"), Decision::Status(404));
    // The URI no longer has the location's prefix (rewritten): nginx's 500.
    assert_eq!(run(&c, "/static/", "/st"), Decision::Status(500));
}

#[test]
fn alias_with_try_files() {
    let t = tree();
    let d = t.path().display();
    let c = config(
        t.path(),
        &format!(
            "location /tf/ {{ alias {d}/data/; try_files $uri /tf/fallback.html; }}\n \
             location /tfv/ {{ alias {d}/data/; try_files $uri $uri/ =404; }}"
        ),
    );
    let d = run(&c, "/tf/", "/tf/f.css");
    assert_eq!(file(&d), (&*t.path().join("data/f.css"), "text/css"));
    assert_eq!(
        run(&c, "/tf/", "/tf/zz"),
        Decision::InternalRedirect("/tf/fallback.html".into())
    );
    // Rendered candidates lose the prefix: `$uri/` finds `data/d2`, and `data/` for `/tfv/`.
    assert_eq!(
        run(&c, "/tfv/", "/tfv/d2"),
        Decision::RedirectDir("/tfv/d2/".into())
    );
    assert_eq!(
        run(&c, "/tfv/", "/tfv/d2/"),
        Decision::InternalRedirect("/tfv/d2/index.html".into())
    );
    assert_eq!(run(&c, "/tfv/", "/tfv/"), Decision::Status(403));
    assert_eq!(run(&c, "/tfv/", "/tfv/nope"), Decision::Status(404));
}

#[test]
fn try_files_named_code_and_absolute_index() {
    let t = tree();
    let d = t.path().display();
    let c = config(
        t.path(),
        &format!(
            "location /named/ {{ try_files $uri @fb; }}\n location @fb {{ return 299; }}\n \
             location /code/ {{ try_files $uri =418; }}\n \
             location /idx/ {{ alias {d}/data/; index /abs.html; }}"
        ),
    );
    assert_eq!(
        run(&c, "/named/", "/named/zz"),
        Decision::Named("@fb".into())
    );
    assert_eq!(run(&c, "/code/", "/code/zz"), Decision::Status(418));
    for uri in ["/idx/", "/idx/d2/"] {
        assert_eq!(
            run(&c, "/idx/", uri),
            Decision::InternalRedirect("/abs.html".into())
        );
    }
}

#[test]
fn regex_alias_is_the_whole_path() {
    let t = tree();
    let d = t.path().display();
    let c = config(
        t.path(),
        &format!("location ~ ^/re/ {{ alias {d}/data/f.css; }}"),
    );
    let d = run(&c, "^/re/", "/re/anything");
    // The type follows the URI, which has no extension.
    let want = t.path().join("data/f.css");
    assert_eq!(file(&d), (&*want, "application/octet-stream"));
}

#[test]
fn content_types_from_the_seed_mime_types() {
    let t = tree();
    let c = config(t.path(), "location / { }");
    for (uri, mime) in [
        ("/x.HTML", "text/html"),
        ("/f.WOFF2", "font/woff2"),
        ("/a.txt", "text/plain"),
        ("/noext", "application/octet-stream"),
        ("/.hidden", "application/octet-stream"),
    ] {
        assert_eq!(file(&run(&c, "/", uri)).1, mime, "{uri}");
    }
    assert_eq!(extension("/a/b.tar.gz"), Some("gz"));
    assert_eq!(extension("/a.b/c"), None);
    assert_eq!(extension("/a/.b"), None);
    assert_eq!(extension("/"), None);
}

#[test]
fn dot_dot_never_leaves_the_root() {
    let t = tree();
    let d = t.path().display();
    let c = config(
        t.path(),
        &format!("location / {{ try_files $args =404; }}\n location /x {{ alias {d}/data/; }}"),
    );
    assert_eq!(run(&c, "/", "/../outside.txt"), Decision::Status(400));
    // nginx's alias traversal (`/x../`) is refused here.
    assert_eq!(run(&c, "/x", "/x../outside.txt"), Decision::Status(400));
    // A rendered candidate climbing out is skipped; a safe one is taken.
    assert_eq!(
        run_with(&RealFs, &c, "/", "/q", "/../outside.txt"),
        Decision::Status(404)
    );
    let d = run_with(&RealFs, &c, "/", "/q", "/a.txt");
    assert_eq!(file(&d).0, t.path().join("html/a.txt"));
}

/// A filesystem where every lookup fails with one OS error.
struct Failing(i32);

impl Fs for Failing {
    fn stat(&self, _: &Path) -> io::Result<Meta> {
        Err(io::Error::from_raw_os_error(self.0))
    }
}

#[test]
fn os_errors_map_to_nginx_statuses() {
    let t = tree();
    let c = config(t.path(), "location / { }");
    let cases = [
        (libc::EACCES, 403),
        (libc::ENOENT, 404),
        (libc::ENOTDIR, 404),
        (libc::ENAMETOOLONG, 404),
        (libc::EIO, 500),
    ];
    for (errno, code) in cases {
        let got = run_with(&Failing(errno), &c, "/", "/a.txt", "");
        assert_eq!(status_only(got), Decision::Status(code), "errno {errno}");
    }
    // The index module: a forbidden index file is 403, a missing directory 404.
    let got = run_with(&Failing(libc::EACCES), &c, "/", "/", "");
    assert_eq!(status_only(got), Decision::Status(403));
    let got = run_with(&Failing(libc::ENOENT), &c, "/", "/", "");
    assert_eq!(status_only(got), Decision::Status(404));
}

fn meta(len: u64, secs: u64) -> Meta {
    Meta {
        is_dir: false,
        is_file: true,
        len,
        mtime: UNIX_EPOCH + Duration::from_secs(secs),
    }
}

#[test]
fn head_has_nginx_headers_in_nginx_order() {
    let t = tree();
    let c = config(t.path(), "location / { }\n location /off/ { etag off; }");
    let conf = &location(&c, "/").conf;
    let m = meta(15, 0x6b01_6209);
    let (head, body) = response_head("text/html", &m, &Conditional::default(), true, conf);
    assert!(body);
    let text = String::from_utf8(head).unwrap();
    let names: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(':').next())
        .filter(|n| !n.is_empty())
        .collect();
    assert_eq!(
        names,
        [
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "Last-Modified",
            "Connection",
            "ETag",
            "Accept-Ranges"
        ]
    );
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nETag: \"6b016209-f\"\r\n"), "{text}");
    assert!(text.contains("\r\nLast-Modified: Sat, 21 Nov 2026 09:19:05 GMT\r\n"));
    assert!(text.contains("\r\nConnection: keep-alive\r\n"));
    assert!(text.ends_with("\r\n\r\n"));
    let off = &location(&c, "/off/").conf;
    let (head, _) = response_head("text/html", &m, &Conditional::default(), false, off);
    let text = String::from_utf8(head).unwrap();
    assert!(!text.contains("ETag"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"));
}

#[test]
fn conditional_requests_as_nginx() {
    let mtime = UNIX_EPOCH + Duration::from_secs(0x6b01_6209);
    let tag = etag(mtime, 2);
    assert_eq!(tag, "\"6b016209-2\"");
    let exact = "Sat, 21 Nov 2026 09:19:05 GMT";
    let c = |ims, inm| Conditional {
        if_modified_since: ims,
        if_none_match: inm,
    };
    assert!(!not_modified(&c(None, None), mtime, Some(&tag)));
    assert!(not_modified(&c(Some(exact), None), mtime, Some(&tag)));
    // nginx's `if_modified_since exact`: a later date is not a match.
    let later = "Sat, 21 Nov 2026 09:19:06 GMT";
    assert!(!not_modified(&c(Some(later), None), mtime, Some(&tag)));
    assert!(not_modified(
        &c(None, Some("\"6b016209-2\"")),
        mtime,
        Some(&tag)
    ));
    assert!(not_modified(
        &c(None, Some("\"x\", W/\"6b016209-2\"")),
        mtime,
        Some(&tag)
    ));
    assert!(not_modified(&c(None, Some("*")), mtime, Some(&tag)));
    assert!(!not_modified(&c(None, Some("*")), mtime, None));
    // Both present: both must match.
    let earlier = "Sat, 21 Nov 2026 09:19:04 GMT";
    assert!(!not_modified(
        &c(Some(earlier), Some(&tag)),
        mtime,
        Some(&tag)
    ));

    let t = tree();
    let conf = config(t.path(), "location / { }");
    let conf = &location(&conf, "/").conf;
    let (head, body) = response_head(
        "text/plain",
        &meta(2, 0x6b01_6209),
        &c(Some(exact), None),
        true,
        conf,
    );
    assert!(!body);
    let text = String::from_utf8(head).unwrap();
    assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{text}");
    assert!(!text.contains("Content-Length") && !text.contains("Accept-Ranges"));
    assert!(text.contains("\r\nETag: \"6b016209-2\"\r\n"));
}

/// Runs `serve` for `hit` on one accepted connection: its result (as the status an open error
/// answers) and what the client read until the server closed.
fn serve_hit(hit: FileHit, conf: LocConf, head_request: bool) -> (Result<(), u16>, Vec<u8>) {
    let (r, got) = serve_shaped(hit, conf, head_request, Extras::default());
    (r.map(|_| ()), got)
}

/// [`serve_hit`] with `add_header`/gzip extras; the result says whether it kept the connection.
fn serve_shaped(
    hit: FileHit,
    conf: LocConf,
    head_request: bool,
    extras: Extras,
) -> (Result<Served, u16>, Vec<u8>) {
    use std::io::Read as _;
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let (stream, _) = listener.accept().await.unwrap();
        crate::proxy::io::set_nonblocking(&stream).unwrap();
        let stream = crate::proxy::conn::Stream::Plain(stream);
        let shape = Shaping {
            status: 200,
            extras: &extras,
            chunked: true,
            head_request,
        };
        let r = serve(&stream, &hit, &Conditional::default(), false, &conf, &shape).await;
        drop(stream);
        (r.map_err(|e| e.status()), client.join().unwrap())
    })
}

fn serve_once(c: &Config, uri: &str, head_request: bool) -> Vec<u8> {
    let Decision::File(hit) = run(c, "/", uri) else {
        panic!("not a file")
    };
    let (r, got) = serve_hit(hit, location(c, "/").conf.clone(), head_request);
    r.unwrap();
    got
}

#[test]
fn serve_sends_head_and_body() {
    let t = tree();
    // Larger than one pooled buffer, so the body takes several reads.
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(t.path().join("html/big.bin"), &big).unwrap();
    let c = config(t.path(), "location / { }");
    let got = serve_once(&c, "/big.bin", false);
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..split]);
    assert!(head.contains("\r\nContent-Length: 40000\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: application/octet-stream\r\n"));
    assert!(head.contains("\r\nConnection: close\r\n"));
    assert_eq!(&got[split..], &big[..]);
    // HEAD: the same head, no body.
    let got = serve_once(&c, "/a.txt", true);
    let text = String::from_utf8(got).unwrap();
    assert!(text.contains("\r\nContent-Length: 2\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
}

#[test]
fn serve_reports_a_vanished_file_before_writing() {
    let t = tree();
    let c = config(t.path(), "location / { }");
    let Decision::File(hit) = run(&c, "/", "/a.txt") else {
        panic!("not a file")
    };
    std::fs::remove_file(&hit.path).unwrap();
    let (r, got) = serve_hit(hit, location(&c, "/").conf.clone(), false);
    assert_eq!(r, Err(404));
    assert!(got.is_empty());
}
