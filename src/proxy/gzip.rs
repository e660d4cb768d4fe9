//! nginx's gzip filter, sans-IO: whether a response is compressed (`gzip`, `gzip_types`,
//! `gzip_min_length`, `gzip_http_version`, `gzip_proxied`, `gzip_disable`, `gzip_vary`) and a
//! streaming compressor that frames its output for the client.
//!
//! Place in the data flow: response head (static file, proxied response, ringproxy's own page)
//! -> [`decide`] -> the head is written without `Content-Length`, with `Content-Encoding: gzip`,
//! a weak `ETag` ([`weak_etag`]) and `Vary: Accept-Encoding` -> the body goes through a
//! [`BodyEncoder`] (chunked for HTTP/1.1 clients, until close for HTTP/1.0).
//!
//! The rules are `ngx_http_gzip_header_filter` and `ngx_http_gzip_ok` (nginx 1.22): only 200,
//! 403 and 404 are compressed; not when the response already has a `Content-Encoding`, when its
//! length is known and below `gzip_min_length`, or when its type is not in `gzip_types`. Such an
//! eligible response gets `Vary: Accept-Encoding` (with `gzip_vary on`) whether or not the client
//! takes gzip. The client must send `Accept-Encoding` with `gzip` (not `q=0`), speak at least
//! `gzip_http_version`, not match `gzip_disable`, and, when its request came through a proxy
//! (`Via`), the response must pass `gzip_proxied`. A compressor (deflate state, about 256 KiB
//! for zlib's defaults) exists only while a compressed response is being sent, and its output
//! is handed on after every input slice: memory per response is bounded, never the whole body.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::config::model::{HttpVersion, LocConf, UaMatch};
use crate::http::body::{encode_chunk, LAST_CHUNK};
use crate::http::headers::tokens;
use crate::http::request::{RequestHead, Version};

/// What the request says that the gzip filter looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct GzipRequest<'a> {
    /// `Accept-Encoding` names gzip with a non-zero quality.
    pub accepts: bool,
    /// The request is HTTP/1.0 (or older).
    pub http10: bool,
    /// A `Via` header is present (the request came through a proxy).
    pub via: bool,
    /// An `Authorization` header is present.
    pub authorization: bool,
    /// `User-Agent`.
    pub user_agent: Option<&'a [u8]>,
}

impl<'a> GzipRequest<'a> {
    /// Reads the request head.
    pub fn from_head(head: &RequestHead<'_, 'a>) -> GzipRequest<'a> {
        GzipRequest {
            accepts: head
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("accept-encoding") && accepts_gzip(h.value)),
            http10: head.version != Version::Http11,
            via: head.header("via").is_some(),
            authorization: head.header("authorization").is_some(),
            user_agent: head.header("user-agent"),
        }
    }
}

/// Whether an `Accept-Encoding` value takes gzip: a `gzip` (or `x-gzip`) token whose `q` is
/// not zero.
pub fn accepts_gzip(value: &[u8]) -> bool {
    tokens(value).any(|item| {
        let mut parts = item.split(|&b| b == b';');
        let coding = parts.next().unwrap_or(b"");
        let coding = trim(coding);
        if !coding.eq_ignore_ascii_case(b"gzip") && !coding.eq_ignore_ascii_case(b"x-gzip") {
            return false;
        }
        parts.all(|p| {
            let p = trim(p);
            match p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q=")) {
                Some(q) => !is_zero_q(q),
                None => true,
            }
        })
    })
}

fn is_zero_q(q: &[u8]) -> bool {
    let q = trim(q);
    q.first() == Some(&b'0') && q[1..].iter().all(|&b| b == b'.' || b == b'0')
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

/// nginx's `msie6` test of a `User-Agent`: `MSIE 4.`, `MSIE 5.`, or `MSIE 6.` without `SV1`.
pub fn is_msie6(ua: &[u8]) -> bool {
    let Some(at) = ua.windows(5).position(|w| w == b"MSIE ") else {
        return false;
    };
    let rest = &ua[at..];
    if rest.len() <= 7 || rest[6] != b'.' {
        return false;
    }
    match rest[5] {
        b'4' | b'5' => true,
        b'6' => !rest[8..].windows(3).any(|w| w == b"SV1"),
        _ => false,
    }
}

/// What the response head says that the filter looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct GzipResponse<'a> {
    /// The status sent.
    pub status: u16,
    /// `Content-Type` (parameters allowed).
    pub content_type: &'a [u8],
    /// A non-empty `Content-Encoding` is present.
    pub encoded: bool,
    /// The body length, when known.
    pub length: Option<u64>,
    /// `Last-Modified` (for `expires modified`), when the response has one.
    pub last_modified: Option<std::time::SystemTime>,
}

