//! Client request head parsing: the first step of the data flow.
//!
//! client bytes -> **request head** -> route -> upstream request -> response head -> body relay.
//!
//! [`parse_request`] is a pure function over the bytes read so far: it answers
//! [`Parsed::Partial`] (read more, up to [`HeadLimits::max_head_len`]) or
//! [`Parsed::Complete`] with a [`RequestHead`] that borrows the buffer (no copy, no allocation),
//! or a [`RequestError`] carrying the status nginx would answer with. httparse does the
//! tokenising; the checks nginx adds on top (buffer limits, framing, Host, method and target
//! rules) are here.
//!
//! Framing is strict on purpose: a proxy that disagrees with its backend about where a request
//! ends lets a client smuggle a second request past it. Anything ambiguous (Content-Length with
//! Transfer-Encoding, duplicate or malformed lengths, codings other than `chunked`, obsolete
//! line folding, space before the colon, NUL or bare CR) is refused before routing.

use super::headers::{has_token, is_valid_name, only_names_are_invalid, tokens};
use super::target::{parse_target, validate_host, Target, TargetError};
use httparse::Header;

/// nginx's header buffer sizes: `client_header_buffer_size` and `large_client_header_buffers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// The first buffer (nginx default 1k); a head that fits in it is never limited further.
    pub client_header_buffer_size: usize,
    /// How many large buffers a head may spill into (nginx default 4).
    pub large_buffers_count: usize,
    /// Size of one large buffer (nginx default 8k): the longest request line or header line.
    pub large_buffer_size: usize,
    /// `ignore_invalid_headers` (default on): header lines whose names are not letters, digits
    /// and `-` (and `_` with `underscores_in_headers`) are dropped from the head, as if never
    /// sent. Off, they are kept (as far as HTTP tokens go: see [`parse_request`]).
    pub ignore_invalid_headers: bool,
    /// `underscores_in_headers` (default off).
    pub underscores_in_headers: bool,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            client_header_buffer_size: 1024,
            large_buffers_count: 4,
            large_buffer_size: 8192,
            ignore_invalid_headers: true,
            underscores_in_headers: false,
        }
    }
}

impl HeadLimits {
    /// The most bytes a head can take under these limits: a caller that has read this much and
    /// still gets [`Parsed::Partial`] cannot happen (an error is returned first).
    pub fn max_head_len(&self) -> usize {
        self.client_header_buffer_size.saturating_add(
            self.large_buffers_count
                .saturating_mul(self.large_buffer_size),
        )
    }
}

/// Outcome of feeding bytes to a head parser.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The head is not complete yet: read more bytes and call again with all of them.
    Partial,
    /// The head and its length in bytes (the body, if any, starts there).
    Complete(T, usize),
}

/// HTTP version of a parsed head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// How the request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body.
    None,
    /// `Content-Length` bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head. Every slice borrows the client's buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    /// The method, e.g. `GET` (uppercase letters, `_` and `-`, as nginx allows).
    pub method: &'b str,
    /// The target, split into path and query.
    pub target: Target<'b>,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// All header lines, in order, as sent.
    pub headers: &'h [Header<'b>],
    /// The host to route on: from an absolute-form target, else the Host header (validated,
    /// without port and trailing dot). `None` only for HTTP/1.0 without Host.
    pub host: Option<&'b str>,
    /// Body framing.
    pub body: Body,
    /// `Upgrade` present and `Connection` lists `upgrade`.
    pub upgrade: bool,
    /// The Upgrade header's value (e.g. `websocket`), when present.
    pub upgrade_protocol: Option<&'b [u8]>,
    /// Whether the client wants the connection kept open after this exchange.
    pub keep_alive: bool,
}

