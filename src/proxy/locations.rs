//! The location loop: a request comes here from `req::start` with its server chosen and its
//! variables built. The server's rewrite script runs, then the location search, each
//! location's script, `rewrite ... last`, internal redirects and named locations (counted by
//! `UriChanges`), and `error_page` for an error or redirect not sent yet. A location with
//! `proxy_pass` goes to `proxy_pass::proxy` (and maybe on to a tunnel); one without to
//! `static_files`; `return` to `answer::reply`. The state it ends in goes back to
//! `handler::serve`, after the access-log line.

use std::borrow::Cow;

use super::answer::{reply, send_page};
use super::error_page;
use super::handler::State;
use super::proxy_pass::proxy;
use super::req::{Req, SERVER_LEVEL};
use super::respond;
use super::static_files::{self, Conditional, Decision, FileHit};
use crate::config::model::{DocRoot, Location, LocationMatch};
use crate::http::request::Version;
use crate::http::script::{Level, Outcome, Reply};
use crate::log;
use crate::route::{Found, LocId, UriChanges};

/// Where routing sends a request next.
#[derive(Clone, Copy)]
enum Next {
    /// Search a location for `$uri` (first time, `rewrite ... last`, an internal redirect).
    Search,
    /// Go to a named location (`try_files ... @name`).
    Named(LocId),
}

/// What one pass through a location decided.
// As large as `State`, which every step returns anyway; boxing it would allocate per request.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Route again: `rewrite ... last`, an internal redirect, an error page's location.
    Route(Next),
    /// The request ends in this state (an `Error` goes to `error_page` first).
    Done(State),
}

/// What the loop carries from one location to the next, as nginx does on `r`.
#[derive(Default)]
struct Walk {
    /// URI changes so far (nginx's cycle limit).
    changes: UriChanges,
    /// nginx's `r->internal`: the request was redirected (error_page, try_files, index, a
    /// named location), so `internal` locations serve it.
    internal: bool,
    /// The one error page (recursive_error_pages off) was used.
    page_used: bool,
    /// An error ended keep-alive.
    closing: bool,
}

/// Serves a request through its server's script and its locations, and logs it.
pub(super) async fn serve_request(req: &mut Req<'_>) -> State {
    let http = req.http;
    let server_conf = &http.servers[req.server].conf;
    // nginx answers these before the server's rewrite phase, with the server's error pages;
    // the connection closes after them.
    let cert_error = req.client_cert_error();
    if cert_error.is_none() {
        if let Outcome::Return(r) = req.run_script(server_conf, Level::Server) {
            let keep_alive = req.head.keep_alive;
            return reply(req, r, keep_alive).await;
        }
    }
    let conn = &*req.conn;
    conn.status.set(0);
    conn.sent.set(0);
    conn.head_sent.set(0);
    conn.gzip_io.set(None);
    conn.body_read.set(false);
    conn.err_status.set(None);
    conn.err_location.replace(None);
    conn.defer_errors.set(true);
    let mut walk = Walk::default();
    let mut next = Next::Search;
    let mut pending = cert_error.map(|code| State::Error(Reply::status(code), false));
    let state = loop {
        let step = match pending.take() {
            Some(st) => Step::Done(st),
            None => location(req, &mut walk, next).await,
        };
        match step {
            Step::Route(n) => next = n,
            Step::Done(State::Error(r, keep_alive)) => {
                match error_page(req, &mut walk, r, keep_alive).await {
                    Step::Route(n) => next = n,
                    Step::Done(st) => break st,
                }
            }
            Step::Done(st) => break st,
        }
    };
    req.conn.defer_errors.set(false);
    req.conn.err_status.set(None);
    req.log();
    state
}

/// An error or redirect not sent yet: the location's `error_page` for it, if any (an internal
/// redirect, a named location, or a redirect sent now), else the reply itself.
async fn error_page(req: &mut Req<'_>, walk: &mut Walk, r: Reply, keep_alive: bool) -> Step {
    // A body already sent upstream leaves unknown bytes behind: no keep-alive.
    walk.closing |= !keep_alive || req.conn.body_read.get();
    let conf = req.conf;
    let page = if walk.page_used {
        None
    } else {
        error_page::find(conf, r.code)
    };
    let res = page.map(|p| error_page::resolve(p, r.code, &mut req.vars));
    walk.page_used |= res.is_some();
    let target = match res {
        None => None,
        Some(res) => {
            req.conn.err_status.set(res.status);
            req.conn.err_location.replace(r.location.clone());
            match res.action {
                error_page::Action::Internal { uri, args } => {
                    req.vars.set_uri(uri, Some(args));
                    Some(Next::Search)
                }
                error_page::Action::Named(name) => {
                    let router = &req.ctx.proxy.router;
                    router.named_location(req.server, &name).map(Next::Named)
                }
                error_page::Action::Redirect { code, location } => {
                    let to = Reply {
                        code,
                        location: Some(location),
                        body: None,
                    };
                    return Step::Done(send_page(req, to, !walk.closing).await);
                }
            }
        }
    };
    match target.filter(|_| walk.changes.change().is_ok()) {
        Some(t) => {
            walk.internal = true;
            Step::Route(t)
        }
        None => {
            req.conn.err_status.set(None);
            // A `Location` from before an earlier error_page is still among nginx's headers.
            let location = r.location.or_else(|| req.conn.err_location.take());
            let r = Reply { location, ..r };
            Step::Done(send_page(req, r, !walk.closing).await)
        }
    }
}

