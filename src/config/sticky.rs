//! `sticky` in an `upstream` block (nginx 1.29's `ngx_http_upstream_sticky_module`) and the
//! `route=` of its `server` lines: the typed settings and their parsing.
//!
//! The balancer side is [`crate::upstream::balancer::Sticky`]; the cookie is rendered by
//! `proxy::sticky`. `sticky learn` needs a shared session store (`zone=`) and is refused.

use std::time::Duration;

use super::build::{Env, UpstreamBuild};
use super::directives::err;
use super::error::Result;
use super::parser::Directive;
use super::template::{Part, Template};
use super::values::parse_time;

/// nginx's longest server ID (`NGX_HTTP_UPSTREAM_SID_LEN`, an MD5 in hex).
pub const MAX_ROUTE_LEN: usize = 32;

/// `sticky cookie|route ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyConf {
    /// Where a request names its server: `$cookie_NAME` for `sticky cookie`, the variables of
    /// `sticky route`; the first that is not empty counts.
    pub lookup: Vec<Template>,
    /// `sticky cookie`: the cookie that binds a client to the peer it was given.
    pub cookie: Option<StickyCookie>,
}

/// The cookie of `sticky cookie name [expires=] [domain=] [httponly] [samesite=] [secure]
/// [path=]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyCookie {
    /// The cookie's name.
    pub name: String,
    /// `expires=`: none makes a session cookie.
    pub expires: Option<CookieExpiry>,
    /// `domain=` (may hold variables).
    pub domain: Option<Template>,
    /// `path=`.
    pub path: Option<String>,
    /// `httponly`.
    pub httponly: bool,
    /// `secure`.
    pub secure: bool,
    /// `samesite=strict|lax|none|$var` (a variable's other values give `strict`).
    pub samesite: Option<Template>,
}

/// `expires=` of a sticky cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieExpiry {
    /// `max`: the end of 2037 and ten years of `max-age`.
    Max,
    /// A time from now, also sent as `max-age`.
    After(Duration),
}

/// Whether `v` is a `samesite` value nginx knows (any case).
pub fn samesite_known(v: &[u8]) -> bool {
    [b"strict".as_slice(), b"lax", b"none"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(v))
}

/// The `sticky` directive of an upstream block.
pub(crate) fn directive(u: &mut UpstreamBuild, d: &Directive, e: &mut Env) -> Result<()> {
    if u.conf.sticky.is_some() {
        return Err(err(d, "\"sticky\" directive is duplicate"));
    }
    let sticky =
        match d.arg(0) {
            "cookie" => cookie(d, e)?,
            "route" => {
                let mut lookup = Vec::new();
                for a in &d.args[1..] {
                    if !a.value.starts_with('$') {
                        return Err(err(d, format!("invalid variable name \"{}\"", a.value)));
                    }
                    lookup.push(e.template(&a.value, d)?);
                }
                StickyConf {
                    lookup,
                    cookie: None,
                }
            }
            "learn" => return Err(err(
                d,
                "\"sticky learn\" is not supported by ringproxy (it needs a shared session zone)",
            )),
            other => return Err(err(d, format!("unknown parameter \"{other}\""))),
        };
    u.conf.sticky = Some(sticky);
    Ok(())
}

