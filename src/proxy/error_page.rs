//! `error_page`, as `ngx_http_send_error_page` (nginx 1.22): which page answers a status, and
//! what happens next (an internal redirect to a URI or a named location, or an external
//! redirect), with the status the final response carries.
//!
//! Place in the data flow: an error status (ringproxy's own, a `return` without text, or an
//! upstream status under `proxy_intercept_errors`) -> **[`resolve`]** -> the handler searches
//! the location again (the request becomes internal, so `internal` locations answer it) or
//! sends the redirect. Without `recursive_error_pages` (nginx's default, not supported here) a
//! request follows at most one error page; a second error is answered with the plain page.
//!
//! Status rules: `error_page 404 /p` keeps 404 for whatever `/p` answers; `=N` answers N;
//! a bare `=` keeps the page's own status. An external redirect (`http://...` or any URI not
//! starting with `/` or `@`) is a 302 unless `=301`, `=302`, `=303`, `=307` or `=308` is given.

use crate::config::model::{ErrorPage, LocConf};
use crate::http::vars::RequestVars;

/// What to do for an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Search a location for `uri` (with `args`, the query of the page URI, if any).
    Internal {
        /// Path.
        uri: String,
        /// Query.
        args: Option<String>,
    },
    /// Go to the named location (`@name`, without the `@`).
    Named(String),
    /// Answer `code` with this `Location`.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        code: u16,
        /// Where.
        location: Vec<u8>,
    },
}

/// An error page to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// What to do.
    pub action: Action,
    /// The status of the final response (`None`: whatever the page answers).
    pub status: Option<u16>,
}

/// The `error_page` of `conf` for `code`, if any (the first that lists it).
pub fn find(conf: &LocConf, code: u16) -> Option<&ErrorPage> {
    conf.error_page
        .as_deref()?
        .iter()
        .find(|p| p.codes.contains(&code))
}

/// Renders `page` for an error with `code`.
pub fn resolve(page: &ErrorPage, code: u16, vars: &mut RequestVars) -> Resolved {
    let status = match page.response {
        // nginx's `error_page` gives its internal 400s (494 to 497) `=400` unless told.
        None if (494..=497).contains(&code) => Some(400),
        None => Some(code),
        Some(None) => None,
        Some(Some(n)) => Some(n),
    };
    let mut uri = Vec::new();
    vars.render(&page.uri, &mut uri);
    let uri = String::from_utf8_lossy(&uri).into_owned();
    if uri.starts_with('/') {
        let (path, args) = match uri.split_once('?') {
            Some((p, a)) => (p.to_string(), Some(a.to_string())),
            None => (uri, None),
        };
        return Resolved {
            action: Action::Internal { uri: path, args },
            status,
        };
    }
    if let Some(name) = uri.strip_prefix('@') {
        return Resolved {
            action: Action::Named(name.to_string()),
            status,
        };
    }
    let code = match page.response {
        Some(Some(c @ (301 | 302 | 303 | 307 | 308))) => c,
        _ => 302,
    };
    Resolved {
        action: Action::Redirect {
            code,
            location: uri.into_bytes(),
        },
        status: Some(code),
    }
}

/// Whether `proxy_intercept_errors` hands an upstream `status` to `error_page` (nginx: status
/// 300 or above with an `error_page` for it).
pub fn intercepts(conf: &LocConf, status: u16) -> bool {
    conf.proxy_intercept_errors() && status >= 300 && find(conf, status).is_some()
}
