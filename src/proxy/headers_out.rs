//! What nginx's headers, gzip and proxy-redirect filters do to a response head, for every kind
//! of response ringproxy sends (static files, proxied responses, its own pages and `return`).
//!
//! Place in the data flow: the handler picks the final status (an `error_page` `=code` overrides
//! it) -> [`Extras::for_response`] renders `add_header` and asks the gzip filter -> the head
//! writer (`static_files::response_head`, `response::write_client_head`,
//! `respond::page`) writes `Vary` after `Connection`/`Keep-Alive`, then its own headers, then
//! [`Extras::tail`]: the `add_header` lines and `Content-Encoding: gzip`, nginx's order.
//!
//! - `add_header` (`ngx_http_headers_filter`): the lines of the innermost level that has any (the
//!   config merge already gives that); without `always` only for 200, 201, 204, 206, 301, 302,
//!   303, 304, 307 and 308; a value that renders empty adds nothing.
//! - `expires` (`ngx_http_set_expires`, see [`super::expires`]): for the same statuses as
//!   `add_header` without `always`, before its lines; on a proxied response in place of the
//!   upstream's `Expires` and `Cache-Control`.
//! - `charset` (`ngx_http_charset_header_filter`, no recoding): `; charset=NAME` after a
//!   `Content-Type` in `charset_types` (see [`charset`]).
//! - `proxy_cookie_domain`, `proxy_cookie_path`, `proxy_cookie_flags`: the upstream's
//!   `Set-Cookie` lines edited (see [`super::cookies`]).
//! - `proxy_redirect` (`ngx_http_proxy_rewrite_redirect`): rewrites `Location` and the `url=`
//!   part of `Refresh` of upstream responses with the first rule that matches; `default` turns
//!   the `proxy_pass` URL into the location's prefix (the URL plus `/` into `/` when
//!   `proxy_pass` has no URI); `off` disables it.

use std::borrow::Cow;

use crate::config::model::{Charset, LocConf, LocationMatch, ProxyPass, ProxyRedirect};
use crate::http::response::ResponseBody;
use crate::http::vars::RequestVars;
use crate::proxy::gzip::{self, Decision, GzipRequest, GzipResponse, Proxied};
use crate::proxy::response::ClientFraming;

/// Statuses `add_header` without `always` applies to.
const SAFE: [u16; 10] = [200, 201, 204, 206, 301, 302, 303, 304, 307, 308];

/// Whether an `add_header` line applies to a response with `status`.
pub fn add_header_applies(status: u16, always: bool) -> bool {
    always || SAFE.contains(&status)
}

/// The `add_header` lines of `conf` for `status`, rendered.
pub fn add_headers(conf: &LocConf, status: u16, vars: &mut RequestVars) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for h in conf.add_header.as_deref().unwrap_or(&[]) {
        if !add_header_applies(status, h.always) {
            continue;
        }
        let mut value = Vec::new();
        vars.render(&h.value, &mut value);
        if !value.is_empty() {
            out.push((h.name.clone(), value));
        }
    }
    out
}

/// What the response-path filters add to one response head.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// `expires`: the `Expires` value, unless it replaced an upstream's in place.
    pub expires: Option<Vec<u8>>,
    /// `expires`: the `Cache-Control` value, unless it replaced an upstream's in place.
    pub cache_control: Option<Vec<u8>>,
    /// `add_header` lines that apply, rendered, in order.
    pub add: Vec<(String, Vec<u8>)>,
    /// `gzip_static`: the `FILE.gz` sent in place of a static file, with
    /// `Content-Encoding: gzip`.
    pub precompressed: Option<std::path::PathBuf>,
    /// `charset`: the name to add to `Content-Type` as `; charset=`.
    pub charset: Option<Vec<u8>>,
    /// The gzip filter's verdict.
    pub gzip: Decision,
}

impl Extras {
    /// Renders `add_header` for `resp.status` and asks the gzip filter (which reads the request
    /// and, for a proxied response, the upstream's `headers` only when `gzip` is on).
    pub fn for_response(
        conf: &LocConf,
        vars: &mut RequestVars,
        resp: &GzipResponse,
        headers: Option<&[(&str, &[u8])]>,
    ) -> Extras {
        let gzip = if conf.gzip() {
            let req = GzipRequest::from_head(vars.head());
            let proxied = headers.map(Proxied::from_headers);
            gzip::decide(conf, &req, resp, proxied.as_ref())
        } else {
            Decision::default()
        };
        let expires = conf
            .expires
            .as_ref()
            .filter(|_| add_header_applies(resp.status, false));
        let (expires, cache_control) = expires
            .and_then(|e| super::expires::values(e, vars, resp.last_modified))
            .map_or((None, None), |(e, c)| (Some(e), Some(c)));
        Extras {
            expires,
            cache_control,
            add: add_headers(conf, resp.status, vars),
            charset: charset(conf, vars, resp.status, resp.content_type),
            precompressed: None,
            gzip,
        }
    }

