//! A stream session's variables (nginx's `ngx_stream_variables.c` and the ssl_preread and
//! upstream modules' ones) and its `map` blocks, rendered into `proxy_pass $var`, map sources
//! and access-log lines. The values are facts the session records as it goes; nothing is
//! computed before a template asks for it.

use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::preread::Hello;
use crate::config::model::MapConf;
use crate::config::template::{Part, Template};
use crate::http::proxy_protocol::ProxyAddrs;
use crate::http::vars::{local_time, wildcard, NGINX_VERSION};

/// How deep maps may refer to maps (as http's).
const MAX_DEPTH: u8 = 16;

/// What one session knows about itself.
pub struct SessionVars<'a> {
    /// Client address.
    pub remote: SocketAddr,
    /// Local address the client reached.
    pub local: SocketAddr,
    /// `$connection`.
    pub connection: u64,
    /// When the session started (`$session_time`).
    pub started: Instant,
    /// `$status` (200 until something fails).
    pub status: u16,
    /// Bytes from the client (`$bytes_received`).
    pub received: u64,
    /// Bytes to the client (`$bytes_sent`).
    pub sent: u64,
    /// Every peer tried, as nginx lists them in `$upstream_addr` (`, ` between tries).
    pub upstream_addr: Vec<String>,
    /// Bytes sent to each upstream tried (0 for a failed try), listed as `$upstream_addr`.
    pub upstream_sent: Vec<u64>,
    /// Bytes received from each upstream tried.
    pub upstream_received: Vec<u64>,
    /// Connect times of the tries, `-` for one that failed.
    pub connect_times: Vec<String>,
    /// What `ssl_preread` found.
    pub hello: Option<Hello>,
    /// The PROXY protocol header's addresses (`listen ... proxy_protocol`).
    pub proxy_protocol: Option<ProxyAddrs>,
    /// `gethostname()`.
    pub hostname: &'a str,
    /// The stream block's maps.
    pub maps: &'a [MapConf],
    map_cache: Vec<Option<Vec<u8>>>,
    /// Named captures of map regexes that matched: variables from then on, as in nginx.
    named: Vec<(String, Vec<u8>)>,
    captures: Vec<(usize, usize)>,
    subject: Vec<u8>,
    depth: u8,
}

