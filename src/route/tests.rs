//! Precedence rules of server and location selection, each from real configuration text
//! (parsed and built as `ringproxy -c` would). Every location answers `return 200 "<id>"`, so a
//! test reads which one matched. `tests/route_nginx_table.rs` checks the same against answers
//! recorded from nginx.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::build::{build, BuildOptions};
use crate::config::model::ScriptOp;
use crate::config::parser::parse_str;

fn http(text: &str) -> HttpConf {
    let src = format!("events {{}}\nhttp {{\n{text}\n}}\n");
    let ast = parse_str("/route-test.conf", &src, Path::new("/")).expect("parse");
    let opts = BuildOptions {
        prefix: PathBuf::from("/tmp"),
        conf_dir: PathBuf::from("/"),
        is_root: false,
    };
    build(&ast, &opts).expect("build").0.http.expect("http")
}

fn returned(script: &[ScriptOp]) -> String {
    script
        .iter()
        .find_map(|op| match op {
            ScriptOp::Return { text, .. } => text.as_ref()?.as_literal().map(str::to_string),
            _ => None,
        })
        .unwrap_or_default()
}

/// Which location answers `uri` on the first server: its `return` text, `301 <name>` for an
/// auto-redirect, `server` when no location matched.
fn loc(text: &str, uri: &str) -> String {
    let conf = http(text);
    let router = Router::new(&conf);
    answer(&conf, &router, 0, uri)
}

fn answer(conf: &HttpConf, router: &Router, server: usize, uri: &str) -> String {
    match router.find_location(server, uri) {
        Found::Location(id, _) => returned(&router.location(conf, id).unwrap().conf.script),
        Found::Redirect(id) => format!("301 {}", router.location_name(id)),
        Found::ServerLevel => "server".into(),
    }
}

fn srv(text: &str) -> String {
    format!("server {{ listen 127.0.0.1:8080; {text} }}")
}

#[test]
fn exact_wins_over_prefix_and_regex() {
    let c = srv(
        r#"location /exact { return 200 p; } location = /exact { return 200 e; }
        location ~ ^/exact { return 200 r; }"#,
    );
    assert_eq!(loc(&c, "/exact"), "e");
    assert_eq!(loc(&c, "/exact/x"), "r");
    assert_eq!(loc(&c, "/exac"), "server");
}

#[test]
fn longest_prefix_wins_regardless_of_order() {
    let c = srv(
        r#"location /a/b { return 200 ab; } location / { return 200 root; }
        location /a { return 200 a; } location /a/b/c/d { return 200 abcd; }"#,
    );
    assert_eq!(loc(&c, "/a/b/c"), "ab");
    assert_eq!(loc(&c, "/a/bc"), "ab");
    assert_eq!(loc(&c, "/a/"), "a");
    assert_eq!(loc(&c, "/x"), "root");
    assert_eq!(loc(&c, "/a/b/c/d/e"), "abcd");
}

