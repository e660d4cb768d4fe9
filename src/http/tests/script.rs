//! `http::script`: rewrite/return/set/break. The expected URIs, args and Locations are
//! ringproxy's own, written to agree with nginx 1.22 runs of the same locations made by hand (no
//! script repeats them).

use std::borrow::Cow;
use std::time::SystemTime;

use super::{conf, conn, with_head};
use crate::config::model::{Config, LocConf, ScriptOp};
use crate::http::script::*;
use crate::http::vars::RequestVars;

const CONF: &str = r#"events {} http { server { listen 8080; server_name srv.local;
    set $s server;
    location /a { rewrite ^/a(.*)$ /t$1?x=1 last; }
    location /b { rewrite ^/b(.*)$ /t$1? last; }
    location /c { rewrite ^/c(.*)$ /t$1 last; }
    location /d { rewrite ^/d(.*)$ http://ex.com/r$1?y=2 permanent; }
    location /e { rewrite ^/e(.*)$ /r$1 redirect; }
    location /f { return 301 /moved; }
    location /g { rewrite ^/g(.*)$ /t$1?x=1? last; }
    location /h { rewrite ^/h(.*)$ /u$1; rewrite ^/u(.*)$ /v$1; }
    location /i { rewrite ^/i(.*)$ /w$1 break; return 500; }
    location /j { set $v "$s-$uri"; break; return 500; }
    location /k { return 200 "k=$arg_k"; }
    location /l { rewrite ^/nomatch /x; set $v 1; }
    location /m { rewrite ^ $scheme://$host/n; }
    location /n { return 444; }
    location /o { rewrite ^ /p; break; return 500; }
    location /u1 { rewrite ^ $arg_r? redirect; }
    location /u2 { rewrite ^ http://ex.com/a%20%2F%7e%zz%4zb%3Fc%41?x=%3F%41 redirect; }
} }"#;

fn script(cfg: &Config, prefix: &str) -> Vec<ScriptOp> {
    let server = &cfg.http.as_ref().unwrap().servers[0];
    server
        .locations
        .iter()
        .find(|l| matches!(&l.matcher, crate::config::model::LocationMatch::Prefix { path, .. } if path == prefix))
        .unwrap()
        .conf
        .script
        .clone()
}

/// Runs the server script then location `prefix`'s on `target` (decoded `uri`).
fn go(target: &str, uri: &str, prefix: &str, check: impl FnOnce(Outcome, &mut RequestVars<'_>)) {
    let cfg = conf(CONF);
    let c = conn();
    let req = format!("GET {target} HTTP/1.1\r\nHost: Srv.Local:8081\r\n\r\n");
    with_head(req.as_bytes(), |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Owned(uri.into()), SystemTime::now());
        let server = &cfg.http.as_ref().unwrap().servers[0];
        assert_eq!(
            run(&server.conf.script, Level::Server, &mut v),
            Outcome::Continue
        );
        let out = run(&script(&cfg, prefix), Level::Location, &mut v);
        check(out, &mut v);
    });
}

fn redirect(code: u16, location: &str) -> Outcome {
    Outcome::Return(Reply {
        code,
        location: Some(location.as_bytes().to_vec()),
        body: None,
    })
}

#[test]
fn rewrite_args_rules() {
    go("/a/p%20q+r?o=1", "/a/p q+r", "/a", |o, v| {
        assert_eq!(o, Outcome::Last("/t/p q+r".into()));
        assert_eq!(v.args(), Some("x=1&o=1"));
        assert!(v.uri_changed() && v.location_valid());
    });
    go("/b/p?o=1", "/b/p", "/b", |o, v| {
        assert_eq!(o, Outcome::Last("/t/p".into()));
        assert_eq!(v.args(), None);
    });
    go("/c/p?o=1", "/c/p", "/c", |o, v| {
        assert_eq!(o, Outcome::Last("/t/p".into()));
        assert_eq!(v.args(), Some("o=1"));
    });
    go("/g/p?o=1", "/g/p", "/g", |o, v| {
        assert_eq!(o, Outcome::Last("/t/p".into()));
        assert_eq!(v.args(), Some("x=1"));
    });
    go("/a/x%26y", "/a/x&y", "/a", |o, v| {
        assert_eq!(o, Outcome::Last("/t/x&y".into()));
        assert_eq!(v.args(), Some("x=1"));
    });
}

#[test]
fn redirects_escape_captures_only_for_escaped_uris() {
    go("/d/p%20q+r?o=1", "/d/p q+r", "/d", |o, _| {
        assert_eq!(o, redirect(301, "http://ex.com/r/p%20q+r?y=2&o=1"));
    });
    go("/d/p%26q%3Br%23s%3F+", "/d/p&q;r#s?+", "/d", |o, _| {
        assert_eq!(o, redirect(301, "http://ex.com/r/p&q;r%23s?%2B?y=2"));
    });
    go("/d/p+q&r", "/d/p+q&r", "/d", |o, _| {
        assert_eq!(o, redirect(301, "http://ex.com/r/p+q&r?y=2"));
    });
    go("/e/x?o=1", "/e/x", "/e", |o, _| {
        assert_eq!(o, redirect(302, "/r/x?o=1"))
    });
    go("/m", "/m", "/m", |o, _| {
        assert_eq!(o, redirect(302, "http://srv.local/n"))
    });
}

