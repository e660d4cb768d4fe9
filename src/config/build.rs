//! From AST to [`Config`]: walks the directives through the table in nginx's order of checks
//! (unknown, not allowed here, block or `;`, argument count, handler), builds the blocks, then
//! makes the checks nginx makes after reading everything: upstream references and name
//! resolution, variables, listen/default_server conflicts, certificates named for `ssl`
//! listeners, `no "events" section`.

use std::path::PathBuf;
use std::time::Duration;

use super::directives::{self, err, Arity, Block, Ctx, Handler};
use super::error::{ConfigError, ConfigWarning, Result, Span};
use super::model::*;
use super::parser::{Ast, Directive};
use super::template::{Template, VarCheck, VarRegistry};
use super::values::{parse_flag, parse_host_port, parse_number, parse_size, resolve};

/// What the build needs besides the AST.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The prefix (`-p`): `root`, `pid`, logs resolve against it.
    pub prefix: PathBuf,
    /// Directory of the main file: certificates resolve against it (nginx's conf prefix).
    pub conf_dir: PathBuf,
    /// Running as root (default listen port 80 instead of 8000).
    pub is_root: bool,
}

/// Build state shared by the handlers.
pub struct Env {
    opts: BuildOptions,
    vars: VarRegistry,
    used_vars: Vec<(String, Span)>,
    warnings: Vec<ConfigWarning>,
    proxy_refs: Vec<ProxyRef>,
    upstreams: Vec<UpstreamConf>,
}

struct ProxyRef {
    host: String,
    port: Option<u16>,
    tls: bool,
    span: Span,
}

impl Env {
    /// A path relative to the prefix (nginx's `ngx_conf_full_name(..., 0)`).
    pub fn prefix_path(&self, p: &str) -> PathBuf {
        self.opts.prefix.join(p)
    }

    /// A path relative to the main file's directory (nginx's conf prefix).
    pub fn conf_path(&self, p: &str) -> PathBuf {
        self.opts.conf_dir.join(p)
    }

    /// Compiles a complex value and remembers its variables for the final check.
    pub fn template(&mut self, s: &str, d: &Directive) -> Result<Template> {
        let t = Template::parse(s).map_err(|m| err(d, m))?;
        for v in t.vars() {
            self.used_vars.push((v.to_string(), d.span.clone()));
        }
        Ok(t)
    }

    fn regex(&mut self, source: &str, caseless: bool, d: &Directive) -> Result<Regex> {
        let re = Regex::new(source, caseless).map_err(|m| err(d, m))?;
        for name in re.regex.capture_names().flatten() {
            self.vars.define(name);
        }
        Ok(re)
    }

    fn warn(&mut self, span: Option<&Span>, message: String) {
        self.warnings.push(ConfigWarning {
            message,
            span: span.cloned(),
        });
    }
}

/// Main-context values before defaults.
#[derive(Default)]
pub struct MainBuild {
    pub(crate) worker_processes: Option<WorkerProcesses>,
    pub(crate) worker_rlimit_nofile: Option<u64>,
    pub(crate) worker_shutdown_timeout: Option<Duration>,
    pub(crate) worker_cpu_affinity: Option<CpuAffinity>,
    pub(crate) pid: Option<PathBuf>,
    pub(crate) error_log: Vec<ErrorLog>,
    pub(crate) daemon: Option<bool>,
    pub(crate) user: Option<(String, Option<String>)>,
}

/// An `upstream` block before defaults.
pub struct UpstreamBuild {
    pub(crate) conf: UpstreamConf,
    pub(crate) balance_set: bool,
    pub(crate) keepalive: Option<u32>,
    pub(crate) keepalive_timeout: Option<Duration>,
    pub(crate) keepalive_requests: Option<u32>,
}

impl UpstreamBuild {
    pub(crate) fn set_balance(&mut self, b: Balance, d: &Directive, e: &mut Env) -> Result<()> {
        if self.balance_set {
            e.warn(Some(&d.span), "load balancing method redefined".into());
        }
        if b != Balance::RoundRobin && b != Balance::LeastConn {
            if let Some(p) = self.conf.peers.iter().find(|p| p.backup) {
                return Err(ConfigError::at(
                    &p.span,
                    "balancing method does not support parameter \"backup\"",
                ));
            }
        }
        self.balance_set = true;
        self.conf.balance = b;
        Ok(())
    }
}

