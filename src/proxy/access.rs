//! nginx's access phase for a request in its location (`locations` calls [`phase`] after the
//! location's rewrite script and the realip module): the access module's `allow`/`deny`, then
//! `auth_basic`, then `auth_request` (its subrequest: `auth_request`), combined by `satisfy`
//! as `ngx_http_core_access_phase` combines its handlers. Under `satisfy all` the first
//! refusal answers; under `satisfy any` the first check that allows ends the phase, and
//! otherwise a 401 wins over a 403. A 401 waits `auth_delay` first.

use super::handler::State;
use super::req::Req;
use crate::config::conditional::access_decides;
use crate::config::model::Satisfy;
use crate::http::basic_auth;
use crate::http::request::Body;
use crate::http::request::Version;
use crate::http::script::Reply;
use crate::log;

/// What one access check says (nginx's `NGX_DECLINED`, `NGX_OK`, or a status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Not configured here: no say.
    Declined,
    Allowed,
    /// 401, 403 or 500.
    Refused(u16),
}

/// Runs the access checks of `req.conf`: `None` lets the request on, `Some` is its answer
/// (`keep_alive`: whether the connection may stay open after it).
pub(super) async fn phase(req: &mut Req<'_>, keep_alive: bool) -> Option<State> {
    let any = req.conf.satisfy() == Satisfy::Any;
    let mut pending: Option<u16> = None;
    for i in 0..3 {
        let verdict = match i {
            0 => rules(req, any),
            1 => auth_basic(req),
            _ => match auth_request(req).await {
                Some(v) => v,
                None => return Some(State::Closed),
            },
        };
        match verdict {
            Verdict::Declined => {}
            Verdict::Allowed if any => {
                // nginx hides a challenge an earlier check added.
                req.vars.response.www_authenticate = None;
                return None;
            }
            Verdict::Allowed => {}
            Verdict::Refused(code @ (401 | 403)) if any => {
                if pending != Some(401) {
                    pending = Some(code);
                }
            }
            Verdict::Refused(code) => return Some(refuse(req, code, keep_alive).await),
        }
    }
    let code = pending?;
    if code == 403 {
        forbidden_by_rule(req);
    }
    Some(refuse(req, code, keep_alive).await)
}

/// nginx keeps the connection after a 401 or 403, not after a 500. A request body is not read
/// here (nginx discards it): its bytes would be taken for the next request, so that connection
/// closes.
async fn refuse(req: &mut Req<'_>, code: u16, keep_alive: bool) -> State {
    if code == 500 {
        return req.fail(500).await;
    }
    let keep_alive = keep_alive && req.head.body == Body::None;
    let delay = req.conf.auth_delay();
    if code == 401 && !delay.is_zero() {
        // `auth_delay`: slows password guessing down, as nginx.
        log!(
            Info,
            "*{} delaying unauthorized request{}",
            req.conn.id,
            context(req)
        );
        monoio::time::sleep(delay).await;
    }
    super::answer::reply(req, Reply::status(code), keep_alive).await
}

/// `allow`/`deny`: the first rule matching the client decides. Under `satisfy all` the
/// refusal is logged here, under `any` only if no other check allows (nginx's post-access).
fn rules(req: &mut Req<'_>, any: bool) -> Verdict {
    let rules = req.conf.access.as_deref().unwrap_or(&[]);
    match access_decides(rules, req.vars.remote_ip()) {
        None => return Verdict::Declined,
        Some(true) => return Verdict::Allowed,
        Some(false) => {}
    }
    if !any {
        forbidden_by_rule(req);
    }
    Verdict::Refused(403)
}

fn forbidden_by_rule(req: &Req<'_>) {
    let head = req.head;
    log!(
        Error,
        "access forbidden by rule, client: {}, server: {}, request: \"{} {}\", host: \"{}\"",
        req.vars.remote_ip(),
        req.facts.server_name,
        head.method,
        head.target.raw,
        head.host.unwrap_or("")
    );
}

