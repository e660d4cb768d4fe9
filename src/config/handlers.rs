//! Handlers of directives with more than one value to check: `listen`, `server_name`, the
//! rewrite module (`rewrite`, `return`, `set`), `proxy_pass`, logs, `error_page`, `try_files`
//! and the TLS lists. The simple ones (flags, sizes, times) are inline in the table
//! (`directives.rs`).

use super::build::{Env, MainBuild, ProxyRef};
use super::directives::{err, invalid_value, set_once};
use super::error::Result;
use super::model::*;
use super::parser::Directive;
use super::values::{parse_flag, parse_host_port, parse_number, parse_size, resolve};

/// `listen address[:port] [default_server] [ssl] [backlog=N] ...`.
pub(crate) fn listen(s: &mut ServerConf, d: &Directive, e: &mut Env) -> Result<()> {
    let text = d.arg(0);
    if text.starts_with("unix:") {
        return Err(err(
            d,
            "unix domain sockets in \"listen\" are not supported by ringproxy",
        ));
    }
    let hp = parse_host_port(text, true)
        .map_err(|e| err(d, format!("{e} in \"{text}\" of the \"listen\" directive")))?;
    let port = hp.port.unwrap_or(80);
    let addr = *resolve(&hp.host, port)
        .and_then(|v| v.first().copied())
        .as_ref()
        .ok_or_else(|| {
            err(
                d,
                format!("host not found in \"{text}\" of the \"listen\" directive"),
            )
        })?;
    let mut l = Listen::new(addr, d.span.clone());
    for a in &d.args[1..] {
        let v = a.value.as_str();
        let bad = |what: &str| err(d, format!("invalid {what} \"{v}\""));
        match v {
            "default_server" | "default" => l.default_server = true,
            "ssl" => l.ssl = true,
            "reuseport" => l.reuseport = true,
            "deferred" => l.deferred = true,
            "bind" => {}
            "http2" => e.warn(
                Some(&d.span),
                format!("the \"http2\" parameter of the \"listen\" directive has no effect: {}", super::directives::HTTP2_NOT_YET),
            ),
            "proxy_protocol" => l.proxy_protocol = true,
            "quic" | "spdy" => {
                return Err(err(d, format!("the \"{v}\" parameter of the \"listen\" directive is not supported by ringproxy")))
            }
            _ => {
                if let Some(n) = v.strip_prefix("backlog=") {
                    l.backlog = parse_number(n).and_then(|n| i32::try_from(n).ok()).filter(|&n| n > 0).ok_or_else(|| bad("backlog"))?;
                } else if let Some(n) = v.strip_prefix("rcvbuf=") {
                    l.rcvbuf = Some(parse_size(n).ok_or_else(|| bad("rcvbuf"))?);
                } else if let Some(n) = v.strip_prefix("sndbuf=") {
                    l.sndbuf = Some(parse_size(n).ok_or_else(|| bad("sndbuf"))?);
                } else if let Some(n) = v.strip_prefix("fastopen=") {
                    l.fastopen = Some(parse_number(n).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad("fastopen"))?);
                } else if let Some(f) = v.strip_prefix("ipv6only=") {
                    l.ipv6only = parse_flag(f).ok_or_else(|| err(d, format!("invalid ipv6only flags \"{f}\"")))?;
                } else if let Some(f) = v.strip_prefix("so_keepalive=") {
                    l.so_keepalive = Some(match parse_flag(f) {
                        Some(b) => b,
                        None if f.split(':').count() == 3 => true,
                        None => return Err(err(d, format!("invalid so_keepalive value: \"{f}\""))),
                    });
                } else {
                    return Err(err(d, format!("invalid parameter \"{v}\"")));
                }
            }
        }
    }
    if s.listen.iter().any(|o| o.addr == l.addr) {
        return Err(err(d, format!("a duplicate listen {}", l.addr)));
    }
    s.listen.push(l);
    Ok(())
}

