//! The upstream request head, as nginx 1.22's `ngx_http_proxy_module` builds it.
//!
//! Place in the data flow: request head -> route -> variables/script -> **upstream request** ->
//! peer -> response. [`build_request`] is a pure function of the request's [`RequestVars`], the
//! location's settings and the body framing the relay will use; it appends the head to a buffer.
//!
//! What nginx sends, in order (checked byte for byte against a real nginx 1.22 by
//! `tests/nginx_upstream_requests.rs`):
//! 1. `METHOD URI HTTP/1.0|1.1` (`proxy_http_version`). The URI is the client's raw target when
//!    `proxy_pass` has no URI part and no rewrite changed the URI; otherwise the location's prefix
//!    of `$uri` is replaced by the `proxy_pass` URI part (not after `rewrite ... break`), the rest
//!    re-escaped when the client's URI was escaped or the URI was rewritten, then `?$args`.
//! 2. The `proxy_set_header` headers in configuration order, then nginx's defaults that were not
//!    overridden: `Host: $proxy_host`, `Connection: close`, the body's `Content-Length` or
//!    `Transfer-Encoding: chunked`; `TE`, `Keep-Alive`, `Expect` and `Upgrade` default to empty.
//!    A header whose value evaluates empty is not sent.
//! 3. The client's headers in order (unless `proxy_pass_request_headers off`), except those named
//!    in step 2 (case-insensitive, even when their value was empty) and those
//!    [`crate::http::headers::forward`] does not pass as they are.
//!
//! Differences from nginx, on purpose: nginx passes `Proxy-Authorization`, `Trailer` and the
//! headers a client's `Connection` header nominates; ringproxy drops them (RFC 9110 7.6.1, see
//! `http/headers.rs`). nginx buffers a chunked request body and sends it with `Content-Length`;
//! ringproxy streams it (`Transfer-Encoding: chunked` to an HTTP/1.1 peer) unless the caller
//! buffered it and passes [`UpstreamBody::Length`]. A header value that would contain CR, LF or
//! NUL (a decoded `$uri` can) is an error instead of an injected header line.

use crate::config::model::{HttpVersion, LocConf, LocationMatch, ProxyPass};
use crate::http::headers::{forward, Forward};
use crate::http::script::{escape, ESCAPE_URI};
use crate::http::vars::{RequestVars, UpstreamFacts};

/// How the request body goes upstream (decided by the relay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamBody {
    /// No body.
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// Chunked (`Transfer-Encoding: chunked`; HTTP/1.1 peers only).
    Chunked,
}

/// Why the upstream head cannot be built (an internal error: the client gets 500).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// An evaluated `proxy_set_header` value contains CR, LF or NUL.
    #[error(
        "proxy_set_header \"{0}\" evaluated to a value with CR, LF or NUL; refusing to send it"
    )]
    UnsafeValue(String),
    /// A chunked body cannot go to an HTTP/1.0 peer without buffering it.
    #[error("a chunked request body needs \"proxy_http_version 1.1\" (or a buffered body)")]
    ChunkedToHttp10,
}

/// nginx's `ngx_http_proxy_headers`: applied after the configured ones unless overridden.
const DEFAULT_HEADERS: [(&str, &str); 8] = [
    ("Host", "$proxy_host"),
    ("Connection", "close"),
    ("Content-Length", "$proxy_internal_body_length"),
    ("Transfer-Encoding", "$proxy_internal_chunked"),
    ("TE", ""),
    ("Keep-Alive", ""),
    ("Expect", ""),
    ("Upgrade", ""),
];

/// The prefix of `$uri` a `proxy_pass` URI part replaces: the location's path for prefix and
/// exact locations, nothing for regex and named ones.
pub fn location_prefix(m: &LocationMatch) -> &str {
    match m {
        LocationMatch::Exact(p) | LocationMatch::Prefix { path: p, .. } => p,
        LocationMatch::Regex(_) | LocationMatch::Named(_) => "",
    }
}

