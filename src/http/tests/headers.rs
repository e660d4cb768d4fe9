use crate::http::headers::*;
use httparse::Header;

#[test]
fn token_lists() {
    let t: Vec<&[u8]> = tokens(b" a ,, b\t,c,").collect();
    assert_eq!(t, [&b"a"[..], b"b", b"c"]);
    assert!(has_token(b"keep-alive, Upgrade", b"upgrade"));
    assert!(!has_token(b"upgrade-insecure", b"upgrade"));
    assert_eq!(tokens(b"").count(), 0);
}

#[test]
fn fixed_hop_by_hop_set() {
    for n in [
        "Connection",
        "keep-alive",
        "Proxy-Authenticate",
        "PROXY-AUTHORIZATION",
        "TE",
        "Trailer",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
    ] {
        assert_eq!(forward(n, [], false), Forward::HopByHop, "{n}");
    }
    assert_eq!(forward("Accept", [], false), Forward::AsIs);
    assert_eq!(forward("Sec-WebSocket-Key", [], false), Forward::AsIs);
}

#[test]
fn connection_nominated_headers_are_dropped() {
    let conn: [&[u8]; 2] = [b"keep-alive, X-Secret", b"x-other"];
    assert_eq!(forward("x-secret", conn, false), Forward::HopByHop);
    assert_eq!(forward("X-Other", conn, false), Forward::HopByHop);
    assert_eq!(forward("X-Public", conn, false), Forward::AsIs);
}

#[test]
fn host_and_content_length_are_never_dropped_by_connection() {
    let conn: [&[u8]; 1] = [b"host, content-length"];
    assert_eq!(forward("Host", conn, false), Forward::ProxySets);
    assert_eq!(forward("Content-Length", conn, false), Forward::ProxySets);
}

#[test]
fn underscores_follow_nginx() {
    assert_eq!(forward("Content_Length", [], false), Forward::Ignored);
    assert_eq!(forward("X_Y", [], true), Forward::AsIs);
}

#[test]
fn forwardable_filters_a_request() {
    let h = [
        Header {
            name: "Host",
            value: b"h",
        },
        Header {
            name: "Connection",
            value: b"Upgrade, X-Drop",
        },
        Header {
            name: "Upgrade",
            value: b"websocket",
        },
        Header {
            name: "X-Drop",
            value: b"1",
        },
        Header {
            name: "Origin",
            value: b"https://o",
        },
        Header {
            name: "Content-Length",
            value: b"0",
        },
    ];
    let names: Vec<&str> = forwardable(&h, false).map(|h| h.name).collect();
    assert_eq!(names, ["Origin"]);
}
