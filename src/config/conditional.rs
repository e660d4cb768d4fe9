//! The blocks that give a request another configuration on a condition: the rewrite module's
//! `if` (in a server: rewrite directives only; in a location: a nameless location whose
//! directives inherit from the enclosing one) and `limit_except`, with the access module's
//! `allow`/`deny` that `limit_except` is mostly used for.
//!
//! Called by the walker (`build.rs`) when it meets the block; the condition is parsed as
//! nginx's `ngx_http_rewrite_if_condition` does, with its error messages. The merges with the
//! enclosing location happen in `build::finish_location`.

use std::net::IpAddr;

use super::build::{children, walk, Env, Scope};
use super::directives::{self, err};
use super::error::Result;
use super::model::*;
use super::parser::Directive;

/// `if (condition) { ... }` in a server (`in_location` false) or a location: the op to add to
/// the enclosing level's script.
pub(super) fn if_block(d: &Directive, in_location: bool, env: &mut Env) -> Result<ScriptOp> {
    let cond = condition(d, env)?;
    let mut conf = LocConf::default();
    let ctx = if in_location {
        directives::LIF
    } else {
        directives::SIF
    };
    walk(children(d), ctx, &mut Scope::Nested(&mut conf), env)?;
    let ops = std::mem::take(&mut conf.script);
    no_uri_part(&conf)?;
    Ok(ScriptOp::If {
        cond,
        conf: in_location.then(|| Box::new(conf)),
        ops,
    })
}

/// `limit_except METHOD ... { ... }` in `loc`.
pub(super) fn limit_except(d: &Directive, loc: &mut Location, env: &mut Env) -> Result<()> {
    const METHODS: &[&str] = &[
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "MKCOL",
        "COPY",
        "MOVE",
        "OPTIONS",
        "PROPFIND",
        "PROPPATCH",
        "LOCK",
        "UNLOCK",
        "PATCH",
    ];
    if loc.limit_except.is_some() {
        return Err(err(d, "\"limit_except\" directive is duplicate"));
    }
    let mut methods = Vec::new();
    for a in &d.args {
        let m = a.value.to_ascii_uppercase();
        if !METHODS.contains(&m.as_str()) {
            return Err(err(d, format!("invalid method \"{}\"", a.value)));
        }
        if m == "GET" {
            methods.push("HEAD".to_string());
        }
        methods.push(m);
    }
    let mut conf = LocConf::default();
    walk(
        children(d),
        directives::LMT,
        &mut Scope::Nested(&mut conf),
        env,
    )?;
    no_uri_part(&conf)?;
    loc.limit_except = Some(LimitExcept {
        methods,
        conf: Box::new(conf),
    });
    Ok(())
}

/// nginx refuses a URI part in `proxy_pass` inside `if` and `limit_except` when it reads it.
fn no_uri_part(conf: &LocConf) -> Result<()> {
    match conf.proxy_pass.as_ref().filter(|pp| pp.uri.is_some()) {
        Some(pp) => Err(super::ConfigError::at(
            &pp.span,
            "\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
        )),
        None => Ok(()),
    }
}