/// `set_real_ip_from address|CIDR|hostname|unix:`; a host name trusts each of its addresses.
pub(crate) fn set_real_ip_from(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    use crate::http::realip::Trusted;
    let v = d.arg(0);
    let list = c.set_real_ip_from.get_or_insert_with(Vec::new);
    if v == "unix:" {
        list.push(Trusted::Unix);
        return Ok(());
    }
    if let Some((t, low_bits)) = Trusted::parse_cidr(v) {
        if low_bits {
            e.warn(
                Some(&d.span),
                format!("low address bits of {v} are meaningless"),
            );
        }
        list.push(t);
        return Ok(());
    }
    let addrs = (v != "*")
        .then(|| resolve(v, 0))
        .flatten()
        .ok_or_else(|| err(d, format!("host not found in set_real_ip_from \"{v}\"")))?;
    for a in addrs {
        let bits = if a.is_ipv4() { 32 } else { 128 };
        list.push(Trusted::Cidr(a.ip(), bits));
    }
    Ok(())
}

/// `server_name name ...`.
pub(crate) fn server_name(s: &mut ServerConf, d: &Directive, e: &mut Env) -> Result<()> {
    for a in &d.args {
        let v = a.value.as_str();
        let name = if let Some(re) = v.strip_prefix('~') {
            ServerName::Regex(e.regex(re, false, d)?)
        } else {
            let lower = v.to_ascii_lowercase();
            if lower.contains('/') {
                e.warn(
                    Some(&d.span),
                    format!("server name \"{v}\" has suspicious symbols"),
                );
            }
            if let Some(rest) = lower.strip_prefix("*.") {
                ServerName::LeadingWildcard {
                    suffix: format!(".{rest}"),
                    also_bare: false,
                }
            } else if lower.starts_with('.') && lower.len() > 1 {
                ServerName::LeadingWildcard {
                    suffix: lower.clone(),
                    also_bare: true,
                }
            } else if let Some(rest) = lower.strip_suffix(".*") {
                ServerName::TrailingWildcard(format!("{rest}."))
            } else {
                ServerName::Exact(lower.clone())
            }
        };
        let bad_star = match &name {
            ServerName::Exact(n) => n.contains('*'),
            ServerName::LeadingWildcard { suffix, .. } => suffix.contains('*'),
            ServerName::TrailingWildcard(p) => p.contains('*'),
            ServerName::Regex(_) => false,
        };
        if bad_star {
            return Err(err(d, format!("invalid server name or wildcard \"{v}\"")));
        }
        s.names.push(name);
    }
    Ok(())
}

fn is_redirect_target(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("$scheme")
}

/// `rewrite regex replacement [flag]`.
pub(crate) fn rewrite(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let regex = e.regex(d.arg(0), false, d)?;
    let replacement = e.template(d.arg(1), d)?;
    let mut flag = match d.args.get(2).map(|a| a.value.as_str()) {
        None => RewriteFlag::None,
        Some("last") => RewriteFlag::Last,
        Some("break") => RewriteFlag::Break,
        Some("redirect") => RewriteFlag::Redirect,
        Some("permanent") => RewriteFlag::Permanent,
        Some(other) => return Err(err(d, format!("invalid parameter \"{other}\""))),
    };
    if flag == RewriteFlag::None && is_redirect_target(d.arg(1)) {
        flag = RewriteFlag::Redirect;
    }
    c.script.push(ScriptOp::Rewrite {
        regex,
        replacement,
        flag,
    });
    Ok(())
}

/// `return code [text]`, `return code URL`, `return URL`.
pub(crate) fn return_(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let first = d.arg(0);
    let (code, text) = match parse_number(first) {
        Some(code) if code <= 999 => {
            let text = match d.args.get(1) {
                Some(a) => Some(e.template(&a.value, d)?),
                None => None,
            };
            (code as u16, text)
        }
        Some(_) => return Err(err(d, format!("invalid return code \"{first}\""))),
        None => {
            if d.args.len() == 2 || !is_redirect_target(first) {
                return Err(err(d, format!("invalid return code \"{first}\"")));
            }
            (302, Some(e.template(first, d)?))
        }
    };
    c.script.push(ScriptOp::Return { code, text });
    Ok(())
}