    /// `content_type` as sent: with `; charset=` when the charset filter adds one.
    pub fn content_type<'a>(&self, content_type: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.charset {
            None => Cow::Borrowed(content_type),
            Some(cs) => {
                let mut v = content_type.to_vec();
                v.extend_from_slice(b"; charset=");
                v.extend_from_slice(cs);
                Cow::Owned(v)
            }
        }
    }

    /// The lines a 304 keeps: `Expires`, `Cache-Control` and the `add_header` lines.
    pub fn header_lines(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let expires = self.expires.as_deref().map(|v| ("Expires", v));
        let cc = self.cache_control.as_deref().map(|v| ("Cache-Control", v));
        expires
            .into_iter()
            .chain(cc)
            .chain(self.add.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
    }

    /// The body is compressed.
    pub fn compressing(&self) -> bool {
        self.gzip.level.is_some()
    }

    /// `Vary: Accept-Encoding`, if the filter wants it (written after `Connection`).
    pub fn vary(&self) -> Option<(&'static str, &'static [u8])> {
        self.gzip
            .vary
            .then_some(("Vary", b"Accept-Encoding".as_slice()))
    }

    /// The headers written last: `Expires` and `Cache-Control` from `expires`, the
    /// `add_header` lines, then `Content-Encoding: gzip`.
    pub fn tail(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let ce = self
            .compressing()
            .then_some(("Content-Encoding", b"gzip".as_slice()));
        self.header_lines().chain(ce)
    }

    /// Puts the `expires` values in place of an upstream's `Expires` and first
    /// `Cache-Control` (dropping the other `Cache-Control` lines), as nginx edits its list;
    /// what has no upstream line to replace stays for [`Extras::tail`].
    fn replace_upstream(&mut self, list: &mut Vec<(&str, Cow<[u8]>)>) {
        if let Some(at) = list
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("expires"))
        {
            if let Some(v) = self.expires.take() {
                list[at].1 = Cow::Owned(v);
            }
        }
        let Some(first) = list
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
        else {
            return;
        };
        let Some(v) = self.cache_control.take() else {
            return;
        };
        list[first].1 = Cow::Owned(v);
        let mut i = 0;
        list.retain(|(n, _)| {
            i += 1;
            i - 1 <= first || !n.eq_ignore_ascii_case("cache-control")
        });
    }

    /// A compressor for the body, framed chunked or not.
    pub fn encoder(&self, chunked: bool) -> Option<gzip::BodyEncoder> {
        self.gzip.level.map(|l| gzip::BodyEncoder::new(l, chunked))
    }
}

/// nginx's charset filter without recoding (`ngx_http_charset_header_filter`): the charset to
/// add to a response of `status` with `content_type`, if any. None when `charset` is off, the
/// type is empty, already names a charset (`override_charset` is off) or is not in
/// `charset_types` (compared whole, lowercase: a type with other parameters is not in the
/// list), when a `source_charset` from a variable differs (nginx logs that no `charset_map`
/// exists), and for 301 and 302 (nginx leaves redirects without one).
fn charset(
    conf: &LocConf,
    vars: &mut RequestVars,
    status: u16,
    content_type: &[u8],
) -> Option<Vec<u8>> {
    let Charset::Name(name) = conf.charset.as_ref()? else {
        return None;
    };
    if content_type.is_empty() || names_charset(content_type) {
        return None;
    }
    let types = conf.charset_types();
    let lower = content_type.to_ascii_lowercase();
    if !types.iter().any(|t| t == "*" || t.as_bytes() == lower) {
        return None;
    }
    let mut dst = Vec::new();
    vars.render(name, &mut dst);
    if let Charset::Name(src) = conf.source_charset() {
        let mut s = Vec::new();
        vars.render(&src, &mut s);
        if !s.eq_ignore_ascii_case(&dst) {
            return None;
        }
    }
    if dst.is_empty() || matches!(status, 301 | 302) {
        return None;
    }
    Some(dst)
}

