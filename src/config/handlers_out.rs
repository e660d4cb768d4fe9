//! Handlers of the directives that shape the response head (`expires`, `charset`,
//! `proxy_cookie_*`, `gzip_static`) and of those accepted only in the values that change
//! nothing here (`aio`, `proxy_cache off`, `override_charset off`). Each refuses what nginx refuses, in nginx's words.

use super::build::Env;
use super::directives::{err, invalid_value, set_once};
use super::error::Result;
use super::model::LocConf;
use super::model_out::{parse_expires, Charset, Expires, ExpiresMode};
use super::parser::Directive;
use super::ConfigError;

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

/// `charset` and `source_charset`: `off` or a name.
pub(crate) fn charset(d: &Directive, e: &mut Env) -> Result<Charset> {
    if d.arg(0) == "off" {
        return Ok(Charset::Off);
    }
    Ok(Charset::Name(e.template(d.arg(0), d)?))
}

/// `charset_types`: lowercase, as nginx hashes them; `*` takes every type.
pub(crate) fn charset_types(c: &mut LocConf, d: &Directive, _: &mut Env) -> Result<()> {
    let list = d
        .args
        .iter()
        .map(|a| a.value.to_ascii_lowercase())
        .collect();
    set_once(&mut c.charset_types, list, d)
}

/// After the merge: a `source_charset` other than `charset` would need recoding through a
/// `charset_map`, which ringproxy refuses; nginx's error for a missing map.
pub(crate) fn check_charsets(c: &LocConf) -> Result<()> {
    let (Charset::Name(dst), Charset::Name(src)) = (c.charset(), c.source_charset()) else {
        return Ok(());
    };
    let (Some(dst), Some(src)) = (dst.as_literal(), src.as_literal()) else {
        return Ok(());
    };
    if dst.eq_ignore_ascii_case(src) {
        return Ok(());
    }
    Err(ConfigError::global(format!(
        "no \"charset_map\" between the charsets \"{src}\" and \"{dst}\""
    )))
}

/// `override_charset off` only: overriding an upstream's charset means recoding.
pub(crate) fn override_charset(d: &Directive) -> Result<()> {
    match d.arg(0) {
        "off" => Ok(()),
        "on" => Err(err(
            d,
            "\"override_charset on\" is not supported by ringproxy: it recodes, and ringproxy has no charset_map",
        )),
        _ => super::directives::flag(d).map(|_| ()),
    }
}