/// The condition between the parentheses, with nginx's checks in nginx's order.
fn condition(d: &Directive, env: &mut Env) -> Result<Condition> {
    let invalid = |t: &str| err(d, format!("invalid condition \"{t}\""));
    let mut args: Vec<String> = d.args.iter().map(|a| a.value.clone()).collect();
    let first = args[0].clone();
    if !first.starts_with('(') {
        return Err(invalid(&first));
    }
    if first.len() == 1 {
        args.remove(0);
    } else {
        args[0] = first[1..].to_string();
    }
    let last = args.last().cloned().unwrap_or_default();
    if !last.ends_with(')') {
        return Err(invalid(&last));
    }
    if last.len() == 1 {
        args.pop();
    } else {
        let n = args.len() - 1;
        args[n] = last[..last.len() - 1].to_string();
    }
    // `if (` `)` leaves nothing: nginx then reads the ")" itself as the condition.
    let Some(cur) = args.first().cloned() else {
        return Err(invalid(&last));
    };
    if cur.len() > 1 && cur.starts_with('$') {
        if args.len() != 1 && args.len() != 3 {
            return Err(invalid(&cur));
        }
        let var = cur[1..].to_ascii_lowercase();
        env.used_vars.push((var.clone(), d.span.clone()));
        if args.len() == 1 {
            return Ok(Condition::Var(var));
        }
        let (op, value) = (args[1].as_str(), args[2].as_str());
        return match op {
            "=" | "!=" => Ok(Condition::Equal {
                var,
                value: env.template(value, d)?,
                negate: op == "!=",
            }),
            "~" | "~*" | "!~" | "!~*" => Ok(Condition::Match {
                var,
                regex: env.regex(value, op.ends_with('*'), d)?,
                negate: op.starts_with('!'),
            }),
            _ => Err(err(d, format!("unexpected \"{op}\" in condition"))),
        };
    }
    let file_op =
        (cur.len() == 2 && cur.starts_with('-')) || (cur.len() == 3 && cur.starts_with("!-"));
    if !file_op {
        return Err(invalid(&cur));
    }
    if args.len() != 2 {
        return Err(invalid(&cur));
    }
    let path = env.template(&args[1], d)?;
    let negate = cur.starts_with('!');
    let test = match cur.as_bytes()[cur.len() - 1] {
        b'f' => FileTest::Plain,
        b'd' => FileTest::Dir,
        b'e' => FileTest::Exists,
        b'x' => FileTest::Exec,
        _ => return Err(invalid(&cur)),
    };
    Ok(Condition::File { path, test, negate })
}

/// `allow` and `deny`: `all`, `unix:`, an address or a CIDR network.
pub(crate) fn access_rule(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let deny = d.name() == "deny";
    let text = d.arg(0);
    let rule = match text {
        "all" => AccessRule {
            deny,
            net: None,
            unix: false,
        },
        "unix:" => AccessRule {
            deny,
            net: None,
            unix: true,
        },
        _ => {
            let (net, exact) =
                cidr(text).ok_or_else(|| err(d, format!("invalid parameter \"{text}\"")))?;
            if !exact {
                e.warn(
                    Some(&d.span),
                    format!("low address bits of {text} are meaningless"),
                );
            }
            AccessRule {
                deny,
                net: Some(net),
                unix: false,
            }
        }
    };
    c.access.get_or_insert_with(Vec::new).push(rule);
    Ok(())
}

/// Parses `addr[/len]` into the network (host bits cleared) and whether none were set.
fn cidr(text: &str) -> Option<((IpAddr, u8), bool)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => l.parse().ok()?,
        Some(_) => return None,
        None => max,
    };
    if len > max {
        return None;
    }
    let masked = mask(ip, len);
    Some(((masked, len), masked == ip))
}

/// `ip` with all but its first `len` bits cleared.
pub fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Whether the access rules let `client` in (nginx's access phase: the first rule matching the
/// client's address decides; an IPv4-mapped IPv6 client is checked as IPv4).
pub fn access_allows(rules: &[AccessRule], client: IpAddr) -> bool {
    access_decides(rules, client).unwrap_or(true)
}

/// What the first rule matching `client` says (true: allow); `None` when none matches (nginx's
/// `NGX_DECLINED`, which matters under `satisfy any`).
pub fn access_decides(rules: &[AccessRule], client: IpAddr) -> Option<bool> {
    let client = match client {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    for r in rules {
        let hit = match r.net {
            _ if r.unix => false,
            None => true,
            Some((net, len)) => net.is_ipv4() == client.is_ipv4() && mask(client, len) == net,
        };
        if hit {
            return Some(!r.deny);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_networks_in_order() {
        let rule = |deny, t: &str| AccessRule {
            deny,
            net: Some(cidr(t).unwrap().0),
            unix: false,
        };
        let all = AccessRule {
            deny: true,
            net: None,
            unix: false,
        };
        let rules = vec![rule(false, "10.1.0.0/16"), rule(false, "::1"), all];
        assert!(access_allows(&rules, "10.1.2.3".parse().unwrap()));
        assert!(!access_allows(&rules, "10.2.2.3".parse().unwrap()));
        assert!(access_allows(&rules, "::1".parse().unwrap()));
        assert!(access_allows(&rules, "::ffff:10.1.0.9".parse().unwrap()));
        assert!(access_allows(&[], "10.2.2.3".parse().unwrap()));
        assert_eq!(cidr("10.1.2.3/16").map(|c| c.1), Some(false));
        assert!(cidr("10.1.2.3/33").is_none());
        assert!(cidr("10.1.2.3/").is_none());
    }
}