/// `auth_basic` with `auth_basic_user_file`, as nginx's module: both must be set and the realm
/// must not be `off`; the file is read for each request, as nginx does.
fn auth_basic(req: &mut Req<'_>) -> Verdict {
    let conf = req.conf;
    let (Some(realm), Some(file)) = (&conf.auth_basic, &conf.auth_basic_user_file) else {
        return Verdict::Declined;
    };
    let mut realm_text = Vec::new();
    req.vars.render(realm, &mut realm_text);
    if realm_text == b"off" {
        return Verdict::Declined;
    }
    let challenge = |req: &mut Req<'_>| {
        let mut v = b"Basic realm=\"".to_vec();
        v.extend_from_slice(&realm_text);
        v.push(b'"');
        req.vars.response.www_authenticate = Some(v);
        Verdict::Refused(401)
    };
    let creds = req
        .head
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .and_then(|h| basic_auth::credentials(h.value));
    let Some((user, password)) = creds else {
        log!(
            Info,
            "*{} no user/password was provided for basic authentication{}",
            req.conn.id,
            context(req)
        );
        return challenge(req);
    };
    let mut path = Vec::new();
    req.vars.render(&file.path, &mut path);
    let path = file.conf_dir.join(String::from_utf8_lossy(&path).as_ref());
    let contents = match std::fs::read(&path) {
        Ok(c) => c,
        Err(e) => {
            let os = crate::config::parser::os_error(&e);
            let line = format!(
                "open() \"{}\" failed ({os}){}",
                path.display(),
                context(req)
            );
            // As nginx: a missing file forbids, any other failure is the server's.
            if e.kind() == std::io::ErrorKind::NotFound {
                log!(Error, "*{} {line}", req.conn.id);
                return Verdict::Refused(403);
            }
            log!(Crit, "*{} {line}", req.conn.id);
            return Verdict::Refused(500);
        }
    };
    let name = String::from_utf8_lossy(&user);
    match basic_auth::find_user(&contents, &user) {
        Some(hash) if basic_auth::password_matches(&password, hash) => Verdict::Allowed,
        Some(_) => {
            log!(
                Error,
                "*{} user \"{name}\": password mismatch{}",
                req.conn.id,
                context(req)
            );
            challenge(req)
        }
        None => {
            log!(
                Error,
                "*{} user \"{name}\" was not found in \"{}\"{}",
                req.conn.id,
                path.display(),
                context(req)
            );
            challenge(req)
        }
    }
}

/// `auth_request`: the subrequest's 2xx allows, its 401 (with its `WWW-Authenticate`) and
/// 403 refuse, anything else is nginx's 500; `None` when the client went away meanwhile.
async fn auth_request(req: &mut Req<'_>) -> Option<Verdict> {
    let uri = match req.conf.auth_request.as_deref() {
        None | Some("") => return Some(Verdict::Declined),
        Some(u) => u,
    };
    let answer = super::auth_request::ask(req, uri).await?;
    super::auth_request::set_variables(req, &answer);
    Some(match answer.status {
        200..=299 => Verdict::Allowed,
        403 => Verdict::Refused(403),
        401 => {
            req.vars.response.www_authenticate = answer
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
                .map(|(_, v)| v.clone());
            Verdict::Refused(401)
        }
        s => {
            log!(
                Error,
                "*{} auth request unexpected status: {s}{}",
                req.conn.id,
                context(req)
            );
            Verdict::Refused(500)
        }
    })
}

/// The request's part of an nginx error-log line: `, client: ..., server: ..., request: "...",
/// host: "..."`.
fn context(req: &Req<'_>) -> String {
    let head = req.head;
    let v = if head.version == Version::Http10 {
        "1.0"
    } else {
        "1.1"
    };
    let mut s = format!(
        ", client: {}, server: {}, request: \"{} {} HTTP/{v}\"",
        req.vars.remote_ip(),
        req.facts.server_name,
        head.method,
        head.target.raw
    );
    if let Some(h) = head.host {
        s.push_str(&format!(", host: \"{h}\""));
    }
    s
}
