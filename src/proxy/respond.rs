//! Responses ringproxy makes itself: error pages (nginx's, with ringproxy's name), `return`
//! texts and redirects, with nginx's `Server` and `Date` headers.

use std::time::SystemTime;

use crate::http::status;

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