enum Scope<'a> {
    Main(&'a mut MainBuild, &'a mut BuildState),
    Events(&'a mut EventsConf),
    Http(&'a mut HttpConf),
    Server(&'a mut ServerConf),
    Location(&'a mut Location),
    Upstream(&'a mut UpstreamBuild),
}

#[derive(Default)]
struct BuildState {
    events: Option<EventsConf>,
    http: Option<HttpConf>,
}

/// Builds the model from a parsed configuration; returns it with the warnings nginx would log.
pub fn build(ast: &Ast, opts: &BuildOptions) -> Result<(Config, Vec<ConfigWarning>)> {
    let mut env = Env {
        opts: opts.clone(),
        vars: VarRegistry::default(),
        used_vars: Vec::new(),
        warnings: Vec::new(),
        proxy_refs: Vec::new(),
        upstreams: Vec::new(),
    };
    let mut main = MainBuild::default();
    let mut state = BuildState::default();
    walk(
        &ast.directives,
        directives::MAIN,
        &mut Scope::Main(&mut main, &mut state),
        &mut env,
    )?;

    let events = state
        .events
        .ok_or_else(|| ConfigError::global("no \"events\" section in configuration"))?;
    let mut http = state.http;
    if let Some(http) = http.as_mut() {
        finish_http(http, &mut env)?;
    }
    check_vars(&env)?;
    let main = MainConf {
        worker_processes: main.worker_processes.unwrap_or(WorkerProcesses::Count(1)),
        worker_rlimit_nofile: main.worker_rlimit_nofile,
        worker_shutdown_timeout: main.worker_shutdown_timeout,
        worker_cpu_affinity: main.worker_cpu_affinity,
        pid: main
            .pid
            .unwrap_or_else(|| opts.prefix.join("logs/ringproxy.pid")),
        error_log: if main.error_log.is_empty() {
            vec![ErrorLog {
                target: LogTarget::File(opts.prefix.join("logs/error.log")),
                level: LogLevel::Error,
            }]
        } else {
            main.error_log
        },
        daemon: main.daemon.unwrap_or(true),
        user: main.user,
        prefix: opts.prefix.clone(),
    };
    Ok((Config { main, events, http }, env.warnings))
}

fn walk(list: &[Directive], ctx: Ctx, scope: &mut Scope<'_>, env: &mut Env) -> Result<()> {
    for d in list {
        let spec = match directives::lookup(d.name(), ctx) {
            Ok(spec) => spec,
            Err(true) => {
                return Err(err(
                    d,
                    format!("\"{}\" directive is not allowed here", d.name()),
                ))
            }
            Err(false) => return Err(err(d, format!("unknown directive \"{}\"", d.name()))),
        };
        if spec.is_block() && d.block.is_none() {
            return Err(err(
                d,
                format!("directive \"{}\" has no opening \"{{\"", d.name()),
            ));
        }
        if !spec.is_block() && d.block.is_some() {
            return Err(err(
                d,
                format!("directive \"{}\" is not terminated by \";\"", d.name()),
            ));
        }
        let count = d.args.len();
        let ok = match spec.arity {
            Arity::Range(min, max) => count >= min as usize && count <= max as usize,
            Arity::AtLeast(min) => count >= min as usize,
            Arity::Flag => count == 1,
        };
        if !ok {
            return Err(err(
                d,
                format!("invalid number of arguments in \"{}\" directive", d.name()),
            ));
        }
        match (spec.handler, &mut *scope) {
            (Handler::Unsupported(hint), _) => {
                let mut msg = format!("\"{}\" directive is not supported by ringproxy", d.name());
                if !hint.is_empty() {
                    msg.push_str(": ");
                    msg.push_str(hint);
                }
                return Err(err(d, msg));
            }
            (Handler::NoEffect(_), _) => {
                if spec.arity == Arity::Flag {
                    directives::flag(d)?;
                }
            }
            (Handler::Block(b), scope) => block(b, d, scope, env)?,
            (Handler::Main(f), Scope::Main(m, _)) => f(m, d, env)?,
            (Handler::Events(f), Scope::Events(ev)) => f(ev, d, env)?,
            (Handler::Level(f), Scope::Http(h)) => f(&mut h.conf, d, env)?,
            (Handler::Level(f), Scope::Server(s)) => f(&mut s.conf, d, env)?,
            (Handler::Level(f), Scope::Location(l)) => f(&mut l.conf, d, env)?,
            (Handler::Server(f), Scope::Server(s)) => f(s, d, env)?,
            (Handler::Http(f), Scope::Http(h)) => f(h, d, env)?,
            (Handler::Upstream(f), Scope::Upstream(u)) => f(u, d, env)?,
            _ => {
                return Err(err(
                    d,
                    format!("internal error: \"{}\" handler mismatch", d.name()),
                ))
            }
        }
    }
    Ok(())
}

fn children(d: &Directive) -> &[Directive] {
    d.block.as_deref().unwrap_or(&[])
}

fn block(kind: Block, d: &Directive, scope: &mut Scope<'_>, env: &mut Env) -> Result<()> {
    match (kind, scope) {
        (Block::Events, Scope::Main(_, state)) => {
            if state.events.is_some() {
                return Err(err(d, "\"events\" directive is duplicate"));
            }
            let mut ev = EventsConf {
                worker_connections: 512,
                multi_accept: false,
                method: None,
            };
            walk(
                children(d),
                directives::EVENTS,
                &mut Scope::Events(&mut ev),
                env,
            )?;
            state.events = Some(ev);
        }
        (Block::Http, Scope::Main(_, state)) => {
            if state.http.is_some() {
                return Err(err(d, "\"http\" directive is duplicate"));
            }
            let mut http = HttpConf {
                maps: Vec::new(),
                upstreams: Vec::new(),
                servers: Vec::new(),
                log_formats: vec![LogFormat {
                    name: "combined".into(),
                    escape: "default".into(),
                    format: Template::parse(COMBINED).expect("static"),
                }],
                conf: LocConf::default(),
            };
            walk(
                children(d),
                directives::HTTP,
                &mut Scope::Http(&mut http),
                env,
            )?;
            state.http = Some(http);
        }
        (Block::Server, Scope::Http(http)) => {
            let mut server = ServerConf {
                listen: Vec::new(),
                names: Vec::new(),
                conf: LocConf::default(),
                locations: Vec::new(),
                span: d.span.clone(),
            };
            walk(
                children(d),
                directives::SERVER,
                &mut Scope::Server(&mut server),
                env,
            )?;
            http.servers.push(server);
        }
        (Block::Location, Scope::Server(server)) => {
            let loc = location(d, None, env)?;
            server.locations.push(loc);
        }
        (Block::Location, Scope::Location(parent)) => {
            let loc = location(d, Some(parent), env)?;
            parent.locations.push(loc);
        }
        (Block::Upstream, Scope::Http(_)) => upstream(d, env)?,
        (Block::Map, Scope::Http(http)) => http.maps.push(map(d, env)?),
        (Block::Types, Scope::Http(h)) => types(&mut h.conf, d, env)?,
        (Block::Types, Scope::Server(s)) => types(&mut s.conf, d, env)?,
        (Block::Types, Scope::Location(l)) => types(&mut l.conf, d, env)?,
        _ => {
            return Err(err(
                d,
                format!("\"{}\" directive is not allowed here", d.name()),
            ))
        }
    }
    Ok(())
}

const COMBINED: &str = "$remote_addr - - [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";

fn location_name(m: &LocationMatch) -> &str {
    match m {
        LocationMatch::Exact(s) | LocationMatch::Named(s) => s,
        LocationMatch::Prefix { path, .. } => path,
        LocationMatch::Regex(r) => &r.source,
    }
}

fn location(d: &Directive, parent: Option<&Location>, env: &mut Env) -> Result<Location> {
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

fn upstream(d: &Directive, env: &mut Env) -> Result<()> {
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
            span: d.span.clone(),
        },
        balance_set: false,
        keepalive: None,
        keepalive_timeout: None,
        keepalive_requests: None,
    };
    walk(
        children(d),
        directives::UPS,
        &mut Scope::Upstream(&mut u),
        env,
    )?;
    if u.conf.peers.is_empty() {
        return Err(err(d, "no servers are inside upstream"));
    }
    u.conf.keepalive = u.keepalive.unwrap_or(0);
    u.conf.keepalive_timeout = u.keepalive_timeout.unwrap_or(Duration::from_secs(60));
    u.conf.keepalive_requests = u.keepalive_requests.unwrap_or(1000);
    env.upstreams.push(u.conf);
    Ok(())
}

/// `server address [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down] [max_conns=N]`.
pub(crate) fn upstream_server(u: &mut UpstreamBuild, d: &Directive, _: &mut Env) -> Result<()> {
    let addr = d.arg(0);
    if addr.starts_with("unix:") {
        return Err(err(
            d,
            "unix domain sockets in upstream are not supported by ringproxy",
        ));
    }
    let hp =
        parse_host_port(addr, false).map_err(|e| err(d, format!("{e} in upstream \"{addr}\"")))?;
    let port = hp.port.unwrap_or(80);
    let addrs = resolve(&hp.host, port)
        .ok_or_else(|| err(d, format!("host not found in upstream \"{addr}\"")))?;
    let mut peer = PeerConf {
        name: addr.to_string(),
        addrs,
        weight: 1,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        backup: false,
        down: false,
        max_conns: 0,
        span: d.span.clone(),
    };
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
            if !matches!(u.conf.balance, Balance::RoundRobin | Balance::LeastConn) {
                return Err(err(
                    d,
                    "balancing method does not support parameter \"backup\"",
                ));
            }
            peer.backup = true;
        } else if v == "down" {
            peer.down = true;
        } else {
            return Err(invalid(v));
        }
    }
    u.conf.peers.push(peer);
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

pub(crate) fn upstream_random(u: &mut UpstreamBuild, d: &Directive, e: &mut Env) -> Result<()> {
    let two = match d.args.first().map(|a| a.value.as_str()) {
        None => false,
        Some("two") => {
            if let Some(m) = d.args.get(1) {
                if m.value != "least_conn" {
                    return Err(err(d, format!("invalid parameter \"{}\"", m.value)));
                }
            }
            true
        }
        Some(other) => return Err(err(d, format!("invalid parameter \"{other}\""))),
    };
    u.set_balance(Balance::Random { two }, d, e)
}

fn map(d: &Directive, env: &mut Env) -> Result<MapConf> {
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
            return Err(err(e, format!("conflicting parameter \"{}\"", key.value)));
        }
        list.push((k, value));
    }
    Ok(m)
}