impl<'h, 'b> RequestHead<'h, 'b> {
    /// The header names nominated by the client's `Connection` header(s), as sent (including
    /// `close`, `keep-alive`, `upgrade`). Iterates without allocating.
    pub fn connection_tokens(&self) -> impl Iterator<Item = &'b [u8]> + '_ {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| tokens(h.value))
    }

    /// The value of the first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Why a request head was refused. [`RequestError::status`] is what nginx answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Request line longer than one large buffer, or no buffer left while in the request line.
    #[error("client sent too long URI (raise large_client_header_buffers)")]
    UriTooLong,
    /// A header line longer than one large buffer, or the head beyond all buffers.
    #[error("client sent too large request header (raise large_client_header_buffers)")]
    HeaderTooLarge,
    /// More header lines than the caller's header array holds.
    #[error("client sent too many header lines")]
    TooManyHeaders,
    /// Malformed request line (method, target or spacing).
    #[error("client sent invalid request line")]
    InvalidRequestLine,
    /// Method with characters other than `A-Z`, `_`, `-`.
    #[error("client sent invalid method")]
    InvalidMethod,
    /// TRACE and CONNECT: nginx answers 405.
    #[error("client sent {0} method")]
    MethodNotAllowed(&'static str),
    /// Target not origin/absolute-form, bad host in it, or a path above the root.
    #[error("client sent invalid request target: {0}")]
    InvalidTarget(TargetError),
    /// HTTP/2 preface or a version 2.0 and above.
    #[error("client sent unsupported HTTP version")]
    VersionNotSupported,
    /// A malformed version (e.g. `HTTP/1.x`, `HTTP/0.5`).
    #[error("client sent invalid HTTP version")]
    InvalidVersion,
    /// An HTTP/0.9 `GET`: nginx answers with the bare body, no head. The target is
    /// `buf[target_start..target_end]`; the request ends at `head_len`.
    #[error("client sent HTTP/0.9 request")]
    Http09 {
        /// Start of the target in the buffer.
        target_start: usize,
        /// End of the target in the buffer.
        target_end: usize,
        /// Bytes of the request line including its line end.
        head_len: usize,
    },
    /// HTTP/0.9 with a method other than GET.
    #[error("client sent invalid method in HTTP/0.9 request")]
    InvalidHttp09Method,
    /// Invalid header name: space or tab before the colon, obsolete line folding, a character
    /// outside the token set.
    #[error("client sent invalid header line (bad name, space before colon or line folding)")]
    InvalidHeaderName,
    /// NUL, bare CR or another control character in a header value.
    #[error("client sent invalid header value (NUL, bare CR or control character)")]
    InvalidHeaderValue,
    /// CR not followed by LF at a line end.
    #[error("client sent invalid line ending")]
    InvalidLineEnding,
    /// HTTP/1.1 without Host.
    #[error("client sent HTTP/1.1 request without \"Host\" header")]
    MissingHost,
    /// More than one Host header.
    #[error("client sent duplicate host header")]
    DuplicateHost,
    /// Host that nginx's validator refuses.
    #[error("client sent invalid host header")]
    InvalidHost,
    /// More than one Content-Length, even with equal values.
    #[error("client sent duplicate header line: \"Content-Length\"")]
    DuplicateContentLength,
    /// Content-Length that is not a plain decimal number fitting in 63 bits.
    #[error("client sent invalid \"Content-Length\" header")]
    InvalidContentLength,
    /// More than one Transfer-Encoding header.
    #[error("client sent duplicate header line: \"Transfer-Encoding\"")]
    DuplicateTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request.
    #[error("client sent HTTP/1.0 request with \"Transfer-Encoding\" header")]
    TransferEncodingInHttp10,
    /// Transfer-Encoding other than exactly `chunked`: nginx answers 501.
    #[error("client sent unknown \"Transfer-Encoding\"")]
    UnknownTransferEncoding,
    /// Both Content-Length and Transfer-Encoding: the classic smuggling vector.
    #[error("client sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time")]
    LengthAndChunked,
}

impl RequestError {
    /// nginx's status for this error. 494 is internal: send it as 400 with its own page (see
    /// [`super::status::wire_status`]). `Http09` gives 200: nginx answers it with a bare body
    /// and no head at all.
    pub fn status(&self) -> u16 {
        use RequestError::*;
        match self {
            UriTooLong => 414,
            HeaderTooLarge | TooManyHeaders => super::status::REQUEST_HEADER_TOO_LARGE,
            MethodNotAllowed(_) => 405,
            VersionNotSupported => 505,
            UnknownTransferEncoding => 501,
            Http09 { .. } => 200,
            _ => 400,
        }
    }
}

