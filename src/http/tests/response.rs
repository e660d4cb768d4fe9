use crate::http::request::{Parsed, Version};
use crate::http::response::*;
use httparse::EMPTY_HEADER;

fn body(buf: &[u8], head: bool) -> Result<ResponseBody, ResponseError> {
    let mut h = [EMPTY_HEADER; 16];
    match parse_response(buf, &mut h, 4096, head)? {
        Parsed::Complete(r, n) => {
            assert_eq!(n, buf.len());
            Ok(r.body)
        }
        Parsed::Partial => panic!("partial"),
    }
}

#[test]
fn parses_status_and_headers() {
    let buf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX: y\r\n\r\nabc";
    let mut h = [EMPTY_HEADER; 4];
    let Ok(Parsed::Complete(r, n)) = parse_response(buf, &mut h, 4096, false) else {
        panic!()
    };
    assert_eq!(
        (r.version, r.status, r.reason, n),
        (Version::Http11, 404, "Not Found", buf.len() - 3)
    );
    assert_eq!(r.headers.len(), 2);
    assert_eq!(r.body, ResponseBody::Length(3));
    for i in 0..n {
        let mut h = [EMPTY_HEADER; 4];
        assert!(matches!(
            parse_response(&buf[..i], &mut h, 4096, false),
            Ok(Parsed::Partial)
        ));
    }
}

#[test]
fn framing_per_rfc9112() {
    let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(body(cl, false), Ok(ResponseBody::Length(5)));
    assert_eq!(body(cl, true), Ok(ResponseBody::None));
    let ch = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n";
    assert_eq!(body(ch, false), Ok(ResponseBody::Chunked));
    assert_eq!(
        body(b"HTTP/1.0 200 OK\r\n\r\n", false),
        Ok(ResponseBody::UntilClose)
    );
    assert_eq!(
        body(b"HTTP/1.1 200\r\n\r\n", false),
        Ok(ResponseBody::UntilClose)
    );
    for s in [100, 102, 103, 204, 304] {
        let buf = format!("HTTP/1.1 {s} X\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(body(buf.as_bytes(), false), Ok(ResponseBody::None), "{s}");
    }
    let up =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(body(up, false), Ok(ResponseBody::SwitchingProtocols));
    let mut h = [EMPTY_HEADER; 4];
    let Ok(Parsed::Complete(r, _)) =
        parse_response(b"HTTP/1.1 100 Continue\r\n\r\n", &mut h, 99, false)
    else {
        panic!()
    };
    assert!(r.is_interim());
}

#[test]
fn bad_framing_is_502() {
    let cases: &[(&[u8], ResponseError)] = &[
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            ResponseError::DuplicateContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            ResponseError::LengthAndChunked,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            ResponseError::UnknownTransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            ResponseError::Invalid("invalid header name"),
        ),
        (
            b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            ResponseError::Invalid("invalid header name"),
        ),
        (
            b"HTTP/1.1 000 OK\r\n\r\n",
            ResponseError::Invalid("invalid response status"),
        ),
        (
            b"HTTP/2 200 OK\r\n\r\n",
            ResponseError::Invalid("invalid HTTP version"),
        ),
    ];
    for (buf, want) in cases {
        let got = body(buf, false);
        assert_eq!(got, Err(*want), "{:?}", String::from_utf8_lossy(buf));
        assert_eq!(want.status(), 502);
    }
}

#[test]
fn too_big_header() {
    let mut buf = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    buf.extend(std::iter::repeat_n(b'a', 5000));
    let mut h = [EMPTY_HEADER; 4];
    assert!(matches!(
        parse_response(&buf, &mut h, 4096, false),
        Err(ResponseError::TooBig)
    ));
    buf.extend_from_slice(b"\r\n\r\n");
    let mut h = [EMPTY_HEADER; 4];
    assert!(matches!(
        parse_response(&buf, &mut h, 4096, false),
        Err(ResponseError::TooBig)
    ));
    let mut h = [EMPTY_HEADER; 4];
    assert!(matches!(
        parse_response(&buf, &mut h, 8192, false),
        Ok(Parsed::Complete(..))
    ));
    assert_eq!(
        ResponseError::TooBig.to_string(),
        "upstream sent too big header"
    );
}

#[test]
fn writes_heads() {
    let mut v = Vec::new();
    write_head(
        &mut v,
        502,
        None,
        [
            ("Content-Type", &b"text/html"[..]),
            ("Content-Length", b"157"),
        ],
    )
    .unwrap();
    assert_eq!(
        v,
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 157\r\n\r\n"
    );
    let mut b = bytes::BytesMut::new();
    write_head(&mut b, 494, None, []).unwrap();
    assert_eq!(&b[..], b"HTTP/1.1 400 Bad Request\r\n\r\n");
    let mut v = Vec::new();
    write_head(&mut v, 299, None, []).unwrap();
    assert_eq!(v, b"HTTP/1.1 299 \r\n\r\n");
    let mut v = Vec::new();
    write_head(
        &mut v,
        101,
        Some("Switching Protocols"),
        [("Upgrade", &b"websocket"[..])],
    )
    .unwrap();
    assert_eq!(
        v,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    );
    let mut v = Vec::new();
    assert!(write_head(&mut v, 200, None, [("X", &b"a\r\nSet-Cookie: x"[..])]).is_err());
    assert!(write_head(&mut v, 200, None, [("X Y", &b"a"[..])]).is_err());
    assert!(write_head(&mut v, 200, Some("OK\r\nX: y"), []).is_err());
    assert!(v.is_empty());
}