/// Finds the location for `next`, runs its script, and serves the request there.
async fn location(req: &mut Req<'_>, walk: &mut Walk, next: Next) -> Step {
    let loc = match find(req, next).await {
        Ok(loc) => loc,
        Err(st) => return Step::Done(st),
    };
    let http = req.http;
    let conf = loc.map_or(&http.servers[req.server].conf, |l| &l.conf);
    req.conf = conf;
    req.matcher = loc.map_or(&SERVER_LEVEL, |l| &l.matcher);
    let conn = &mut *req.conn;
    conn.idle_timeout = conf.keepalive_timeout();
    if conf.tcp_nodelay() && !conn.nodelay {
        conn.nodelay = conn.stream.tcp().set_nodelay(true).is_ok();
    }
    if conf.internal && !walk.internal {
        return Step::Done(req.fail(404).await);
    }
    if let Some(l) = loc {
        if let LocationMatch::Regex(re) = &l.matcher {
            let subject = req.vars.uri().to_string();
            req.vars.match_regex(re, &subject);
        }
        req.vars.set_location_valid(true);
        // nginx switches to the `limit_except` block's conf when the location is found, so
        // the location's own rewrite directives do not run for those methods.
        if let Some(le) = l
            .limit_except
            .as_ref()
            .filter(|le| le.limits(req.head.method))
        {
            req.conf = &le.conf;
        }
    }
    set_doc_root(req);
    // nginx's keep-alive limits hold for every answer from this location (`return` too).
    let conn = &*req.conn;
    let keep_alive = req.head.keep_alive
        && !walk.closing
        && !conf.keepalive_timeout().is_zero()
        && conn.requests < conf.keepalive_requests()
        && conn.accepted.elapsed() <= conf.keepalive_time()
        && !req.ctx.shard.stopping.is_set();
    match req.run_script(req.conf, Level::Location) {
        Outcome::Return(r) => return Step::Done(reply(req, r, keep_alive).await),
        Outcome::Last(_) => {
            if walk.changes.change().is_err() {
                log!(
                    Error,
                    "rewrite or internal redirection cycle while processing \"{}\", client: {}",
                    req.vars.uri(),
                    req.conn.peer.ip()
                );
                return Step::Done(req.fail(500).await);
            }
            return Step::Route(Next::Search);
        }
        Outcome::Continue | Outcome::Break => {}
    }
    // A true `if` may have given the request its block's conf.
    let conf = req.conf;
    // nginx's pre-access phase: the realip module again, with the location's settings.
    req.real_ip(conf);
    set_doc_root(req);
    if let Err(code) = super::limits::preaccess(req, conf).await {
        return Step::Done(req.fail(code).await);
    }
    // nginx's access phase: allow/deny, auth_basic, combined by `satisfy`.
    if let Some(st) = super::access::phase(req, keep_alive).await {
        return Step::Done(st);
    }
    if let Some(pp) = conf.proxy_pass.as_ref() {
        return Step::Done(proxy(req, pp, keep_alive).await);
    }
    // An error page is fetched as GET (nginx rewrites the method).
    if req.head.method != "GET" && req.head.method != "HEAD" && !walk.page_used {
        return Step::Done(req.fail(405).await);
    }
    if !req.early.is_empty() {
        req.conn.buf = req.early.to_vec();
    }
    static_file(req, walk, keep_alive).await
}

/// The location `next` names, `None` for the server level; `Err`: nginx's 301 to a
/// `proxy_pass` location's name with its slash.
async fn find<'a>(req: &mut Req<'a>, next: Next) -> Result<Option<&'a Location>, State> {
    let (http, ctx) = (req.http, req.ctx);
    let router = &ctx.proxy.router;
    let id = match next {
        Next::Named(id) => id,
        Next::Search => match router.find_location(req.server, req.vars.uri()) {
            Found::Location(id, _) => id,
            Found::Redirect(id) => {
                let mut target = router.location_name(id).as_bytes().to_vec();
                if let Some(a) = req.vars.args() {
                    target.push(b'?');
                    target.extend_from_slice(a.as_bytes());
                }
                let r = Reply {
                    code: 301,
                    location: Some(target),
                    body: None,
                };
                let keep_alive = req.head.keep_alive;
                return Err(reply(req, r, keep_alive).await);
            }
            Found::ServerLevel => return Ok(None),
        },
    };
    Ok(router.location(http, id))
}

