//! `auth_request`: the access phase (`access`) asks another location whether a request may go
//! on, by a subrequest as nginx's module makes it: `GET` of the configured URI with the
//! request's headers and no body, routed to its location in the same server (normally an
//! `internal` one with `proxy_pass`; a `return` there answers too). The subrequest runs on the
//! shard's runtime like any upstream exchange (`proxy_pass::subrequest`: the same connect code
//! and keep-alive pool). `auth_request_set` variables are then set from its answer, with
//! `$upstream_http_*` and `$sent_http_*` naming the subrequest's response headers.

use std::borrow::Cow;

use super::req::Req;
use crate::config::model::LocationMatch;
use crate::http::request::{Body, RequestHead};
use crate::http::script::{Level, Outcome};
use crate::http::target::Target;
use crate::http::vars::RequestVars;
use crate::log;
use crate::route::Found;

/// The subrequest's answer: its status (nginx's 500 when it could not be made) and response
/// headers; `None` when the client went away meanwhile.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, Vec<u8>)>,
}

/// Makes the subrequest for `uri` on behalf of `req`.
pub(super) async fn ask(req: &mut Req<'_>, uri: &str) -> Option<Answer> {
    let status = |status| {
        Some(Answer {
            status,
            headers: Vec::new(),
        })
    };
    let (ctx, http) = (req.ctx, req.http);
    let router = &ctx.proxy.router;
    let loc = match router.find_location(req.server, uri) {
        Found::Location(id, _) => router.location(http, id),
        Found::ServerLevel => None,
        // A 301 to the location's name with a slash: not a 2xx.
        Found::Redirect(_) => return status(301),
    };
    let conf = loc.map_or(&http.servers[req.server].conf, |l| &l.conf);
    let head = RequestHead {
        method: "GET",
        // `$request_uri` stays the client's, as nginx's subrequests keep it.
        target: Target {
            raw: req.head.target.raw,
            path: uri,
            query: None,
            host: None,
        },
        version: req.head.version,
        headers: req.head.headers,
        host: req.head.host,
        body: Body::None,
        upgrade: false,
        upgrade_protocol: None,
        keep_alive: req.head.keep_alive,
    };
    let maps = &http.maps;
    let now = std::time::SystemTime::now();
    let mut vars = RequestVars::new(&head, req.facts, maps, Cow::Borrowed(uri), now);
    vars.real = req.vars.real;
    // Changed from the request line's: `proxy_pass` without a URI sends this one.
    vars.set_uri(uri.to_string(), Some(None));
    if let Some(LocationMatch::Regex(re)) = loc.map(|l| &l.matcher) {
        vars.match_regex(re, uri);
    }
    let matcher = loc.map_or(&super::req::SERVER_LEVEL, |l| &l.matcher);
    let mut sub = Req {
        ctx,
        http,
        conn: &mut *req.conn,
        facts: req.facts,
        head: &head,
        early: &[],
        vars,
        server: req.server,
        conf,
        matcher,
    };
    match sub.run_script(conf, Level::Location) {
        Outcome::Return(r) => return status(r.code),
        Outcome::Last(_) => {
            log!(
                Error,
                "rewrite in the auth_request location \"{uri}\" is not supported by ringproxy, client: {}",
                sub.conn.peer.ip()
            );
            return status(500);
        }
        Outcome::Continue | Outcome::Break => {}
    }
    let conf = sub.conf;
    let Some(pp) = conf.proxy_pass.as_ref() else {
        log!(
            Error,
            "the auth_request location \"{uri}\" neither proxies nor returns (not supported by ringproxy), client: {}",
            sub.conn.peer.ip()
        );
        return status(500);
    };
    match super::proxy_pass::subrequest(&mut sub, pp).await {
        Ok((status, headers)) => Some(Answer { status, headers }),
        Err(Some(code)) => status(code),
        Err(None) => None,
    }
}

/// `auth_request_set`: each variable from its value rendered with the subrequest's response
/// headers as `$upstream_http_*` and `$sent_http_*`.
pub(super) fn set_variables(req: &mut Req<'_>, answer: &Answer) {
    let Some(sets) = req.conf.auth_request_set.as_deref() else {
        return;
    };
    let vars = &mut req.vars;
    let upstream = std::mem::replace(&mut vars.upstream.headers, answer.headers.clone());
    let sent = std::mem::replace(&mut vars.response.headers, answer.headers.clone());
    // In order, as nginx: a value may use a variable set just before.
    for (name, value) in sets {
        let mut out = Vec::new();
        vars.render(value, &mut out);
        vars.set_var(name, out);
    }
    vars.upstream.headers = upstream;
    vars.response.headers = sent;
}
