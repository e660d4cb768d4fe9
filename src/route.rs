//! Routing: which `server` and which `location` answer a request, exactly as nginx decides.
//!
//! Place in the data flow: between the request head parser and the proxy. Each shard builds its
//! own [`Router`] from the configuration when it starts (it indexes the shared `HttpConf`);
//! per request the connection calls [`Router::server_for`] (local address + Host), normalises the
//! path with [`uri::normalize`] into `$uri`, then [`Router::find_location`]. A
//! `rewrite ... last` or an internal redirect calls [`Router::find_location`] again with the new
//! URI after counting the change in [`UriChanges`] (nginx allows 10, then answers 500).
//!
//! Everything is sans-IO and allocation-free on the common path: a location or server chosen by
//! a regex with capture groups allocates its capture slots, nothing else does.

mod location;
mod server;
pub mod uri;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use location::{Found, LocId};
pub use server::{host_name, NameMatch, ServerMatch};
pub use uri::UriError;

use crate::config::model::{HttpConf, Location, Regex, ServerConf};
use crate::config::regex;

/// Why routing cannot go on (the status nginx answers is in each variant's doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The path could not be normalised: 400.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// More than 10 URI changes (`rewrite ... last`, internal redirects): nginx logs "rewrite or
    /// internal redirection cycle" and answers 500.
    #[error("rewrite or internal redirection cycle")]
    RedirectCycle,
    /// No server listens on the connection's local address (a listener/config mismatch): 500.
    #[error("no server listens on {0}")]
    NoServer(SocketAddr),
}

/// Regex captures (`$0`..`$9` and named ones), as byte offsets into the string matched: the
/// `$uri` for a location, [`host_name`] of the host for a `server_name`.
#[derive(Debug)]
pub struct Captures<'r> {
    regex: &'r Regex,
    found: regex::Match,
}

impl<'r> Captures<'r> {
    /// Matches `subject`; `None` when the regex does not match.
    fn exec(regex: &'r Regex, subject: &str) -> Option<Captures<'r>> {
        let found = regex.exec(subject.as_bytes())?;
        Some(Captures { regex, found })
    }

    /// `$i` (0 is the whole match); `None` for a group that did not take part or does not
    /// exist. Bytes: nginx's regexes are not in UTF mode, so a group may end inside a
    /// character.
    pub fn get<'s>(&self, subject: &'s str, i: usize) -> Option<&'s [u8]> {
        let (start, end) = self.found.get(i)?;
        subject.as_bytes().get(start..end)
    }

    /// A named capture (`(?<name>...)`, `(?P<name>...)` or `(?'name'...)`).
    pub fn name<'s>(&self, subject: &'s str, name: &str) -> Option<&'s [u8]> {
        self.get(subject, self.regex.group_of(name)?)
    }

    /// The regex that matched (the request's variables take their captures from it).
    pub fn regex(&self) -> &'r Regex {
        self.regex
    }

    /// Number of groups, counting the whole match.
    pub fn len(&self) -> usize {
        self.regex.captures_len()
    }

    /// Always false: the whole match counts.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The names of the named groups, with their numbers.
    pub fn names(&self) -> impl Iterator<Item = (usize, &'r str)> {
        self.regex.names()
    }
}

/// nginx's budget of URI changes per request (`r->uri_changes`): 10 `rewrite ... last` or
/// internal redirects, the 11th is a [`RouteError::RedirectCycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriChanges(u8);

impl Default for UriChanges {
    fn default() -> UriChanges {
        UriChanges::new()
    }
}

impl UriChanges {
    /// A fresh request's budget (`NGX_HTTP_MAX_URI_CHANGES + 1`).
    pub const fn new() -> UriChanges {
        UriChanges(11)
    }

    /// Counts one change of URI; fails once more than 10 were made.
    pub fn change(&mut self) -> Result<(), RouteError> {
        self.0 = self.0.saturating_sub(1);
        if self.0 == 0 {
            Err(RouteError::RedirectCycle)
        } else {
            Ok(())
        }
    }
}

