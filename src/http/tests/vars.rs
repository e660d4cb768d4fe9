//! `http::vars`. The expected strings are ringproxy's own, written to agree with nginx 1.22
//! runs made by hand (no script repeats them).

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{conf, conn, with_head};
use crate::config::model::ProxyPass;
use crate::config::template::{Template, BUILTIN_VARS};
use crate::http::proxy_protocol::ProxyAddrs;
use crate::http::vars::*;

const BIG: &[u8] = b"GET /a/./b%41/../c?a=1&B=2&a=3 HTTP/1.1\r\nHost: WWW.Ex.COM.:8080\r\n\
X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nCookie: a=1; b= 2 ;c=3\r\nCookie: C=4\r\n\
User-Agent: u1\r\nUser-Agent: u2\r\nX-A: one\r\nX-a: two\r\nX_B: under\r\nX-K: aaabb\r\n\
Content-Length: 0\r\nContent-Type: text/x\r\nConnection: close\r\nAuthorization: Basic dTpw\r\n\r\n";

fn s(v: Option<Cow<'_, [u8]>>) -> Option<String> {
    v.map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[test]
fn request_variables_as_nginx() {
    let c = conn();
    with_head(BIG, |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Borrowed("/a/c"), SystemTime::now());
        let expect = [
            ("http_x_forwarded_for", Some("1.1.1.1, 2.2.2.2")),
            ("remote_user", Some("u")),
            ("http_cookie", Some("a=1; b= 2 ;c=3; C=4")),
            ("http_user_agent", Some("u1")),
            ("http_x_a", Some("one")),
            ("http_x_b", None),
            ("http_x_nope", None),
            ("host", Some("www.ex.com")),
            ("cookie_b", Some("2 ")),
            ("cookie_c", Some("3")),
            ("cookie_zz", None),
            ("arg_a", Some("1")),
            ("arg_b", Some("2")),
            ("arg_zz", None),
            ("args", Some("a=1&B=2&a=3")),
            ("query_string", Some("a=1&B=2&a=3")),
            ("is_args", Some("?")),
            ("uri", Some("/a/c")),
            ("document_uri", Some("/a/c")),
            ("request_uri", Some("/a/./b%41/../c?a=1&B=2&a=3")),
            ("request", Some("GET /a/./b%41/../c?a=1&B=2&a=3 HTTP/1.1")),
            ("request_method", Some("GET")),
            (
                "proxy_add_x_forwarded_for",
                Some("1.1.1.1, 2.2.2.2, 192.0.2.1"),
            ),
            ("server_name", Some("srv.local")),
            ("content_length", Some("0")),
            ("content_type", Some("text/x")),
            ("connection", Some("7")),
            ("connection_requests", Some("3")),
            ("https", Some("")),
            ("scheme", Some("http")),
            ("server_protocol", Some("HTTP/1.1")),
            ("remote_addr", Some("192.0.2.1")),
            ("remote_port", Some("5555")),
            ("server_addr", Some("127.0.0.1")),
            ("server_port", Some("8080")),
            ("hostname", Some("box")),
            ("pid", Some("42")),
            ("status", Some("000")),
            ("proxy_host", None),
            ("no_such_variable", None),
        ];
        for (name, want) in expect {
            assert_eq!(s(v.get(name)).as_deref(), want, "${name}");
        }
        assert_eq!(
            v.get("binary_remote_addr").unwrap().as_ref(),
            [192, 0, 2, 1]
        );
    });
}

#[test]
fn underscored_headers_exist_only_when_allowed() {
    let mut c = conn();
    c.underscores_in_headers = true;
    with_head(BIG, |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Borrowed("/"), SystemTime::now());
        assert_eq!(s(v.get("http_x_b")).as_deref(), Some("under"));
    });
}

#[test]
fn host_falls_back_to_server_name_and_xff_to_remote_addr() {
    let c = conn();
    with_head(b"GET /?xa HTTP/1.0\r\n\r\n", |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Borrowed("/"), SystemTime::now());
        assert_eq!(s(v.get("host")).as_deref(), Some("srv.local"));
        assert_eq!(
            s(v.get("proxy_add_x_forwarded_for")).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(s(v.get("http_x_forwarded_for")), None);
        assert_eq!(s(v.get("args")).as_deref(), Some("xa"));
        assert_eq!(s(v.get("arg_xa")), None);
    });
    with_head(b"GET / HTTP/1.0\r\n\r\n", |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Borrowed("/"), SystemTime::now());
        assert_eq!(s(v.get("is_args")).as_deref(), Some(""));
        assert_eq!(s(v.get("args")), None);
    });
}