impl<'a> SessionVars<'a> {
    /// A session's variables at its start.
    pub fn new(
        remote: SocketAddr,
        local: SocketAddr,
        connection: u64,
        hostname: &'a str,
        maps: &'a [MapConf],
    ) -> SessionVars<'a> {
        SessionVars {
            remote,
            local,
            connection,
            started: Instant::now(),
            status: 200,
            received: 0,
            sent: 0,
            upstream_addr: Vec::new(),
            upstream_sent: Vec::new(),
            upstream_received: Vec::new(),
            connect_times: Vec::new(),
            hello: None,
            proxy_protocol: None,
            hostname,
            maps,
            map_cache: vec![None; maps.len()],
            named: Vec::new(),
            captures: Vec::new(),
            subject: Vec::new(),
            depth: 0,
        }
    }

    /// Appends the value of `t`.
    pub fn render(&mut self, t: &Template, out: &mut Vec<u8>) {
        for p in &t.parts {
            match p {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Var(name) => {
                    if let Some(v) = self.get(name) {
                        let v = v.into_owned();
                        out.extend_from_slice(&v);
                    }
                }
                Part::Capture(n) => {
                    if let Some(c) = self.capture(usize::from(*n)) {
                        out.extend_from_slice(c);
                    }
                }
            }
        }
    }

    /// Capture `n` of the last map regex that matched.
    pub fn capture(&self, n: usize) -> Option<&[u8]> {
        let &(s, e) = self.captures.get(n)?;
        self.subject.get(s..e)
    }

    /// The value of `$name`, `None` when it has none.
    pub fn get(&mut self, name: &str) -> Option<Cow<'_, [u8]>> {
        if let Some(i) = self.named.iter().position(|(n, _)| n == name) {
            return Some(Cow::Borrowed(&self.named[i].1));
        }
        if let Some(i) = self.maps.iter().position(|m| m.variable == name) {
            return self.map(i).map(Cow::Owned);
        }
        let mut out = Vec::new();
        let w = &mut out;
        match name {
            "remote_addr" => write!(w, "{}", self.remote.ip()).ok()?,
            "remote_port" => write!(w, "{}", self.remote.port()).ok()?,
            "server_addr" => write!(w, "{}", self.local.ip()).ok()?,
            "server_port" => write!(w, "{}", self.local.port()).ok()?,
            "binary_remote_addr" => match self.remote.ip() {
                IpAddr::V4(a) => w.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => w.extend_from_slice(&a.octets()),
            },
            "protocol" => w.extend_from_slice(b"TCP"),
            "proxy_protocol_addr" => {
                w.extend_from_slice(self.proxy_protocol.as_ref()?.src_addr.as_bytes())
            }
            "proxy_protocol_port" => {
                write!(w, "{}", self.proxy_protocol.as_ref()?.src_port).ok()?
            }
            "proxy_protocol_server_addr" => {
                w.extend_from_slice(self.proxy_protocol.as_ref()?.dst_addr.as_bytes())
            }
            "proxy_protocol_server_port" => {
                write!(w, "{}", self.proxy_protocol.as_ref()?.dst_port).ok()?
            }
            "connection" => write!(w, "{}", self.connection).ok()?,
            "bytes_received" => write!(w, "{}", self.received).ok()?,
            "bytes_sent" => write!(w, "{}", self.sent).ok()?,
            "status" => write!(w, "{:03}", self.status).ok()?,
            "session_time" => {
                let d = self.started.elapsed();
                write!(w, "{}.{:03}", d.as_secs(), d.subsec_millis()).ok()?
            }
            "upstream_addr" if !self.upstream_addr.is_empty() => {
                w.extend_from_slice(self.upstream_addr.join(", ").as_bytes())
            }
            "upstream_connect_time" if !self.connect_times.is_empty() => {
                w.extend_from_slice(self.connect_times.join(", ").as_bytes())
            }
            "upstream_bytes_sent" if !self.upstream_sent.is_empty() => {
                w.extend_from_slice(joined(&self.upstream_sent).as_bytes())
            }
            "upstream_bytes_received" if !self.upstream_received.is_empty() => {
                w.extend_from_slice(joined(&self.upstream_received).as_bytes())
            }
            "ssl_preread_server_name" => {
                w.extend_from_slice(self.hello.as_ref()?.server_name.as_bytes())
            }
            "ssl_preread_protocol" => w.extend_from_slice(self.hello.as_ref()?.protocol.as_bytes()),
            "ssl_preread_alpn_protocols" => {
                w.extend_from_slice(self.hello.as_ref()?.alpn.join(",").as_bytes())
            }
            "time_local" | "time_iso8601" => {
                let t = local_time(SystemTime::now(), 0);
                if name == "time_local" {
                    t.write_clf(w);
                } else {
                    t.write_iso8601(w);
                }
            }
            "msec" => {
                let d = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                write!(w, "{}.{:03}", d.as_secs(), d.subsec_millis()).ok()?
            }
            "hostname" => w.extend_from_slice(self.hostname.as_bytes()),
            "pid" => write!(w, "{}", std::process::id()).ok()?,
            "nginx_version" => w.extend_from_slice(NGINX_VERSION.as_bytes()),
            _ => return None,
        }
        Some(Cow::Owned(out))
    }

    fn map(&mut self, i: usize) -> Option<Vec<u8>> {
        if let Some(v) = &self.map_cache[i] {
            return Some(v.clone());
        }
        if self.depth >= MAX_DEPTH {
            return None;
        }
        let maps = self.maps;
        let map = &maps[i];
        self.depth += 1;
        let mut key = Vec::new();
        self.render(&map.source, &mut key);
        let chosen = self.lookup(map, &key);
        let mut value = Vec::new();
        self.render(chosen, &mut value);
        self.depth -= 1;
        if !map.volatile {
            self.map_cache[i] = Some(value.clone());
        }
        Some(value)
    }

    fn lookup<'m>(&mut self, map: &'m MapConf, key: &[u8]) -> &'m Template {
        let mut key = key;
        if map.hostnames {
            if let [rest @ .., b'.'] = key {
                key = rest;
            }
        }
        if let Some((_, v)) = map
            .exact
            .iter()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(key))
        {
            return v;
        }
        if map.hostnames && !key.is_empty() {
            if let Some(v) = wildcard(&map.wildcards, key) {
                return v;
            }
        }
        if !key.is_empty() {
            for (re, v) in &map.regexes {
                if let Some(found) = re.exec(key) {
                    self.captures = (0..re.captures_len())
                        .map(|i| found.get(i).unwrap_or((usize::MAX, usize::MAX)))
                        .collect();
                    self.subject = key.to_vec();
                    for (i, name) in re.names() {
                        if let Some((s, e)) = found.get(i) {
                            let value = key[s..e].to_vec();
                            let name = name.to_ascii_lowercase();
                            self.named.retain(|(n, _)| *n != name);
                            self.named.push((name, value));
                        }
                    }
                    return v;
                }
            }
        }
        &map.default
    }
}

/// Per-try values as nginx lists them: `, ` between tries.
fn joined(v: &[u64]) -> String {
    let parts: Vec<String> = v.iter().map(u64::to_string).collect();
    parts.join(", ")
}

impl crate::accesslog::LogVars for SessionVars<'_> {
    fn value(&mut self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.get(name)
    }
    fn group(&self, n: usize) -> Option<&[u8]> {
        self.capture(n)
    }
    fn render_into(&mut self, t: &Template, out: &mut Vec<u8>) {
        self.render(t, out);
    }
}
