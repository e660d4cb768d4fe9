//! Server selection: which `server` block answers a connection, by local address and then by
//! Host (or TLS SNI), with nginx's `server_name` precedence.
//!
//! Place in the data flow: first step of routing, right after the request head (or, for TLS,
//! during the handshake for the certificate). Built once per configuration into one table per
//! distinct `listen` address. A connection to `ip:port` uses the table of that exact address if
//! one exists, else the wildcard `0.0.0.0:port` (or `[::]:port`) table: as in nginx, servers that
//! listen on the wildcard are not candidates for an address that has its own `listen`.
//!
//! Within a table: exact name, then the longest leading wildcard (`*.example.com`;
//! `.example.com` also matches `example.com`), then the longest trailing wildcard
//! (`www.example.*`), then the first regex in order of appearance, then the address's default
//! server (`default_server`, else the first server listening there). The host is compared
//! lowercased without port and trailing dot (nginx lowercases `$host` before matching, so a
//! regex sees the lowercase host). A request without Host looks up the empty name (`server_name
//! ""`, every server's default name) and never a regex. Regex names match caselessly, as nginx
//! compiles them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::Captures;
use crate::config::model::{HttpConf, Regex, ServerName};

/// How the server was chosen (`$server_name` comes from it; tests check precedence with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameMatch {
    /// An exact `server_name`.
    Exact,
    /// A leading wildcard (`*.example.com`, `.example.com`).
    LeadingWildcard,
    /// A trailing wildcard (`www.example.*`).
    TrailingWildcard,
    /// A regex `server_name`; its captures are in [`ServerMatch::captures`].
    Regex,
    /// Nothing matched: the address's default server.
    Default,
}

/// The server chosen for a request.
#[derive(Debug)]
pub struct ServerMatch<'r> {
    /// Index into `HttpConf::servers`.
    pub server: usize,
    /// Which rule chose it.
    pub how: NameMatch,
    /// Captures of a regex `server_name`, as offsets into [`host_name`] of the host given.
    pub captures: Option<Captures<'r>>,
}

/// Servers reachable on one listen address.
#[derive(Clone, Debug)]
pub(super) struct AddrTable {
    pub(super) addr: SocketAddr,
    default: usize,
    exact: HashMap<Box<str>, usize>,
    /// `*.example.com` and `.example.com`, keyed by the suffix with its leading dot.
    leading: HashMap<Box<str>, usize>,
    /// `.example.com` keyed by `example.com`.
    bare: HashMap<Box<str>, usize>,
    /// `www.example.` prefixes, longest first.
    trailing: Vec<(Box<str>, usize)>,
    regex: Vec<(Regex, usize)>,
}

impl AddrTable {
    fn new(addr: SocketAddr, default: usize) -> AddrTable {
        AddrTable {
            addr,
            default,
            exact: HashMap::new(),
            leading: HashMap::new(),
            bare: HashMap::new(),
            trailing: Vec::new(),
            regex: Vec::new(),
        }
    }

    /// Adds a server's names; an earlier server keeps a name two servers share (nginx warns
    /// "conflicting server name" and ignores the later one).
    fn add(&mut self, server: usize, names: &[ServerName]) {
        for name in names {
            match name {
                ServerName::Exact(n) => {
                    self.exact.entry(n.as_str().into()).or_insert(server);
                }
                ServerName::LeadingWildcard { suffix, also_bare } => {
                    self.leading.entry(suffix.as_str().into()).or_insert(server);
                    if *also_bare {
                        self.bare.entry(suffix[1..].into()).or_insert(server);
                    }
                }
                ServerName::TrailingWildcard(prefix) => {
                    if !self.trailing.iter().any(|(p, _)| **p == **prefix) {
                        self.trailing.push((prefix.as_str().into(), server));
                    }
                }
                ServerName::Regex(r) => {
                    // nginx compiles `server_name` regexes caselessly (`NGX_REGEX_CASELESS`):
                    // `~^UP\.test$` matches `up.test` (observed on nginx 1.22 by hand).
                    self.regex.push((r.to_caseless(), server))
                }
            }
        }
    }