const MAPS: &str = r#"events {} http {
    map $http_x_k $m { hostnames; default d; *.example.com wild; .foo.org dotfoo;
        www.bar.* tail; ~^(?<pre>a+)(b+)$ "re:$pre:$2:$1"; Exact ex; }
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    map $x $cached { default $x; }
    map $x $fresh { volatile; default $x; }
    map $self $self { default "<$self>"; }
    server { listen 8080; set $x a; }
}"#;

#[test]
fn map_hostnames_regex_and_default_as_nginx() {
    let cfg = conf(MAPS);
    let maps = &cfg.http.as_ref().unwrap().maps;
    let c = conn();
    let cases = [
        ("x.example.com", "wild"),
        ("example.com", "d"),
        ("foo.org", "dotfoo"),
        ("a.foo.org", "dotfoo"),
        ("www.bar.net", "tail"),
        ("EXACT", "ex"),
        ("www.example.com.", "wild"),
        ("ab", "re:a:b:a"),
        ("aaabb", "re:aaa:bb:aaa"),
        ("", "d"),
    ];
    for (key, want) in cases {
        let req = format!("GET / HTTP/1.0\r\nX-K: {key}\r\n\r\n");
        with_head(req.as_bytes(), |head, _| {
            let mut v = RequestVars::new(head, &c, maps, Cow::Borrowed("/"), SystemTime::now());
            assert_eq!(s(v.get("m")).as_deref(), Some(want), "key {key:?}");
            if want.starts_with("re:") {
                // The map's regex captures become the request's (nginx: $1 and $pre after it).
                assert_eq!(
                    v.capture(1),
                    Some(&key.as_bytes()[..key.find('b').unwrap()])
                );
                let one = v.capture(1).map(<[u8]>::to_vec);
                assert_eq!(v.get("pre").as_deref(), one.as_deref());
            }
        });
    }
}

#[test]
fn connection_upgrade_map() {
    let cfg = conf(MAPS);
    let maps = &cfg.http.as_ref().unwrap().maps;
    let c = conn();
    for (req, want) in [
        (
            &b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..],
            "upgrade",
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "close"),
    ] {
        with_head(req, |head, _| {
            let mut v = RequestVars::new(head, &c, maps, Cow::Borrowed("/"), SystemTime::now());
            let mut out = b"Connection: ".to_vec();
            v.render(&Template::parse("$connection_upgrade").unwrap(), &mut out);
            assert_eq!(out, format!("Connection: {want}").as_bytes());
        });
    }
}

#[test]
fn maps_are_cached_per_request_unless_volatile_and_cycles_end() {
    let cfg = conf(MAPS);
    let maps = &cfg.http.as_ref().unwrap().maps;
    let c = conn();
    with_head(b"GET / HTTP/1.0\r\n\r\n", |head, _| {
        let mut v = RequestVars::new(head, &c, maps, Cow::Borrowed("/"), SystemTime::now());
        v.set_var("x", b"one".to_vec());
        assert_eq!(s(v.get("cached")).as_deref(), Some("one"));
        assert_eq!(s(v.get("fresh")).as_deref(), Some("one"));
        v.set_var("x", b"two".to_vec());
        assert_eq!(s(v.get("cached")).as_deref(), Some("one"));
        assert_eq!(s(v.get("fresh")).as_deref(), Some("two"));
        // `$self` refers to itself: evaluation stops at the depth limit instead of recursing.
        let value = s(v.get("self")).unwrap();
        assert!(value.starts_with("<<") && value.ends_with(">>"), "{value}");
    });
}

#[test]
fn set_args_and_rewritten_uri() {
    let c = conn();
    with_head(b"GET /x?a=1 HTTP/1.0\r\n\r\n", |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Borrowed("/x"), SystemTime::now());
        assert!(!v.uri_changed());
        v.set_var("args", b"b=2".to_vec());
        assert_eq!(s(v.get("arg_b")).as_deref(), Some("2"));
        v.set_uri("/y".into(), Some(None));
        assert!(v.uri_changed());
        assert_eq!(s(v.get("uri")).as_deref(), Some("/y"));
        assert_eq!(s(v.get("args")), None);
        assert_eq!(s(v.get("request_uri")).as_deref(), Some("/x?a=1"));
    });
}