/// `set $var value`.
pub(crate) fn set(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let var = d
        .arg(0)
        .strip_prefix('$')
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .ok_or_else(|| err(d, format!("invalid variable name \"{}\"", d.arg(0))))?
        .to_ascii_lowercase();
    e.vars.define(&var);
    let value = e.template(d.arg(1), d)?;
    c.script.push(ScriptOp::Set { var, value });
    Ok(())
}

/// `proxy_pass http[s]://host[:port][/uri]`.
pub(crate) fn proxy_pass(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    if c.proxy_pass.is_some() || c.stub_status {
        return Err(err(d, "\"proxy_pass\" directive is duplicate"));
    }
    let url = d.arg(0);
    // Variables in the scheme or host: nginx evaluates the whole URL per request (and takes
    // `https://` as possible: its SSL context is made whatever the URL gives).
    let dynamic = |e: &mut Env| -> Result<ProxyPass> {
        Ok(ProxyPass {
            tls: false,
            upstream: ProxyPass::UNRESOLVED,
            host: String::new(),
            uri: None,
            uri_vars: None,
            dynamic: Some(e.template(url, d)?),
            direct: None,
            span: d.span.clone(),
        })
    };
    let literal_scheme = url.starts_with("http://") || url.starts_with("https://");
    if (url.contains('$') && !literal_scheme)
        || url.starts_with("http://$")
        || url.starts_with("https://$")
    {
        c.proxy_pass = Some(dynamic(e)?);
        return Ok(());
    }
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(err(d, "invalid URL prefix"));
    };
    // Variables may follow the host (`http://backend$request_uri`), as a URI part. A unix
    // socket's path ends at the next `:` (`http://unix:/path:/uri`), as in nginx.
    let (host, uri) = if let Some(path) = rest.strip_prefix("unix:") {
        match path.find(':') {
            Some(i) => (&rest[..5 + i], Some(path[i + 1..].to_string())),
            None => (rest, None),
        }
    } else {
        match rest.find(['/', '$']) {
            Some(i) => (&rest[..i], Some(rest[i..].to_string())),
            None => (rest, None),
        }
    };
    let uri = uri.filter(|u| !u.is_empty());
    // `http://$host...` or `http://backend:$port...`: the variable is the host's.
    if (host.is_empty() || host.ends_with(':'))
        && uri.as_deref().is_some_and(|u| u.starts_with('$'))
    {
        c.proxy_pass = Some(dynamic(e)?);
        return Ok(());
    }
    let (uri, uri_vars) = match uri {
        Some(u) if u.contains('$') => (None, Some(e.template(&u, d)?)),
        u => (u, None),
    };
    let (ref_host, port) = if let Some(path) = host.strip_prefix("unix:") {
        super::values::unix_peer(path)
            .map_err(|m| err(d, format!("{m} in upstream \"{rest}\"")))?;
        (host.to_string(), None)
    } else {
        let hp = parse_host_port(host, false)
            .map_err(|m| err(d, format!("{m} in upstream \"{rest}\"")))?;
        (hp.host, hp.port)
    };
    e.proxy_refs.push(ProxyRef {
        host: ref_host,
        port,
        tls,
        span: d.span.clone(),
    });
    c.proxy_pass = Some(ProxyPass {
        tls,
        upstream: e.proxy_refs.len() - 1,
        host: host.to_string(),
        uri,
        uri_vars,
        dynamic: None,
        direct: None,
        span: d.span.clone(),
    });
    Ok(())
}