    /// Selects among this address's servers; `host` is already lowercased and trimmed.
    fn find<'r>(&'r self, host: Option<&str>) -> ServerMatch<'r> {
        let found = |server, how| ServerMatch {
            server,
            how,
            captures: None,
        };
        let host = host.unwrap_or("");
        if let Some(&s) = self.exact.get(host) {
            return found(s, NameMatch::Exact);
        }
        if !host.is_empty() {
            if let Some(&s) = self.bare.get(host) {
                return found(s, NameMatch::LeadingWildcard);
            }
            for (i, _) in host.match_indices('.') {
                if let Some(&s) = self.leading.get(&host[i..]) {
                    return found(s, NameMatch::LeadingWildcard);
                }
            }
            for (prefix, s) in &self.trailing {
                if host.len() > prefix.len() && host.starts_with(&**prefix) {
                    return found(*s, NameMatch::TrailingWildcard);
                }
            }
            for (re, s) in &self.regex {
                if let Some(captures) = Captures::exec(re, host) {
                    return ServerMatch {
                        server: *s,
                        how: NameMatch::Regex,
                        captures: Some(captures),
                    };
                }
            }
        }
        found(self.default, NameMatch::Default)
    }
}

/// Builds one table per distinct listen address, in order of first appearance.
pub(super) fn build(http: &HttpConf) -> Vec<AddrTable> {
    let mut tables: Vec<AddrTable> = Vec::new();
    for (i, server) in http.servers.iter().enumerate() {
        for listen in &server.listen {
            let pos = match tables.iter().position(|t| t.addr == listen.addr) {
                Some(pos) => pos,
                None => {
                    tables.push(AddrTable::new(listen.addr, i));
                    tables.len() - 1
                }
            };
            let table = &mut tables[pos];
            if listen.default_server {
                table.default = i;
            }
            table.add(i, &server.names);
        }
    }
    for t in &mut tables {
        // Stable: among equal lengths the first written wins.
        t.trailing.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }
    tables
}

/// The table serving a connection accepted on `local`: the exact address, else the wildcard
/// of the same family and port, else (a `[::]` listener with `ipv6only=off` taking IPv4
/// connections) any wildcard on that port.
pub(super) fn table_for(tables: &[AddrTable], local: SocketAddr) -> Option<&AddrTable> {
    let local = match local {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => local,
        },
        SocketAddr::V4(_) => local,
    };
    let wildcard = |t: &&AddrTable| t.addr.port() == local.port() && t.addr.ip().is_unspecified();
    tables
        .iter()
        .find(|t| t.addr == local)
        .or_else(|| {
            tables
                .iter()
                .filter(wildcard)
                .find(|t| t.addr.is_ipv4() == local.is_ipv4())
        })
        .or_else(|| tables.iter().find(wildcard))
}

impl AddrTable {
    /// The address's default server (index into `HttpConf::servers`).
    pub(super) fn default_server(&self) -> usize {
        self.default
    }
}

/// Selects the server for `host` (a Host header, absolute-form host or SNI name; `None` when the
/// request has none) among the servers of `table`.
pub(super) fn select<'r>(table: &'r AddrTable, host: Option<&str>) -> ServerMatch<'r> {
    let Some(host) = host.map(trim_host) else {
        return table.find(None);
    };
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return table.find(Some(host));
    }
    let mut buf = [0u8; 256];
    if let Some(dst) = buf.get_mut(..host.len()) {
        dst.copy_from_slice(host.as_bytes());
        dst.make_ascii_lowercase();
        if let Ok(lower) = std::str::from_utf8(dst) {
            return table.find(Some(lower));
        }
    }
    table.find(Some(&host.to_ascii_lowercase()))
}

/// Drops a port and a trailing dot (`Example.COM.:8080` → `Example.COM`); keeps IPv6 literals.
fn trim_host(host: &str) -> &str {
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// The host as server selection compares it (nginx's `$host`): without port and trailing dot,
/// lowercased. Borrowed unless it had uppercase letters. Regex `server_name` captures index it.
pub fn host_name(host: &str) -> std::borrow::Cow<'_, str> {
    let host = trim_host(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}
