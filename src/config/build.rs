//! From AST to [`Config`]: walks the directives through the table in nginx's order of checks
//! (unknown, not allowed here, block or `;`, argument count, handler), builds the blocks, then
//! makes the checks nginx makes after reading everything: upstream references and name
//! resolution, variables, listen/default_server conflicts, certificates named for `ssl`
//! listeners, `no "events" section`.

use std::path::PathBuf;
use std::time::Duration;

use super::blocks::{self, location_name};
use super::conditional;
use super::directives::{self, err, Arity, Block, Ctx, Handler};
use super::error::{ConfigError, ConfigWarning, Result, Span};
use super::model::*;
use super::parser::{Ast, Directive};
use super::template::{Template, VarCheck, VarRegistry};
use super::values::resolve;

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
    pub(super) opts: BuildOptions,
    pub(super) vars: VarRegistry,
    pub(super) used_vars: Vec<(String, Span)>,
    pub(super) warnings: Vec<ConfigWarning>,
    pub(super) proxy_refs: Vec<ProxyRef>,
    pub(super) upstreams: Vec<UpstreamConf>,
    pub(super) log_formats: Vec<String>,
    /// `limit_req`/`limit_conn` zone names with their kind (`true`: req), checked at the end.
    pub(super) limit_refs: Vec<(String, bool, Span)>,
}

pub(super) struct ProxyRef {
    pub(super) host: String,
    pub(super) port: Option<u16>,
    pub(super) tls: bool,
    pub(super) span: Span,
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

    pub(super) fn regex(&mut self, source: &str, caseless: bool, d: &Directive) -> Result<Regex> {
        let re = Regex::new(source, caseless).map_err(|m| err(d, m))?;
        for (_, name) in re.names() {
            self.vars.define(name);
        }
        Ok(re)
    }