/// For a proxied response: the headers `gzip_proxied` looks at.
#[derive(Clone, Debug, Default)]
pub struct Proxied<'a> {
    /// `Expires`.
    pub expires: Option<&'a [u8]>,
    /// `Date`.
    pub date: Option<&'a [u8]>,
    /// `Cache-Control` values.
    pub cache_control: Vec<&'a [u8]>,
    /// `Last-Modified` is present.
    pub last_modified: bool,
    /// `ETag` is present.
    pub etag: bool,
}

impl<'a> Proxied<'a> {
    /// Collects them from upstream response headers.
    pub fn from_headers(headers: &[(&str, &'a [u8])]) -> Proxied<'a> {
        let mut p = Proxied::default();
        for (n, v) in headers {
            if n.eq_ignore_ascii_case("expires") {
                p.expires = Some(v);
            } else if n.eq_ignore_ascii_case("date") {
                p.date = Some(v);
            } else if n.eq_ignore_ascii_case("cache-control") {
                p.cache_control.push(v);
            } else if n.eq_ignore_ascii_case("last-modified") {
                p.last_modified = true;
            } else if n.eq_ignore_ascii_case("etag") {
                p.etag = true;
            }
        }
        p
    }
}

/// The filter's verdict for one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Write `Vary: Accept-Encoding`.
    pub vary: bool,
    /// Compress at this level (`None`: send as is).
    pub level: Option<u32>,
}

/// `ngx_http_gzip_header_filter` + `ngx_http_gzip_ok` (see the module doc). `proxied` is the
/// upstream response's facts for a proxied response, `None` for a response ringproxy makes.
pub fn decide(
    conf: &LocConf,
    req: &GzipRequest,
    resp: &GzipResponse,
    proxied: Option<&Proxied>,
) -> Decision {
    if !conf.gzip()
        || !matches!(resp.status, 200 | 403 | 404)
        || resp.encoded
        || resp.length.is_some_and(|n| n < conf.gzip_min_length())
        || !type_listed(conf, resp.content_type)
    {
        return Decision::default();
    }
    let vary = conf.gzip_vary();
    let ok = req.accepts && client_ok(conf, req) && proxied_ok(conf, req, proxied);
    Decision {
        vary,
        level: ok.then(|| conf.gzip_comp_level()),
    }
}

/// `ngx_http_gzip_ok` on the request alone (what `gzip_static on` asks before any response
/// exists): the client takes gzip, `gzip_http_version`, `gzip_disable`, and `gzip_proxied` for a
/// request with `Via`. `gzip` itself need not be on.
pub fn request_ok(conf: &LocConf, req: &GzipRequest) -> bool {
    req.accepts && client_ok(conf, req) && proxied_ok(conf, req, None)
}

fn type_listed(conf: &LocConf, content_type: &[u8]) -> bool {
    let media = content_type
        .split(|&b| b == b';')
        .next()
        .map(trim)
        .unwrap_or(b"");
    if media.is_empty() {
        return false;
    }
    let listed = |t: &str| t == "*" || t.as_bytes().eq_ignore_ascii_case(media);
    match conf.gzip_types.as_deref() {
        Some(list) => list.iter().any(|t| listed(t)),
        None => listed("text/html"),
    }
}

fn client_ok(conf: &LocConf, req: &GzipRequest) -> bool {
    let disable = conf.gzip_disable.as_deref().unwrap_or(&[]);
    let ua = req.user_agent.unwrap_or(b"");
    if req.user_agent.is_some() && disable.contains(&UaMatch::Msie6) && is_msie6(ua) {
        return false;
    }
    if req.http10 && conf.gzip_http_version() == HttpVersion::Http11 {
        return false;
    }
    if req.user_agent.is_some() {
        let hit = disable.iter().any(|m| match m {
            UaMatch::Regex(re) => re.is_match(ua),
            UaMatch::Msie6 | UaMatch::Degradation => false,
        });
        if hit {
            return false;
        }
    }
    true
}

/// `gzip_proxied`, for a request with `Via` (without one, it does not apply).
fn proxied_ok(conf: &LocConf, req: &GzipRequest, proxied: Option<&Proxied>) -> bool {
    if !req.via {
        return true;
    }
    let list = conf.gzip_proxied();
    let has = |w: &str| list.iter().any(|x| x == w);
    if has("off") {
        return false;
    }
    if has("any") {
        return true;
    }
    if req.authorization && has("auth") {
        return true;
    }
    let empty = Proxied::default();
    let p = proxied.unwrap_or(&empty);
    if let Some(expires) = p.expires {
        if !has("expired") {
            return false;
        }
        let parse = |v: &[u8]| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
        };
        let Some(expires) = parse(expires) else {
            return false;
        };
        let date = match p.date {
            Some(d) => match parse(d) {
                Some(d) => d,
                None => return false,
            },
            None => std::time::SystemTime::now(),
        };
        return expires < date;
    }
    if !p.cache_control.is_empty() {
        let said = |w: &str| {
            p.cache_control.iter().any(|v| {
                v.windows(w.len())
                    .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
            })
        };
        return (has("no-cache") && said("no-cache"))
            || (has("no-store") && said("no-store"))
            || (has("private") && said("private"));
    }
    if has("no_last_modified") && p.last_modified {
        return false;
    }
    if has("no_etag") && p.etag {
        return false;
    }
    has("no_last_modified") || has("no_etag")
}

/// `ngx_http_weak_etag`: a strong `"..."` becomes `W/"..."`, a weak one stays, anything else is
/// dropped (`None`).
pub fn weak_etag(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() > 2 && value.starts_with(b"W/") {
        return Some(value.to_vec());
    }
    if value.first() == Some(&b'"') {
        let mut v = b"W/".to_vec();
        v.extend_from_slice(value);
        return Some(v);
    }
    None
}

/// Compressed bytes held back until there are this many (or the body ends), so the client gets
/// a few large chunks rather than the 10-byte gzip header and deflate's small blocks one by one.
const EMIT_AT: usize = 4096;

/// The gzip header's OS byte nginx (zlib on Unix) writes.
const OS_UNIX: u8 = 3;

/// A gzip stream for one response body, framed for the client: each call appends what the
/// compressor produced (once [`EMIT_AT`] bytes are ready) to `out`, as one chunk when
/// `chunked`.
pub struct BodyEncoder {
    gz: GzEncoder<Vec<u8>>,
    chunked: bool,
    /// Bytes in, for `$gzip_ratio`-style accounting and tests.
    pub bytes_in: u64,
    /// Compressed bytes out (before framing).
    pub bytes_out: u64,
}

impl BodyEncoder {
    /// A compressor at `level` (1..9).
    pub fn new(level: u32, chunked: bool) -> BodyEncoder {
        BodyEncoder {
            gz: GzBuilder::new().operating_system(OS_UNIX).write(
                Vec::with_capacity(2 * EMIT_AT),
                Compression::new(level.min(9)),
            ),
            chunked,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Compresses `data`, appending the output produced so far to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        self.gz.write_all(data)?;
        self.bytes_in += data.len() as u64;
        if self.gz.get_ref().len() >= EMIT_AT {
            self.take(out);
        }
        Ok(())
    }

    /// Bytes in and out so far (`$gzip_ratio`).
    pub fn counts(&self) -> (u64, u64) {
        (self.bytes_in, self.bytes_out)
    }

    /// Ends the stream: the compressor's tail and, when chunked, the last chunk.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.gz.try_finish()?;
        self.take(out);
        if self.chunked {
            out.extend_from_slice(LAST_CHUNK);
        }
        Ok(())
    }