fn cookie(d: &Directive, e: &mut Env) -> Result<StickyConf> {
    let directive = |m: &str| err(d, format!("\"sticky\" directive {m}"));
    let name = d.arg(1);
    if name.is_empty() {
        return Err(directive("empty cookie name"));
    }
    let mut c = StickyCookie {
        name: name.to_string(),
        expires: None,
        domain: None,
        path: None,
        httponly: false,
        secure: false,
        samesite: None,
    };
    let duplicate = |p: &str| directive(&format!("parameter \"{p}\" is duplicate"));
    for a in &d.args[2..] {
        let v = a.value.as_str();
        if let Some(domain) = v.strip_prefix("domain=") {
            if c.domain.is_some() {
                return Err(duplicate("domain"));
            }
            if domain.is_empty() {
                return Err(directive("no value for \"domain\""));
            }
            c.domain = Some(e.template(domain, d)?);
        } else if let Some(path) = v.strip_prefix("path=") {
            if c.path.is_some() {
                return Err(duplicate("path"));
            }
            if path.is_empty() {
                return Err(directive("no value for \"path\""));
            }
            c.path = Some(path.to_string());
        } else if let Some(t) = v.strip_prefix("expires=") {
            if c.expires.is_some() {
                return Err(duplicate("expires"));
            }
            c.expires = Some(match t {
                "max" => CookieExpiry::Max,
                _ => CookieExpiry::After(
                    parse_time(t)
                        .ok_or_else(|| directive("invalid \"expires\" parameter value"))?,
                ),
            });
        } else if v == "httponly" {
            if c.httponly {
                return Err(duplicate("httponly"));
            }
            c.httponly = true;
        } else if v == "secure" {
            if c.secure {
                return Err(duplicate("secure"));
            }
            c.secure = true;
        } else if let Some(s) = v.strip_prefix("samesite=") {
            if c.samesite.is_some() {
                return Err(duplicate("samesite"));
            }
            let t = e.template(s, d)?;
            if t.as_literal()
                .is_some_and(|l| !samesite_known(l.as_bytes()))
            {
                return Err(directive("invalid \"samesite\" parameter value"));
            }
            c.samesite = Some(t);
        } else {
            return Err(err(d, format!("unknown parameter \"{v}\"")));
        }
    }
    // Built whole: a cookie name may hold characters that end a variable name in a template.
    let lookup = vec![Template {
        parts: vec![Part::Var(format!("cookie_{}", name.to_ascii_lowercase()))],
    }];
    Ok(StickyConf {
        lookup,
        cookie: Some(c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(upstream: &str) -> std::result::Result<crate::config::Config, String> {
        let text = format!(
            "events {{}}\nhttp {{ upstream u {{ server 127.0.0.1:1; {upstream} }}\n\
             server {{ listen 127.0.0.1:1; location / {{ proxy_pass http://u; }} }} }}\n"
        );
        crate::config::load_str("t.conf", &text, std::path::Path::new("."))
            .map_err(|e| e.to_string())
    }

    fn sticky(c: &crate::config::Config) -> &StickyConf {
        c.http.as_ref().unwrap().upstreams[0]
            .sticky
            .as_ref()
            .unwrap()
    }

    #[test]
    fn cookie_parameters_are_read() {
        let c = load("sticky cookie srv-id expires=2m domain=$host path=/ secure;").unwrap();
        let s = sticky(&c);
        let cookie = s.cookie.as_ref().unwrap();
        assert_eq!(cookie.name, "srv-id");
        assert_eq!(
            cookie.expires,
            Some(CookieExpiry::After(Duration::from_secs(120)))
        );
        assert_eq!(cookie.path.as_deref(), Some("/"));
        assert!(cookie.secure && !cookie.httponly);
        assert_eq!(
            s.lookup,
            [Template {
                parts: vec![Part::Var("cookie_srv-id".into())]
            }]
        );
    }

    #[test]
    fn nginx_refusals() {
        for (conf, msg) in [
            ("sticky cookie s x;", "unknown parameter \"x\""),
            (
                "sticky cookie s samesite=no;",
                "invalid \"samesite\" parameter value",
            ),
            (
                "sticky cookie s expires=1q;",
                "invalid \"expires\" parameter value",
            ),
            (
                "sticky cookie s path=/ path=/;",
                "parameter \"path\" is duplicate",
            ),
            ("sticky cookie s domain=;", "no value for \"domain\""),
            ("sticky route a;", "invalid variable name \"a\""),
            (
                "sticky cookie a; sticky cookie b;",
                "\"sticky\" directive is duplicate",
            ),
            ("sticky x y;", "unknown parameter \"x\""),
        ] {
            let e = load(conf).unwrap_err();
            assert!(e.contains(msg), "{conf}: {e}");
        }
    }
}
