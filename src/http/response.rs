//! Upstream response head parsing and response head writing.
//!
//! Place in the data flow: client bytes -> request head -> route -> upstream request ->
//! **response head** -> body relay. [`parse_response`] reads the peer's status line and headers
//! (zero-copy, sans-IO, like [`super::request`]) and decides how the response body is framed
//! (RFC 9112 section 6.3), which tells the relay where the response ends and whether the
//! upstream connection can be reused. A 101 is its own case: the connection becomes a tunnel.
//! [`write_head`] writes the head ringproxy sends to the client (its own error pages, or the
//! relayed upstream head after header rewriting).
//!
//! Every error here is the upstream's fault and becomes 502 for the client, as in nginx
//! ("upstream sent invalid header", "upstream sent too big header").

use super::request::{parse_content_length, Parsed, Version};
use bytes::BufMut;
use httparse::Header;

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: 1xx (other than 101), 204, 304, or a response to HEAD.
    None,
    /// 101 Switching Protocols: after the head, the connection carries the new protocol.
    SwitchingProtocols,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No framing: the body ends when the upstream closes (the connection is not reusable).
    UntilClose,
}

/// A parsed upstream response head; slices borrow the upstream buffer.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Status code (100..=999).
    pub status: u16,
    /// Reason phrase as sent (may be empty).
    pub reason: &'b str,
    /// Header lines as sent.
    pub headers: &'h [Header<'b>],
    /// Body framing.
    pub body: ResponseBody,
}

impl ResponseHead<'_, '_> {
    /// A 1xx other than 101: an interim response, the final one follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Why an upstream response head was refused; the client gets 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The head does not fit in `proxy_buffer_size`.
    #[error("upstream sent too big header")]
    TooBig,
    /// More header lines than the header array holds.
    #[error("upstream sent too many header lines")]
    TooManyHeaders,
    /// Malformed status line or header.
    #[error("upstream sent invalid header: {0}")]
    Invalid(&'static str),
    /// Content-Length more than once (even with equal values).
    #[error("upstream sent duplicate header line: \"Content-Length\"")]
    DuplicateContentLength,
    /// Content-Length that is not a plain decimal number.
    #[error("upstream sent invalid \"Content-Length\" header")]
    InvalidContentLength,
    /// Transfer-Encoding other than `chunked`, or more than once.
    #[error("upstream sent unknown \"Transfer-Encoding\"")]
    UnknownTransferEncoding,
    /// Both framings at once.
    #[error("upstream sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time")]
    LengthAndChunked,
}

impl ResponseError {
    /// The status the client receives.
    pub fn status(&self) -> u16 {
        502
    }
}

/// Parses an upstream response head from `buf`. `max_len` is `proxy_buffer_size` (nginx
/// default: one memory page, 4k or 8k); `head_request` is true when the request was HEAD.
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    max_len: usize,
    head_request: bool,
) -> Result<Parsed<ResponseHead<'h, 'b>>, ResponseError> {
    let mut res = httparse::Response::new(headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= max_len => return Err(ResponseError::TooBig),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Ok(httparse::Status::Complete(n)) if n > max_len => return Err(ResponseError::TooBig),
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
        Err(e) => return Err(ResponseError::Invalid(describe(e))),
    };
    let status = res.code.unwrap_or_default();
    if status < 100 {
        return Err(ResponseError::Invalid("invalid response status"));
    }
    let version = match res.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let headers: &'h [Header<'b>] = res.headers;
    let mut length: Option<&[u8]> = None;
    let mut te: Option<&[u8]> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.replace(h.value).is_some() {
                return Err(ResponseError::DuplicateContentLength);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") && te.replace(h.value).is_some()
        {
            return Err(ResponseError::UnknownTransferEncoding);
        }
    }
    let length = match length {
        Some(v) => Some(parse_content_length(v).ok_or(ResponseError::InvalidContentLength)?),
        None => None,
    };
    let framed = match (te, length) {
        (Some(te), _) if !te.eq_ignore_ascii_case(b"chunked") => {
            return Err(ResponseError::UnknownTransferEncoding)
        }
        (Some(_), Some(_)) => return Err(ResponseError::LengthAndChunked),
        (Some(_), None) => ResponseBody::Chunked,
        (None, Some(n)) => ResponseBody::Length(n),
        (None, None) => ResponseBody::UntilClose,
    };
    let body = match status {
        101 => ResponseBody::SwitchingProtocols,
        100..=199 | 204 | 304 => ResponseBody::None,
        _ if head_request => ResponseBody::None,
        _ => framed,
    };
    Ok(Parsed::Complete(
        ResponseHead {
            version,
            status,
            reason: res.reason.unwrap_or_default(),
            headers,
            body,
        },
        len,
    ))
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// A header name or value that would break the head (CR, LF, NUL, or a bad name): writing it
/// would let a value inject headers or a second response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refusing to write header {0:?}: it contains CR, LF, NUL or an invalid name character")]
pub struct UnsafeHeader(pub &'static str);

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn valid_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&c| c == b'\t' || (c >= b' ' && c != 0x7f))
}

/// Writes `HTTP/1.1 <status> <reason>\r\n`, the headers and the blank line into `out` (a
/// `Vec<u8>` or `BytesMut`). A `None` reason uses nginx's phrase for the status (494 is written
/// as 400). Nothing is written if a header would be unsafe.
pub fn write_head<'a, B: BufMut>(
    out: &mut B,
    status: u16,
    reason: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Result<(), UnsafeHeader> {
    for (name, value) in headers.clone() {
        if !valid_name(name) {
            return Err(UnsafeHeader("name"));
        }
        if !valid_value(value) {
            return Err(UnsafeHeader("value"));
        }
    }
    let reason = reason
        .or_else(|| super::status::reason(status))
        .unwrap_or("");
    if !valid_value(reason.as_bytes()) {
        return Err(UnsafeHeader("reason"));
    }
    let wire = super::status::wire_status(status).min(999);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(&[
        b'0' + (wire / 100) as u8,
        b'0' + (wire / 10 % 10) as u8,
        b'0' + (wire % 10) as u8,
    ]);
    // The space is required by the grammar even when the reason is empty (nginx writes it too).
    out.put_u8(b' ');
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    Ok(())
}