#[test]
fn prefix_is_case_sensitive() {
    let c = srv(r#"location /Abc { return 200 A; } location / { return 200 root; }"#);
    assert_eq!(loc(&c, "/Abc"), "A");
    assert_eq!(loc(&c, "/abc"), "root");
}

#[test]
fn regex_beats_longest_prefix_and_first_regex_wins() {
    let c = srv(
        r#"location /img/ { return 200 img; } location ~ \.png$ { return 200 png1; }
        location ~ ^/img/.*\.png$ { return 200 png2; }"#,
    );
    assert_eq!(loc(&c, "/img/x.png"), "png1");
    assert_eq!(loc(&c, "/img/x.gif"), "img");
}

#[test]
fn regex_case_follows_the_modifier() {
    let c = srv(
        r#"location ~ \.PNG$ { return 200 cs; } location ~* \.JPG$ { return 200 ci; }
        location / { return 200 root; }"#,
    );
    assert_eq!(loc(&c, "/x.PNG"), "cs");
    assert_eq!(loc(&c, "/x.png"), "root");
    assert_eq!(loc(&c, "/x.jpg"), "ci");
    assert_eq!(loc(&c, "/x.JpG"), "ci");
}

#[test]
fn caret_tilde_stops_regexes_only_when_it_is_the_longest_prefix() {
    let c = srv(
        r#"location ^~ /s/ { return 200 s; } location /s/deep/ { return 200 deep; }
        location ~ \.png$ { return 200 png; }"#,
    );
    assert_eq!(loc(&c, "/s/x.png"), "s");
    assert_eq!(loc(&c, "/s/deep/x.png"), "png");
    assert_eq!(loc(&c, "/s/deep/x"), "deep");
}

#[test]
fn nested_prefix_refines_the_match() {
    let c = srv(
        r#"location /a/ { return 200 a; location /a/b/ { return 200 ab; } }
        location /a/b/c { return 200 never; }"#,
    );
    // The longest prefix of the top level wins before nested ones are looked at.
    assert_eq!(loc(&c, "/a/b/cd"), "never");
    assert_eq!(loc(&c, "/a/b/x"), "ab");
    assert_eq!(loc(&c, "/a/x"), "a");
}

#[test]
fn nested_regexes_are_tried_before_the_enclosing_levels() {
    let c = srv(
        r#"location /a/ { return 200 a; location ~ \.php$ { return 200 inner; } }
        location ~ \.php$ { return 200 outer; } location ~ ^/a/ { return 200 outer_a; }"#,
    );
    assert_eq!(loc(&c, "/a/x.php"), "inner");
    assert_eq!(loc(&c, "/b/x.php"), "outer");
    assert_eq!(loc(&c, "/a/x"), "outer_a");
}

#[test]
fn nested_regexes_run_inside_caret_tilde() {
    let c = srv(
        r#"location ^~ /a/ { return 200 a; location ~ \.php$ { return 200 inner; } }
        location ~ \.php$ { return 200 outer; } location ~ \.txt$ { return 200 txt; }"#,
    );
    assert_eq!(loc(&c, "/a/x.php"), "inner");
    assert_eq!(loc(&c, "/a/x.txt"), "a");
}

#[test]
fn nested_caret_tilde_does_not_stop_enclosing_regexes() {
    let c = srv(r#"location /a/ { return 200 a;
            location ^~ /a/b/ { return 200 ab; }
            location ~ \.php$ { return 200 inner; } }
        location ~ \.php$ { return 200 outer; }"#);
    assert_eq!(loc(&c, "/a/b/x.php"), "outer");
    assert_eq!(loc(&c, "/a/c/x.php"), "inner");
    assert_eq!(loc(&c, "/a/b/x"), "ab");
}

#[test]
fn nested_exact_ends_the_search() {
    let c = srv(
        r#"location /a/ { return 200 a; location = /a/x.php { return 200 ex; } }
        location ~ \.php$ { return 200 outer; }"#,
    );
    assert_eq!(loc(&c, "/a/x.php"), "ex");
    assert_eq!(loc(&c, "/a/y.php"), "outer");
}

#[test]
fn regex_locations_search_their_nested_locations() {
    let c = srv(r#"location ~ ^/r/ { return 200 r; location ~ \.txt$ { return 200 rtxt; } }"#);
    assert_eq!(loc(&c, "/r/a.txt"), "rtxt");
    assert_eq!(loc(&c, "/r/a"), "r");
}

#[test]
fn captures_numbered_and_named() {
    let conf = http(&srv(
        r#"location ~ ^/u/(\d+)/(?<name>\w+)(/x)?$ { return 200 u; } location ~ ^/plain { return 200 p; }"#,
    ));
    let router = Router::new(&conf);
    let uri = "/u/42/bob";
    let Found::Location(_, Some(c)) = router.find_location(0, uri) else {
        panic!("no captures");
    };
    assert_eq!(c.get(uri, 0), Some(uri.as_bytes()));
    assert_eq!(c.get(uri, 1), Some(&b"42"[..]));
    assert_eq!(c.get(uri, 2), Some(&b"bob"[..]));
    assert_eq!(c.get(uri, 3), None);
    assert_eq!(c.get(uri, 9), None);
    assert_eq!(c.name(uri, "name"), Some(&b"bob"[..]));
    assert_eq!(c.names().collect::<Vec<_>>(), [(2, "name")]);
    let Found::Location(_, Some(c)) = router.find_location(0, "/plainly") else {
        panic!("no match");
    };
    assert_eq!(
        (c.get("/plainly", 0), c.get("/plainly", 1)),
        (Some(&b"/plain"[..]), None)
    );
}

#[test]
fn named_locations_only_by_name() {
    let conf = http(&srv(
        r#"location @fallback { return 200 named; } location / { return 200 root; }"#,
    ));
    let router = Router::new(&conf);
    assert_eq!(answer(&conf, &router, 0, "@fallback"), "server");
    assert_eq!(answer(&conf, &router, 0, "/@fallback"), "root");
    let id = router.named_location(0, "@fallback").unwrap();
    assert_eq!(router.named_location(0, "fallback"), Some(id));
    assert_eq!(
        returned(&router.location(&conf, id).unwrap().conf.script),
        "named"
    );
    assert_eq!(router.named_location(0, "@other"), None);
    assert_eq!(router.named_location(7, "@fallback"), None);
}

#[test]
fn no_location_means_server_level() {
    assert_eq!(loc(&srv("location /a { return 200 a; }"), "/b"), "server");
    assert_eq!(loc(&srv(""), "/"), "server");
}

#[test]
fn auto_redirect_for_proxy_pass_locations() {
    let c = srv(r#"location / { return 200 root; }
        location /px/ { proxy_pass http://127.0.0.1:9; }
        location = /ex/ { proxy_pass http://127.0.0.1:9; }
        location /plain/ { return 200 plain; }
        location ~ ^/px { return 200 re; }"#);
    assert_eq!(loc(&c, "/px"), "301 /px/");
    assert_eq!(loc(&c, "/ex"), "301 /ex/");
    assert_eq!(loc(&c, "/plain"), "root");
    assert_eq!(loc(&c, "/pxy"), "re");
    let conf = http(&c);
    let router = Router::new(&conf);
    assert!(matches!(
        router.find_location(0, "/px/"),
        Found::Location(..)
    ));
    let shadowed =
        srv(r#"location /px { return 200 px; } location /px/ { proxy_pass http://127.0.0.1:9; }"#);
    assert_eq!(loc(&shadowed, "/px"), "px");
}

#[test]
fn uri_changes_allow_ten() {
    let mut changes = UriChanges::new();
    for _ in 0..10 {
        changes.change().unwrap();
    }
    assert_eq!(changes.change(), Err(RouteError::RedirectCycle));
    assert_eq!(changes.change(), Err(RouteError::RedirectCycle));
    let conf = http(&srv("location / { return 200 root; }"));
    let router = Router::new(&conf);
    let mut changes = UriChanges::default();
    for _ in 0..10 {
        assert!(router.refind_location(0, "/", &mut changes).is_ok());
    }
    assert!(router.refind_location(0, "/", &mut changes).is_err());
}

// ---- servers ----

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Which server (its `return` text at server level) answers `host` on `local`.
fn which(conf: &HttpConf, router: &Router, local: &str, host: Option<&str>) -> String {
    let m = router.server_for(addr(local), host).unwrap();
    returned(&conf.servers[m.server].conf.script)
}

const NAMES: &str = r#"
    server { listen 127.0.0.1:80; server_name first.test; return 200 first; }
    server { listen 127.0.0.1:80; server_name www.example.com; return 200 exact; }
    server { listen 127.0.0.1:80; server_name *.example.com; return 200 lead_short; }
    server { listen 127.0.0.1:80; server_name *.a.example.com; return 200 lead_long; }
    server { listen 127.0.0.1:80; server_name .bare.org; return 200 bare; }
    server { listen 127.0.0.1:80; server_name www.*; return 200 trail_short; }
    server { listen 127.0.0.1:80; server_name www.example.*; return 200 trail_long; }
    server { listen 127.0.0.1:80; server_name ~^(?<sub>[a-z]+)\.rx\.test$ ~^api\.; return 200 rx1; }
    server { listen 127.0.0.1:80 default_server; server_name ~\.rx\.test$ ""; return 200 rx2; }
"#;

#[test]
fn server_name_precedence() {
    let conf = http(NAMES);
    let r = Router::new(&conf);
    let w = |h: &str| which(&conf, &r, "127.0.0.1:80", Some(h));
    assert_eq!(w("www.example.com"), "exact");
    assert_eq!(w("x.example.com"), "lead_short");
    assert_eq!(w("x.y.example.com"), "lead_short");
    assert_eq!(w("x.a.example.com"), "lead_long");
    assert_eq!(w("a.example.com"), "lead_short");
    assert_eq!(w("bare.org"), "bare");
    assert_eq!(w("q.bare.org"), "bare");
    assert_eq!(w("www.example.org"), "trail_long");
    assert_eq!(w("www.example.co.uk"), "trail_long");
    assert_eq!(w("www.other.org"), "trail_short");
    assert_eq!(w("www.example"), "trail_short");
    assert_eq!(w("www"), "rx2");
    assert_eq!(w("abc.rx.test"), "rx1");
    assert_eq!(w("ab1.rx.test"), "rx2");
    assert_eq!(w("api.rx.test"), "rx1");
    assert_eq!(w("nothing.test"), "rx2");
}

#[test]
fn leading_wildcard_beats_trailing_and_exact_beats_all() {
    let conf = http(
        r#"server { listen 127.0.0.1:80; server_name www.*; return 200 trail; }
        server { listen 127.0.0.1:80; server_name *.com; return 200 lead; }
        server { listen 127.0.0.1:80; server_name ~^www; return 200 rx; }
        server { listen 127.0.0.1:80; server_name www.x.net; return 200 exact; }"#,
    );
    let r = Router::new(&conf);
    let w = |h: &str| which(&conf, &r, "127.0.0.1:80", Some(h));
    assert_eq!(w("www.x.com"), "lead");
    assert_eq!(w("www.x.org"), "trail");
    assert_eq!(w("www.x.net"), "exact");
    assert_eq!(w("wwwx"), "rx");
}

#[test]
fn regex_captures_of_server_names() {
    let conf = http(NAMES);
    let r = Router::new(&conf);
    let m = r
        .server_for(addr("127.0.0.1:80"), Some("ABC.rx.test:8080"))
        .unwrap();
    assert_eq!(m.how, NameMatch::Regex);
    let host = host_name("ABC.rx.test:8080");
    assert_eq!(host, "abc.rx.test");
    let c = m.captures.unwrap();
    assert_eq!(c.name(&host, "sub"), Some(&b"abc"[..]));
    assert_eq!(c.get(&host, 1), Some(&b"abc"[..]));
}

#[test]
fn host_is_case_insensitive_without_port_and_trailing_dot() {
    let conf = http(NAMES);
    let r = Router::new(&conf);
    for h in [
        "WWW.Example.COM",
        "www.example.com.",
        "www.example.com:8080",
        "Www.Example.Com.:1",
    ] {
        let m = r.server_for(addr("127.0.0.1:80"), Some(h)).unwrap();
        assert_eq!(m.how, NameMatch::Exact, "{h}");
    }
    let long = format!("{}.example.com", "X".repeat(300));
    let m = r.server_for(addr("127.0.0.1:80"), Some(&long)).unwrap();
    assert_eq!(m.how, NameMatch::LeadingWildcard);
}

#[test]
fn default_server_and_missing_host() {
    let conf = http(NAMES);
    let r = Router::new(&conf);
    // No Host: the empty name (here on the default server), never a regex.
    let m = r.server_for(addr("127.0.0.1:80"), None).unwrap();
    assert_eq!((m.server, m.how), (8, NameMatch::Exact));
    let conf = http(
        r#"server { listen 127.0.0.1:80; server_name a.test; return 200 a; }
        server { listen 127.0.0.1:80; server_name ~.*; return 200 rx; }
        server { listen 127.0.0.1:81; server_name b.test; return 200 b; }
        server { listen 127.0.0.1:81; return 200 noname; }"#,
    );
    let r = Router::new(&conf);
    // The first server is the default; a host-less request never tries regexes.
    assert_eq!(which(&conf, &r, "127.0.0.1:80", None), "a");
    assert_eq!(which(&conf, &r, "127.0.0.1:80", Some("zzz")), "rx");
    // A server without server_name has the name "": it takes host-less requests.
    assert_eq!(which(&conf, &r, "127.0.0.1:81", None), "noname");
    assert_eq!(which(&conf, &r, "127.0.0.1:81", Some("zzz")), "b");
}

#[test]
fn addresses_wildcard_and_specific() {
    let conf = http(
        r#"server { listen 8080; server_name any.test; return 200 any; }
        server { listen 8080; server_name other.test; return 200 other; }
        server { listen 127.0.0.2:8080; server_name two.test; return 200 two; }
        server { listen [::]:8080; server_name six.test; return 200 six; }
        server { listen 127.0.0.1:9090; listen 127.0.0.1:9091 default_server; server_name nine.test;
                 return 200 nine; }
        server { listen 127.0.0.1:9091; server_name ninety.test; return 200 ninety; }"#,
    );
    let r = Router::new(&conf);
    assert_eq!(
        which(&conf, &r, "127.0.0.1:8080", Some("other.test")),
        "other"
    );
    assert_eq!(which(&conf, &r, "10.1.2.3:8080", Some("x")), "any");
    // A specific listen hides the wildcard's servers for that address.
    assert_eq!(
        which(&conf, &r, "127.0.0.2:8080", Some("other.test")),
        "two"
    );
    assert_eq!(which(&conf, &r, "[::1]:8080", Some("any.test")), "six");
    assert_eq!(which(&conf, &r, "[::ffff:127.0.0.2]:8080", None), "two");
    assert_eq!(which(&conf, &r, "127.0.0.1:9091", Some("x")), "nine");
    assert_eq!(
        which(&conf, &r, "127.0.0.1:9091", Some("ninety.test")),
        "ninety"
    );
    assert_eq!(
        r.server_for(addr("127.0.0.1:7"), None).unwrap_err(),
        RouteError::NoServer(addr("127.0.0.1:7"))
    );
    // An IPv4 connection on a dual-stack `[::]` listener finds the IPv6 wildcard's servers.
    let dual = http(r#"server { listen [::]:7070 ipv6only=off; server_name d; return 200 dual; }"#);
    let rd = Router::new(&dual);
    assert_eq!(which(&dual, &rd, "[::ffff:10.0.0.1]:7070", None), "dual");
    let listed: Vec<_> = r.listen_addrs().collect();
    assert_eq!(listed.len(), 5);
    let sni = r
        .server_for_sni(addr("127.0.0.1:8080"), Some("OTHER.test"))
        .unwrap();
    assert_eq!(returned(&conf.servers[sni.server].conf.script), "other");
}

#[test]
fn locations_are_per_server() {
    let conf = http(
        r#"server { listen 127.0.0.1:80; server_name a; location / { return 200 a_root; } }
        server { listen 127.0.0.1:80; server_name b; location /x { return 200 b_x; } }"#,
    );
    let r = Router::new(&conf);
    assert_eq!(answer(&conf, &r, 0, "/x"), "a_root");
    assert_eq!(answer(&conf, &r, 1, "/x"), "b_x");
    assert_eq!(answer(&conf, &r, 1, "/"), "server");
    assert_eq!(answer(&conf, &r, 5, "/"), "server");
    let Found::Location(id, _) = r.find_location(1, "/x") else {
        panic!()
    };
    assert_eq!(r.server_of(id), 1);
}

#[test]
fn server_name_regexes_are_caseless_and_merge_slashes_comes_from_the_default() {
    let conf = http(
        r#"server { listen 127.0.0.1:80; server_name a.test; merge_slashes off; return 200 a; }
        server { listen 127.0.0.1:80 default_server; server_name ~^UP\.test$; return 200 up; }"#,
    );
    let r = Router::new(&conf);
    assert_eq!(which(&conf, &r, "127.0.0.1:80", Some("up.test")), "up");
    assert_eq!(r.default_server(addr("127.0.0.1:80")), Ok(1));
    assert!(r.default_server(addr("127.0.0.1:81")).is_err());
}
