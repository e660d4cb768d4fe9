//! Location matching with nginx's precedence (`ngx_http_core_find_location`).
//!
//! Place in the data flow: after the server is chosen and the path normalised into `$uri`; run
//! again for every `rewrite ... last` and internal redirect. Each nesting level (a server's
//! locations, or one location's nested locations) is indexed once: exact names, prefixes
//! longest first, regexes in order of appearance, and the names that trigger nginx's
//! auto-redirect. At one level, as nginx's static tree does:
//!
//! 1. an `=` location equal to the URI wins at once;
//! 2. else the longest matching prefix is remembered, and its nested locations are searched
//!    the same way (a nested match replaces it; a nested `=` or regex match ends the search);
//! 3. else, when the URI plus `/` is the name of a location with `proxy_pass` (nginx's
//!    `auto_redirect`), the answer is a 301 to that name, before any regex is tried;
//! 4. unless the prefix remembered at this level has `^~`, this level's regexes are tried in
//!    order and the first match wins (its nested locations are then searched too);
//! 5. else the remembered prefix is used, or the server level when nothing matched.
//!
//! As in nginx, `^~` on a nested prefix only skips the regexes of its own level: the
//! enclosing level's regexes still run when the enclosing prefix has no `^~`. A level's
//! regexes run one after the other, as in nginx (PCRE2 has no set of patterns).

use super::Captures;
use crate::config::model::{Location, LocationMatch, Regex};

/// A location, as an index into the router's flat table (see `Router::location`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LocId(pub(super) u32);

/// What location matching found.
#[derive(Debug)]
pub enum Found<'r> {
    /// A location, with the captures of the regex that chose it (if any).
    Location(LocId, Option<Captures<'r>>),
    /// nginx's auto-redirect: the URI is a `proxy_pass` location's name without its trailing
    /// slash; answer 301 with `Location: <name>[?args]`.
    Redirect(LocId),
    /// No location matched: the request runs with the server level's settings.
    ServerLevel,
}

/// One location of the flat table.
#[derive(Clone, Debug)]
pub(super) struct Node {
    /// Indices from `ServerConf::locations` down to this location.
    pub(super) path: Box<[u32]>,
    /// Index of its server.
    pub(super) server: u32,
    /// Name as written (`/img/`, `@fallback`, regex source), for the 301 `Location`.
    pub(super) name: Box<str>,
    no_regex: bool,
    regex: Option<Regex>,
    children: Level,
}

/// The locations of one nesting level.
#[derive(Clone, Debug, Default)]
pub(super) struct Level {
    /// `=` names, sorted for binary search.
    exact: Vec<(Box<str>, LocId)>,
    /// Prefixes, longest first (stable: the first written wins among equal names).
    prefix: Vec<(Box<str>, LocId)>,
    /// Names ending in `/` of `=`/prefix locations with `proxy_pass`.
    redirect: Vec<(Box<str>, LocId)>,
    /// Regex locations in order of appearance.
    regex: Vec<LocId>,
    /// `@name` locations (server level only).
    pub(super) named: Vec<(Box<str>, LocId)>,
}

/// nginx's return codes of the search, named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rc {
    /// `=` or regex match: done.
    Ok,
    /// Auto-redirect.
    Done,
    /// Longest prefix remembered.
    Again,
    /// Nothing at this level.
    Declined,
}