/// `access_log off` or `access_log path [format [buffer=size] [flush=time] [if=condition]]`.
pub(crate) fn access_log(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let list = c.access_log.get_or_insert_with(Vec::new);
    if d.arg(0) == "off" {
        if d.args.len() > 1 {
            return Err(err(
                d,
                "invalid number of arguments in \"access_log\" directive",
            ));
        }
        list.push(AccessLog::Off);
        return Ok(());
    }
    let path = d.arg(0);
    if path.starts_with("syslog:") || path.contains('$') {
        return Err(err(
            d,
            format!("access_log \"{path}\" is not supported by ringproxy (use a plain file path)"),
        ));
    }
    let format = d
        .args
        .get(1)
        .map_or("combined", |a| a.value.as_str())
        .to_string();
    if format != "combined" && !e.log_formats.contains(&format) {
        return Err(err(d, format!("unknown log format \"{format}\"")));
    }
    let (mut buffer, mut flush, mut condition) = (None, None, None);
    for a in d.args.iter().skip(2) {
        let v = a.value.as_str();
        if let Some(s) = v.strip_prefix("buffer=") {
            buffer =
                Some(parse_size(s).ok_or_else(|| err(d, format!("invalid buffer size \"{s}\"")))?);
        } else if let Some(t) = v.strip_prefix("flush=") {
            flush = Some(
                super::values::parse_time(t)
                    .ok_or_else(|| err(d, format!("invalid flush time \"{t}\"")))?,
            );
        } else if let Some(cond) = v.strip_prefix("if=") {
            condition = Some(cond.to_string());
        } else {
            return Err(err(d, format!("invalid parameter \"{v}\"")));
        }
    }
    if flush.is_some() && buffer.is_none() {
        return Err(err(
            d,
            format!("no buffer is defined for access_log \"{path}\""),
        ));
    }
    let condition = match condition {
        Some(cond) => Some(e.template(&cond, d)?),
        None => None,
    };
    let path = e.prefix_path(path);
    c.access_log
        .get_or_insert_with(Vec::new)
        .push(AccessLog::File {
            path,
            format,
            buffer,
            flush,
            condition,
        });
    Ok(())
}

/// `log_format name [escape=default|json|none] string ...`.
pub(crate) fn log_format(h: &mut HttpConf, d: &Directive, e: &mut Env) -> Result<()> {
    let name = d.arg(0).to_string();
    if h.log_formats.iter().any(|f| f.name == name) {
        return Err(err(d, format!("duplicate \"log_format\" name \"{name}\"")));
    }
    let mut rest = &d.args[1..];
    let mut escape = "default".to_string();
    if let Some(esc) = rest[0].value.strip_prefix("escape=") {
        if !["default", "json", "none"].contains(&esc) {
            return Err(err(d, format!("unknown log format escaping \"{esc}\"")));
        }
        escape = esc.to_string();
        rest = &rest[1..];
    }
    if rest.is_empty() {
        return Err(err(
            d,
            "invalid number of arguments in \"log_format\" directive",
        ));
    }
    let text: String = rest.iter().map(|a| a.value.as_str()).collect();
    let format = e.template(&text, d)?;
    e.log_formats.push(name.clone());
    h.log_formats.push(LogFormat {
        name,
        escape,
        format,
    });
    Ok(())
}

pub(super) fn worker_processes(m: &mut MainBuild, d: &Directive, _: &mut Env) -> Result<()> {
    let v = if d.arg(0) == "auto" {
        WorkerProcesses::Auto
    } else {
        match parse_number(d.arg(0)).and_then(|v| u32::try_from(v).ok()) {
            Some(n) if n > 0 => WorkerProcesses::Count(n),
            _ => return Err(invalid_value(d)),
        }
    };
    set_once(&mut m.worker_processes, v, d)
}

pub(super) fn cpu_mask(d: &Directive, s: &str) -> Result<Vec<bool>> {
    if s.is_empty() || s.len() > 64 {
        return Err(err(
            d,
            "\"worker_cpu_affinity\" supports up to 64 CPUs only",
        ));
    }
    s.chars()
        .rev()
        .map(|c| match c {
            '0' => Ok(false),
            '1' => Ok(true),
            other => Err(err(
                d,
                format!("invalid character \"{other}\" in \"worker_cpu_affinity\""),
            )),
        })
        .collect()
}

pub(super) fn worker_cpu_affinity(m: &mut MainBuild, d: &Directive, _: &mut Env) -> Result<()> {
    let v = if d.arg(0) == "auto" {
        if d.args.len() > 2 {
            return Err(err(
                d,
                "invalid number of arguments in \"worker_cpu_affinity\" directive",
            ));
        }
        CpuAffinity::Auto(d.args.get(1).map(|a| cpu_mask(d, &a.value)).transpose()?)
    } else {
        CpuAffinity::Masks(
            d.args
                .iter()
                .map(|a| cpu_mask(d, &a.value))
                .collect::<Result<_>>()?,
        )
    };
    set_once(&mut m.worker_cpu_affinity, v, d)
}

