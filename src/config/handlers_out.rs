//! Handlers of the directives that shape the response head (`expires`, `charset`,
//! `proxy_cookie_*`, `gzip_static`) and of those accepted only in the values that change
//! nothing here (`aio`, `proxy_cache off`, `proxy_store off`, `override_charset off`). Each refuses what nginx refuses, in nginx's words.

use super::build::Env;
use super::directives::{err, invalid_value, set_once};
use super::error::Result;
use super::model::LocConf;
use super::model_out::{
    parse_expires, Charset, CookieFlags, CookieName, CookieRewrite, Expires, ExpiresMode,
};
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

/// `proxy_store off` only: storing responses as files needs the disk writes ringproxy never does.
pub(crate) fn proxy_store(d: &Directive) -> Result<()> {
    if d.arg(0) == "off" {
        return Ok(());
    }
    Err(err(
        d,
        "\"proxy_store\" directive is not supported by ringproxy: ringproxy has no cache",
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

/// `off` for a cookie directive: only once, and not beside rules (nginx's "is duplicate").
fn cookie_off<T>(slot: &mut Option<Vec<T>>, d: &Directive) -> Result<bool> {
    if slot.as_ref().is_some_and(|l| l.is_empty()) {
        return Err(duplicate(d));
    }
    if d.args.len() != 1 {
        return Ok(false);
    }
    if d.arg(0) != "off" {
        return Err(err(d, format!("invalid parameter \"{}\"", d.arg(0))));
    }
    if slot.is_some() {
        return Err(duplicate(d));
    }
    *slot = Some(Vec::new());
    Ok(true)
}

fn duplicate(d: &Directive) -> ConfigError {
    err(d, format!("\"{}\" directive is duplicate", d.name()))
}

/// `proxy_cookie_domain off | FROM TO`.
pub(crate) fn proxy_cookie_domain(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    if cookie_off(&mut c.proxy_cookie_domain, d)? {
        return Ok(());
    }
    let rule = match d.arg(0).strip_prefix('~') {
        Some(re) => CookieRewrite::Regex(e.regex(re, true, d)?, e.template(d.arg(1), d)?),
        None => {
            let from = d.arg(0).strip_prefix('.').unwrap_or(d.arg(0));
            let to = d.arg(1).strip_prefix('.').unwrap_or(d.arg(1));
            CookieRewrite::Domain(e.template(from, d)?, e.template(to, d)?)
        }
    };
    c.proxy_cookie_domain
        .get_or_insert_with(Vec::new)
        .push(rule);
    Ok(())
}

/// `proxy_cookie_path off | FROM TO`.
pub(crate) fn proxy_cookie_path(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    if cookie_off(&mut c.proxy_cookie_path, d)? {
        return Ok(());
    }
    let to = e.template(d.arg(1), d)?;
    let from = d.arg(0);
    let rule = if let Some(re) = from.strip_prefix("~*") {
        CookieRewrite::Regex(e.regex(re, true, d)?, to)
    } else if let Some(re) = from.strip_prefix('~') {
        CookieRewrite::Regex(e.regex(re, false, d)?, to)
    } else {
        CookieRewrite::Prefix(e.template(from, d)?, to)
    };
    c.proxy_cookie_path.get_or_insert_with(Vec::new).push(rule);
    Ok(())
}

/// `proxy_cookie_flags off | COOKIE FLAG...` (up to three flags).
pub(crate) fn proxy_cookie_flags(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    if cookie_off(&mut c.proxy_cookie_flags, d)? {
        return Ok(());
    }
    let cookie = match d.arg(0).strip_prefix('~') {
        Some(re) => CookieName::Regex(e.regex(re, true, d)?),
        None => CookieName::Name(e.template(d.arg(0), d)?),
    };
    let flags = d.args[1..]
        .iter()
        .map(|a| e.template(&a.value, d))
        .collect::<Result<Vec<_>>>()?;
    let rule = CookieFlags { cookie, flags };
    c.proxy_cookie_flags.get_or_insert_with(Vec::new).push(rule);
    Ok(())
}

/// `resolver address ... [valid=time] [ipv4=on|off] [ipv6=on|off]` (`ipv4=` as nginx 1.23.1+;
/// a name is resolved now, each of its addresses a server).
pub(crate) fn resolver(c: &mut LocConf, d: &Directive, _: &mut Env) -> Result<()> {
    if c.resolver.is_some() {
        return Err(err(d, "\"resolver\" directive is duplicate"));
    }
    let mut r = crate::config::model::ResolverConf::default();
    for a in &d.args {
        let v = a.value.as_str();
        let invalid = || err(d, format!("invalid parameter: {v}"));
        let on_off = |s: &str| match s {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => Err(invalid()),
        };
        if let Some(t) = v.strip_prefix("valid=") {
            r.valid = Some(super::values::parse_time(t).ok_or_else(invalid)?);
        } else if let Some(s) = v.strip_prefix("ipv4=") {
            r.ipv4 = on_off(s)?;
        } else if let Some(s) = v.strip_prefix("ipv6=") {
            r.ipv6 = on_off(s)?;
        } else {
            let hp = super::values::parse_host_port(v, false)
                .map_err(|e| err(d, format!("{e} in resolver \"{v}\"")))?;
            let addrs = super::values::resolve(&hp.host, hp.port.unwrap_or(53))
                .ok_or_else(|| err(d, format!("host not found in resolver \"{v}\"")))?;
            r.addrs.extend(addrs);
        }
    }
    if !r.ipv4 && !r.ipv6 {
        return Err(err(d, "\"ipv4\" and \"ipv6\" cannot both be \"off\""));
    }
    c.resolver = Some(r);
    Ok(())
}
