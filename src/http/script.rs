//! The rewrite module's script: `rewrite`, `return`, `set`, `break` and `if` for one level.
//!
//! Place in the data flow: request head -> route (server) -> **server script** -> location ->
//! **location script** -> proxy. [`run`] executes one level's ops against the request's
//! [`RequestVars`] (which it updates: `$uri`, `$args`, `set` variables, captures) and says what
//! happens next ([`Outcome`]). The router owns the loop: on [`Outcome::Last`] it searches a
//! location for the new URI and runs that location's script, at most [`MAX_URI_CHANGES`] times
//! (nginx answers 500 "rewrite or internal redirection cycle" after that).
//!
//! nginx 1.22's rules: the regex runs on `$uri` (decoded, normalised). A replacement starting
//! with `http://`, `https://` or `$scheme` is a redirect (302, or 301 with `permanent`). If the
//! replacement has a `?`, the text after it becomes the args and the original args are appended
//! after `&`; a trailing `?` drops them. Captures copied into a redirect or into the args are
//! escaped again ([`ESCAPE_ARGS`]) when the client's path had `%` escapes. A location-level rewrite without a flag that
//! changed the URI makes nginx search the location again once the script ends: that is
//! [`Outcome::Last`] too. Redirects to relative URLs are made absolute by [`absolute_location`],
//! as nginx's header filter does (`absolute_redirect`, `port_in_redirect`,
//! `server_name_in_redirect`).

use super::condition;
use super::vars::RequestVars;
use crate::config::model::{LocConf, Regex, RewriteFlag, ScriptOp};
use crate::config::template::{Part, Template};

/// How many times a request's URI may change (by `rewrite` or internal redirects) before nginx
/// gives up with 500.
pub const MAX_URI_CHANGES: u32 = 10;

/// What the router does after a level's script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go on: at the server level search a location, at the location level proxy.
    Continue,
    /// `break` or `rewrite ... break`: stop running scripts, stay in this location (with the
    /// possibly rewritten `$uri`).
    Break,
    /// The URI changed (`rewrite ... last`, or a location-level rewrite without a flag): search
    /// a location for this URI.
    Last(String),
    /// Answer the client now.
    Return(Reply),
}

/// A response the script produces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Status code (444: close the connection without answering, as nginx).
    pub code: u16,
    /// `Location` for 301, 302, 303, 307 and 308 (relative URLs not yet made absolute: see
    /// [`absolute_location`]).
    pub location: Option<Vec<u8>>,
    /// The body text of `return code text`.
    pub body: Option<Vec<u8>>,
}

impl Reply {
    /// A bare status (nginx's page for it).
    pub fn status(code: u16) -> Reply {
        Reply {
            code,
            location: None,
            body: None,
        }
    }
}

/// Which script level runs: a location-level URI change without a flag re-searches the
/// location; at the server level the location search comes next anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `server { }` ops.
    Server,
    /// `location { }` ops.
    Location,
}

/// Whether `code` is a redirect whose `return` argument is a URL.
pub fn is_redirect(code: u16) -> bool {
    matches!(code, 301 | 302 | 303 | 307 | 308)
}

/// Runs `ops` (one level's script) in order.
pub fn run(ops: &[ScriptOp], level: Level, vars: &mut RequestVars<'_>) -> Outcome {
    run_logged(ops, level, vars, &mut |_| {}, &mut None)
}

/// [`run`], telling `log` what `rewrite_log on` makes nginx log at `notice` (its texts, without
/// the connection context): `"REGEX" matches "URI"`, `"REGEX" does not match "URI"`,
/// `rewritten data: "URI", args: "ARGS"` and `rewritten redirect: "LOCATION"`. A true `if` in a
/// location puts its block's configuration in `selected`: the request uses it from then on.
pub fn run_logged<'c>(
    ops: &'c [ScriptOp],
    level: Level,
    vars: &mut RequestVars<'_>,
    log: &mut dyn FnMut(&str),
    selected: &mut Option<&'c LocConf>,
) -> Outcome {
    let mut changed = false;
    if let Some(end) = run_ops(ops, vars, log, selected, &mut changed) {
        return end;
    }
    if changed && level == Level::Location {
        return Outcome::Last(vars.uri().to_string());
    }
    Outcome::Continue
}