pub(super) fn error_log(d: &Directive, e: &mut Env) -> Result<ErrorLog> {
    let target = match d.arg(0) {
        "stderr" => LogTarget::Stderr,
        s if s.starts_with("syslog:") || s.starts_with("memory:") => {
            return Err(err(
                d,
                format!(
                "\"error_log\" target \"{s}\" is not supported by ringproxy (use a file or stderr)"
            ),
            ))
        }
        s => LogTarget::File(e.prefix_path(s)),
    };
    let level = match d.args.get(1).map(|a| a.value.as_str()) {
        None => LogLevel::Error,
        Some(l) => parse_level(l).ok_or_else(|| err(d, format!("invalid log level \"{l}\"")))?,
    };
    if d.args.len() > 2 {
        return Err(err(d, format!("invalid log level \"{}\"", d.arg(2))));
    }
    Ok(ErrorLog { target, level })
}

/// nginx's level names.
pub fn parse_level(s: &str) -> Option<LogLevel> {
    Some(match s {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "notice" => LogLevel::Notice,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        "crit" => LogLevel::Crit,
        "alert" => LogLevel::Alert,
        "emerg" => LogLevel::Emerg,
        _ => return None,
    })
}

pub(super) fn doc_root(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    if let Some(prev) = &c.root {
        let prev_name = match prev {
            DocRoot::Root(_) | DocRoot::RootVars(..) => "root",
            DocRoot::Alias(_) | DocRoot::AliasVars(..) => "alias",
        };
        let msg = if prev_name == d.name() {
            format!("\"{}\" directive is duplicate", d.name())
        } else {
            format!(
                "\"{}\" directive is duplicate, \"{}\" directive was specified earlier",
                d.name(),
                prev_name
            )
        };
        return Err(err(d, msg));
    }
    let raw = d.arg(0);
    let alias = d.name() == "alias";
    let v = if raw.contains('$') {
        // nginx's checks: these two are what the root defines.
        for var in ["document_root", "realpath_root"] {
            if raw.contains(&format!("${var}")) || raw.contains(&format!("${{{var}}}")) {
                return Err(err(
                    d,
                    format!(
                        "the ${var} variable cannot be used in the \"{}\" directive",
                        d.name()
                    ),
                ));
            }
        }
        // nginx drops a root's (not an alias's) trailing slash before compiling.
        let text = if !alias && raw.len() > 1 {
            raw.strip_suffix('/').unwrap_or(raw)
        } else {
            raw
        };
        let t = e.template(text, d)?;
        let prefix = e.prefix_path("");
        if alias {
            DocRoot::AliasVars(t, prefix)
        } else {
            DocRoot::RootVars(t, prefix)
        }
    } else if alias {
        DocRoot::Alias(e.prefix_path(raw))
    } else {
        DocRoot::Root(e.prefix_path(raw))
    };
    c.root = Some(v);
    Ok(())
}

pub(super) fn try_files(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    if c.try_files.is_some() {
        return Err(err(d, "\"try_files\" directive is duplicate"));
    }
    let (last, files) = d.args.split_last().expect("arity checked");
    let last = if let Some(code) = last.value.strip_prefix('=') {
        match parse_number(code) {
            Some(n) if (100..=999).contains(&n) => TryFilesLast::Code(n as u16),
            _ => return Err(err(d, format!("invalid code \"{}\"", last.value))),
        }
    } else if let Some(name) = last.value.strip_prefix('@') {
        TryFilesLast::Named(format!("@{name}"))
    } else {
        TryFilesLast::Uri(e.template(&last.value, d)?)
    };
    let files = files
        .iter()
        .map(|a| e.template(&a.value, d))
        .collect::<Result<Vec<_>>>()?;
    c.try_files = Some(TryFiles { files, last });
    Ok(())
}