#[test]
fn time_and_response_variables() {
    let c = conn();
    with_head(b"GET / HTTP/1.0\r\n\r\n", |head, _| {
        let now = UNIX_EPOCH + Duration::from_millis(971_186_136_250);
        let start = now - Duration::from_millis(1500);
        let mut v = RequestVars::new(head, &c, &[], Cow::Borrowed("/"), start);
        v.now = Some(now);
        assert_eq!(s(v.get("msec")).as_deref(), Some("971186136.250"));
        assert_eq!(s(v.get("request_time")).as_deref(), Some("1.500"));
        assert_eq!(
            s(v.get("time_local")).as_deref(),
            Some("10/Oct/2000:13:55:36 +0000")
        );
        assert_eq!(
            s(v.get("time_iso8601")).as_deref(),
            Some("2000-10-10T13:55:36+00:00")
        );
        v.utc_offset = -(3 * 3600 + 30 * 60);
        assert_eq!(
            s(v.get("time_local")).as_deref(),
            Some("10/Oct/2000:10:25:36 -0330")
        );
        let mut date = Vec::new();
        local_time(now, 0).write_http_date(&mut date);
        assert_eq!(date, b"Tue, 10 Oct 2000 13:55:36 GMT");
        v.request_id = [0xab; 16];
        assert_eq!(s(v.get("request_id")).unwrap(), "ab".repeat(16));
        v.response.status = 101;
        v.response.headers = vec![
            ("Cache-Control".into(), b"no-cache".to_vec()),
            ("cache-control".into(), b"private".to_vec()),
            ("X-Y".into(), b"1".to_vec()),
            ("X-Y".into(), b"2".to_vec()),
        ];
        assert_eq!(s(v.get("status")).as_deref(), Some("101"));
        assert_eq!(
            s(v.get("sent_http_cache_control")).as_deref(),
            Some("no-cache, private")
        );
        assert_eq!(s(v.get("sent_http_x_y")).as_deref(), Some("1"));
        v.upstream.headers = vec![("Sec-WebSocket-Accept".into(), b"k".to_vec())];
        v.upstream.addr = "127.0.0.1:9001".into();
        assert_eq!(
            s(v.get("upstream_http_sec_websocket_accept")).as_deref(),
            Some("k")
        );
        assert_eq!(s(v.get("upstream_addr")).as_deref(), Some("127.0.0.1:9001"));
        assert_eq!(s(v.get("upstream_status")), None);
    });
}

#[test]
fn every_builtin_variable_is_evaluated() {
    let mut c = conn();
    c.tls = Some(TlsFacts {
        protocol: "TLSv1.3",
        cipher: "TLS_AES_128_GCM_SHA256",
        server_name: Some("a.example"),
        session_reused: true,
        client: None,
    });
    let pp = ProxyAddrs {
        src_addr: "192.0.2.1".into(),
        src_port: 123,
        dst_addr: "192.0.2.2".into(),
        dst_port: 5678,
    };
    c.proxy_protocol = Some(&pp);
    with_head(BIG, |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Borrowed("/"), SystemTime::now());
        v.document_root = Some(std::path::Path::new("/srv").into());
        v.upstream = UpstreamFacts {
            proxy_host: "b".into(),
            proxy_port: "80".into(),
            addr: "a".into(),
            status: "101".into(),
            connect_time: "0.001".into(),
            header_time: "0.002".into(),
            response_time: "0.003".into(),
            bytes_received: "1".into(),
            bytes_sent: "2".into(),
            headers: Vec::new(),
        };
        assert_eq!(s(v.get("gzip_ratio")), None, "not compressed");
        v.response.gzip = Some((2125, 1000));
        assert_eq!(s(v.get("limit_req_status")), None, "no limit_req applied");
        v.limits.req = Some("DELAYED");
        v.limits.conn = Some("PASSED");
        for name in BUILTIN_VARS {
            assert!(v.get(name).is_some(), "${name} has no value");
        }
        assert_eq!(s(v.get("gzip_ratio")).as_deref(), Some("2.13"));
        assert_eq!(s(v.get("limit_req_status")).as_deref(), Some("DELAYED"));
        assert_eq!(s(v.get("https")).as_deref(), Some("on"));
        assert_eq!(s(v.get("scheme")).as_deref(), Some("https"));
        assert_eq!(s(v.get("ssl_server_name")).as_deref(), Some("a.example"));
        assert_eq!(s(v.get("ssl_session_reused")).as_deref(), Some("r"));
        assert_eq!(
            s(v.get("proxy_protocol_addr")).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(s(v.get("proxy_protocol_port")).as_deref(), Some("123"));
        assert_eq!(
            s(v.get("proxy_protocol_server_addr")).as_deref(),
            Some("192.0.2.2")
        );
        assert_eq!(
            s(v.get("proxy_protocol_server_port")).as_deref(),
            Some("5678")
        );
    });
}