/// Runs `ops`; `Some` when one of them ends the script. An `if` block's ops run in the same
/// pass as the level's (nginx compiles them into one code array), so `changed` is shared.
fn run_ops<'c>(
    ops: &'c [ScriptOp],
    vars: &mut RequestVars<'_>,
    log: &mut dyn FnMut(&str),
    selected: &mut Option<&'c LocConf>,
    changed: &mut bool,
) -> Option<Outcome> {
    for op in ops {
        match op {
            ScriptOp::If {
                cond,
                conf,
                ops: inner,
            } => {
                if !condition::holds(cond, vars, log) {
                    continue;
                }
                if let Some(c) = conf {
                    *selected = Some(c);
                }
                if let Some(end) = run_ops(inner, vars, log, selected, changed) {
                    return Some(end);
                }
            }
            ScriptOp::Set { var, value } => {
                let mut v = Vec::new();
                vars.render(value, &mut v);
                vars.set_var(var, v);
            }
            ScriptOp::Break => {
                // nginx's break code: a URI rewritten earlier in this script stays, without a
                // new location search, so the location's prefix no longer describes it.
                if *changed {
                    vars.set_location_valid(false);
                }
                return Some(Outcome::Break);
            }
            ScriptOp::Return { code, text } => {
                let mut reply = Reply {
                    code: *code,
                    location: None,
                    body: None,
                };
                if let Some(t) = text {
                    let mut v = Vec::new();
                    vars.render(t, &mut v);
                    if is_redirect(*code) {
                        reply.location = Some(v);
                    } else {
                        reply.body = Some(v);
                    }
                }
                return Some(Outcome::Return(reply));
            }
            ScriptOp::Rewrite {
                regex,
                replacement,
                flag,
            } => {
                if let Some(end) = rewrite(regex, replacement, *flag, vars, log, changed) {
                    return Some(end);
                }
            }
        }
    }
    None
}

/// One `rewrite`: `Some` when it ends the script (a redirect, `last`, `break`).
fn rewrite(
    regex: &Regex,
    replacement: &Template,
    flag: RewriteFlag,
    vars: &mut RequestVars<'_>,
    log: &mut dyn FnMut(&str),
    changed: &mut bool,
) -> Option<Outcome> {
    let uri = vars.uri().to_string();
    if !vars.match_regex(regex, &uri) {
        log(&format!("\"{}\" does not match \"{uri}\"", regex.source));
        return None;
    }
    log(&format!("\"{}\" matches \"{uri}\"", regex.source));
    let redirect = matches!(flag, RewriteFlag::Redirect | RewriteFlag::Permanent)
        || starts_as_redirect(replacement);
    let r = expand(replacement, redirect, vars);
    if redirect {
        let mut raw = r.uri.into_bytes();
        if let Some(a) = &r.args {
            raw.push(b'?');
            raw.extend_from_slice(a.as_bytes());
        }
        let mut location = Vec::with_capacity(raw.len());
        unescape_redirect(&raw, &mut location);
        if r.add_args {
            if let Some(orig) = vars.args().filter(|a| !a.is_empty()) {
                location.push(if r.args.is_some() { b'&' } else { b'?' });
                location.extend_from_slice(orig.as_bytes());
            }
        }
        log(&format!(
            "rewritten redirect: \"{}\"",
            String::from_utf8_lossy(&location)
        ));
        let code = if flag == RewriteFlag::Permanent {
            301
        } else {
            302
        };
        return Some(Outcome::Return(Reply {
            code,
            location: Some(location),
            body: None,
        }));
    }
    let args = match r.args {
        Some(mut a) => {
            if r.add_args {
                if let Some(orig) = vars.args().filter(|a| !a.is_empty()) {
                    a.push('&');
                    a.push_str(orig);
                }
            }
            Some(Some(a))
        }
        None if r.add_args => None,
        None => Some(None),
    };
    vars.set_uri(r.uri, args);
    log(&format!(
        "rewritten data: \"{}\", args: \"{}\"",
        vars.uri(),
        vars.args().unwrap_or("")
    ));
    *changed = true;
    match flag {
        RewriteFlag::Last => Some(Outcome::Last(vars.uri().to_string())),
        RewriteFlag::Break => {
            vars.set_location_valid(false);
            Some(Outcome::Break)
        }
        _ => None,
    }
}

/// nginx's `ngx_unescape_uri(..., NGX_UNESCAPE_REDIRECT)` over a rewritten redirect (before
/// the client's args are added): `%XX` of a printable character above `%` is decoded, any
/// other stays escaped; everything from the first `?`, as written or decoded, is copied as is.
/// A broken escape goes as nginx's state machine lets it: `%` then a non-digit keeps the
/// non-digit only, `%` a digit then a non-digit drops all three, a `%` at the end drops.
fn unescape_redirect(src: &[u8], out: &mut Vec<u8>) {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        if c == b'?' {
            out.extend_from_slice(&src[i..]);
            return;
        }
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(hi) = src.get(i + 1).copied() else {
            return;
        };
        let Some(h) = hex(hi) else {
            out.push(hi);
            i += 2;
            continue;
        };
        let Some(lo) = src.get(i + 2).copied() else {
            return;
        };
        let Some(l) = hex(lo) else {
            i += 3;
            continue;
        };
        let ch = (h << 4) | l;
        if ch == b'?' {
            out.push(b'?');
            out.extend_from_slice(&src[i + 3..]);
            return;
        }
        if ch > b'%' && ch < 0x7f {
            out.push(ch);
        } else {
            out.extend_from_slice(&src[i..i + 3]);
        }
        i += 3;
    }
}

fn starts_as_redirect(t: &Template) -> bool {
    match t.parts.first() {
        Some(Part::Literal(s)) => s.starts_with("http://") || s.starts_with("https://"),
        Some(Part::Var(v)) => v == "scheme",
        _ => false,
    }
}