pub(super) fn error_page(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let (uri, rest) = d.args.split_last().expect("arity checked");
    let mut codes = Vec::new();
    let mut response = None;
    for (i, a) in rest.iter().enumerate() {
        if let Some(r) = a.value.strip_prefix('=') {
            if i != rest.len() - 1 {
                return Err(err(d, format!("invalid value \"{}\"", a.value)));
            }
            response = Some(if r.is_empty() {
                None
            } else {
                match parse_number(r) {
                    Some(n) if n <= 999 => Some(n as u16),
                    _ => return Err(err(d, format!("invalid value \"{}\"", a.value))),
                }
            });
            continue;
        }
        match parse_number(&a.value) {
            Some(n) if (300..=599).contains(&n) && n != 499 => codes.push(n as u16),
            Some(_) => {
                return Err(err(
                    d,
                    format!("value \"{}\" must be between 300 and 599", a.value),
                ))
            }
            None => return Err(err(d, format!("invalid value \"{}\"", a.value))),
        }
    }
    if codes.is_empty() {
        return Err(err(
            d,
            "invalid number of arguments in \"error_page\" directive",
        ));
    }
    let page = ErrorPage {
        codes,
        response,
        uri: e.template(&uri.value, d)?,
    };
    c.error_page.get_or_insert_with(Vec::new).push(page);
    Ok(())
}

pub(super) fn next_upstream(c: &mut LocConf, d: &Directive, _: &mut Env) -> Result<()> {
    const OK: &[&str] = &[
        "error",
        "timeout",
        "denied",
        "invalid_header",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "http_403",
        "http_404",
        "http_429",
        "non_idempotent",
        "off",
    ];
    let mut v = NextUpstream {
        off: false,
        when: Vec::new(),
    };
    for a in &d.args {
        if !OK.contains(&a.value.as_str()) {
            return Err(err(d, format!("invalid value \"{}\"", a.value)));
        }
        if a.value == "off" {
            v.off = true;
        } else {
            v.when.push(a.value.clone());
        }
    }
    set_once(&mut c.proxy_next_upstream, v, d)
}

pub(super) fn proxy_redirect(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let rule = match (d.arg(0), d.args.len()) {
        ("off", 1) => ProxyRedirect::Off,
        ("default", 1) => ProxyRedirect::Default,
        (from, 2) => {
            let to = e.template(d.arg(1), d)?;
            let regex = match from.strip_prefix("~*") {
                Some(re) => Some((re, true)),
                None => from.strip_prefix('~').map(|re| (re, false)),
            };
            match regex {
                Some((re, caseless)) => {
                    ProxyRedirect::Regex(Regex::new(re, caseless).map_err(|m| err(d, m))?, to)
                }
                None => ProxyRedirect::Prefix(e.template(from, d)?, to),
            }
        }
        _ => return Err(err(d, format!("invalid parameter \"{}\"", d.arg(0)))),
    };
    let list = c.proxy_redirect.get_or_insert_with(Vec::new);
    // `off` drops what this level listed before it (nginx).
    if rule == ProxyRedirect::Off {
        list.clear();
    }
    list.push(rule);
    Ok(())
}

/// `ssl_protocols`/`proxy_ssl_protocols`: as nginx, versions the TLS library cannot speak are
/// left out (rustls speaks TLSv1.2 and TLSv1.3), with a warning naming them; an error only when
/// none is left.
pub(super) fn tls_versions(d: &Directive, e: &mut Env) -> Result<Vec<TlsVersion>> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for a in &d.args {
        match a.value.as_str() {
            "TLSv1.2" => out.push(TlsVersion::Tls12),
            "TLSv1.3" => out.push(TlsVersion::Tls13),
            v @ ("SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1") => skipped.push(v),
            v => return Err(err(d, format!("invalid value \"{v}\""))),
        }
    }
    if out.is_empty() {
        return Err(err(
            d,
            format!(
                "\"{}\" leaves no protocol rustls speaks (TLSv1.2, TLSv1.3)",
                d.name()
            ),
        ));
    }
    warn_skipped(d, e, &skipped, "rustls speaks TLSv1.2 and TLSv1.3 only");
    out.sort();
    out.dedup();
    Ok(out)
}

/// `ssl_ciphers`/`proxy_ssl_ciphers`: kept as written (the TLS layer selects from it as
/// OpenSSL does); a warning names the words that select nothing rustls implements, which
/// OpenSSL would skip silently.
pub(super) fn cipher_string(d: &Directive, e: &mut Env) -> String {
    let v = d.arg(0);
    if let Ok(sel) = crate::tls::suites::from_cipher_string(v, false) {
        let skipped: Vec<&str> = sel.skipped.iter().map(String::as_str).collect();
        warn_skipped(d, e, &skipped, "rustls does not implement them");
    }
    v.to_string()
}

