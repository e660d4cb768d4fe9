//! nginx's `proxy_cookie_domain`, `proxy_cookie_path` and `proxy_cookie_flags`
//! (`ngx_http_proxy_rewrite_cookie`): edits to an upstream's `Set-Cookie` lines.
//!
//! Place in the data flow: [`super::headers_out::shape_proxied`] calls [`rewrite`] for each
//! `Set-Cookie` of a proxied response. A line is split into `name=value` attributes at `;`
//! (spaces around names and values dropped); when a rule changed something the line is
//! written again joined by `"; "`, otherwise it is sent as it came.

use crate::config::model::{CookieFlags, CookieName, CookieRewrite, LocConf};
use crate::http::vars::RequestVars;

/// One attribute; a `None` key is one a flag removed.
struct Attr {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// The line `value` rewritten, or `None` when no rule changed it.
pub fn rewrite(conf: &LocConf, value: &[u8], vars: &mut RequestVars) -> Option<Vec<u8>> {
    let mut attrs = parse(value);
    attrs.first()?.value.as_ref()?;
    let domains = conf.proxy_cookie_domain.as_deref().unwrap_or(&[]);
    let paths = conf.proxy_cookie_path.as_deref().unwrap_or(&[]);
    let mut changed = false;
    for a in attrs.iter_mut().skip(1) {
        let (Some(key), Some(v)) = (&a.key, &mut a.value) else {
            continue;
        };
        let rules = if key.eq_ignore_ascii_case(b"domain") {
            domains
        } else if key.eq_ignore_ascii_case(b"path") {
            paths
        } else {
            continue;
        };
        if let Some(new) = rules.iter().find_map(|r| rewrite_value(r, v, vars)) {
            *v = new;
            changed = true;
        }
    }
    if let Some(rules) = conf.proxy_cookie_flags.as_deref() {
        changed |= edit_flags(rules, &mut attrs, vars);
    }
    changed.then(|| join(&attrs))
}

fn parse(value: &[u8]) -> Vec<Attr> {
    let trim = |mut s: &[u8]| {
        while let [b' ', rest @ ..] = s {
            s = rest;
        }
        while let [rest @ .., b' '] = s {
            s = rest;
        }
        s.to_vec()
    };
    value
        .split(|&b| b == b';')
        .map(|part| match part.iter().position(|&b| b == b'=') {
            Some(eq) => Attr {
                key: Some(trim(&part[..eq])),
                value: Some(trim(&part[eq + 1..])),
            },
            None => Attr {
                key: Some(trim(part)),
                value: None,
            },
        })
        .collect()
}

fn join(attrs: &[Attr]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in attrs.iter().enumerate() {
        let Some(key) = &a.key else { continue };
        if i > 0 {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(key);
        if let Some(v) = &a.value {
            out.push(b'=');
            out.extend_from_slice(v);
        }
    }
    out
}

/// One rule on a `Domain` or `Path` value: the new value, or `None` when it does not match.
fn rewrite_value(rule: &CookieRewrite, value: &[u8], vars: &mut RequestVars) -> Option<Vec<u8>> {
    let render = |vars: &mut RequestVars, t| {
        let mut out = Vec::new();
        vars.render(t, &mut out);
        out
    };
    match rule {
        CookieRewrite::Prefix(from, to) => {
            let from = render(vars, from);
            let rest = value.strip_prefix(from.as_slice())?;
            let mut out = render(vars, to);
            out.extend_from_slice(rest);
            Some(out)
        }
        CookieRewrite::Domain(from, to) => {
            let from = render(vars, from);
            let dot = usize::from(value.first() == Some(&b'.'));
            if !value[dot..].eq_ignore_ascii_case(&from) {
                return None;
            }
            let mut out = value[..dot].to_vec();
            out.extend_from_slice(&render(vars, to));
            Some(out)
        }
        CookieRewrite::Regex(re, to) => {
            let subject = String::from_utf8_lossy(value).into_owned();
            vars.match_regex(re, &subject).then(|| render(vars, to))
        }
    }
}

const SECURE_ON: u32 = 1;
const SECURE_OFF: u32 = 2;
const HTTPONLY_ON: u32 = 4;
const HTTPONLY_OFF: u32 = 8;
const STRICT: u32 = 16;
const LAX: u32 = 32;
const NONE: u32 = 64;
const SAMESITE_OFF: u32 = 128;

fn flag_bits(name: &[u8]) -> u32 {
    const NAMES: [(&[u8], u32); 8] = [
        (b"secure", SECURE_ON),
        (b"nosecure", SECURE_OFF),
        (b"httponly", HTTPONLY_ON),
        (b"nohttponly", HTTPONLY_OFF),
        (b"samesite=strict", STRICT),
        (b"samesite=lax", LAX),
        (b"samesite=none", NONE),
        (b"nosamesite", SAMESITE_OFF),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or(0, |(_, b)| *b)
}

/// `proxy_cookie_flags`: the first rule for the cookie's name, its flags applied as nginx's
/// `ngx_http_proxy_edit_cookie_flags`. Whether it applied.
fn edit_flags(rules: &[CookieFlags], attrs: &mut Vec<Attr>, vars: &mut RequestVars) -> bool {
    let name = String::from_utf8_lossy(attrs[0].key.as_deref().unwrap_or(b"")).into_owned();
    let Some(rule) = rules.iter().find(|r| match &r.cookie {
        CookieName::Regex(re) => vars.match_regex(re, &name),
        CookieName::Name(t) => {
            let mut n = Vec::new();
            vars.render(t, &mut n);
            n.eq_ignore_ascii_case(name.as_bytes())
        }
    }) else {
        return false;
    };
    let mut flags = 0;
    for t in &rule.flags {
        let mut v = Vec::new();
        vars.render(t, &mut v);
        flags |= flag_bits(&v);
    }
    if flags == 0 {
        return false;
    }
    for a in attrs.iter_mut().skip(1) {
        let Some(key) = &a.key else { continue };
        if key.eq_ignore_ascii_case(b"secure") {
            toggle(&mut flags, SECURE_ON, SECURE_OFF, &mut a.key);
        } else if key.eq_ignore_ascii_case(b"httponly") {
            toggle(&mut flags, HTTPONLY_ON, HTTPONLY_OFF, &mut a.key);
        } else if key.eq_ignore_ascii_case(b"samesite") {
            let want = [(STRICT, "Strict"), (LAX, "Lax"), (NONE, "None")]
                .into_iter()
                .find(|(bit, _)| flags & bit != 0);
            match want {
                Some((bit, word)) => {
                    flags &= !bit;
                    let same = a
                        .value
                        .as_deref()
                        .is_some_and(|v| v.eq_ignore_ascii_case(word.as_bytes()));
                    if !same {
                        a.key = Some(b"SameSite".to_vec());
                        a.value = Some(word.as_bytes().to_vec());
                    }
                }
                None if flags & SAMESITE_OFF != 0 => a.key = None,
                None => {}
            }
        }
    }
    let mut add = |k: &str, v: Option<&str>| {
        attrs.push(Attr {
            key: Some(k.as_bytes().to_vec()),
            value: v.map(|v| v.as_bytes().to_vec()),
        })
    };
    if flags & SECURE_ON != 0 {
        add("Secure", None);
    }
    if flags & HTTPONLY_ON != 0 {
        add("HttpOnly", None);
    }
    if let Some((_, word)) = [(STRICT, "Strict"), (LAX, "Lax"), (NONE, "None")]
        .into_iter()
        .find(|(bit, _)| flags & bit != 0)
    {
        add("SameSite", Some(word));
    }
    true
}

/// An existing `Secure`/`HttpOnly`: kept (and not added again) when on, removed when off.
fn toggle(flags: &mut u32, on: u32, off: u32, key: &mut Option<Vec<u8>>) {
    if *flags & on != 0 {
        *flags &= !on;
    } else if *flags & off != 0 {
        *key = None;
    }
}