/// Appends the request URI nginx sends upstream (step 1 of the module doc).
pub fn upstream_uri(
    vars: &mut RequestVars<'_>,
    pass: &ProxyPass,
    location: &str,
    out: &mut Vec<u8>,
) {
    if let Some(t) = &pass.uri_vars {
        // nginx sends a URI part with variables as it renders, arguments and all.
        vars.render(t, out);
        return;
    }
    if pass.uri.is_none() && !vars.uri_changed() {
        out.extend_from_slice(vars.head().target.raw.as_bytes());
        return;
    }
    let uri = vars.uri();
    let mut rest = uri;
    if vars.location_valid() {
        if let Some(part) = &pass.uri {
            out.extend_from_slice(part.as_bytes());
            rest = uri.get(location.len()..).unwrap_or("");
        }
    }
    if vars.quoted_uri() || vars.uri_changed() {
        escape(rest.as_bytes(), &ESCAPE_URI, out);
    } else {
        out.extend_from_slice(rest.as_bytes());
    }
    if let Some(args) = vars.args().filter(|a| !a.is_empty()) {
        out.push(b'?');
        out.extend_from_slice(args.as_bytes());
    }
}

/// Appends the upstream request head for `pass` in a location with settings `conf` matched by
/// `location` (see the module doc). Sets `$proxy_host`/`$proxy_port` if not yet known.
pub fn build_request(
    vars: &mut RequestVars<'_>,
    conf: &LocConf,
    pass: &ProxyPass,
    location: &LocationMatch,
    body: UpstreamBody,
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    let version = conf.proxy_http_version();
    let body = if conf.proxy_pass_request_body() {
        body
    } else {
        UpstreamBody::None
    };
    if body == UpstreamBody::Chunked && version == HttpVersion::Http10 {
        return Err(BuildError::ChunkedToHttp10);
    }
    if vars.upstream.proxy_host.is_empty() {
        let facts = UpstreamFacts::for_proxy_pass(pass);
        vars.upstream.proxy_host = facts.proxy_host;
        vars.upstream.proxy_port = facts.proxy_port;
    }
    let head = vars.head();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    upstream_uri(vars, pass, location_prefix(location), out);
    out.extend_from_slice(match version {
        HttpVersion::Http10 => b" HTTP/1.0\r\n",
        HttpVersion::Http11 => b" HTTP/1.1\r\n",
    });

    let set = conf.proxy_set_header.as_deref().unwrap_or(&[]);
    let configured = |name: &str| set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    for (name, value) in set {
        let value_start = out.len() + name.len() + 2;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        if is_framing(name) {
            framing_value(name, body, out);
        } else {
            vars.render(value, out);
        }
        finish_line(out, value_start, name)?;
    }
    for (name, value) in DEFAULT_HEADERS {
        if value.is_empty() || configured(name) {
            continue;
        }
        let value_start = out.len() + name.len() + 2;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        match name {
            "Host" => out.extend_from_slice(vars.upstream.proxy_host.as_bytes()),
            "Connection" => out.extend_from_slice(b"close"),
            _ => framing_value(name, body, out),
        }
        finish_line(out, value_start, name)?;
    }

    if conf.proxy_pass_request_headers() {
        // With ignore_invalid_headers off, nginx keeps (and forwards) underscored names.
        let underscores = conf.underscores_in_headers() || !conf.ignore_invalid_headers();
        let connection = || {
            head.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                .map(|h| h.value)
        };
        for h in head.headers {
            if configured(h.name)
                || DEFAULT_HEADERS
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(h.name))
                || forward(h.name, connection(), underscores) != Forward::AsIs
            {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

fn is_framing(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}

/// The proxy decides framing: a configured `Content-Length`/`Transfer-Encoding` gets the
/// relay's value (a template could otherwise desynchronise the peer from the body sent).
fn framing_value(name: &str, body: UpstreamBody, out: &mut Vec<u8>) {
    match body {
        UpstreamBody::Length(n) if name.eq_ignore_ascii_case("content-length") => {
            out.extend_from_slice(n.to_string().as_bytes());
        }
        UpstreamBody::Chunked if name.eq_ignore_ascii_case("transfer-encoding") => {
            out.extend_from_slice(b"chunked");
        }
        _ => {}
    }
}

/// Ends a header line whose value starts at `value_start`: removes the whole line when the
/// value is empty (`Ok(false)`), refuses CR/LF/NUL in it.
fn finish_line(out: &mut Vec<u8>, value_start: usize, name: &str) -> Result<bool, BuildError> {
    if out.len() == value_start {
        out.truncate(value_start - name.len() - 2);
        return Ok(false);
    }
    if out[value_start..]
        .iter()
        .any(|&c| c == b'\r' || c == b'\n' || c == 0)
    {
        return Err(BuildError::UnsafeValue(name.to_string()));
    }
    out.extend_from_slice(b"\r\n");
    Ok(true)
}