/// A `charset=` parameter, found as nginx's `ngx_http_upstream_copy_content_type` does.
fn names_charset(content_type: &[u8]) -> bool {
    let mut rest = content_type;
    while let Some(at) = rest.iter().position(|&b| b == b';') {
        rest = &rest[at + 1..];
        let p = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        rest = &rest[p..];
        if rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"charset=") {
            return true;
        }
    }
    false
}

/// The `proxy_redirect default` rule for `pp` in a location matched by `matcher`: the pattern
/// and its replacement, or `None` where nginx has none (a regex or named location with a URI in
/// `proxy_pass`).
pub fn default_redirect(pp: &ProxyPass, matcher: &LocationMatch) -> Option<(String, String)> {
    if pp.uri_vars.is_some() || pp.dynamic.is_some() {
        // nginx has no default rule for a URL with variables: it refuses `proxy_redirect
        // default` there, and without the directive nothing is rewritten.
        return None;
    }
    let scheme = if pp.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}", pp.host);
    match &pp.uri {
        None => Some((format!("{url}/"), "/".to_string())),
        Some(uri) => match matcher {
            LocationMatch::Exact(p) | LocationMatch::Prefix { path: p, .. } => {
                Some((format!("{url}{uri}"), p.clone()))
            }
            LocationMatch::Regex(_) | LocationMatch::Named(_) => None,
        },
    }
}

/// Rewrites one redirect value (a `Location`, or what follows `url=` in `Refresh`) with the
/// first `proxy_redirect` rule that matches. `None`: no rule matched, keep it.
pub fn rewrite_redirect(
    rules: &[ProxyRedirect],
    default: Option<&(String, String)>,
    value: &[u8],
    vars: &mut RequestVars,
) -> Option<Vec<u8>> {
    for rule in rules {
        match rule {
            ProxyRedirect::Off => return None,
            ProxyRedirect::Default => {
                if let Some((from, to)) = default {
                    if let Some(rest) = value.strip_prefix(from.as_bytes()) {
                        let mut out = to.as_bytes().to_vec();
                        out.extend_from_slice(rest);
                        return Some(out);
                    }
                }
            }
            ProxyRedirect::Prefix(from, to) => {
                let mut pattern = Vec::new();
                vars.render(from, &mut pattern);
                if let Some(rest) = value.strip_prefix(pattern.as_slice()) {
                    let mut out = Vec::new();
                    vars.render(to, &mut out);
                    out.extend_from_slice(rest);
                    return Some(out);
                }
            }
            ProxyRedirect::Regex(re, to) => {
                let subject = String::from_utf8_lossy(value).into_owned();
                if vars.match_regex(re, &subject) {
                    let mut out = Vec::new();
                    vars.render(to, &mut out);
                    return Some(out);
                }
            }
        }
    }
    None
}

/// `proxy_redirect` when no level sets it.
const DEFAULT_RULES: &[ProxyRedirect] = &[ProxyRedirect::Default];

/// Applies `proxy_redirect` to the `Location` and `Refresh` headers of an upstream response,
/// in place.
pub fn redirect_headers(
    conf: &LocConf,
    default: Option<&(String, String)>,
    headers: &mut [(&str, Cow<[u8]>)],
    vars: &mut RequestVars,
) {
    let rules = conf.proxy_redirect.as_deref().unwrap_or(DEFAULT_RULES);
    for (name, value) in headers.iter_mut() {
        if name.eq_ignore_ascii_case("location") {
            if let Some(v) = rewrite_redirect(rules, default, value, vars) {
                *value = Cow::Owned(v);
            }
        } else if name.eq_ignore_ascii_case("refresh") {
            let Some(at) = value
                .windows(4)
                .position(|w| w.eq_ignore_ascii_case(b"url="))
            else {
                continue;
            };
            let start = at + 4;
            if let Some(v) = rewrite_redirect(rules, default, &value[start..], vars) {
                let mut new = value[..start].to_vec();
                new.extend_from_slice(&v);
                *value = Cow::Owned(new);
            }
        }
    }
}

fn is_redirect_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("location") || name.eq_ignore_ascii_case("refresh")
}

/// An upstream response head as the filters leave it.
#[derive(Debug)]
pub struct ProxiedHead<'h> {
    /// The status to send (an `error_page` `=code` overrides the upstream's).
    pub status: u16,
    /// The upstream headers, `Location` and `Refresh` rewritten by `proxy_redirect` (a
    /// relative `Location` made absolute, as nginx's header filter); the others borrowed.
    pub headers: Vec<(&'h str, Cow<'h, [u8]>)>,
    /// `add_header` and gzip.
    pub extras: Extras,
}

