//! Hop-by-hop header logic: which client headers go upstream as they are.
//!
//! Place in the data flow: request head -> route -> **upstream request** (built from the
//! client's headers minus the ones decided here) -> response head -> body relay. Responses
//! coming back go through the same test before they are relayed to the client.
//!
//! A header is hop-by-hop when it is in the fixed set of RFC 9110 section 7.6.1 (plus the
//! legacy `Keep-Alive`, `Proxy-Authenticate`, `Proxy-Authorization`, `Trailer(s)`) or when the
//! message's `Connection` header names it. The proxy writes its own `Connection`/`Upgrade` for
//! the upstream hop.
//!
//! `Host` and `Content-Length` are different: the proxy always decides them itself (Host from
//! `proxy_set_header`/`$proxy_host`, the body framing from how it relays the body), so they are
//! [`Forward::ProxySets`] whatever `Connection` says. If `Connection: content-length` could make
//! the proxy drop the length while it still relays the body, the backend would see a body with
//! no framing and read it as the next request (smuggling); `Connection: host` must not change
//! which virtual host the backend serves. Letting `Connection` remove them would hand framing
//! and routing to the client.
//!
//! Note: nginx itself ignores the headers nominated by `Connection`; ringproxy removes them as
//! RFC 9110 requires, which only ever drops headers nginx would have passed on.

/// The comma-separated elements of a list header value (`Connection`, `Upgrade`, ...), trimmed
/// of spaces and tabs, empty elements skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    value
        .split(|&c| c == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// Whether a list header value contains `token` (ASCII case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// What to do with one header of a message being proxied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Copy the header to the next hop unchanged.
    AsIs,
    /// Hop-by-hop: meaningful only on the connection it arrived on; drop it.
    HopByHop,
    /// The proxy writes its own value (Host, Content-Length); never copied, never removable by
    /// `Connection`.
    ProxySets,
    /// nginx ignores header names with `_` unless `underscores_in_headers on`: drop it, since a
    /// backend that maps `_` to `-` could read `Content_Length` as a length.
    Ignored,
}

/// The fixed hop-by-hop set (names compared case-insensitively).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is in the fixed hop-by-hop set.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Decides what happens to header `name` of a message; `connection` is the raw value of each of
/// the message's `Connection` header lines (lists are split here). `underscores_in_headers` is
/// nginx's directive of that name (default off).
pub fn forward<'a>(
    name: &str,
    connection: impl IntoIterator<Item = &'a [u8]>,
    underscores_in_headers: bool,
) -> Forward {
    if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("content-length") {
        return Forward::ProxySets;
    }
    if is_hop_by_hop(name) {
        return Forward::HopByHop;
    }
    if !underscores_in_headers && name.contains('_') {
        return Forward::Ignored;
    }
    if connection
        .into_iter()
        .any(|v| has_token(v, name.as_bytes()))
    {
        return Forward::HopByHop;
    }
    Forward::AsIs
}

/// The headers of `headers` that may be copied as they are: [`forward`] applied to each, with
/// the `Connection` values taken from the same list. Does not allocate.
pub fn forwardable<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
    underscores_in_headers: bool,
) -> impl Iterator<Item = &'h httparse::Header<'b>> + 'h {
    let connection = move || {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .map(|h| h.value)
    };
    headers
        .iter()
        .filter(move |h| forward(h.name, connection(), underscores_in_headers) == Forward::AsIs)
}

/// nginx's valid header name (`ngx_http_parse_header_line`): letters, digits and `-`, and `_`
/// when `underscores_in_headers` is on. Other names are "invalid": ignored with
/// `ignore_invalid_headers on` (the default), kept with off.
pub fn is_valid_name(name: &str, underscores: bool) -> bool {
    name.bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || (c == b'_' && underscores))
}

/// Whether every header line of the request head in `buf` is one nginx accepts, possibly as an
/// invalid (ignorable) name: a name of visible bytes (no space, control or DEL: nginx 1.21.1+
/// refuses those with 400) before a colon, and a value of visible bytes, spaces and tabs.
/// Only then may lines with non-token names be skipped instead of refusing the request.
pub fn only_names_are_invalid(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    buf[..end].split(|&c| c == b'\n').skip(1).all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return false;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        !name.is_empty()
            && name.iter().all(|&c| c > b' ' && c != 0x7f)
            && value
                .iter()
                .all(|&c| c == b'\t' || (c >= b' ' && c != 0x7f))
    })
}