/// Parses a request head from `buf` (all bytes read so far on the connection).
///
/// `headers` is the caller's (reusable) header storage; a head with more lines than it holds
/// is refused with [`RequestError::TooManyHeaders`].
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    limits: &HeadLimits,
) -> Result<Parsed<RequestHead<'h, 'b>>, RequestError> {
    let mut req = httparse::Request::new(headers);
    let mut parsed = req.parse(buf);
    if matches!(parsed, Err(httparse::Error::HeaderName))
        && limits.ignore_invalid_headers
        && only_names_are_invalid(buf)
    {
        // Names nginx calls invalid but tolerates (`X@Y`, non-ASCII) that are not HTTP tokens:
        // parse again with httparse skipping those lines (nginx ignores them too).
        parsed = httparse::ParserConfig::default()
            .ignore_invalid_headers_in_requests(true)
            .parse_request(&mut req, buf);
    }
    let head_len = match parsed {
        Ok(httparse::Status::Partial) => {
            check_limits(buf, limits)?;
            return Ok(Parsed::Partial);
        }
        Ok(httparse::Status::Complete(n)) => n,
        Err(e) => {
            return match classify_error(buf, e) {
                Some(e) => Err(e),
                // `GET /path\r` may be an HTTP/0.9 line whose LF has not arrived yet.
                None => check_limits(buf, limits).map(|()| Parsed::Partial),
            };
        }
    };
    check_limits(&buf[..head_len], limits)?;
    let method = req.method.unwrap_or_default();
    let raw_target = req.path.unwrap_or_default();
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let headers: &'h [Header<'b>] = if limits.ignore_invalid_headers {
        keep_valid_names(req.headers, limits.underscores_in_headers)
    } else {
        req.headers
    };

    if !method
        .bytes()
        .all(|c| c.is_ascii_uppercase() || c == b'_' || c == b'-')
    {
        return Err(RequestError::InvalidMethod);
    }
    let target = parse_target(raw_target).map_err(RequestError::InvalidTarget)?;

    let mut host_header: Option<&[u8]> = None;
    let mut content_length: Option<&[u8]> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut upgrade_protocol = None;
    let (mut conn_upgrade, mut conn_close, mut conn_keep_alive) = (false, false, false);
    for h in headers {
        let slot = match h.name.len() {
            4 if h.name.eq_ignore_ascii_case("host") => &mut host_header,
            14 if h.name.eq_ignore_ascii_case("content-length") => &mut content_length,
            17 if h.name.eq_ignore_ascii_case("transfer-encoding") => &mut transfer_encoding,
            7 if h.name.eq_ignore_ascii_case("upgrade") => {
                upgrade_protocol.get_or_insert(h.value);
                continue;
            }
            10 if h.name.eq_ignore_ascii_case("connection") => {
                conn_upgrade |= has_token(h.value, b"upgrade");
                conn_close |= has_token(h.value, b"close");
                conn_keep_alive |= has_token(h.value, b"keep-alive");
                continue;
            }
            _ => continue,
        };
        if slot.replace(h.value).is_some() {
            return Err(match h.name.len() {
                4 => RequestError::DuplicateHost,
                14 => RequestError::DuplicateContentLength,
                _ => RequestError::DuplicateTransferEncoding,
            });
        }
    }

    // Host: always validated when present (as nginx does), overridden by an absolute target.
    let header_host = match host_header {
        Some(v) => Some(
            std::str::from_utf8(v)
                .ok()
                .and_then(validate_host)
                .ok_or(RequestError::InvalidHost)?,
        ),
        None => None,
    };
    let host = target.host.or(header_host);
    if host.is_none() && version == Version::Http11 {
        return Err(RequestError::MissingHost);
    }

    // Framing, in nginx's order: Content-Length syntax, then Transfer-Encoding.
    let length = match content_length {
        Some(v) => Some(parse_content_length(v).ok_or(RequestError::InvalidContentLength)?),
        None => None,
    };
    let body = match (transfer_encoding, length) {
        (Some(_), _) if version == Version::Http10 => {
            return Err(RequestError::TransferEncodingInHttp10)
        }
        (Some(te), _) if !te.eq_ignore_ascii_case(b"chunked") => {
            return Err(RequestError::UnknownTransferEncoding)
        }
        (Some(_), Some(_)) => return Err(RequestError::LengthAndChunked),
        (Some(_), None) => Body::Chunked,
        (None, Some(n)) => Body::Length(n),
        (None, None) => Body::None,
    };

    match method {
        "TRACE" => return Err(RequestError::MethodNotAllowed("TRACE")),
        "CONNECT" => return Err(RequestError::MethodNotAllowed("CONNECT")),
        _ => {}
    }

    let keep_alive = match version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };
    Ok(Parsed::Complete(
        RequestHead {
            method,
            target,
            version,
            headers,
            host,
            body,
            upgrade: upgrade_protocol.is_some() && conn_upgrade,
            upgrade_protocol,
            keep_alive,
        },
        head_len,
    ))
}