#[test]
fn realip_replaces_the_remote_address_and_keeps_the_connections() {
    let c = conn();
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
    with_head(head, |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Borrowed("/"), SystemTime::now());
        let peer = c.remote;
        assert_eq!(s(v.get("proxy_protocol_addr")), None, "no PROXY header");
        assert_eq!(s(v.get("remote_addr")), Some(peer.ip().to_string()));
        v.real = Some(("192.0.2.7".parse().unwrap(), 0));
        assert_eq!(s(v.get("remote_addr")).as_deref(), Some("192.0.2.7"));
        assert_eq!(s(v.get("remote_port")).as_deref(), Some(""));
        assert_eq!(
            v.get("binary_remote_addr").as_deref(),
            Some(&[192, 0, 2, 7][..])
        );
        let xff = s(v.get("proxy_add_x_forwarded_for"));
        assert_eq!(xff.as_deref(), Some("10.0.0.1, 192.0.2.7"));
        assert_eq!(s(v.get("realip_remote_addr")), Some(peer.ip().to_string()));
        assert_eq!(
            s(v.get("realip_remote_port")),
            Some(peer.port().to_string())
        );
        v.real = Some(("2001:db8::1".parse().unwrap(), 80));
        assert_eq!(s(v.get("remote_addr")).as_deref(), Some("2001:db8::1"));
        assert_eq!(s(v.get("remote_port")).as_deref(), Some("80"));
    });
}

#[test]
fn proxy_host_and_port_as_nginx() {
    let pass = |host: &str, tls| ProxyPass {
        tls,
        upstream: 0,
        host: host.into(),
        uri: None,
        uri_vars: None,
        dynamic: None,
        direct: None,
        span: crate::config::Span {
            file: None,
            line: 0,
        },
    };
    let f = |p: ProxyPass| {
        let u = UpstreamFacts::for_proxy_pass(&p);
        (u.proxy_host, u.proxy_port)
    };
    assert_eq!(f(pass("backend", false)), ("backend".into(), "80".into()));
    assert_eq!(f(pass("backend", true)), ("backend".into(), "443".into()));
    assert_eq!(
        f(pass("127.0.0.1:9001", false)),
        ("127.0.0.1:9001".into(), "9001".into())
    );
    assert_eq!(f(pass("h:80", false)), ("h".into(), "80".into()));
    assert_eq!(
        f(pass("[::1]:8080", false)),
        ("[::1]:8080".into(), "8080".into())
    );
    assert_eq!(f(pass("[::1]", false)), ("[::1]".into(), "80".into()));
}

#[test]
fn arg_and_cookie_parsing_edges() {
    let arg = |a: &str, n: &str| find_arg(a, n).map(|(s, e)| a[s..e].to_string());
    assert_eq!(arg("a&a=1", "a").as_deref(), Some("1"));
    assert_eq!(arg("ba=1&a=2", "a").as_deref(), Some("2"));
    assert_eq!(arg("A=", "a").as_deref(), Some(""));
    assert_eq!(arg("a", "a"), None);
    assert_eq!(arg("", "a"), None);
    let ck = |v: &str, n: &str| find_cookie(v.as_bytes(), n.as_bytes()).map(|b| b.to_vec());
    assert_eq!(ck("x=1,y=2", "y").as_deref(), Some(&b"2"[..]));
    assert_eq!(ck("xy=1; y =2", "y").as_deref(), Some(&b"2"[..]));
    assert_eq!(ck("y", "y"), None);
    assert!(header_is_var("Sec-WebSocket-Key", "sec_websocket_key"));
    assert!(!header_is_var("Sec-WebSocket-Key", "sec_websocket"));
}
