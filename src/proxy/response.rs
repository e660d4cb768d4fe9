//! The client response head from an upstream response head, as nginx's proxy module and header
//! filter make it.
//!
//! Place in the data flow: upstream request -> peer -> **response head for the client** -> body
//! relay or tunnel. [`passes`] decides which upstream headers the client sees; [`write_client_head`]
//! writes the head in nginx's order: status line (with the upstream's reason phrase), `Server`,
//! `Date`, `Content-Type`, `Content-Length`, `Last-Modified`, `Location`, `Transfer-Encoding`,
//! `Connection`, `Keep-Alive`, then the other upstream headers in their order.
//!
//! nginx hides `Date`, `Server`, `X-Pad` and `X-Accel-*` by default (and writes its own `Server`
//! and `Date`), plus what `proxy_hide_header` lists; `proxy_pass_header` lets a default-hidden one
//! through (then nginx does not write its own). Hop-by-hop headers never pass: the proxy writes
//! its own `Connection` (`upgrade` on a 101, whose `Upgrade` header passes), `Keep-Alive` and
//! framing (`Content-Length`/`Transfer-Encoding` follow how the relay sends the body, given by
//! the caller). Unlike nginx, `Proxy-Authenticate` and `Trailer` from the peer are dropped too
//! (RFC 9110 hop-by-hop, as for requests).

use std::time::{Duration, SystemTime};

use crate::config::model::LocConf;
use crate::http::headers::{has_token, is_hop_by_hop};
use crate::http::response::UnsafeHeader;
use crate::http::vars::local_time;
use crate::proxy::gzip::weak_etag;
use crate::proxy::headers_out::Extras;

/// The product token in `Server` (`server_tokens on` adds `/version`).
pub const SERVER: &str = "ringproxy";

/// Headers nginx's proxy module hides unless `proxy_pass_header` names them.
pub const DEFAULT_HIDDEN: [&str; 8] = [
    "date",
    "server",
    "x-pad",
    "x-accel-expires",
    "x-accel-redirect",
    "x-accel-limit-rate",
    "x-accel-buffering",
    "x-accel-charset",
];

/// How the relay sends the response body to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body (HEAD, 204, 304, 101): no framing header.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (HTTP/1.0 client, unknown length): no framing header.
    Close,
}

/// What the engine knows about the client side of this response.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions<'a> {
    /// Body framing toward the client.
    pub framing: ClientFraming,
    /// Whether the client connection stays open (`Connection: keep-alive` vs `close`).
    pub keep_alive: bool,
    /// The clock for `Date`.
    pub now: SystemTime,
    /// `add_header` and gzip (`Vary` after `Keep-Alive`; the added lines and
    /// `Content-Encoding` last; a strong `ETag` made weak when compressing).
    pub extras: &'a Extras,
}

/// Whether the upstream header `name` reaches the client of a response with `status`.
pub fn passes(name: &str, status: u16, upstream_connection: &[&[u8]], conf: &LocConf) -> bool {
    let lower_eq = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(name));
    if name.eq_ignore_ascii_case("content-length") {
        return false;
    }
    if name.eq_ignore_ascii_case("upgrade") {
        return status == 101;
    }
    if is_hop_by_hop(name)
        || upstream_connection
            .iter()
            .any(|v| has_token(v, name.as_bytes()))
    {
        return false;
    }
    let pass = conf.proxy_pass_header.as_deref().is_some_and(lower_eq);
    let hidden = DEFAULT_HIDDEN.iter().any(|h| h.eq_ignore_ascii_case(name))
        || conf.proxy_hide_header.as_deref().is_some_and(lower_eq);
    !hidden || pass
}

/// Headers written at fixed places before the others (nginx's `headers_out` slots).
const SLOTS: [&str; 3] = ["content-type", "last-modified", "location"];

/// Writes the client response head for an upstream response (`status`, `reason`, `headers`)
/// into `out` (see the module doc). A header that would break the head is refused and nothing
/// is written.
pub fn write_client_head(
    status: u16,
    reason: &str,
    headers: &[(&str, &[u8])],
    conf: &LocConf,
    opts: &ClientOptions<'_>,
    out: &mut Vec<u8>,
) -> Result<(), UnsafeHeader> {
    let connection: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .map(|(_, v)| *v)
        .collect();
    let passing = || {
        headers
            .iter()
            .filter(|(n, _)| passes(n, status, &connection, conf))
    };
    let mut list: Vec<(&str, Vec<u8>)> = Vec::with_capacity(headers.len() + 6);
    let has = |n: &str| passing().any(|(h, _)| h.eq_ignore_ascii_case(n));
    if !has("server") {
        let server = if conf.server_tokens() {
            format!("{SERVER}/{}", env!("CARGO_PKG_VERSION"))
        } else {
            SERVER.to_string()
        };
        list.push(("Server", server.into_bytes()));
    }
    if !has("date") {
        let mut date = Vec::with_capacity(29);
        local_time(opts.now, 0).write_http_date(&mut date);
        list.push(("Date", date));
    }
    let slot = |name: &str| passing().find(|(n, _)| n.eq_ignore_ascii_case(name));
    for (i, name) in SLOTS.iter().enumerate() {
        if let Some((n, v)) = slot(name) {
            list.push((n, v.to_vec()));
        }
        if i == 0 {
            if let ClientFraming::Length(n) = opts.framing {
                list.push(("Content-Length", n.to_string().into_bytes()));
            }
        }
    }
    if opts.framing == ClientFraming::Chunked {
        list.push(("Transfer-Encoding", b"chunked".to_vec()));
    }
    let conn_value: &[u8] = if status == 101 {
        b"upgrade"
    } else if opts.keep_alive {
        b"keep-alive"
    } else {
        b"close"
    };
    list.push(("Connection", conn_value.to_vec()));
    let ka = conf.keepalive_header_timeout();
    if opts.keep_alive && status != 101 && ka > Duration::ZERO {
        list.push((
            "Keep-Alive",
            format!("timeout={}", ka.as_secs()).into_bytes(),
        ));
    }
    if let Some((n, v)) = opts.extras.vary() {
        list.push((n, v.to_vec()));
    }
    let compressing = opts.extras.compressing();
    let mut seen_slot = [false; 3];
    for (n, v) in passing() {
        if let Some(i) = SLOTS.iter().position(|s| s.eq_ignore_ascii_case(n)) {
            // The first of each goes in its slot (written above); later duplicates follow in order.
            if !seen_slot[i] {
                seen_slot[i] = true;
                continue;
            }
        }
        if compressing && n.eq_ignore_ascii_case("etag") {
            if let Some(weak) = weak_etag(v) {
                list.push((n, weak));
            }
            continue;
        }
        list.push((n, v.to_vec()));
    }
    for (n, v) in opts.extras.tail() {
        list.push((n, v.to_vec()));
    }
    crate::http::response::write_head(
        out,
        status,
        Some(reason).filter(|r| !r.is_empty()),
        list.iter().map(|(n, v)| (*n, v.as_slice())),
    )
}