/// `ssl_ecdh_curve`: `auto` or a `:` list of OpenSSL curve names; curves rustls lacks are left
/// out with a warning, an error only when none is left.
pub(super) fn ecdh_curves(d: &Directive, e: &mut Env) -> Result<String> {
    let v = d.arg(0);
    if v == "auto" {
        return Ok(v.to_string());
    }
    let (known, skipped): (Vec<&str>, Vec<&str>) =
        v.split(':').partition(|c| crate::tls::curve(c).is_some());
    if known.is_empty() {
        return Err(err(d, format!("no curve in \"{v}\" is supported by rustls (supported: X25519, prime256v1, secp384r1, X25519MLKEM768)")));
    }
    warn_skipped(d, e, &skipped, "rustls does not implement them");
    Ok(v.to_string())
}

/// `ssl_conf_command`/`proxy_ssl_conf_command NAME VALUE`: checked as OpenSSL checks it (an
/// unknown command or a bad value is an error), with a warning naming what rustls cannot do.
pub(super) fn conf_command(
    d: &Directive,
    e: &mut Env,
    role: crate::tls::conf_command::Role,
) -> Result<(String, String)> {
    let mut t = crate::tls::conf_command::Tuning::default();
    crate::tls::conf_command::apply(&mut t, d.arg(0), d.arg(1), role)
        .map_err(|x| err(d, x.to_string()))?;
    for (what, why) in &t.skipped {
        warn_skipped(d, e, &[what.as_str()], why);
    }
    Ok((d.arg(0).to_string(), d.arg(1).to_string()))
}

/// `[warn] ringproxy skips "a", "b" of "DIRECTIVE": WHY in FILE:LINE`, when anything was.
fn warn_skipped(d: &Directive, e: &mut Env, skipped: &[&str], why: &str) {
    if skipped.is_empty() {
        return;
    }
    let names: Vec<String> = skipped.iter().map(|s| format!("\"{s}\"")).collect();
    e.warn(
        Some(&d.span),
        format!(
            "ringproxy skips {} of \"{}\": {why}",
            names.join(", "),
            d.name()
        ),
    );
}

pub(super) fn ssl_session_cache(c: &mut LocConf, d: &Directive, _: &mut Env) -> Result<()> {
    for a in &d.args {
        let v = a.value.as_str();
        let ok = v == "off"
            || v == "none"
            || v == "builtin"
            || v.strip_prefix("builtin:")
                .is_some_and(|n| parse_number(n).is_some())
            || v.strip_prefix("shared:")
                .and_then(|rest| rest.rsplit_once(':'))
                .is_some_and(|(name, size)| !name.is_empty() && parse_size(size).is_some());
        if !ok || ((v == "off" || v == "none") && d.args.len() > 1) {
            return Err(err(d, format!("invalid session cache \"{v}\"")));
        }
    }
    let list = d.args.iter().map(|a| a.value.clone()).collect();
    set_once(&mut c.ssl_session_cache, list, d)
}

/// `user name [group]` when running as root: the ids, as nginx's `ngx_set_user` resolves them
/// (the group defaults to the user's name, so `user nobody;` fails where no group `nobody`
/// exists, as nginx 1.22 does on Debian: `getgrnam("nobody") failed`).
pub(super) fn run_as(d: &Directive) -> Result<RunAs> {
    use nix::unistd::{Group, User};
    let name = d.arg(0);
    let group = d.args.get(1).map_or(name, |a| a.value.as_str());
    let user = User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| err(d, format!("getpwnam(\"{name}\") failed")))?;
    let gid = Group::from_name(group)
        .ok()
        .flatten()
        .ok_or_else(|| err(d, format!("getgrnam(\"{group}\") failed")))?
        .gid;
    Ok(RunAs {
        user: name.to_string(),
        uid: user.uid.as_raw(),
        gid: gid.as_raw(),
    })
}