/// A rewritten redirect is unescaped as nginx does (`NGX_UNESCAPE_REDIRECT`, the cases of
/// nginx-tests' rewrite_unescape.t and more, checked against nginx 1.22 by hand).
#[test]
fn redirects_are_unescaped_up_to_the_first_question_mark() {
    let t1 = "/u1?r=http%3A%2F%2Fexample.com%2F%3Ffrom%3Dblah";
    go(t1, "/u1", "/u1", |o, _| {
        assert_eq!(o, redirect(302, "http://example.com/?from%3Dblah"))
    });
    go(
        "/u1?r=http%3A%2F%2Fexample.com%0D%0Asplit",
        "/u1",
        "/u1",
        |o, _| assert_eq!(o, redirect(302, "http://example.com%0D%0Asplit")),
    );
    // Space and controls stay escaped, `%zz` keeps `zz`, `%4z` goes, a decoded `?` ends it.
    go("/u2?k=v", "/u2", "/u2", |o, _| {
        assert_eq!(
            o,
            redirect(302, "http://ex.com/a%20/~zzb?c%41?x=%3F%41&k=v")
        )
    });
}

#[test]
fn return_break_set_and_chained_rewrites() {
    go("/f?o=1", "/f", "/f", |o, _| {
        assert_eq!(o, redirect(301, "/moved"))
    });
    go("/k?k=v", "/k", "/k", |o, _| {
        assert_eq!(
            o,
            Outcome::Return(Reply {
                code: 200,
                location: None,
                body: Some(b"k=v".to_vec())
            })
        );
    });
    go("/n", "/n", "/n", |o, _| {
        assert!(matches!(o, Outcome::Return(Reply { code: 444, .. })));
    });
    // No flag: the next rewrite sees the new URI; the location is searched again at the end.
    go("/h/z", "/h/z", "/h", |o, _| {
        assert_eq!(o, Outcome::Last("/v/z".into()))
    });
    // `break` flag: stop, stay, and the location prefix no longer applies to proxy_pass.
    go("/i/z", "/i/z", "/i", |o, v| {
        assert_eq!(o, Outcome::Break);
        assert_eq!(v.uri(), "/w/z");
        assert!(!v.location_valid());
    });
    go("/j", "/j", "/j", |o, v| {
        assert_eq!(o, Outcome::Break);
        assert_eq!(v.get("v").unwrap().as_ref(), b"server-/j");
    });
    // A URI changed without a flag, then `break` (nginx's `ngx_http_script_break_code`): the
    // same as the `break` flag; a `break` after no change keeps the prefix valid.
    go("/o/z", "/o/z", "/o", |o, v| {
        assert_eq!(o, Outcome::Break);
        assert_eq!(v.uri(), "/p");
        assert!(!v.location_valid());
    });
    go("/j", "/j", "/j", |_, v| assert!(v.location_valid()));
    go("/l", "/l", "/l", |o, v| {
        assert_eq!(o, Outcome::Continue);
        assert!(!v.uri_changed());
    });
}

#[test]
fn relative_redirects_become_absolute_as_nginx() {
    let c = conn();
    with_head(
        b"GET / HTTP/1.1\r\nHost: Srv.Local:8081\r\n\r\n",
        |head, _| {
            let v = RequestVars::new(head, &c, &[], Cow::Borrowed("/"), SystemTime::now());
            let mut lc = LocConf::default();
            // nginx: the request's host (lowercase) and the *local* port.
            assert_eq!(
                absolute_location(&v, &lc, b"/moved"),
                b"http://srv.local:8080/moved"
            );
            assert_eq!(absolute_location(&v, &lc, b"http://x/"), b"http://x/");
            lc.port_in_redirect = Some(false);
            assert_eq!(absolute_location(&v, &lc, b"/m"), b"http://srv.local/m");
            lc.server_name_in_redirect = Some(true);
            lc.port_in_redirect = None;
            let mut c2 = conn();
            c2.server_name = "name.example";
            let v2 = RequestVars::new(head, &c2, &[], Cow::Borrowed("/"), SystemTime::now());
            assert_eq!(
                absolute_location(&v2, &lc, b"/m"),
                b"http://name.example:8080/m"
            );
            lc.absolute_redirect = Some(false);
            assert_eq!(absolute_location(&v, &lc, b"/m"), b"/m");
        },
    );
    with_head(b"GET / HTTP/1.0\r\n\r\n", |head, _| {
        let mut c3 = conn();
        c3.local = "10.0.0.1:80".parse().unwrap();
        let v = RequestVars::new(head, &c3, &[], Cow::Borrowed("/"), SystemTime::now());
        assert_eq!(
            absolute_location(&v, &LocConf::default(), b"/m"),
            b"http://10.0.0.1/m"
        );
    });
}

#[test]
fn escape_tables() {
    let mut out = Vec::new();
    escape(b"a b#%?&;+\x7f\xc3", &ESCAPE_URI, &mut out);
    assert_eq!(out, b"a%20b%23%25%3F&;+%7F%C3");
    out.clear();
    escape(b"a b#%?&;+", &ESCAPE_ARGS, &mut out);
    assert_eq!(out, b"a%20b%23%25?&;%2B");
}
