//! The request side of `sticky` (see [`crate::upstream::balancer::Sticky`] for the pick): the
//! server ID a request names, and the `Set-Cookie` that binds the client to the peer it got.
//!
//! Place in the data flow: `upstream_connect` asks [`hint`] before the first pick; the response
//! head (`proxy_pass::client_head`) asks [`set_cookie`] for the peer that answered, and the
//! line goes before the upstream's own headers, where nginx's sticky module pushes it (at pick
//! time, ahead of the headers copied from the upstream). nginx sets the cookie on every
//! response, bound or not, so its expiry moves on with each request; so does ringproxy. A `101`
//! gets it too: that is how WebSocket connections stick.

use std::time::{Duration, SystemTime};

use crate::config::sticky::{samesite_known, CookieExpiry, StickyConf, StickyCookie};
use crate::http::vars::RequestVars;

/// `expires=max`: the time nginx writes (`NGX_HTTP_STICKY_COOKIE_MAX_EXPIRES`) and its
/// `max-age`, ten years.
const MAX_EXPIRES: &str = "; expires=Thu, 31-Dec-37 23:55:55 GMT; max-age=315360000";

/// The server ID the request names: the first lookup value that is not empty (none: empty).
pub(super) fn hint(sticky: &StickyConf, vars: &mut RequestVars) -> Vec<u8> {
    let mut out = Vec::new();
    for t in &sticky.lookup {
        out.clear();
        vars.render(t, &mut out);
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// The `Set-Cookie` value binding the client to the peer whose server ID is `sid`, as
/// `ngx_http_upstream_sticky_cookie_insert` writes it: `name=sid`, then `expires`/`max-age`,
/// `domain`, `httponly`, `secure`, `samesite`, `path`, in that order.
pub(super) fn set_cookie(
    cookie: &StickyCookie,
    sid: &str,
    vars: &mut RequestVars,
    now: SystemTime,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(cookie.name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(sid.as_bytes());
    match cookie.expires {
        None => {}
        Some(CookieExpiry::Max) => out.extend_from_slice(MAX_EXPIRES.as_bytes()),
        Some(CookieExpiry::After(d)) => {
            out.extend_from_slice(b"; expires=");
            let at = now + Duration::from_secs(d.as_secs());
            crate::http::time::local_time(at, 0).write_cookie_date(&mut out);
            out.extend_from_slice(format!("; max-age={}", d.as_secs()).as_bytes());
        }
    }
    if let Some(domain) = &cookie.domain {
        let mut d = Vec::new();
        vars.render(domain, &mut d);
        if !d.is_empty() {
            out.extend_from_slice(b"; domain=");
            out.extend_from_slice(&d);
        }
    }
    if cookie.httponly {
        out.extend_from_slice(b"; httponly");
    }
    if cookie.secure {
        out.extend_from_slice(b"; secure");
    }
    if let Some(samesite) = &cookie.samesite {
        let mut s = Vec::new();
        vars.render(samesite, &mut s);
        // A variable's unknown value gives the strictest policy, as in nginx.
        if !s.is_empty() && !samesite_known(&s) {
            s = b"strict".to_vec();
        }
        if !s.is_empty() {
            out.extend_from_slice(b"; samesite=");
            out.extend_from_slice(&s);
        }
    }
    if let Some(path) = &cookie.path {
        out.extend_from_slice(b"; path=");
        out.extend_from_slice(path.as_bytes());
    }
    out
}
