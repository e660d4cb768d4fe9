//! The blocks with their own rules: `location` (modifiers, nesting), `upstream` and its
//! `server` parameters and balancing method, `map` (keys, regexes, hostnames) and `types`.
//!
//! Called by the walker in `build.rs`; each returns the typed block or nginx's error.

use std::time::Duration;

use super::build::{children, walk, Env, Scope, UpstreamBuild};
use super::directives::{self, err};
use super::error::Result;
use super::model::*;
use super::parser::Directive;
use super::template::Template;
use super::values::{parse_host_port, parse_number, resolve};

pub(super) fn location_name(m: &LocationMatch) -> &str {
    match m {
        LocationMatch::Exact(s) | LocationMatch::Named(s) => s,
        LocationMatch::Prefix { path, .. } => path,
        LocationMatch::Regex(r) => &r.source,
    }
}

pub(super) fn location(
    d: &Directive,
    parent: Option<&Location>,
    env: &mut Env,
) -> Result<Location> {
    let matcher = match d.args.len() {
        2 => {
            let (m, name) = (d.arg(0), d.arg(1));
            match m {
                "=" => LocationMatch::Exact(name.to_string()),
                "^~" => LocationMatch::Prefix {
                    path: name.to_string(),
                    no_regex: true,
                },
                "~" => LocationMatch::Regex(env.regex(name, false, d)?),
                "~*" => LocationMatch::Regex(env.regex(name, true, d)?),
                _ => return Err(err(d, format!("invalid location modifier \"{m}\""))),
            }
        }
        _ => {
            let name = d.arg(0);
            if let Some(rest) = name.strip_prefix('=') {
                LocationMatch::Exact(rest.to_string())
            } else if let Some(rest) = name.strip_prefix("~*") {
                LocationMatch::Regex(env.regex(rest, true, d)?)
            } else if let Some(rest) = name.strip_prefix('~') {
                LocationMatch::Regex(env.regex(rest, false, d)?)
            } else if name.starts_with('@') {
                LocationMatch::Named(name.to_string())
            } else {
                LocationMatch::Prefix {
                    path: name.to_string(),
                    no_regex: false,
                }
            }
        }
    };
    if let Some(parent) = parent {
        let pname = location_name(&parent.matcher);
        let name = location_name(&matcher);
        match (&parent.matcher, &matcher) {
            (LocationMatch::Exact(_), _) => {
                return Err(err(
                    d,
                    format!("location \"{name}\" cannot be inside the exact location \"{pname}\""),
                ))
            }
            (LocationMatch::Named(_), _) => {
                return Err(err(
                    d,
                    format!("location \"{name}\" cannot be inside the named location \"{pname}\""),
                ))
            }
            (_, LocationMatch::Named(_)) => {
                return Err(err(
                    d,
                    format!("named location \"{name}\" can be on the server level only"),
                ))
            }
            (_, LocationMatch::Regex(_)) => {}
            _ => {
                if !name.starts_with(pname) {
                    return Err(err(
                        d,
                        format!("location \"{name}\" is outside location \"{pname}\""),
                    ));
                }
            }
        }
    }
    let mut loc = Location {
        matcher,
        conf: LocConf::default(),
        locations: Vec::new(),
        limit_except: None,
        span: d.span.clone(),
    };
    walk(
        children(d),
        directives::LOC,
        &mut Scope::Location(&mut loc),
        env,
    )?;
    Ok(loc)
}