    fn take(&mut self, out: &mut Vec<u8>) {
        let produced = self.gz.get_mut();
        if produced.is_empty() {
            return;
        }
        self.bytes_out += produced.len() as u64;
        if self.chunked {
            encode_chunk(produced, out);
        } else {
            out.extend_from_slice(produced);
        }
        produced.clear();
    }
}

/// `$gzip_ratio`: input over output bytes with two decimals, rounded as nginx does it.
pub fn ratio(zin: u64, zout: u64) -> String {
    let zout = zout.max(1);
    let (mut int, mut frac) = (zin / zout, (zin * 100 / zout) % 100);
    if (zin * 1000 / zout) % 10 > 4 {
        frac += 1;
        if frac > 99 {
            int += 1;
            frac = 0;
        }
    }
    format!("{int}.{frac:02}")
}

/// Compresses a whole in-memory body (ringproxy's own pages) into `out`, framed. Returns the
/// bytes in and out (for `$gzip_ratio`).
pub fn compress_all(level: u32, chunked: bool, body: &[u8], out: &mut Vec<u8>) -> (u64, u64) {
    let mut enc = BodyEncoder::new(level, chunked);
    // Writing into a Vec cannot fail.
    let _ = enc.push(body, out);
    let _ = enc.finish(out);
    enc.counts()
}

#[cfg(test)]
#[path = "gzip_tests.rs"]
mod tests;