struct Expanded {
    uri: String,
    args: Option<String>,
    add_args: bool,
}

/// Renders a rewrite replacement: the first `?` in its literal text starts the args; captures
/// after it (or anywhere in a redirect) are escaped when the client's URI was escaped.
fn expand(t: &Template, redirect: bool, vars: &mut RequestVars<'_>) -> Expanded {
    // Observed on nginx 1.22 by hand: only a `%` in the client's path turns this on (`+` alone does not).
    let escape_captures = vars.quoted_uri();
    let mut uri = Vec::new();
    let mut args: Option<Vec<u8>> = None;
    let last = t.parts.len().saturating_sub(1);
    let mut add_args = true;
    for (i, p) in t.parts.iter().enumerate() {
        let in_args = args.is_some();
        let out = args.as_mut().unwrap_or(&mut uri);
        match p {
            Part::Literal(s) => {
                let mut s = s.as_str();
                if i == last && s.ends_with('?') {
                    add_args = false;
                    s = &s[..s.len() - 1];
                }
                match (in_args, s.find('?')) {
                    (false, Some(q)) => {
                        out.extend_from_slice(&s.as_bytes()[..q]);
                        args = Some(s.as_bytes()[q + 1..].to_vec());
                    }
                    _ => out.extend_from_slice(s.as_bytes()),
                }
                if i == last && !add_args && args.is_none() {
                    // `/new?`: the trailing `?` only drops the original args.
                    args = Some(Vec::new());
                }
            }
            Part::Var(name) => vars.append_var(name, out),
            Part::Capture(n) => {
                if let Some(c) = vars.capture(usize::from(*n)) {
                    if (in_args || redirect) && escape_captures {
                        escape_capture(c, in_args, out);
                    } else {
                        out.extend_from_slice(c);
                    }
                }
            }
        }
    }
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    Expanded {
        uri: text(uri),
        args: args.map(text).filter(|a| !a.is_empty() || add_args),
        add_args,
    }
}

/// Escapes a capture as nginx 1.22 does in redirects and args (observed by hand): outside the args,
/// space, `#` and `%` (and controls, non-ASCII) up to the capture's first `?`, which stays, and
/// [`ESCAPE_ARGS`] (which adds `+`) after it; inside the args, [`ESCAPE_ARGS`] throughout.
fn escape_capture(c: &[u8], in_args: bool, out: &mut Vec<u8>) {
    let split = if in_args {
        0
    } else {
        c.iter().position(|&b| b == b'?').map_or(c.len(), |q| q + 1)
    };
    let mut path_table = ESCAPE_ARGS;
    path_table[1] &= !(1 << (b'+' - 32));
    escape(&c[..split], &path_table, out);
    escape(&c[split..], &ESCAPE_ARGS, out);
}

/// nginx's `NGX_ESCAPE_URI` set: controls, space, `#`, `%`, `?`, DEL and non-ASCII.
pub const ESCAPE_URI: [u32; 8] = [
    0xffff_ffff,
    0x8000_0029,
    0x0000_0000,
    0x8000_0000,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
];

/// The set nginx 1.22 escapes in captures copied into args: controls, space, `#`, `%`, `+`, DEL
/// and non-ASCII (measured: `&`, `;` and `?` stay as they are).
pub const ESCAPE_ARGS: [u32; 8] = [
    0xffff_ffff,
    0x0000_0829,
    0x0000_0000,
    0x8000_0000,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
];

/// Appends `src` to `out`, `%XX`-escaping (uppercase hex, as nginx) the bytes in `table`.
pub fn escape(src: &[u8], table: &[u32; 8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in src {
        if table[usize::from(c >> 5)] & (1 << (c & 0x1f)) != 0 {
            out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
        } else {
            out.push(c);
        }
    }
}

/// Makes a `Location` starting with `/` absolute as nginx's header filter does: scheme, then
/// the server name (`server_name_in_redirect on`), else the request's host, else the local
/// address; the local port unless it is the scheme's default or `port_in_redirect off`. Other
/// values (and everything with `absolute_redirect off`) are returned unchanged.
pub fn absolute_location(vars: &RequestVars<'_>, conf: &LocConf, location: &[u8]) -> Vec<u8> {
    if !location.starts_with(b"/") || !conf.absolute_redirect() {
        return location.to_vec();
    }
    let conn = vars.conn();
    let https = conn.tls.is_some();
    let mut out = Vec::with_capacity(location.len() + 32);
    out.extend_from_slice(if https { b"https://" } else { b"http://" });
    if conf.server_name_in_redirect() {
        out.extend_from_slice(conn.server_name.as_bytes());
    } else if let Some(h) = vars.head().host {
        out.extend_from_slice(h.to_ascii_lowercase().as_bytes());
    } else {
        out.extend_from_slice(conn.local.ip().to_string().as_bytes());
    }
    let port = conn.local.port();
    let default = if https { 443 } else { 80 };
    if conf.port_in_redirect() && port != default {
        out.extend_from_slice(format!(":{port}").as_bytes());
    }
    out.extend_from_slice(location);
    out
}