pub(super) fn upstream(d: &Directive, env: &mut Env, ctx: directives::Ctx) -> Result<()> {
    let name = d.arg(0).to_string();
    if env
        .upstreams
        .iter()
        .any(|u| u.name.eq_ignore_ascii_case(&name))
    {
        return Err(err(d, format!("duplicate upstream \"{name}\"")));
    }
    let mut u = UpstreamBuild {
        conf: UpstreamConf {
            name,
            explicit: true,
            peers: Vec::new(),
            balance: Balance::RoundRobin,
            keepalive: 0,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_requests: 1000,
            keepalive_time: Duration::from_secs(3600),
            span: d.span.clone(),
            conns: Default::default(),
            zone: None,
            sticky: None,
        },
        balance_set: false,
        keepalive: None,
        keepalive_timeout: None,
        keepalive_requests: None,
        keepalive_time: None,
    };
    walk(children(d), ctx, &mut Scope::Upstream(&mut u), env)?;
    if u.conf.peers.is_empty() {
        return Err(err(d, "no servers are inside upstream"));
    }
    if u.conf.zone.is_some() {
        u.conf.conns = crate::upstream::peer::SharedConns::zoned();
    }
    u.conf.keepalive = u.keepalive.unwrap_or(0);
    u.conf.keepalive_timeout = u.keepalive_timeout.unwrap_or(Duration::from_secs(60));
    u.conf.keepalive_requests = u.keepalive_requests.unwrap_or(1000);
    u.conf.keepalive_time = u.keepalive_time.unwrap_or(Duration::from_secs(3600));
    env.upstreams.push(u.conf);
    Ok(())
}

/// `server address [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down] [max_conns=N]
/// [route=string]`.
pub(crate) fn upstream_server(u: &mut UpstreamBuild, d: &Directive, _: &mut Env) -> Result<()> {
    let addr = d.arg(0);
    let addrs = if let Some(path) = addr.strip_prefix("unix:") {
        vec![super::values::unix_peer(path)
            .map_err(|e| err(d, format!("{e} in upstream \"{addr}\"")))?]
    } else {
        let hp = parse_host_port(addr, false)
            .map_err(|e| err(d, format!("{e} in upstream \"{addr}\"")))?;
        let port = hp.port.unwrap_or(80);
        resolve(&hp.host, port)
            .ok_or_else(|| err(d, format!("host not found in upstream \"{addr}\"")))?
            .into_iter()
            .map(Into::into)
            .collect()
    };
    let mut peer = PeerConf::new(addr.to_string(), addrs, d.span.clone());
    let invalid = |a: &str| err(d, format!("invalid parameter \"{a}\""));
    for a in &d.args[1..] {
        let v = a.value.as_str();
        if let Some(n) = v.strip_prefix("weight=") {
            peer.weight = parse_number(n)
                .filter(|&n| n > 0 && n <= u32::MAX as u64)
                .ok_or_else(|| invalid(v))? as u32;
        } else if let Some(n) = v.strip_prefix("max_fails=") {
            peer.max_fails = parse_number(n)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid(v))?;
        } else if let Some(t) = v.strip_prefix("fail_timeout=") {
            peer.fail_timeout = super::values::parse_time(t).ok_or_else(|| invalid(v))?;
        } else if let Some(n) = v.strip_prefix("max_conns=") {
            peer.max_conns = parse_number(n)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid(v))?;
        } else if v == "backup" {
            if !u.conf.balance.allows_backup() {
                return Err(err(
                    d,
                    "balancing method does not support parameter \"backup\"",
                ));
            }
            peer.backup = true;
        } else if v == "down" {
            peer.down = true;
        } else if let Some(r) = v.strip_prefix("route=") {
            if r.is_empty() || r.len() > super::sticky::MAX_ROUTE_LEN {
                return Err(invalid(v));
            }
            peer.route = Some(r.to_string());
        } else {
            return Err(invalid(v));
        }
    }
    u.conf.peers.push(peer);
    Ok(())
}

/// `zone name [size]`: the size is checked as nginx does (at least 8 pages); it sizes nothing
/// here, the shared state being as large as the peer list.
pub(crate) fn upstream_zone(u: &mut UpstreamBuild, d: &Directive, _: &mut Env) -> Result<()> {
    // nginx 1.22 takes a second `zone` in one upstream without complaint: the last one counts.
    let name = d.arg(0);
    let size = match d.args.get(1) {
        None => 0,
        Some(a) => {
            let v = a.value.as_str();
            let size = super::values::parse_size(v)
                .ok_or_else(|| err(d, format!("invalid zone size \"{v}\"")))?;
            // 8 * ngx_pagesize.
            if size < 8 * 4096 {
                return Err(err(d, format!("zone \"{name}\" is too small")));
            }
            size
        }
    };
    u.conf.zone = Some((name.to_string(), size));
    Ok(())
}

