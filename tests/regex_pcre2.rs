//! nginx's regular expressions through a running ringproxy: syntax PCRE2 has and the `regex`
//! crate refused or read differently (named groups in the `(?<n>)`, `(?P<n>)` and `(?'n')`
//! forms, `\Q...\E`, look-ahead and look-behind, back-references by number and name, possessive
//! quantifiers, atomic groups, bytes rather than characters since nginx compiles without UTF
//! mode) in each place a regex appears: `location`, `server_name`, `map` and `rewrite`.
//!
//! The configuration and every expected answer were checked against nginx 1.22.1 (libpcre2
//! 10.42) by hand: the same file served by both, the same requests, byte-identical bodies.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Proxy;

const T: Duration = Duration::from_secs(20);

/// `GET target` with `host` on a new connection: the status code and the body's bytes.
fn get(port: u16, host: &str, target: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&out)));
    let head = String::from_utf8_lossy(&out[..end]);
    let code = head.split(' ').nth(1).unwrap_or("").to_string();
    (code, out[end + 4..].to_vec())
}

const CONF: &str = r#"events {}
http {
    access_log off;
    map $uri $m {
        ~^/map/(?<mk>[a-z]+)/\k<mk>$ "map backref $mk";
        ~*^/MAP/\Qa.b\E$ "map quoted";
        ~^/map/(?'lead'[a-z])(?=z) "map named-quote lookahead $lead";
        default "map none";
    }
    server {
        listen 127.0.0.1:{port};
        server_name ~^(?<sub>[a-z]+)\.(?'zone'pcre)\.test$;
        location / { return 200 "server $sub $zone $1 $2"; }
    }
    server {
        listen 127.0.0.1:{port};
        server_name ~^(?!admin\.)(\w+)\.la\.test$;
        location / { return 200 "server lookahead $1"; }
    }
    server {
        listen 127.0.0.1:{port} default_server;
        server_name default.test;
        location / { return 200 "root"; }
        location /map/ { return 200 "$m"; }
        location /MAP/ { return 200 "$m"; }
        location ~ ^/n/(?<first>[a-z]+)/(?P<second>\d+)$ { return 200 "named $first $second $1 $2"; }
        location ~ ^/q/\Q(a+b)\E$ { return 200 "quoted"; }
        location ~ ^/la/(?!admin)(\w+)$ { return 200 "lookahead $1"; }
        location ~ (?<=/lb/)x(\d)$ { return 200 "lookbehind $1"; }
        location ~ ^/br/(\w+)/\1$ { return 200 "backref $1"; }
        location ~ ^/pq/a++a { return 200 "possessive matched"; }
        location ~ ^/pq/ { return 200 "pq plain"; }
        location ~ ^/at/(?>a+)b { return 200 "atomic"; }
        location ~ ^/u/(.)(.)$ { return 200 "bytes $1|$2"; }
        location ~ ^/w/\w+$ { return 200 "word"; }
        location ~ ^/d/\d+$ { return 200 "digits"; }
        location ~* ^/CI/(?<w>[a-z]+)$ { return 200 "ci $w"; }
        location /rw/ {
            rewrite "^/rw/(?<x>[a-z]+)-\g{1}$" /done/$x last;
            rewrite ^/rw/(\w++)$ /done/poss-$1 last;
            return 200 "no rewrite";
        }
        location /done/ { return 200 "rewritten $uri"; }
    }
}
"#;

