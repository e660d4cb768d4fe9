//! `add_header`, `proxy_redirect` and `error_page` resolution, sans-IO. The expected values are
//! ringproxy's own, written to agree with what nginx 1.22.1 rendered for the same configuration
//! in runs made by hand (no script repeats them).

use std::borrow::Cow;
use std::time::SystemTime;

use super::*;
use crate::config::model::{Config, Location};
use crate::http::tests::{conf, conn, with_head};
use crate::proxy::error_page::{self, Action, Resolved};

const CONF: &str = r#"events {} http {
    add_header X-Http h;
    server { listen 8080;
        location /a { add_header X-A "a $uri"; add_header X-B b always; add_header X-E "$http_none"; }
        location /inherit { }
        location /api { proxy_pass http://127.0.0.1:19901; }
        location /api2 { proxy_pass http://127.0.0.1:19901/; }
        location /up { proxy_pass http://127.0.0.1:19901/v1/; }
        location /rules { proxy_pass http://127.0.0.1:19901;
            proxy_redirect http://$proxy_host/one/ /two/;
            proxy_redirect ~^http://other:(\d+)/(.*)$ /port$1/$2;
            proxy_redirect default; }
        location /off { proxy_pass http://127.0.0.1:19901; proxy_redirect off; }
        location /ep { error_page 404 /page.html; error_page 500 502 = /fix?x=1;
            error_page 503 =418 @named; error_page 504 http://example.com/e;
            error_page 403 =301 http://example.com/$uri; }
    }
}"#;

fn loc<'c>(cfg: &'c Config, prefix: &str) -> &'c Location {
    cfg.http.as_ref().unwrap().servers[0]
        .locations
        .iter()
        .find(|l| matches!(&l.matcher, LocationMatch::Prefix { path, .. } if path == prefix))
        .unwrap()
}

/// Runs `f` with request variables for `GET uri`.
fn with_vars<R>(uri: &str, f: impl FnOnce(&mut RequestVars) -> R) -> R {
    let c = conn();
    let req = format!("GET {uri} HTTP/1.1\r\nHost: x:19900\r\n\r\n");
    with_head(req.as_bytes(), |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Owned(uri.into()), SystemTime::now());
        f(&mut v)
    })
}

fn text(list: &[(String, Vec<u8>)]) -> Vec<String> {
    list.iter()
        .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
        .collect()
}

#[test]
fn add_header_statuses_always_and_empty_values() {
    let cfg = conf(CONF);
    let a = &loc(&cfg, "/a").conf;
    with_vars("/a/x", |v| {
        assert_eq!(text(&add_headers(a, 200, v)), ["X-A: a /a/x", "X-B: b"]);
        for s in [201, 204, 206, 301, 302, 303, 304, 307, 308] {
            assert_eq!(add_headers(a, s, v).len(), 2, "{s}");
        }
        for s in [202, 300, 400, 404, 500, 502] {
            assert_eq!(text(&add_headers(a, s, v)), ["X-B: b"], "{s}");
        }
    });
    // A level without add_header inherits the enclosing level's list.
    let i = &loc(&cfg, "/inherit").conf;
    with_vars("/inherit", |v| {
        assert_eq!(text(&add_headers(i, 200, v)), ["X-Http: h"]);
    });
}

fn redirect(prefix: &str, value: &str) -> String {
    let cfg = conf(CONF);
    let l = loc(&cfg, prefix);
    let pass = l.conf.proxy_pass.as_ref().unwrap();
    let default = default_redirect(pass, &l.matcher);
    with_vars(prefix, |v| {
        v.upstream = crate::http::vars::UpstreamFacts::for_proxy_pass(pass);
        let refresh = format!("5; url={value}").into_bytes();
        let mut h: Vec<(&str, Cow<[u8]>)> = vec![
            ("Location", Cow::Borrowed(value.as_bytes())),
            ("Refresh", Cow::Owned(refresh)),
        ];
        redirect_headers(&l.conf, default.as_ref(), &mut h, v);
        let loc = String::from_utf8(h[0].1.to_vec()).unwrap();
        assert_eq!(
            String::from_utf8(h[1].1.to_vec()).unwrap(),
            format!("5; url={loc}"),
            "Refresh follows Location"
        );
        loc
    })
}