/// A Content-Length value: decimal digits only (no sign, no spaces inside, no list), at most
/// `i64::MAX` as nginx's `off_t`. httparse has already trimmed surrounding whitespace.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    (n <= i64::MAX as u64).then_some(n)
}

/// Maps an httparse error to nginx's answer, recognising HTTP/0.9 and HTTP/2+ request lines
/// (which httparse reports as token/version errors).
/// `None`: an HTTP/0.9 request line still waiting for its LF.
/// Moves the headers with valid names (nginx's rule) to the front, in order; returns them.
fn keep_valid_names<'h, 'b>(headers: &'h mut [Header<'b>], underscores: bool) -> &'h [Header<'b>] {
    let mut kept = 0;
    for i in 0..headers.len() {
        if is_valid_name(headers[i].name, underscores) {
            headers.swap(kept, i);
            kept += 1;
        }
    }
    &headers[..kept]
}

fn classify_error(buf: &[u8], e: httparse::Error) -> Option<RequestError> {
    Some(match e {
        httparse::Error::HeaderName => RequestError::InvalidHeaderName,
        httparse::Error::HeaderValue => RequestError::InvalidHeaderValue,
        httparse::Error::NewLine => RequestError::InvalidLineEnding,
        httparse::Error::TooManyHeaders => RequestError::TooManyHeaders,
        httparse::Error::Token | httparse::Error::Version | httparse::Error::Status => {
            return classify_request_line(buf);
        }
    })
}

fn classify_request_line(buf: &[u8]) -> Option<RequestError> {
    let start = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(buf.len());
    let line_end = buf[start..].iter().position(|&c| c == b'\n');
    let line = &buf[start..line_end.map_or(buf.len(), |e| start + e)];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(sp) = line.iter().position(|&c| c == b' ') else {
        return Some(RequestError::InvalidRequestLine);
    };
    let method = &line[..sp];
    let rest = &line[sp + 1..];
    let target_len = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
    let after = &rest[target_len..];
    let valid_target = target_len > 0 && rest[..target_len].iter().all(|&c| c > b' ' && c != 0x7f);
    if valid_target && after.iter().all(|&c| c == b' ') {
        let end = line_end?;
        if method != b"GET" {
            return Some(RequestError::InvalidHttp09Method);
        }
        let target_start = start + sp + 1;
        return Some(RequestError::Http09 {
            target_start,
            target_end: target_start + target_len,
            head_len: start + end + 1,
        });
    }
    let version = after.strip_prefix(b" ").unwrap_or(after);
    Some(match version.strip_prefix(b"HTTP/") {
        Some([b'2'..=b'9', ..]) | Some([b'1', b'0'..=b'9', ..]) => {
            RequestError::VersionNotSupported
        }
        Some(_) => RequestError::InvalidVersion,
        None => RequestError::InvalidRequestLine,
    })
}

/// Replays nginx's buffer use: the head fills `client_header_buffer_size`; when a line does not
/// fit, that line moves to a fresh large buffer. A line longer than a large buffer, or needing a
/// buffer when all are used, fails: with 414 while still in the request line, else 494. `head`
/// may end with an incomplete line; its length so far counts (it can only grow).
fn check_limits(head: &[u8], limits: &HeadLimits) -> Result<(), RequestError> {
    if head.len() <= limits.client_header_buffer_size {
        return Ok(());
    }
    let mut cap = limits.client_header_buffer_size;
    let mut used = 0usize;
    let mut large_used = 0usize;
    let mut in_request_line = true;
    let mut rest = head;
    while !rest.is_empty() {
        let len = rest
            .iter()
            .position(|&c| c == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let blank = rest[0] == b'\n' || rest.starts_with(b"\r\n");
        if used + len > cap {
            if len > limits.large_buffer_size || large_used == limits.large_buffers_count {
                return Err(if in_request_line {
                    RequestError::UriTooLong
                } else {
                    RequestError::HeaderTooLarge
                });
            }
            large_used += 1;
            cap = limits.large_buffer_size;
            used = 0;
        }
        used += len;
        if !blank {
            in_request_line = false;
        }
        rest = &rest[len..];
    }
    Ok(())
}
