//! Interim routing, variables and upstream request building, until `route.rs` and
//! `http/vars.rs` land: first matching server, longest prefix location, and the variables the
//! seed configurations use. Replaced wholesale by those modules.

use std::net::SocketAddr;

use crate::config::model::{
    HttpConf, LocConf, Location, LocationMatch, MapConf, ServerConf, ServerName,
};
use crate::config::template::{Part, Template};
use crate::http::headers;

/// An owned copy of the parsed request head (the buffer is reused while proxying).
pub struct Req {
    pub method: String,
    pub target: String,
    pub path: String,
    pub version_11: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    pub host: Option<String>,
    pub upgrade: bool,
    pub keep_alive: bool,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

pub fn server_for<'a>(http: &'a HttpConf, local: SocketAddr, host: Option<&str>) -> &'a ServerConf {
    let listening: Vec<&ServerConf> = http
        .servers
        .iter()
        .filter(|s| {
            s.listen.iter().any(|l| {
                l.addr == local || (l.addr.ip().is_unspecified() && l.addr.port() == local.port())
            })
        })
        .collect();
    if let Some(h) = host {
        let h = h.to_ascii_lowercase();
        if let Some(s) = listening.iter().find(|s| {
            s.names
                .iter()
                .any(|n| matches!(n, ServerName::Exact(e) if *e == h))
        }) {
            return s;
        }
    }
    listening
        .iter()
        .find(|s| {
            s.listen
                .iter()
                .any(|l| l.default_server && l.addr.port() == local.port())
        })
        .or(listening.first())
        .copied()
        .unwrap_or(&http.servers[0])
}

pub fn find_location<'a>(locations: &'a [Location], path: &str) -> Option<&'a Location> {
    let mut best: Option<&Location> = None;
    for l in locations {
        match &l.matcher {
            LocationMatch::Exact(p) if p == path => return Some(l),
            LocationMatch::Prefix { path: p, .. }
                if path.starts_with(p.as_str())
                    && best.is_none_or(|b| matches!(&b.matcher, LocationMatch::Prefix { path: bp, .. } if bp.len() < p.len())) =>
            {
                best = Some(l);
            }
            _ => {}
        }
    }
    best.map(|b| find_location(&b.locations, path).unwrap_or(b))
}

pub struct Vars<'a> {
    pub req: &'a Req,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub maps: &'a [MapConf],
    pub proxy_host: &'a str,
}

impl Vars<'_> {
    fn var(&self, name: &str, out: &mut Vec<u8>) {
        if let Some(h) = name.strip_prefix("http_") {
            let want: String = h.replace('_', "-");
            if let Some(v) = self.req.header(&want) {
                out.extend_from_slice(v);
            }
            return;
        }
        match name {
            "host" => out.extend_from_slice(self.req.host.as_deref().unwrap_or("").as_bytes()),
            "remote_addr" => out.extend_from_slice(self.remote.ip().to_string().as_bytes()),
            "server_port" => out.extend_from_slice(self.local.port().to_string().as_bytes()),
            "proxy_host" => out.extend_from_slice(self.proxy_host.as_bytes()),
            "proxy_add_x_forwarded_for" => {
                if let Some(x) = self.req.header("x-forwarded-for") {
                    out.extend_from_slice(x);
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(self.remote.ip().to_string().as_bytes());
            }
            _ => {
                if let Some(m) = self.maps.iter().find(|m| m.variable == name) {
                    let mut src = Vec::new();
                    self.render(&m.source, &mut src);
                    let key = String::from_utf8_lossy(&src).to_ascii_lowercase();
                    let t = m
                        .exact
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, t)| t)
                        .unwrap_or(&m.default);
                    self.render(t, out);
                }
            }
        }
    }

    pub fn render(&self, t: &Template, out: &mut Vec<u8>) {
        for p in &t.parts {
            match p {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Var(v) => self.var(v, out),
                Part::Capture(_) => {}
            }
        }
    }
}

/// The upstream request head; returns it and whether it carries `Upgrade`.
pub fn upstream_head(
    req: &Req,
    loc: &Location,
    conf: &LocConf,
    vars: &Vars<'_>,
    body_header: Option<String>,
) -> (Vec<u8>, bool) {
    let pp = conf.proxy_pass.as_ref().expect("proxy location");
    let uri = match (&pp.uri, &loc.matcher) {
        (Some(u), LocationMatch::Prefix { path, .. }) => {
            format!("{u}{}", &req.target[path.len().min(req.target.len())..])
        }
        _ => req.target.clone(),
    };
    let v11 = conf.proxy_http_version() == crate::config::model::HttpVersion::Http11;
    let mut out = format!(
        "{} {} HTTP/{}\r\n",
        req.method,
        uri,
        if v11 { "1.1" } else { "1.0" }
    )
    .into_bytes();
    // nginx: the configured headers in order, then its defaults not overridden.
    let mut set: Vec<(String, Template)> = conf.proxy_set_header();
    for (n, v) in [("Host", "$proxy_host"), ("Connection", "close")] {
        if !set.iter().any(|(k, _)| k.eq_ignore_ascii_case(n)) {
            set.push((n.to_string(), Template::parse(v).expect("static")));
        }
    }
    let mut upgrade = false;
    for (n, t) in &set {
        let mut v = Vec::new();
        vars.render(t, &mut v);
        if v.is_empty() {
            continue;
        }
        if n.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&v);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(b) = body_header {
        out.extend_from_slice(b.as_bytes());
    }
    let conn_tokens: Vec<Vec<u8>> = req
        .header("connection")
        .map(|c| headers::tokens(c).map(|t| t.to_vec()).collect())
        .unwrap_or_default();
    for (n, v) in &req.headers {
        if set.iter().any(|(k, _)| k.eq_ignore_ascii_case(n)) {
            continue;
        }
        if !matches!(
            headers::forward(
                n,
                conn_tokens.iter().map(|t| t.as_slice()),
                conf.underscores_in_headers()
            ),
            headers::Forward::AsIs
        ) {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (out, upgrade && v11)
}

/// Upstream response headers passed to the client (hop-by-hop, Server and Date removed).
pub fn pass_response_header(name: &str, conf: &LocConf) -> bool {
    const DROP: &[&str] = &[
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
        "server",
        "date",
        "content-length",
        "x-pad",
    ];
    let lower = name.to_ascii_lowercase();
    !(DROP.contains(&lower.as_str())
        || lower.starts_with("x-accel-")
        || conf.proxy_hide_header().contains(&lower))
}