    pub(super) fn warn(&mut self, span: Option<&Span>, message: String) {
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
    pub(crate) worker_shutdown_spread: Option<Duration>,
    pub(crate) worker_cpu_affinity: Option<CpuAffinity>,
    pub(crate) pid: Option<PathBuf>,
    pub(crate) error_log: Vec<ErrorLog>,
    pub(crate) daemon: Option<bool>,
    pub(crate) user: Option<RunAs>,
}

/// An `upstream` block before defaults.
pub struct UpstreamBuild {
    pub(crate) conf: UpstreamConf,
    pub(crate) balance_set: bool,
    pub(crate) keepalive: Option<u32>,
    pub(crate) keepalive_timeout: Option<Duration>,
    pub(crate) keepalive_requests: Option<u32>,
    pub(crate) keepalive_time: Option<Duration>,
}

impl UpstreamBuild {
    pub(crate) fn set_balance(&mut self, b: Balance, d: &Directive, e: &mut Env) -> Result<()> {
        if self.balance_set {
            e.warn(Some(&d.span), "load balancing method redefined".into());
        }
        // nginx refuses `backup` only in `server` lines after a method without backup support;
        // backups listed before `hash` are kept (its round-robin fallback may use them).
        self.balance_set = true;
        self.conf.balance = b;
        Ok(())
    }
}

pub(super) enum Scope<'a> {
    Main(&'a mut MainBuild, &'a mut BuildState),
    Events(&'a mut EventsConf),
    Http(&'a mut HttpConf),
    Server(&'a mut ServerConf),
    Location(&'a mut Location),
    Upstream(&'a mut UpstreamBuild),
    /// The inside of `if` or `limit_except`: settings of a nameless location.
    Nested(&'a mut LocConf),
    /// `stream { }` and the servers read so far.
    Stream(
        &'a mut super::stream::StreamConf,
        &'a mut Vec<super::stream::ServerBuild>,
    ),
    /// `server { }` in `stream`.
    StreamServer(&'a mut super::stream::ServerBuild),
}

#[derive(Default)]
pub(super) struct BuildState {
    events: Option<EventsConf>,
    http: Option<HttpConf>,
    stream: Option<super::stream::StreamConf>,
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
        log_formats: Vec::new(),
        limit_refs: Vec::new(),
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
        worker_shutdown_spread: main
            .worker_shutdown_spread
            .unwrap_or(super::model::DEFAULT_SHUTDOWN_SPREAD),
        worker_cpu_affinity: main.worker_cpu_affinity,
        pid: main
            .pid
            .unwrap_or_else(|| opts.prefix.join("logs/ringproxy.pid")),
        error_log: main.error_log,
        daemon: main.daemon.unwrap_or(true),
        user: main.user,
        prefix: opts.prefix.clone(),
    };
    Ok((
        Config {
            main,
            events,
            http,
            stream: state.stream,
        },
        env.warnings,
    ))
}

pub(super) fn walk(
    list: &[Directive],
    ctx: Ctx,
    scope: &mut Scope<'_>,
    env: &mut Env,
) -> Result<()> {
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
        if let Handler::Unsupported(hint) = spec.handler {
            let mut msg = format!("\"{}\" directive is not supported by ringproxy", d.name());
            if !hint.is_empty() {
                msg.push_str(": ");
                msg.push_str(hint);
            }
            return Err(err(d, msg));
        }
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
            (Handler::NoEffectChecked(_, check), _) => check(d)?,
            (Handler::NoEffect(reason), _) => {
                if spec.arity == Arity::Flag
                    && directives::flag(d)?
                    && directives::WARN_WHEN_ON.contains(&d.name())
                {
                    env.warn(
                        Some(&d.span),
                        format!("\"{}\" has no effect: {reason}", d.name()),
                    );
                }
            }
            (Handler::Block(b), scope) => block(b, d, scope, env)?,
            (Handler::Main(f), Scope::Main(m, _)) => f(m, d, env)?,
            (Handler::Events(f), Scope::Events(ev)) => f(ev, d, env)?,
            (Handler::Level(f), Scope::Http(h)) => f(&mut h.conf, d, env)?,
            (Handler::Level(f), Scope::Server(s)) => f(&mut s.conf, d, env)?,
            (Handler::Level(f), Scope::Location(l)) => f(&mut l.conf, d, env)?,
            (Handler::Level(f), Scope::Nested(c)) => f(c, d, env)?,
            (Handler::Server(f), Scope::Server(s)) => f(s, d, env)?,
            (Handler::Http(f), Scope::Http(h)) => f(h, d, env)?,
            (Handler::Upstream(f), Scope::Upstream(u)) => f(u, d, env)?,
            (Handler::Stream(f), Scope::Stream(s, _)) => f(&mut s.conf, d, env)?,
            (Handler::Stream(f), Scope::StreamServer(b)) => f(&mut b.server.conf, d, env)?,
            (Handler::StreamMain(f), Scope::Stream(s, _)) => f(s, d, env)?,
            (Handler::StreamServer(f), Scope::StreamServer(b)) => f(b, d, env)?,
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

pub(super) fn children(d: &Directive) -> &[Directive] {
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
                limit_zones: Vec::new(),
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
            let loc = blocks::location(d, None, env)?;
            server.locations.push(loc);
        }
        (Block::Location, Scope::Location(parent)) => {
            let loc = blocks::location(d, Some(parent), env)?;
            parent.locations.push(loc);
        }
        (Block::Upstream, Scope::Http(_)) => blocks::upstream(d, env, directives::UPS)?,
        (Block::Map, Scope::Http(http)) => http.maps.push(blocks::map(d, env)?),
        (Block::Stream, Scope::Main(_, state)) => {
            if state.stream.is_some() {
                return Err(err(d, "\"stream\" directive is duplicate"));
            }
            state.stream = Some(super::stream::block(d, env)?);
        }
        (Block::Server, Scope::Stream(_, servers)) => super::stream::server(d, env, servers)?,
        (Block::Upstream, Scope::Stream(..)) => blocks::upstream(d, env, directives::SUPS)?,
        (Block::Map, Scope::Stream(s, _)) => s.maps.push(blocks::map(d, env)?),
        (Block::Types, Scope::Http(h)) => blocks::types(&mut h.conf, d, env)?,
        (Block::Types, Scope::Server(s)) => blocks::types(&mut s.conf, d, env)?,
        (Block::Types, Scope::Location(l)) => blocks::types(&mut l.conf, d, env)?,
        (Block::If, Scope::Server(s)) => {
            let op = conditional::if_block(d, false, env)?;
            s.conf.script.push(op);
        }
        (Block::If, Scope::Location(l)) => {
            let op = conditional::if_block(d, true, env)?;
            l.conf.script.push(op);
        }
        (Block::LimitExcept, Scope::Location(l)) => conditional::limit_except(d, l, env)?,
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
    super::limits::check_refs(http, env)?;
    check_zones(&http.upstreams)?;
    for server in &mut http.servers {
        server.conf.merge(&http.conf);
        super::handlers_out::check_charsets(&server.conf)?;
        for loc in &mut server.locations {
            finish_location(loc, &server.conf, &index_of_ref)?;
        }
        if server.listen.is_empty() {
            let port = if env.opts.is_root { 80 } else { 8000 };
            let any = std::net::SocketAddr::from(([0, 0, 0, 0], port));
            server.listen.push(Listen::new(any, server.span.clone()));
        }
        if server.names.is_empty() {
            server.names.push(ServerName::Exact(String::new()));
        }
        if server.conf.ssl() {
            server.listen.iter_mut().for_each(|l| l.ssl = true);
        }
        check_locations(&server.locations)?;
        check_ssl(server, env)?;
    }
    check_listen_conflicts(http, env)?;
    check_default_certificates(http)
}

/// As nginx's `ngx_http_ssl_init`: the default server of every TLS address needs a
/// certificate (or `ssl_reject_handshake on`); the others may have none, and the default
/// server's answers their handshakes.
fn check_default_certificates(http: &HttpConf) -> Result<()> {
    let mut seen: Vec<std::net::SocketAddr> = Vec::new();
    for l in http.servers.iter().flat_map(|s| &s.listen) {
        if !l.ssl || seen.contains(&l.addr) {
            continue;
        }
        seen.push(l.addr);
        let on_addr = |s: &&ServerConf| s.listen.iter().any(|m| m.addr == l.addr);
        let flagged = |s: &&ServerConf| {
            s.listen
                .iter()
                .any(|m| m.addr == l.addr && m.default_server)
        };
        let default = http
            .servers
            .iter()
            .find(flagged)
            .or_else(|| http.servers.iter().find(on_addr));
        if let Some(server) = default {
            if server.conf.ssl_certificate().is_empty() && !server.conf.ssl_reject_handshake() {
                return Err(ConfigError::at(
                    &server.span,
                    "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive",
                ));
            }
        }
    }
    Ok(())
}

/// A zone named without a size must be given one by another upstream (nginx's cycle check,
/// which names no line).
fn check_zones(upstreams: &[UpstreamConf]) -> Result<()> {
    let zones = upstreams.iter().filter_map(|u| u.zone.as_ref());
    for (name, _) in zones.clone() {
        if !zones.clone().any(|(n, size)| n == name && *size > 0) {
            return Err(ConfigError::global(format!(
                "zero size shared memory zone \"{name}\""
            )));
        }
    }
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
    let addrs = match r.host.strip_prefix("unix:") {
        Some(path) => {
            vec![super::values::unix_peer(path).map_err(|m| ConfigError::at(&r.span, m))?]
        }
        None => resolve(&r.host, port)
            .ok_or_else(|| {
                ConfigError::at(&r.span, format!("host not found in upstream \"{name}\""))
            })?
            .into_iter()
            .map(Into::into)
            .collect(),
    };
    env.upstreams.push(UpstreamConf {
        name: name.clone(),
        explicit: false,
        peers: vec![PeerConf::new(name, addrs, r.span.clone())],
        balance: Balance::RoundRobin,
        keepalive: 0,
        keepalive_timeout: Duration::from_secs(60),
        keepalive_requests: 1000,
        keepalive_time: Duration::from_secs(3600),
        span: r.span.clone(),
        conns: Default::default(),
        zone: None,
        sticky: None,
    });
    Ok(env.upstreams.len() - 1)
}

fn finish_location(loc: &mut Location, parent: &LocConf, index_of_ref: &[usize]) -> Result<()> {
    loc.conf.merge(parent);
    super::handlers_out::check_charsets(&loc.conf)?;
    if let Some(pp) = loc
        .conf
        .proxy_pass
        .as_mut()
        .filter(|pp| pp.dynamic.is_none())
    {
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
    // A URL with variables may say `https://`: nginx makes its SSL context anyway.
    if let Some(pp) = (loc.conf.proxy_pass.as_ref()).filter(|pp| pp.tls || pp.dynamic.is_some()) {
        crate::tls::check_upstream(&loc.conf)
            .map_err(|e| ConfigError::at(&pp.span, e.to_string()))?;
    }
    if let Some(le) = loc.limit_except.as_mut() {
        finish_nested(&mut le.conf, &loc.conf, index_of_ref);
    }
    let parent = loc.conf.clone();
    for op in &mut loc.conf.script {
        if let ScriptOp::If {
            conf: Some(conf), ..
        } = op
        {
            finish_nested(conf, &parent, index_of_ref);
        }
    }
    let conf = loc.conf.clone();
    for child in &mut loc.locations {
        finish_location(child, &conf, index_of_ref)?;
    }
    Ok(())
}

/// The conf of an `if` or `limit_except` block: merged from its location's, whose `proxy_pass`
/// it keeps when it has none of its own (nginx's nameless locations).
fn finish_nested(conf: &mut LocConf, parent: &LocConf, index_of_ref: &[usize]) {
    conf.merge(parent);
    match conf.proxy_pass.as_mut() {
        Some(pp) if pp.dynamic.is_none() => pp.upstream = index_of_ref[pp.upstream],
        Some(_) => {}
        None => conf.proxy_pass.clone_from(&parent.proxy_pass),
    }
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

fn check_ssl(server: &ServerConf, env: &mut Env) -> Result<()> {
    let certs = server.conf.ssl_certificate();
    let keys = server.conf.ssl_certificate_key();
    if keys.len() < certs.len() {
        return Err(ConfigError::at(
            &server.span,
            format!(
                "no \"ssl_certificate_key\" is defined for certificate \"{}\"",
                certs[keys.len()].display()
            ),
        ));
    }
    if !certs.is_empty() {
        crate::tls::check_server(&server.conf)
            .map_err(|e| ConfigError::at(&server.span, e.to_string()))?;
        for w in crate::tls::stapling_warnings(&server.conf)
            .map_err(|e| ConfigError::at(&server.span, e.to_string()))?
        {
            env.warn(None, w);
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
