//! Handlers of the directives that shape the response head (`expires`, `charset`,
//! `proxy_cookie_*`, `gzip_static`) and of those accepted only in the values that change
//! nothing here (`aio`, `proxy_cache off`). Each refuses what nginx refuses, in nginx's words.

use super::build::Env;
use super::directives::{err, invalid_value, set_once};
use super::error::Result;
use super::model::LocConf;
use super::model_out::{parse_expires, Expires, ExpiresMode};
use super::parser::Directive;

/// `aio on | off | threads[=pool]`: nginx's checks. Only the `default` pool can exist, since
/// `thread_pool` is refused.
pub(crate) fn aio(d: &Directive) -> Result<()> {
    let v = d.arg(0);
    match v {
        "on" | "off" | "threads" => Ok(()),
        _ => match v.strip_prefix("threads=") {
            Some("default") => Ok(()),
            Some(pool) => Err(err(d, format!("unknown thread pool \"{pool}\""))),
            None => Err(invalid_value(d)),
        },
    }
}

/// `proxy_cache off` only: a zone would need the cache ringproxy does not have.
pub(crate) fn proxy_cache(d: &Directive) -> Result<()> {
    if d.arg(0) == "off" {
        return Ok(());
    }
    Err(err(
        d,
        "\"proxy_cache\" directive is not supported by ringproxy: ringproxy has no cache",
    ))
}

/// `expires [modified] value`: nginx's `ngx_http_headers_expires`.
pub(crate) fn expires(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let modified = match d.args.len() {
        2 if d.arg(0) == "modified" => true,
        2 => return Err(invalid_value(d)),
        _ => false,
    };
    let raw = d.arg(d.args.len() - 1);
    let base = if modified {
        ExpiresMode::Modified
    } else {
        ExpiresMode::Access
    };
    let template = e.template(raw, d)?;
    let conf = if template.as_literal().is_some() {
        let (mode, time) = parse_expires(raw, modified)
            .map_err(|m| err(d, format!("\"expires\" directive {m}")))?;
        Expires {
            mode,
            time,
            value: None,
        }
    } else {
        Expires {
            mode: base,
            time: 0,
            value: Some(template),
        }
    };
    set_once(&mut c.expires, conf, d)
}