impl ProxiedHead<'_> {
    /// How the body goes to the client (`chunked`: the client takes chunked) and the
    /// compressor when gzip applies (none for a response without a body).
    pub fn framing(
        &self,
        body: ResponseBody,
        chunked: bool,
    ) -> (ClientFraming, Option<gzip::BodyEncoder>) {
        let gzip = match body {
            ResponseBody::None | ResponseBody::SwitchingProtocols => None,
            _ => self.extras.encoder(chunked),
        };
        let framing = match body {
            ResponseBody::None | ResponseBody::SwitchingProtocols => ClientFraming::None,
            ResponseBody::Length(n) if gzip.is_none() => ClientFraming::Length(n),
            _ if chunked => ClientFraming::Chunked,
            _ => ClientFraming::Close,
        };
        (framing, gzip)
    }

    /// The headers as `write_client_head` takes them.
    pub fn header_list(&self) -> Vec<(&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (*n, v.as_ref())).collect()
    }
}

/// What the proxy knows about the request when it shapes the response head.
pub struct ProxiedRequest<'a> {
    /// The `proxy_pass` target (for `proxy_redirect default`).
    pub pass: &'a ProxyPass,
    /// The location's matcher (for `proxy_redirect default`).
    pub matcher: &'a LocationMatch,
    /// An `error_page` status that replaces the upstream's.
    pub status_override: Option<u16>,
    /// `sticky cookie`: the `Set-Cookie` value that binds the client to the peer that
    /// answered (goes before the upstream's headers, untouched by `proxy_cookie_*`).
    pub sticky_cookie: Option<Vec<u8>>,
}

/// Runs the filters over an upstream response head (`status`, `headers`, body `length` when
/// known). A HEAD response is shaped as its GET would be (nginx says gzip on it too).
pub fn shape_proxied<'h>(
    conf: &LocConf,
    vars: &mut RequestVars,
    req: &ProxiedRequest,
    status: u16,
    headers: &[(&'h str, &'h [u8])],
    length: Option<u64>,
) -> ProxiedHead<'h> {
    let status = req.status_override.unwrap_or(status);
    let mut list: Vec<(&str, Cow<[u8]>)> = headers
        .iter()
        .map(|(n, v)| (*n, Cow::Borrowed(*v)))
        .collect();
    if headers.iter().any(|(n, _)| is_redirect_header(n)) {
        let default = default_redirect(req.pass, req.matcher);
        redirect_headers(conf, default.as_ref(), &mut list, vars);
        for (n, v) in list.iter_mut() {
            if n.eq_ignore_ascii_case("location") && v.starts_with(b"/") {
                *v = Cow::Owned(crate::http::script::absolute_location(vars, conf, v));
            }
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let resp = GzipResponse {
        status,
        content_type: find("content-type").unwrap_or(b""),
        encoded: find("content-encoding").is_some_and(|v| !v.is_empty()),
        length,
        last_modified: find("last-modified")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| httpdate::parse_http_date(v.trim()).ok()),
    };
    let cookies = conf
        .proxy_cookie_domain
        .as_ref()
        .is_some_and(|l| !l.is_empty())
        || conf
            .proxy_cookie_path
            .as_ref()
            .is_some_and(|l| !l.is_empty())
        || conf
            .proxy_cookie_flags
            .as_ref()
            .is_some_and(|l| !l.is_empty());
    if cookies {
        for (n, v) in list.iter_mut() {
            if n.eq_ignore_ascii_case("set-cookie") {
                if let Some(new) = super::cookies::rewrite(conf, v, vars) {
                    *v = Cow::Owned(new);
                }
            }
        }
    }
    if let Some(c) = &req.sticky_cookie {
        list.insert(0, ("Set-Cookie", Cow::Owned(c.clone())));
    }
    let mut extras = Extras::for_response(conf, vars, &resp, Some(headers));
    extras.replace_upstream(&mut list);
    if extras.charset.is_some() {
        for (n, v) in list.iter_mut() {
            if n.eq_ignore_ascii_case("content-type") {
                *v = Cow::Owned(extras.content_type(v).into_owned());
            }
        }
    }
    ProxiedHead {
        status,
        headers: list,
        extras,
    }
}

#[cfg(test)]
#[path = "headers_out_tests.rs"]
mod tests;