/// Host, target, and nginx 1.22.1's body (every answer is a 200).
const CASES: &[(&str, &str, &[u8])] = &[
    // location: named groups in both forms, numbered too.
    ("default.test", "/n/ab/12", b"named ab 12 ab 12"),
    ("default.test", "/q/(a+b)", b"quoted"),
    ("default.test", "/q/aab", b"root"),
    ("default.test", "/la/user", b"lookahead user"),
    ("default.test", "/la/admin", b"root"),
    ("default.test", "/lb/x7", b"lookbehind 7"),
    ("default.test", "/br/abc/abc", b"backref abc"),
    ("default.test", "/br/abc/abd", b"root"),
    // `a++` keeps every `a`: the following `a` never matches, the next location answers.
    ("default.test", "/pq/aaa", b"pq plain"),
    ("default.test", "/at/aab", b"atomic"),
    // No UTF mode: `.` is one byte of `é`, `\w` and `\d` are ASCII only (`٣` is a digit).
    ("default.test", "/u/%C3%A9", b"bytes \xc3|\xa9"),
    ("default.test", "/w/%C3%A9", b"root"),
    ("default.test", "/w/abc", b"word"),
    ("default.test", "/d/%D9%A3", b"root"),
    ("default.test", "/CI/AbC", b"ci AbC"),
    // map: back-reference by name, `\Q..\E` caselessly, `(?'name')` with a look-ahead.
    ("default.test", "/map/ab/ab", b"map backref ab"),
    ("default.test", "/MAP/A.B", b"map quoted"),
    ("default.test", "/map/AxB", b"map none"),
    ("default.test", "/map/az", b"map named-quote lookahead a"),
    ("default.test", "/map/ab/cd", b"map none"),
    // rewrite: `\g{1}`, a possessive `\w++`; `$1` is the rewrite's own group.
    ("default.test", "/rw/ab-ab", b"rewritten /done/ab"),
    ("default.test", "/rw/abc", b"rewritten /done/poss-abc"),
    ("default.test", "/rw/ab-cd", b"no rewrite"),
    // server_name: compiled caselessly; its groups are the request's variables.
    ("www.pcre.test", "/x", b"server www pcre www pcre"),
    ("WWW.PCRE.test", "/x", b"server www pcre www pcre"),
    ("user.la.test", "/x", b"server lookahead user"),
    ("admin.la.test", "/x", b"root"),
];

// effect: location server_name map rewrite
#[test]
fn nginx_regex_syntax_answers_as_nginx() {
    let port = common::free_port();
    let p = Proxy::start(&CONF.replace("{port}", &port.to_string()), port, "", &[]);
    let mut wrong = Vec::new();
    for &(host, target, want) in CASES {
        let (code, body) = get(port, host, target);
        if code != "200" || body != want {
            wrong.push(format!(
                "{host}{target}: {code} {:?}, nginx: 200 {:?}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(want)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "answers differ from nginx's:\n{}",
        wrong.join("\n")
    );
    drop(p);
}

/// A `server_name` regex's captures reach the request even when no location regex runs
/// (nginx's `ngx_http_find_virtual_server` runs it through `ngx_http_regex_exec`), and a
/// location regex that matches afterwards replaces the numbered ones.
#[test]
fn server_name_captures_become_variables_until_a_location_regex_matches() {
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        server_name ~^(?<app>[a-z]+)-(\\d+)\\.example$;\n        location / {{ return 200 \"$app|$1|$2\"; }}\n        location ~ ^/r/(x+)$ {{ return 200 \"$app|$1|$2\"; }}\n    }}\n}}\n"
    );
    let _p = Proxy::start(&conf, port, "", &[]);
    assert_eq!(get(port, "shop-42.example", "/").1, b"shop|shop|42");
    // The location's regex has one group: `$2` is gone, the named variable stays.
    assert_eq!(get(port, "shop-42.example", "/r/xx").1, b"shop|xx|");
}

/// `$server_name` is the server's first name as written, a regex or wildcard too (nginx 1.22.1
/// by hand): lowercase, `~` kept, `.example.com` without its dot.
#[test]
fn server_name_variable_is_the_first_name_as_written() {
    let port = common::free_port();
    let servers = [
        r"~^EXAMPLE\.COM$ a.test",
        "*.wc.example.com",
        "wc2.example.*",
        ".dot.example.com",
        "WWW.Up.test",
        r"~^(?<n>x+)\.test$",
    ];
    let mut conf = String::from("events {}\nhttp {\n    access_log off;\n");
    for names in servers {
        conf += &format!(
            "    server {{ listen 127.0.0.1:{port}; server_name {names}; return 200 \"[$server_name]\"; }}\n"
        );
    }
    conf += "}\n";
    let _p = Proxy::start(&conf, port, "", &[]);
    let cases: &[(&str, &[u8])] = &[
        ("example.com", br"[~^EXAMPLE\.COM$]"),
        ("a.test", br"[~^EXAMPLE\.COM$]"),
        ("x.wc.example.com", b"[*.wc.example.com]"),
        ("wc2.example.org", b"[wc2.example.*]"),
        ("dot.example.com", b"[dot.example.com]"),
        ("www.up.test", b"[www.up.test]"),
        ("xx.test", br"[~^(?<n>x+)\.test$]"),
    ];
    for &(host, want) in cases {
        assert_eq!(
            String::from_utf8_lossy(&get(port, host, "/").1),
            String::from_utf8_lossy(want),
            "{host}"
        );
    }
}
