//! `proxy_pass` with variables in its scheme or host (`proxy_pass http://$backend;`,
//! `proxy_pass $scheme://$host$request_uri;`), evaluated per request as nginx's
//! `ngx_http_proxy_eval` and `ngx_http_upstream_init_request` do: the URL is rendered and
//! parsed; a host (without a port) naming an `upstream` block, or a host and port naming a
//! group `proxy_pass` made from a literal URL, goes to that group; an address (`127.0.0.1:8081`,
//! `[::1]`, `unix:/path`) is a group of one for this request; any other name is resolved with
//! the location's `resolver` ([`crate::upstream::resolver`]), and without one the request is
//! nginx's 502 with its "no resolver defined" line. The rendered URI part, when there is one,
//! replaces the request's URI as it comes out (no location prefix replaced).
//!
//! The outcome is a [`ProxyPass`] like a literal one, so the balancer of the group (or of the
//! one address) stays the single place a peer is picked.

use std::net::{IpAddr, SocketAddr};

use super::req::Req;
use crate::config::model::ProxyPass;
use crate::config::template::{Part, Template};
use crate::log;
use crate::upstream::peer::PeerAddr;

/// What the URL named, or the status to answer with (logged).
pub(super) async fn evaluate(req: &mut Req<'_>, pp: &ProxyPass) -> Result<ProxyPass, u16> {
    let Some(t) = &pp.dynamic else {
        return Ok(pp.clone());
    };
    let mut rendered = Vec::new();
    req.vars.render(t, &mut rendered);
    let url = String::from_utf8_lossy(&rendered).into_owned();
    let (ip, head) = (req.conn.peer.ip(), req.head);
    let context = format!(
        "client: {ip}, request: \"{} {}\"",
        head.method, head.target.raw
    );
    let (tls, rest) = if let Some(r) = strip_prefix_ci(&url, "http://") {
        (false, r)
    } else if let Some(r) = strip_prefix_ci(&url, "https://") {
        (true, r)
    } else {
        log!(Error, "invalid URL prefix in \"{url}\", {context}");
        return Err(500);
    };
    let parsed = match parse(rest) {
        Ok(p) => p,
        Err(e) => {
            log!(Error, "{e} in upstream \"{rest}\", {context}");
            return Err(500);
        }
    };
    let mut out = ProxyPass {
        tls,
        upstream: ProxyPass::UNRESOLVED,
        host: parsed.host_port.clone(),
        uri: None,
        uri_vars: parsed.uri.map(|u| Template {
            parts: vec![Part::Literal(u)],
        }),
        dynamic: pp.dynamic.clone(),
        direct: None,
        span: pp.span.clone(),
    };
    let default_port = if tls { 443 } else { 80 };
    let port = parsed.port.unwrap_or(default_port);
    if let Some(path) = &parsed.unix {
        out.direct = Some(PeerAddr::Unix(std::path::Path::new(path).into()));
        return Ok(out);
    }
    if let Some(i) = group(req, &parsed.host, parsed.port, port) {
        out.upstream = i;
        return Ok(out);
    }
    if let Ok(a) = parsed.host.parse::<IpAddr>() {
        out.direct = Some(PeerAddr::Inet(SocketAddr::new(a, port)));
        return Ok(out);
    }
    let resolver = req.conf.resolver();
    if resolver.addrs.is_empty() {
        log!(
            Error,
            "no resolver defined to resolve {}, {context}",
            parsed.host
        );
        return Err(502);
    }
    let timeout = req.conf.resolver_timeout();
    match crate::upstream::resolver::lookup(&resolver, &parsed.host, timeout).await {
        Ok(addrs) => {
            // nginx connects to the first answer and tries the others as the next upstream;
            // a group of one keeps the pick in the balancer, the first address is taken.
            out.direct = Some(PeerAddr::Inet(SocketAddr::new(addrs[0], port)));
            Ok(out)
        }
        Err(e) => {
            log!(
                Error,
                "{} could not be resolved ({e}), {context}",
                parsed.host
            );
            Err(502)
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A rendered URL after its scheme.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    /// The host as written, `[...]` removed from IPv6.
    host: String,
    /// Host and port as written (`$proxy_host`), or `unix:/path`.
    host_port: String,
    port: Option<u16>,
    /// The path of `unix:/path[:uri]`.
    unix: Option<String>,
    /// The URI part, `/` put before one that starts with `?` (as nginx).
    uri: Option<String>,
}

/// `host[:port][/uri]` or `unix:/path[:uri]`, with `ngx_parse_url`'s errors.
fn parse(rest: &str) -> Result<Parsed, &'static str> {
    if let Some(path) = rest.strip_prefix("unix:") {
        let (path, uri) = match path.find(':') {
            Some(i) => (&path[..i], Some(&path[i + 1..])),
            None => (path, None),
        };
        crate::config::values::unix_peer(path)?;
        return Ok(Parsed {
            host: path.to_string(),
            host_port: format!("unix:{path}"),
            port: None,
            unix: Some(path.to_string()),
            uri: fix_uri(uri),
        });
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host_port, uri) = (&rest[..end], &rest[end..]);
    if host_port.is_empty() {
        return Err("no host");
    }
    let hp =
        crate::config::values::parse_host_port(host_port, false).map_err(|_| "invalid host")?;
    Ok(Parsed {
        host: hp.host,
        host_port: host_port.to_string(),
        port: hp.port,
        unix: None,
        uri: fix_uri(Some(uri)),
    })
}

fn fix_uri(uri: Option<&str>) -> Option<String> {
    match uri {
        None | Some("") => None,
        Some(u) if u.starts_with('?') => Some(format!("/{u}")),
        Some(u) => Some(u.to_string()),
    }
}

/// The upstream group the URL names (`ngx_http_upstream_init_request`'s search): an `upstream`
/// block by its name when the URL has no port; a group made by a literal `proxy_pass` by its
/// host and port.
fn group(req: &Req<'_>, host: &str, written: Option<u16>, port: u16) -> Option<usize> {
    req.http.upstreams.iter().position(|u| {
        if u.explicit {
            return written.is_none() && u.name.eq_ignore_ascii_case(host);
        }
        let (h, p) = match u.name.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) => {
                (h, p.parse().ok())
            }
            _ => (u.name.as_str(), None),
        };
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case(host) && p.unwrap_or(80) == port
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_as_nginx_parses_them() {
        let p = parse("127.0.0.1:8081/a?b").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", Some(8081)));
        assert_eq!(p.uri.as_deref(), Some("/a?b"));
        let p = parse("backend?x=1").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("backend", None));
        assert_eq!(p.uri.as_deref(), Some("/?x=1"));
        let p = parse("[::1]:80").unwrap();
        assert_eq!((p.host.as_str(), p.uri), ("::1", None));
        let p = parse("unix:/tmp/s:/x").unwrap();
        assert_eq!(p.unix.as_deref(), Some("/tmp/s"));
        assert_eq!(p.host_port, "unix:/tmp/s");
        assert_eq!(p.uri.as_deref(), Some("/x"));
        assert_eq!(parse(""), Err("no host"));
        assert_eq!(parse("unix:"), Err("no path in the unix domain socket"));
    }
}
