//! The gzip filter's rules (`ngx_http_gzip_header_filter`, `ngx_http_gzip_ok`) and the
//! streaming encoder's output.

use std::io::Read;

use super::*;
use crate::config::model::LocConf;
use crate::http::body::ChunkedDecoder;
use crate::http::tests::conf;

fn level(extra: &str) -> LocConf {
    let on = if extra.contains("gzip off") {
        ""
    } else {
        "gzip on;"
    };
    let cfg = conf(&format!(
        "events {{}} http {{ {on} {extra} server {{ listen 8080; }} }}"
    ));
    cfg.http.as_ref().unwrap().servers[0].conf.clone()
}

fn req() -> GzipRequest<'static> {
    GzipRequest {
        accepts: true,
        ..GzipRequest::default()
    }
}

fn html(status: u16, length: Option<u64>) -> GzipResponse<'static> {
    GzipResponse {
        status,
        content_type: b"text/html; charset=utf-8",
        encoded: false,
        length,
        last_modified: None,
    }
}

fn gzips(c: &LocConf, r: &GzipRequest, resp: &GzipResponse, p: Option<&Proxied>) -> bool {
    decide(c, r, resp, p).level.is_some()
}

#[test]
fn accept_encoding_values() {
    for yes in [
        "gzip",
        "deflate, gzip",
        "br;q=1, gzip;q=0.5",
        "GZIP",
        "x-gzip",
        "gzip ; q=1",
    ] {
        assert!(accepts_gzip(yes.as_bytes()), "{yes}");
    }
    for no in [
        "",
        "deflate",
        "gzip;q=0",
        "gzip; q=0.000",
        "identity",
        "gzipx",
        "br",
    ] {
        assert!(!accepts_gzip(no.as_bytes()), "{no}");
    }
}

#[test]
fn msie6_detection() {
    assert!(is_msie6(
        b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"
    ));
    assert!(is_msie6(b"Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)"));
    assert!(!is_msie6(
        b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)"
    ));
    assert!(!is_msie6(
        b"Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)"
    ));
    assert!(!is_msie6(b"curl/8.0"));
}

#[test]
fn only_200_403_404_of_listed_types_at_min_length() {
    let c = level("");
    assert!(gzips(&c, &req(), &html(200, Some(20)), None));
    assert!(gzips(&c, &req(), &html(404, None), None));
    assert!(gzips(&c, &req(), &html(403, Some(500)), None));
    for status in [201, 206, 301, 304, 500, 502] {
        assert!(
            !gzips(&c, &req(), &html(status, Some(500)), None),
            "{status}"
        );
    }
    // Default min length 20; gzip_types defaults to text/html only.
    assert!(!gzips(&c, &req(), &html(200, Some(19)), None));
    let plain = GzipResponse {
        content_type: b"text/plain",
        ..html(200, None)
    };
    assert!(!gzips(&c, &req(), &plain, None));
    let encoded = GzipResponse {
        encoded: true,
        ..html(200, None)
    };
    assert!(!gzips(&c, &req(), &encoded, None));
    let c = level("gzip_types text/plain; gzip_min_length 256;");
    assert!(gzips(&c, &req(), &plain, None));
    assert!(
        gzips(&c, &req(), &html(200, Some(256)), None),
        "text/html always"
    );
    assert!(!gzips(&c, &req(), &html(200, Some(255)), None));
    let star = level("gzip_types *;");
    let odd = GzipResponse {
        content_type: b"application/x-whatever",
        ..html(200, None)
    };
    assert!(gzips(&star, &req(), &odd, None));
    let off = level("gzip off;");
    assert!(!gzips(&off, &req(), &html(200, None), None));
}

#[test]
fn vary_for_every_eligible_response_even_without_accept_encoding() {
    let c = level("gzip_vary on;");
    let no_ae = GzipRequest::default();
    assert_eq!(
        decide(&c, &no_ae, &html(200, None), None),
        Decision {
            vary: true,
            level: None
        }
    );
    assert_eq!(
        decide(&c, &no_ae, &html(500, None), None),
        Decision::default()
    );
    let lvl = level("gzip_vary on; gzip_comp_level 6;");
    assert_eq!(decide(&lvl, &req(), &html(200, None), None).level, Some(6));
}

