//! Responses ringproxy makes itself: error pages (nginx's, with ringproxy's name), `return`
//! texts and redirects, with nginx's `Server` and `Date` headers, and (through [`page`]) the
//! `add_header` lines and gzip of the location that answers.

use std::time::SystemTime;

use crate::config::model::LocConf;
use crate::http::request::{RequestHead, Version};
use crate::http::script::{absolute_location, Reply};
use crate::http::status;
use crate::http::vars::RequestVars;
use crate::proxy::gzip::{self, GzipResponse};
use crate::proxy::headers_out::Extras;

/// `Server:` value (`ringproxy/0.1.0`, or `ringproxy` with `server_tokens off`).
pub fn server_header(tokens: bool) -> &'static str {
    if tokens {
        concat!("ringproxy/", env!("CARGO_PKG_VERSION"))
    } else {
        "ringproxy"
    }
}

/// Writes a status line with `Server` and `Date` into `out`.
pub fn status_line(out: &mut Vec<u8>, code: u16, tokens: bool) {
    let wire = status::wire_status(code);
    let reason = status::reason(wire).unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {wire} {reason}\r\n").as_bytes());
    out.extend_from_slice(b"Server: ");
    out.extend_from_slice(server_header(tokens).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A complete response: status, headers, optional body. `keep_alive` picks the `Connection`
/// header.
pub fn simple(
    code: u16,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
    keep_alive: bool,
    tokens: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    status_line(&mut out, code, tokens);
    if !content_type.is_empty() {
        out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    for (k, v) in extra {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    out.extend_from_slice(body);
    out
}

/// nginx's error page for `code` (494 is sent as 400 with its own text).
pub fn error(code: u16, keep_alive: bool, tokens: bool) -> Vec<u8> {
    let page = status::error_page(code).unwrap_or(b"");
    simple(code, "text/html", page, &[], keep_alive, tokens)
}

/// A response ringproxy makes itself, for [`page`].
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    /// Status.
    pub code: u16,
    /// `Content-Type` (empty: none).
    pub content_type: &'a str,
    /// Body.
    pub body: &'a [u8],
    /// `Location`.
    pub location: Option<&'a str>,
    /// `Location` goes in nginx's slot before `Connection`: the header filter writes it there
    /// only when it made a relative one absolute; any other stays in the header list, after
    /// `Connection` and `Vary`, before the `add_header` lines.
    pub location_first: bool,
    /// The connection may stay open.
    pub keep_alive: bool,
    /// `server_tokens`.
    pub tokens: bool,
    /// `WWW-Authenticate` (an access check's 401).
    pub www_authenticate: Option<&'a [u8]>,
    /// The client takes a chunked body (HTTP/1.1, `chunked_transfer_encoding on`); a compressed
    /// body to one that does not is sent until close.
    pub chunked: bool,
}

/// Writes `p` with `x` (`Vary`, the `add_header` lines, gzip) in nginx's order. Returns the
/// bytes, whether the connection stays open, and the gzip byte counts when compressed.
pub fn page(p: &Page, x: &Extras) -> (Vec<u8>, bool, Option<(u64, u64)>) {
    // nginx's header filter: a 204 has no body, so neither type nor length (nor the text a
    // `return 204 "..."` names).
    let no_content = p.code == 204;
    let body = if no_content { &[][..] } else { p.body };
    let mut out = Vec::with_capacity(256 + body.len());
    status_line(&mut out, p.code, p.tokens);
    let mut line = |n: &str, v: &[u8]| {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    };
    if !p.content_type.is_empty() && !no_content {
        line("Content-Type", &x.content_type(p.content_type.as_bytes()));
    }
    let compress = x.gzip.level;
    if compress.is_none() && !no_content {
        line("Content-Length", body.len().to_string().as_bytes());
    }
    if let Some(l) = p.location.filter(|_| p.location_first) {
        line("Location", l.as_bytes());
    }
    let chunked = compress.is_some() && p.chunked;
    let keep = p.keep_alive && (compress.is_none() || chunked);
    if chunked {
        line("Transfer-Encoding", b"chunked");
    }
    line("Connection", if keep { b"keep-alive" } else { b"close" });
    if let Some(v) = p.www_authenticate {
        line("WWW-Authenticate", v);
    }
    if let Some((n, v)) = x.vary() {
        line(n, v);
    }
    if let Some(l) = p.location.filter(|_| !p.location_first) {
        line("Location", l.as_bytes());
    }
    for (n, v) in x.tail() {
        line(n, v);
    }
    out.extend_from_slice(b"\r\n");
    let counts = match compress {
        Some(level) => Some(gzip::compress_all(level, chunked, body, &mut out)),
        None => {
            out.extend_from_slice(body);
            None
        }
    };
    (out, keep, counts)
}

/// The client takes a chunked body: HTTP/1.1 and `chunked_transfer_encoding on`.
pub fn takes_chunked(head: &RequestHead<'_, '_>, conf: &LocConf) -> bool {
    head.version == Version::Http11 && conf.chunked_transfer_encoding()
}

/// A `return`, redirect or error as the location `conf` answers it: its text (`default_type`)
/// or nginx's page for the status, `Location` made absolute, `add_header` and gzip. Returns
/// what [`page`] returns.
pub fn reply(
    vars: &mut RequestVars<'_>,
    conf: &LocConf,
    r: &Reply,
    keep_alive: bool,
) -> (Vec<u8>, bool, Option<(u64, u64)>) {
    let location = r.location.as_ref().map(|l| {
        let abs = absolute_location(vars, conf, l);
        let made_absolute = abs != *l;
        (String::from_utf8_lossy(&abs).into_owned(), made_absolute)
    });
    let default_type = conf.default_type();
    let (content_type, body): (&str, &[u8]) = match &r.body {
        Some(body) => (&default_type, body),
        None if r.code >= 300 => ("text/html", status::error_page(r.code).unwrap_or(b"")),
        // nginx: a bare `return 2xx` is an empty body of the `default_type`.
        None => (&default_type, b""),
    };
    let resp = GzipResponse {
        status: r.code,
        content_type: content_type.as_bytes(),
        encoded: false,
        length: Some(body.len() as u64),
        last_modified: None,
    };
    let extras = Extras::for_response(conf, vars, &resp, None);
    let p = Page {
        code: r.code,
        content_type,
        body,
        location: location.as_ref().map(|(l, _)| l.as_str()),
        location_first: location.as_ref().is_some_and(|(_, first)| *first),
        keep_alive,
        tokens: conf.server_tokens(),
        www_authenticate: vars
            .response
            .www_authenticate
            .as_deref()
            .filter(|_| r.code == 401),
        chunked: takes_chunked(vars.head(), conf),
    };
    page(&p, &extras)
}