/// Adds `locs` (and everything nested) to `nodes`, returning the level that indexes them.
pub(super) fn build_level(
    nodes: &mut Vec<Node>,
    server: u32,
    parent_path: &[u32],
    locs: &[Location],
) -> Level {
    let mut level = Level::default();
    for (i, loc) in locs.iter().enumerate() {
        let mut path = parent_path.to_vec();
        path.push(i as u32);
        let id = LocId(nodes.len() as u32);
        let (name, no_regex, regex) = match &loc.matcher {
            LocationMatch::Exact(n) => {
                level.exact.push((n.as_str().into(), id));
                (n.as_str(), false, None)
            }
            LocationMatch::Prefix { path, no_regex } => {
                level.prefix.push((path.as_str().into(), id));
                (path.as_str(), *no_regex, None)
            }
            LocationMatch::Regex(r) => {
                level.regex.push(id);
                (r.source.as_str(), false, Some(r.clone()))
            }
            LocationMatch::Named(n) => {
                level.named.push((n.as_str().into(), id));
                (n.as_str(), false, None)
            }
        };
        let static_name = matches!(
            loc.matcher,
            LocationMatch::Exact(_) | LocationMatch::Prefix { .. }
        );
        if static_name && name.ends_with('/') && loc.conf.proxy_pass.is_some() {
            level.redirect.push((name.into(), id));
        }
        nodes.push(Node {
            path: path.clone().into(),
            server,
            name: name.into(),
            no_regex,
            regex,
            children: Level::default(),
        });
        let children = build_level(nodes, server, &path, &loc.locations);
        nodes[id.0 as usize].children = children;
    }
    level.exact.sort_by(|a, b| a.0.cmp(&b.0));
    level.prefix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    level
}

/// The search state nginx keeps in `r->loc_conf` and `r->captures`.
struct Search<'r> {
    nodes: &'r [Node],
    current: Option<LocId>,
    captures: Option<Captures<'r>>,
}

impl<'r> Search<'r> {
    fn node(&self, id: LocId) -> &'r Node {
        &self.nodes[id.0 as usize]
    }

    /// `ngx_http_core_find_static_location`, linearised: same answer as nginx's tree.
    fn find_static(&mut self, level: &Level, uri: &str) -> Rc {
        if let Ok(i) = level.exact.binary_search_by(|(n, _)| (**n).cmp(uri)) {
            self.current = Some(level.exact[i].1);
            return Rc::Ok;
        }
        let longest = level.prefix.iter().find(|(p, _)| uri.starts_with(&**p));
        if let Some((p, id)) = longest {
            if p.len() == uri.len() {
                self.current = Some(*id);
                return Rc::Again;
            }
        }
        let redirect = level
            .redirect
            .iter()
            .find(|(n, _)| n.len() == uri.len() + 1 && n.starts_with(uri));
        if let Some((_, id)) = redirect {
            self.current = Some(*id);
            return Rc::Done;
        }
        match longest {
            Some((_, id)) => {
                self.current = Some(*id);
                Rc::Again
            }
            None => Rc::Declined,
        }
    }

    /// `ngx_http_core_find_location` on `level`, whose owner is the current location.
    fn find(&mut self, level: &Level, uri: &str) -> Rc {
        let mut no_regex = false;
        let mut rc = self.find_static(level, uri);
        if let (Rc::Again, Some(id)) = (rc, self.current) {
            let node = self.node(id);
            no_regex = node.no_regex;
            rc = self.find(&node.children, uri);
        }
        if rc == Rc::Ok || rc == Rc::Done {
            return rc;
        }
        if no_regex {
            return rc;
        }
        for &id in &level.regex {
            let node = self.node(id);
            let Some(re) = &node.regex else { continue };
            if let Some(captures) = Captures::exec(re, uri) {
                self.current = Some(id);
                self.captures = Some(captures);
                self.find(&node.children, uri);
                return Rc::Ok;
            }
        }
        rc
    }
}

/// Runs nginx's location search for `uri` on a server's top `level`.
pub(super) fn find<'r>(nodes: &'r [Node], level: &Level, uri: &str) -> Found<'r> {
    let mut search = Search {
        nodes,
        current: None,
        captures: None,
    };
    let rc = search.find(level, uri);
    match (rc, search.current) {
        (Rc::Done, Some(id)) => Found::Redirect(id),
        (_, Some(id)) => Found::Location(id, search.captures),
        (_, None) => Found::ServerLevel,
    }
}