/// A location without `proxy_pass`: what `static_files` decides for `$uri` (a file, a
/// redirect, another location, an error).
async fn static_file(req: &mut Req<'_>, walk: &mut Walk, keep_alive: bool) -> Step {
    let (conf, matcher) = (req.conf, req.matcher);
    let decision = {
        let v = &mut req.vars;
        let uri = v.uri().to_string();
        static_files::resolve(conf, matcher, &uri, &mut |t| {
            let mut out = Vec::new();
            v.render(t, &mut out);
            out
        })
    };
    match decision {
        Decision::File(hit) => Step::Done(send_file(req, &hit, keep_alive).await),
        Decision::RedirectDir(target) => {
            let r = Reply {
                code: 301,
                location: Some(target.into_bytes()),
                body: None,
            };
            Step::Done(reply(req, r, keep_alive).await)
        }
        Decision::InternalRedirect(target) => {
            let step = redirect(req, walk, Next::Search).await;
            if let Step::Route(_) = step {
                match target.split_once('?') {
                    Some((u, a)) => req.vars.set_uri(u.to_string(), Some(Some(a.to_string()))),
                    None => req.vars.set_uri(target, None),
                }
            }
            step
        }
        Decision::Named(name) => match req.ctx.proxy.router.named_location(req.server, &name) {
            Some(id) => redirect(req, walk, Next::Named(id)).await,
            None => Step::Done(req.fail(500).await),
        },
        Decision::Status(code) => Step::Done(req.fail(code).await),
        Decision::Failed(code, line) => {
            if code != 404 || conf.log_not_found() {
                let head = req.head;
                let v = if head.version == Version::Http11 {
                    "1.1"
                } else {
                    "1.0"
                };
                let host = head.host.unwrap_or("");
                log!(
                    Error,
                    "{line}, client: {}, server: {}, request: \"{} {} HTTP/{v}\", host: \"{host}\"",
                    req.conn.peer.ip(),
                    req.facts.server_name,
                    head.method,
                    head.target.raw
                );
            }
            Step::Done(req.fail(code).await)
        }
    }
}

/// `$document_root` and `$request_filename` follow the conf serving the request.
fn set_doc_root(req: &mut Req<'_>) {
    // The field, not the accessor: borrowed from the configuration, not cloned per request.
    let alias_len = || match req.matcher {
        LocationMatch::Prefix { path, .. } | LocationMatch::Exact(path) => path.len(),
        LocationMatch::Named(name) => name.len(),
        LocationMatch::Regex(_) => usize::MAX,
    };
    let (root, alias) = match &req.conf.root {
        None => (Cow::Borrowed(std::path::Path::new("html")), None), // nginx's default, as in model.rs
        Some(DocRoot::Root(p)) => (Cow::Borrowed(p.as_path()), None),
        Some(DocRoot::Alias(p)) => (Cow::Borrowed(p.as_path()), Some(alias_len())),
        Some(vars @ (DocRoot::RootVars(..) | DocRoot::AliasVars(..))) => {
            // Evaluated now, as nginx's map_uri_to_path does: with the location's captures.
            let v = &mut req.vars;
            let (p, is_alias) = vars.rendered(&mut |t| {
                let mut out = Vec::new();
                v.render(t, &mut out);
                out
            });
            (Cow::Owned(p), is_alias.then(alias_len))
        }
    };
    // Literal roots are borrowed from the configuration: rendered only if asked for.
    req.vars.document_root = Some(root);
    req.vars.alias_prefix = alias;
}

/// An internal redirect to `next`, unless it is one URI change too many (nginx: 500).
async fn redirect(req: &Req<'_>, walk: &mut Walk, next: Next) -> Step {
    if walk.changes.change().is_err() {
        return Step::Done(req.fail(500).await);
    }
    walk.internal = true;
    Step::Route(next)
}

/// Sends a static file (or its 304/412/416), with the status an `error_page` gave.
async fn send_file(req: &mut Req<'_>, hit: &FileHit, keep_alive: bool) -> State {
    let conf = req.conf;
    let status = req.conn.err_status.get().unwrap_or(200);
    req.conn.status.set(status);
    let cond = Conditional {
        if_modified_since: req.header("if-modified-since"),
        if_none_match: req.header("if-none-match"),
    };
    let extras = hit.extras(conf, &mut req.vars, status);
    let shape = static_files::Shaping {
        status,
        extras: &extras,
        chunked: respond::takes_chunked(req.head, conf),
        head_request: req.head.method == "HEAD",
    };
    let conn = &*req.conn;
    match static_files::serve(&conn.stream, hit, &cond, keep_alive, conf, &shape).await {
        Ok(served) => {
            conn.sent.set(served.body_bytes);
            conn.gzip_io.set(served.gzip);
            if served.keep_alive {
                State::ReadingHead
            } else {
                State::Closed
            }
        }
        Err(e @ static_files::ServeError::Open { .. }) => req.fail(e.status()).await,
        Err(_) => State::Closed,
    }
}