fn types(c: &mut LocConf, d: &Directive, _: &mut Env) -> Result<()> {
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

/// `listen address[:port] [default_server] [ssl] [backlog=N] ...`.
pub(crate) fn listen(s: &mut ServerConf, d: &Directive, _: &mut Env) -> Result<()> {
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
    let mut l = Listen {
        addr,
        default_server: false,
        ssl: false,
        backlog: 511,
        reuseport: false,
        ipv6only: true,
        rcvbuf: None,
        sndbuf: None,
        so_keepalive: None,
        deferred: false,
        fastopen: None,
        span: d.span.clone(),
    };
    for a in &d.args[1..] {
        let v = a.value.as_str();
        let bad = |what: &str| err(d, format!("invalid {what} \"{v}\""));
        match v {
            "default_server" | "default" => l.default_server = true,
            "ssl" => l.ssl = true,
            "reuseport" => l.reuseport = true,
            "deferred" => l.deferred = true,
            "bind" => {}
            "http2" | "quic" | "proxy_protocol" | "spdy" => {
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
    if url.contains('$') {
        return Err(err(
            d,
            "variables in \"proxy_pass\" are not supported by ringproxy",
        ));
    }
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(err(d, format!("invalid URL prefix in \"{url}\"")));
    };
    let (host, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    if host.starts_with("unix:") {
        return Err(err(
            d,
            "unix domain sockets in \"proxy_pass\" are not supported by ringproxy",
        ));
    }
    let hp =
        parse_host_port(host, false).map_err(|m| err(d, format!("{m} in upstream \"{rest}\"")))?;
    e.proxy_refs.push(ProxyRef {
        host: hp.host.clone(),
        port: hp.port,
        tls,
        span: d.span.clone(),
    });
    c.proxy_pass = Some(ProxyPass {
        tls,
        upstream: e.proxy_refs.len() - 1,
        host: host.to_string(),
        uri,
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
    h.log_formats.push(LogFormat {
        name,
        escape,
        format,
    });
    Ok(())
}

/// The checks nginx makes once the whole `http` block is read, and the merges.
fn finish_http(http: &mut HttpConf, env: &mut Env) -> Result<()> {
    // Defaults that depend on the prefix live at the http level, so every level inherits them.
    if http.conf.root.is_none() {
        http.conf.root = Some(DocRoot::Root(env.opts.prefix.join("html")));
    }
    if http.conf.access_log.is_none() {
        http.conf.access_log = Some(vec![AccessLog::File {
            path: env.opts.prefix.join("logs/access.log"),
            format: "combined".into(),
            buffer: None,
            flush: None,
            condition: None,
        }]);
    }
    // proxy_pass targets: an explicit upstream by name (no port), else an implicit group.
    let refs = std::mem::take(&mut env.proxy_refs);
    let mut index_of_ref = Vec::with_capacity(refs.len());
    for r in &refs {
        let explicit = if r.port.is_none() {
            env.upstreams
                .iter()
                .position(|u| u.explicit && u.name.eq_ignore_ascii_case(&r.host))
        } else {
            None
        };
        let idx = match explicit {
            Some(i) => i,
            None => implicit_upstream(r, env)?,
        };
        index_of_ref.push(idx);
    }
    http.upstreams = std::mem::take(&mut env.upstreams);
    for server in &mut http.servers {
        server.conf.merge(&http.conf);
        for loc in &mut server.locations {
            finish_location(loc, &server.conf, &index_of_ref)?;
        }
        if server.listen.is_empty() {
            let port = if env.opts.is_root { 80 } else { 8000 };
            server.listen.push(Listen {
                addr: std::net::SocketAddr::from(([0, 0, 0, 0], port)),
                default_server: false,
                ssl: false,
                backlog: 511,
                reuseport: false,
                ipv6only: true,
                rcvbuf: None,
                sndbuf: None,
                so_keepalive: None,
                deferred: false,
                fastopen: None,
                span: server.span.clone(),
            });
        }
        if server.names.is_empty() {
            server.names.push(ServerName::Exact(String::new()));
        }
        check_locations(&server.locations)?;
        check_ssl(server)?;
    }
    // Access log formats must exist.
    let formats: Vec<String> = http.log_formats.iter().map(|f| f.name.clone()).collect();
    for server in &http.servers {
        check_log_formats(&server.conf, &formats, &server.span)?;
        for_each_location(&server.locations, &mut |l| {
            check_log_formats(&l.conf, &formats, &l.span)
        })?;
    }
    check_listen_conflicts(http, env)?;
    Ok(())
}

fn implicit_upstream(r: &ProxyRef, env: &mut Env) -> Result<usize> {
    let port = r.port.unwrap_or(if r.tls { 443 } else { 80 });
    let name = match r.port {
        Some(p) => format!("{}:{p}", r.host),
        None => r.host.clone(),
    };
    if let Some(i) = env
        .upstreams
        .iter()
        .position(|u| !u.explicit && u.name == name)
    {
        return Ok(i);
    }
    let addrs = resolve(&r.host, port).ok_or_else(|| {
        ConfigError::at(&r.span, format!("host not found in upstream \"{name}\""))
    })?;
    env.upstreams.push(UpstreamConf {
        name: name.clone(),
        explicit: false,
        peers: vec![PeerConf {
            name,
            addrs,
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
            max_conns: 0,
            span: r.span.clone(),
        }],
        balance: Balance::RoundRobin,
        keepalive: 0,
        keepalive_timeout: Duration::from_secs(60),
        keepalive_requests: 1000,
        span: r.span.clone(),
    });
    Ok(env.upstreams.len() - 1)
}

fn finish_location(loc: &mut Location, parent: &LocConf, index_of_ref: &[usize]) -> Result<()> {
    loc.conf.merge(parent);
    if let Some(pp) = loc.conf.proxy_pass.as_mut() {
        pp.upstream = index_of_ref[pp.upstream];
        if pp.uri.is_some()
            && matches!(
                loc.matcher,
                LocationMatch::Regex(_) | LocationMatch::Named(_)
            )
        {
            return Err(ConfigError::at(
                &pp.span,
                "\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
            ));
        }
    }
    let conf = loc.conf.clone();
    for child in &mut loc.locations {
        finish_location(child, &conf, index_of_ref)?;
    }
    Ok(())
}

fn for_each_location(list: &[Location], f: &mut dyn FnMut(&Location) -> Result<()>) -> Result<()> {
    for l in list {
        f(l)?;
        for_each_location(&l.locations, f)?;
    }
    Ok(())
}

fn check_locations(list: &[Location]) -> Result<()> {
    for (i, l) in list.iter().enumerate() {
        let dup = list[..i].iter().any(|o| match (&o.matcher, &l.matcher) {
            (LocationMatch::Exact(a), LocationMatch::Exact(b)) => a == b,
            (LocationMatch::Named(a), LocationMatch::Named(b)) => a == b,
            (LocationMatch::Prefix { path: a, .. }, LocationMatch::Prefix { path: b, .. }) => {
                a == b
            }
            _ => false,
        });
        if dup {
            return Err(ConfigError::at(
                &l.span,
                format!("duplicate location \"{}\"", location_name(&l.matcher)),
            ));
        }
        check_locations(&l.locations)?;
    }
    Ok(())
}

fn check_ssl(server: &ServerConf) -> Result<()> {
    let certs = server.conf.ssl_certificate();
    let keys = server.conf.ssl_certificate_key();
    if let Some(l) = server.listen.iter().find(|l| l.ssl) {
        if certs.is_empty() && !server.conf.ssl_reject_handshake() {
            return Err(ConfigError::at(
                &l.span,
                "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive",
            ));
        }
    }
    if keys.len() < certs.len() {
        return Err(ConfigError::at(
            &server.span,
            format!(
                "no \"ssl_certificate_key\" is defined for certificate \"{}\"",
                certs[keys.len()].display()
            ),
        ));
    }
    Ok(())
}

fn check_log_formats(c: &LocConf, formats: &[String], span: &Span) -> Result<()> {
    for log in c.access_log.iter().flatten() {
        if let AccessLog::File { format, .. } = log {
            if !formats.contains(format) {
                return Err(ConfigError::at(
                    span,
                    format!("unknown log format \"{format}\""),
                ));
            }
        }
    }
    Ok(())
}

fn check_listen_conflicts(http: &HttpConf, env: &mut Env) -> Result<()> {
    let mut defaults: Vec<std::net::SocketAddr> = Vec::new();
    let mut names: Vec<(std::net::SocketAddr, String)> = Vec::new();
    for server in &http.servers {
        for l in &server.listen {
            if l.default_server {
                if defaults.contains(&l.addr) {
                    return Err(ConfigError::at(
                        &l.span,
                        format!("a duplicate default server for {}", l.addr),
                    ));
                }
                defaults.push(l.addr);
            }
            for n in &server.names {
                let key = match n {
                    ServerName::Exact(s) => s.clone(),
                    ServerName::LeadingWildcard { suffix, also_bare } => {
                        format!("{}{suffix}", if *also_bare { "" } else { "*" })
                    }
                    ServerName::TrailingWildcard(p) => format!("{p}*"),
                    ServerName::Regex(r) => format!("~{}", r.source),
                };
                if key.is_empty() {
                    continue;
                }
                if names.contains(&(l.addr, key.clone())) {
                    env.warn(
                        None,
                        format!("conflicting server name \"{key}\" on {}, ignored", l.addr),
                    );
                } else {
                    names.push((l.addr, key));
                }
            }
        }
    }
    Ok(())
}

fn check_vars(env: &Env) -> Result<()> {
    for (name, span) in &env.used_vars {
        if name.len() <= 1 && name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match env.vars.check(name) {
            VarCheck::Ok => {}
            VarCheck::Unsupported => {
                return Err(ConfigError::at(
                    span,
                    format!("variable \"${name}\" is not supported by ringproxy"),
                ))
            }
            VarCheck::Unknown => {
                return Err(ConfigError::global(format!("unknown \"{name}\" variable")))
            }
        }
    }
    Ok(())
}