#[test]
fn http_version_and_disable() {
    let c = level("");
    let old = GzipRequest {
        http10: true,
        ..req()
    };
    assert!(
        !gzips(&c, &old, &html(200, None), None),
        "gzip_http_version 1.1"
    );
    assert!(gzips(
        &level("gzip_http_version 1.0;"),
        &old,
        &html(200, None),
        None
    ));
    let c = level("gzip_disable msie6 \"^curl/\";");
    let ie = GzipRequest {
        user_agent: Some(b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"),
        ..req()
    };
    let curl = GzipRequest {
        user_agent: Some(b"CURL/8.1"),
        ..req()
    };
    let ff = GzipRequest {
        user_agent: Some(b"Mozilla/5.0 Firefox/120"),
        ..req()
    };
    assert!(!gzips(&c, &ie, &html(200, None), None));
    assert!(
        !gzips(&c, &curl, &html(200, None), None),
        "case-insensitive"
    );
    assert!(gzips(&c, &ff, &html(200, None), None));
}

#[test]
fn gzip_proxied_rules_apply_only_with_via() {
    let via = GzipRequest { via: true, ..req() };
    let r = html(200, None);
    assert!(!gzips(&level(""), &via, &r, None), "default off");
    assert!(gzips(&level(""), &req(), &r, None), "no Via: not proxied");
    assert!(gzips(&level("gzip_proxied any;"), &via, &r, None));
    let auth = GzipRequest {
        authorization: true,
        ..via
    };
    assert!(gzips(&level("gzip_proxied auth;"), &auth, &r, None));
    assert!(!gzips(&level("gzip_proxied auth;"), &via, &r, None));
    let p = |cc: &'static [u8]| Proxied {
        cache_control: vec![cc],
        ..Proxied::default()
    };
    let nc = level("gzip_proxied no-cache private;");
    assert!(gzips(&nc, &via, &r, Some(&p(b"no-cache"))));
    assert!(gzips(&nc, &via, &r, Some(&p(b"max-age=0, private"))));
    assert!(!gzips(&nc, &via, &r, Some(&p(b"no-store"))));
    let expired = Proxied {
        expires: Some(b"Thu, 01 Jan 1970 00:00:00 GMT"),
        date: Some(b"Mon, 01 Jan 2024 00:00:00 GMT"),
        ..Proxied::default()
    };
    let future = Proxied {
        expires: Some(b"Tue, 02 Jan 2024 00:00:00 GMT"),
        ..expired.clone()
    };
    let ex = level("gzip_proxied expired;");
    assert!(gzips(&ex, &via, &r, Some(&expired)));
    assert!(!gzips(&ex, &via, &r, Some(&future)));
    let lm = Proxied {
        last_modified: true,
        ..Proxied::default()
    };
    let nlm = level("gzip_proxied no_last_modified;");
    assert!(gzips(&nlm, &via, &r, Some(&Proxied::default())));
    assert!(!gzips(&nlm, &via, &r, Some(&lm)));
    let tagged = Proxied {
        etag: true,
        ..Proxied::default()
    };
    assert!(!gzips(
        &level("gzip_proxied no_etag;"),
        &via,
        &r,
        Some(&tagged)
    ));
    assert!(!gzips(&level("gzip_proxied expired;"), &via, &r, None));
}

#[test]
fn etags_become_weak() {
    assert_eq!(weak_etag(b"\"abc\"").unwrap(), b"W/\"abc\"");
    assert_eq!(weak_etag(b"W/\"abc\"").unwrap(), b"W/\"abc\"");
    assert_eq!(weak_etag(b"abc"), None);
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn dechunk(bytes: &[u8]) -> Vec<u8> {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut at = 0;
    while !dec.is_done() {
        let step = dec.decode(&bytes[at..]).unwrap();
        out.extend_from_slice(step.data);
        at += step.consumed;
    }
    assert_eq!(at, bytes.len(), "nothing after the last chunk");
    out
}

#[test]
fn streaming_encoder_round_trips_in_slices() {
    let body: Vec<u8> = (0..(1 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    for chunked in [true, false] {
        let mut enc = BodyEncoder::new(1, chunked);
        let mut out = Vec::new();
        let mut biggest = 0;
        for slice in body.chunks(16 * 1024) {
            let before = out.len();
            enc.push(slice, &mut out).unwrap();
            biggest = biggest.max(out.len() - before);
        }
        enc.finish(&mut out).unwrap();
        // Output leaves after each slice: never more than about one slice at a time.
        assert!(biggest < 64 * 1024, "{biggest}");
        let gz = if chunked { dechunk(&out) } else { out };
        assert_eq!(gunzip(&gz), body);
        assert_eq!(enc.bytes_in, body.len() as u64);
    }
    let mut empty = Vec::new();
    compress_all(1, true, b"", &mut empty);
    assert_eq!(gunzip(&dechunk(&empty)), b"");
}

#[test]
fn gzip_ratio_rounds_as_nginx() {
    assert_eq!(ratio(2125, 1000), "2.13");
    assert_eq!(ratio(2124, 1000), "2.12");
    assert_eq!(ratio(1999, 1000), "2.00");
    assert_eq!(ratio(1000, 3000), "0.33");
    assert_eq!(ratio(1214, 56), "21.68");
}

#[test]
fn a_small_body_is_one_chunk_with_nginx_header() {
    let body = b"hello world ".repeat(100);
    let mut out = Vec::new();
    compress_all(1, true, &body, &mut out);
    let eol = out.windows(2).position(|w| w == b"\r\n").unwrap();
    let size = usize::from_str_radix(std::str::from_utf8(&out[..eol]).unwrap(), 16).unwrap();
    let data = &out[eol + 2..eol + 2 + size];
    assert_eq!(
        &out[eol + 2 + size..],
        b"\r\n0\r\n\r\n",
        "one data chunk, then the last"
    );
    assert_eq!(&data[..3], b"\x1f\x8b\x08");
    assert_eq!(data[9], 3, "OS byte: Unix, as nginx's zlib");
    assert_eq!(gunzip(data), body);
}