/// The routing table of one `http { }` block. It stores indices, not references: use it with
/// the `HttpConf` it was built from.
#[derive(Clone, Debug)]
pub struct Router {
    addrs: Vec<server::AddrTable>,
    /// Top level of each server's locations (with its named ones).
    servers: Vec<location::Level>,
    nodes: Vec<location::Node>,
}

impl Router {
    /// Indexes every listen address, server name and location of `http`.
    pub fn new(http: &HttpConf) -> Router {
        let mut nodes = Vec::new();
        let servers = http
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| location::build_level(&mut nodes, i as u32, &[], &s.locations))
            .collect();
        Router {
            addrs: server::build(http),
            servers,
            nodes,
        }
    }

    /// The distinct listen addresses, in order of first appearance (what the shards bind).
    pub fn listen_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addrs.iter().map(|t| t.addr)
    }

    /// The server for a request that arrived on `local` (the connection's local address) with
    /// `host` (the Host header or absolute-form host; `None` without one).
    pub fn server_for(
        &self,
        local: SocketAddr,
        host: Option<&str>,
    ) -> Result<ServerMatch<'_>, RouteError> {
        let table = server::table_for(&self.addrs, local).ok_or(RouteError::NoServer(local))?;
        Ok(server::select(table, host))
    }

    /// The default server of the address `local` (`default_server`, else the first server
    /// listening there). nginx normalises the request line before the Host header is read, so
    /// the `merge_slashes` that applies to [`uri::normalize`] is this server's, whatever server
    /// the Host then selects (observed on nginx 1.22 by hand).
    pub fn default_server(&self, local: SocketAddr) -> Result<usize, RouteError> {
        server::table_for(&self.addrs, local)
            .map(|t| t.default_server())
            .ok_or(RouteError::NoServer(local))
    }

    /// The server for a TLS handshake on `local` with SNI `sni` (same rules as Host; used to
    /// pick the certificate).
    pub fn server_for_sni(
        &self,
        local: SocketAddr,
        sni: Option<&str>,
    ) -> Result<ServerMatch<'_>, RouteError> {
        self.server_for(local, sni)
    }

    /// The location of server `server` (index into `HttpConf::servers`) for the normalised
    /// `uri`. Out-of-range servers find nothing.
    pub fn find_location(&self, server: usize, uri: &str) -> Found<'_> {
        match self.servers.get(server) {
            Some(level) => location::find(&self.nodes, level, uri),
            None => Found::ServerLevel,
        }
    }

    /// [`Router::find_location`] after a `rewrite ... last` or internal redirect to `uri`,
    /// counting the change against the request's budget.
    pub fn refind_location(
        &self,
        server: usize,
        uri: &str,
        changes: &mut UriChanges,
    ) -> Result<Found<'_>, RouteError> {
        changes.change()?;
        Ok(self.find_location(server, uri))
    }

    /// A named location (`@name`, with or without the `@`) of server `server`, for `try_files`
    /// and `error_page`.
    pub fn named_location(&self, server: usize, name: &str) -> Option<LocId> {
        let name = name.strip_prefix('@').unwrap_or(name);
        let level = self.servers.get(server)?;
        level
            .named
            .iter()
            .find(|(n, _)| n.strip_prefix('@').unwrap_or(n) == name)
            .map(|(_, id)| *id)
    }

    /// The server a location belongs to.
    pub fn server_of(&self, id: LocId) -> usize {
        self.nodes[id.0 as usize].server as usize
    }

    /// The location's name as written (`/img/`, `@fallback`, a regex's source): the target of
    /// a [`Found::Redirect`].
    pub fn location_name(&self, id: LocId) -> &str {
        &self.nodes[id.0 as usize].name
    }

    /// The location `id` in `http` (the configuration this router was built from).
    pub fn location<'c>(&self, http: &'c HttpConf, id: LocId) -> Option<&'c Location> {
        let node = self.nodes.get(id.0 as usize)?;
        let server: &ServerConf = http.servers.get(node.server as usize)?;
        let (first, rest) = node.path.split_first()?;
        let mut loc = server.locations.get(*first as usize)?;
        for &i in rest {
            loc = loc.locations.get(i as usize)?;
        }
        Some(loc)
    }
}