#[test]
fn proxy_redirect_default_as_nginx() {
    // Recorded from nginx 1.22.1: `location /api { proxy_pass http://127.0.0.1:19901; }` turns
    // `http://127.0.0.1:19901/api2/x` into `/api2/x`; `location /api2 { proxy_pass
    // http://127.0.0.1:19901/; }` into `/api2api2/x`.
    assert_eq!(redirect("/api", "http://127.0.0.1:19901/api2/x"), "/api2/x");
    assert_eq!(
        redirect("/api2", "http://127.0.0.1:19901/api2/x"),
        "/api2api2/x"
    );
    // The location's name replaces the URL as is (no slash added), as nginx.
    assert_eq!(redirect("/up", "http://127.0.0.1:19901/v1/a"), "/upa");
    assert_eq!(
        redirect("/up", "http://127.0.0.1:19901/v2/a"),
        "http://127.0.0.1:19901/v2/a"
    );
    assert_eq!(redirect("/api", "http://elsewhere/x"), "http://elsewhere/x");
}

// effect: proxy_redirect
#[test]
fn proxy_redirect_rules_in_order_and_off() {
    assert_eq!(redirect("/rules", "http://127.0.0.1:19901/one/a"), "/two/a");
    assert_eq!(redirect("/rules", "http://other:81/b/c"), "/port81/b/c");
    assert_eq!(redirect("/rules", "http://127.0.0.1:19901/z"), "/z");
    assert_eq!(
        redirect("/off", "http://127.0.0.1:19901/z"),
        "http://127.0.0.1:19901/z"
    );
}

fn page(code: u16) -> Option<Resolved> {
    let cfg = conf(CONF);
    let c = &loc(&cfg, "/ep").conf;
    let p = error_page::find(c, code)?;
    Some(with_vars("/ep/q", |v| error_page::resolve(p, code, v)))
}

#[test]
fn error_page_targets_and_statuses() {
    let internal = |uri: &str, args: Option<&str>| Action::Internal {
        uri: uri.into(),
        args: args.map(Into::into),
    };
    assert_eq!(
        page(404).unwrap(),
        Resolved {
            action: internal("/page.html", None),
            status: Some(404)
        }
    );
    assert_eq!(
        page(502).unwrap(),
        Resolved {
            action: internal("/fix", Some("x=1")),
            status: None
        }
    );
    assert_eq!(
        page(503).unwrap(),
        Resolved {
            action: Action::Named("named".into()),
            status: Some(418)
        }
    );
    let redirect = |code: u16, to: &str| Resolved {
        action: Action::Redirect {
            code,
            location: to.as_bytes().to_vec(),
        },
        status: Some(code),
    };
    assert_eq!(page(504).unwrap(), redirect(302, "http://example.com/e"));
    assert_eq!(
        page(403).unwrap(),
        redirect(301, "http://example.com//ep/q")
    );
    assert_eq!(page(400), None);
}

#[test]
fn proxied_framing_follows_gzip_and_the_client() {
    let gz = Extras {
        gzip: Decision {
            vary: false,
            level: Some(1),
        },
        ..Extras::default()
    };
    let head = |extras: Extras| ProxiedHead {
        status: 200,
        headers: Vec::new(),
        extras,
    };
    let plain = head(Extras::default());
    let len = ResponseBody::Length(9);
    assert_eq!(plain.framing(len, true).0, ClientFraming::Length(9));
    assert_eq!(
        plain.framing(ResponseBody::Chunked, false).0,
        ClientFraming::Close
    );
    let zipped = head(gz);
    let (f, enc) = zipped.framing(len, true);
    assert_eq!((f, enc.is_some()), (ClientFraming::Chunked, true));
    let (f, enc) = zipped.framing(ResponseBody::UntilClose, false);
    assert_eq!((f, enc.is_some()), (ClientFraming::Close, true));
    let (f, enc) = zipped.framing(ResponseBody::None, true);
    assert_eq!((f, enc.is_some()), (ClientFraming::None, false));
}