pub(crate) fn upstream_hash(u: &mut UpstreamBuild, d: &Directive, e: &mut Env) -> Result<()> {
    let consistent = match d.args.get(1).map(|a| a.value.as_str()) {
        None => false,
        Some("consistent") => true,
        Some(other) => return Err(err(d, format!("invalid parameter \"{other}\""))),
    };
    let key = e.template(d.arg(0), d)?;
    u.set_balance(Balance::Hash { key, consistent }, d, e)
}

/// `random [two [least_conn]]`.
pub(crate) fn upstream_random(u: &mut UpstreamBuild, d: &Directive, e: &mut Env) -> Result<()> {
    // nginx switches the method before it checks the parameters, so a bad one still warns
    // about a redefinition first.
    let two = match d.args.first().map(|a| a.value.as_str()) {
        None => false,
        Some("two") => true,
        Some(other) => {
            u.set_balance(Balance::Random { two: false }, d, e)?;
            return Err(err(d, format!("invalid parameter \"{other}\"")));
        }
    };
    u.set_balance(Balance::Random { two }, d, e)?;
    match d.args.get(1).map(|a| a.value.as_str()) {
        None | Some("least_conn") => Ok(()),
        Some(other) => Err(err(d, format!("invalid parameter \"{other}\""))),
    }
}

pub(super) fn map(d: &Directive, env: &mut Env) -> Result<MapConf> {
    let source = env.template(d.arg(0), d)?;
    let var = d
        .arg(1)
        .strip_prefix('$')
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err(d, format!("invalid variable name \"{}\"", d.arg(1))))?
        .to_ascii_lowercase();
    env.vars.define(&var);
    let mut m = MapConf {
        source,
        variable: var,
        hostnames: false,
        volatile: false,
        default: Template::default(),
        exact: Vec::new(),
        wildcards: Vec::new(),
        regexes: Vec::new(),
        span: d.span.clone(),
    };
    let mut default_set = false;
    for e in children(d) {
        if e.block.is_some() {
            return Err(err(e, "unexpected \"{\""));
        }
        let key = &e.name;
        if e.args.is_empty() && !key.quoted && key.value == "hostnames" {
            m.hostnames = true;
            continue;
        }
        if e.args.is_empty() && !key.quoted && key.value == "volatile" {
            m.volatile = true;
            continue;
        }
        if e.args.len() != 1 {
            return Err(err(e, "invalid number of the map parameters"));
        }
        let value = env.template(e.arg(0), e)?;
        if !key.quoted && key.value == "default" {
            if default_set {
                return Err(err(e, "duplicate default map parameter"));
            }
            default_set = true;
            m.default = value;
            continue;
        }
        let k = key.value.as_str();
        if let Some(re) = k.strip_prefix('~') {
            let (re, caseless) = match re.strip_prefix('*') {
                Some(r) => (r, true),
                None => (re, false),
            };
            let re = env.regex(re, caseless, e)?;
            m.regexes.push((re, value));
            continue;
        }
        let k = k.strip_prefix('\\').unwrap_or(k).to_ascii_lowercase();
        let is_wild =
            m.hostnames && (k.starts_with("*.") || k.starts_with('.') || k.ends_with(".*"));
        let list = if is_wild {
            &mut m.wildcards
        } else {
            &mut m.exact
        };
        if list.iter().any(|(have, _)| *have == k) {
            return Err(err(e, format!("conflicting parameter \"{k}\"")));
        }
        list.push((k, value));
    }
    Ok(m)
}

pub(super) fn types(c: &mut LocConf, d: &Directive, _: &mut Env) -> Result<()> {
    if c.types.is_some() {
        return Err(err(d, "\"types\" directive is duplicate"));
    }
    let mut list: Types = Vec::new();
    for e in children(d) {
        if e.block.is_some() {
            return Err(err(e, "unexpected \"{\""));
        }
        let mime = e.name.value.clone();
        for ext in &e.args {
            let ext = ext.value.to_ascii_lowercase();
            if let Some(slot) = list.iter_mut().find(|(x, _)| *x == ext) {
                slot.1 = mime.clone();
            } else {
                list.push((ext, mime.clone()));
            }
        }
    }
    c.types = Some(list);
    Ok(())
}
