//! The `stream { }` block's configuration: its model (servers, upstreams, maps, log formats and
//! the proxy settings inherited from `stream` to `server`), the handlers of its directives
//! (registered in `directives.rs` under the stream contexts) and the checks nginx makes once the
//! block is read. The engine that serves it is `crate::stream`.
//!
//! The block shares the `upstream` and `map` builders with http, but not their namespaces: its
//! upstreams, `log_format` names and variables are its own, as in nginx, so the build swaps
//! them in and out of [`Env`] around the walk.

use std::time::Duration;

use super::build::{children, walk, Env, ProxyRef, Scope};
use super::directives::{self, err, set_once};
use super::error::{ConfigError, Result};
use super::model::{AccessLog, Listen, LogFormat, MapConf, UpstreamConf};
use super::parser::Directive;
use super::template::{Part, Template};
use super::values::{parse_flag, parse_host_port, parse_number, parse_size, resolve};

/// `stream { }`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamConf {
    /// `server { }` blocks.
    pub servers: Vec<StreamServer>,
    /// Upstream groups, explicit and implicit (`proxy_pass host:port`).
    pub upstreams: Vec<UpstreamConf>,
    /// `map` blocks.
    pub maps: Vec<MapConf>,
    /// `log_format` definitions (stream has no predefined format).
    pub log_formats: Vec<LogFormat>,
    /// Settings at the `stream` level, inherited by servers that do not set them.
    pub conf: StreamLevel,
}

/// A `server { }` in `stream`.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamServer {
    /// `listen` lines.
    pub listen: Vec<Listen>,
    /// Where sessions go.
    pub proxy_pass: Option<StreamPass>,
    /// Merged settings.
    pub conf: StreamLevel,
}

/// `proxy_pass` in stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamPass {
    /// A group, by index into [`StreamConf::upstreams`].
    Upstream(usize),
    /// A value with variables: evaluated per session to an upstream name or `address:port`.
    Var(Template),
    /// `return value`: the value is sent to the client and the session ends.
    Return(Template),
}

/// Settings of `stream` and its servers (`None`: not set at this level).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamLevel {
    /// `proxy_connect_timeout` (60s).
    pub connect_timeout: Option<Duration>,
    /// `proxy_timeout` (10m).
    pub timeout: Option<Duration>,
    /// `proxy_next_upstream` (on).
    pub next_upstream: Option<bool>,
    /// `proxy_next_upstream_tries` (0: unlimited).
    pub next_upstream_tries: Option<u32>,
    /// `proxy_next_upstream_timeout` (0: unlimited).
    pub next_upstream_timeout: Option<Duration>,
    /// `proxy_protocol` (off).
    pub proxy_protocol: Option<bool>,
    /// `access_log` lines (none by default: stream logs nothing unless told).
    pub access_log: Option<Vec<AccessLog>>,
    /// `ssl_preread` (off).
    pub ssl_preread: Option<bool>,
    /// `preread_buffer_size` (16k).
    pub preread_buffer_size: Option<u64>,
    /// `preread_timeout` (30s).
    pub preread_timeout: Option<Duration>,
    /// `proxy_half_close` (off: the first side to close ends the session).
    pub half_close: Option<bool>,
    /// `proxy_splice` (ringproxy's own: off, copy only).
    pub splice: Option<super::model::SpliceMode>,
}

impl StreamLevel {
    fn merge(&mut self, parent: &StreamLevel) {
        macro_rules! inherit {
            ($($f:ident),*) => {$(
                if self.$f.is_none() {
                    self.$f = parent.$f.clone();
                }
            )*};
        }
        inherit!(
            connect_timeout,
            timeout,
            next_upstream,
            next_upstream_tries,
            next_upstream_timeout,
            proxy_protocol,
            access_log,
            ssl_preread,
            preread_buffer_size,
            preread_timeout,
            half_close,
            splice
        );
    }

    /// `proxy_connect_timeout`.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(Duration::from_secs(60))
    }
    /// `proxy_timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(600))
    }
    /// `proxy_next_upstream`.
    pub fn next_upstream(&self) -> bool {
        self.next_upstream.unwrap_or(true)
    }
    /// `proxy_next_upstream_tries` (0: unlimited).
    pub fn next_upstream_tries(&self) -> u32 {
        self.next_upstream_tries.unwrap_or(0)
    }
    /// `proxy_next_upstream_timeout` (zero: unlimited).
    pub fn next_upstream_timeout(&self) -> Duration {
        self.next_upstream_timeout.unwrap_or(Duration::ZERO)
    }
    /// `proxy_protocol`.
    pub fn proxy_protocol(&self) -> bool {
        self.proxy_protocol.unwrap_or(false)
    }
    /// `ssl_preread`.
    pub fn ssl_preread(&self) -> bool {
        self.ssl_preread.unwrap_or(false)
    }
    /// `preread_buffer_size`.
    pub fn preread_buffer_size(&self) -> usize {
        usize::try_from(self.preread_buffer_size.unwrap_or(16 * 1024)).unwrap_or(usize::MAX)
    }
    /// `preread_timeout`.
    pub fn preread_timeout(&self) -> Duration {
        self.preread_timeout.unwrap_or(Duration::from_secs(30))
    }
    /// `proxy_half_close`.
    pub fn half_close(&self) -> bool {
        self.half_close.unwrap_or(false)
    }
    /// `proxy_splice`.
    pub fn splice(&self) -> super::model::SpliceMode {
        self.splice.unwrap_or(super::model::SpliceMode::Off)
    }
}

/// The variables a stream template may name (besides `map` variables).
pub const STREAM_VARS: &[&str] = &[
    "binary_remote_addr",
    "bytes_received",
    "bytes_sent",
    "connection",
    "hostname",
    "msec",
    "nginx_version",
    "pid",
    "protocol",
    "proxy_protocol_addr",
    "proxy_protocol_port",
    "proxy_protocol_server_addr",
    "proxy_protocol_server_port",
    "remote_addr",
    "remote_port",
    "server_addr",
    "server_port",
    "session_time",
    "ssl_preread_alpn_protocols",
    "ssl_preread_protocol",
    "ssl_preread_server_name",
    "status",
    "time_iso8601",
    "time_local",
    "upstream_addr",
    "upstream_bytes_received",
    "upstream_bytes_sent",
    "upstream_connect_time",
];

/// A server being built: its `proxy_pass` before upstream names are resolved.
pub struct ServerBuild {
    pub(super) server: StreamServer,
    pass: Option<PassRef>,
}

enum PassRef {
    Ref(usize),
    Var(Template),
    Return(Template),
}

/// Walks a `stream { }` block with its own upstream, format and variable namespaces.
pub(super) fn block(d: &Directive, env: &mut Env) -> Result<StreamConf> {
    let saved = (
        std::mem::take(&mut env.upstreams),
        std::mem::take(&mut env.proxy_refs),
        std::mem::take(&mut env.log_formats),
        std::mem::take(&mut env.vars),
        std::mem::take(&mut env.used_vars),
    );
    let mut stream = StreamConf::default();
    let mut servers = Vec::new();
    let walked = walk(
        children(d),
        directives::STREAM,
        &mut Scope::Stream(&mut stream, &mut servers),
        env,
    );
    let stream_upstreams = std::mem::replace(&mut env.upstreams, saved.0);
    let refs = std::mem::replace(&mut env.proxy_refs, saved.1);
    env.log_formats = saved.2;
    let vars = std::mem::replace(&mut env.vars, saved.3);
    let used = std::mem::replace(&mut env.used_vars, saved.4);
    walked?;
    for (name, span) in &used {
        if name.len() <= 1 && name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !STREAM_VARS.contains(&name.as_str()) && !vars.is_defined(name) {
            return Err(ConfigError::at(
                span,
                format!("unknown \"{name}\" variable"),
            ));
        }
    }
    stream.upstreams = stream_upstreams;
    // The stream engine connects TCP only.
    for p in stream.upstreams.iter().flat_map(|u| &u.peers) {
        if p.addrs
            .iter()
            .any(|a| matches!(a, crate::upstream::peer::PeerAddr::Unix(_)))
        {
            return Err(ConfigError::at(
                &p.span,
                "unix domain sockets in stream upstreams are not supported by ringproxy",
            ));
        }
    }
    let mut index_of_ref = Vec::with_capacity(refs.len());
    for r in &refs {
        let explicit = stream
            .upstreams
            .iter()
            .position(|u| u.explicit && r.port.is_none() && u.name.eq_ignore_ascii_case(&r.host));
        let idx = match explicit {
            Some(i) => i,
            None => {
                let Some(port) = r.port else {
                    return Err(ConfigError::at(
                        &r.span,
                        format!("no port in upstream \"{}\"", r.host),
                    ));
                };
                implicit(&mut stream.upstreams, r, port)?
            }
        };
        index_of_ref.push(idx);
    }
    for mut b in servers {
        b.server.conf.merge(&stream.conf);
        b.server.proxy_pass = match b.pass {
            Some(PassRef::Ref(i)) => Some(StreamPass::Upstream(index_of_ref[i])),
            Some(PassRef::Var(t)) => Some(StreamPass::Var(t)),
            Some(PassRef::Return(t)) => Some(StreamPass::Return(t)),
            None => None,
        };
        if b.server.listen.is_empty() {
            return Err(err(d, "no \"listen\" is defined for server in \"stream\""));
        }
        stream.servers.push(b.server);
    }
    let mut seen = std::collections::HashSet::new();
    for s in &stream.servers {
        for l in &s.listen {
            if !seen.insert(l.addr) {
                return Err(ConfigError::at(
                    &l.span,
                    format!("duplicate \"{}\" address and port pair", l.addr),
                ));
            }
        }
    }
    Ok(stream)
}

fn implicit(upstreams: &mut Vec<UpstreamConf>, r: &ProxyRef, port: u16) -> Result<usize> {
    let name = format!("{}:{port}", r.host);
    if let Some(i) = upstreams.iter().position(|u| !u.explicit && u.name == name) {
        return Ok(i);
    }
    let addrs = resolve(&r.host, port).ok_or_else(|| {
        ConfigError::at(&r.span, format!("host not found in upstream \"{name}\""))
    })?;
    upstreams.push(UpstreamConf {
        name: name.clone(),
        explicit: false,
        peers: vec![super::model::PeerConf::new(
            name,
            addrs.into_iter().map(Into::into).collect(),
            r.span.clone(),
        )],
        zone: None,
        sticky: None,
        balance: super::model::Balance::RoundRobin,
        keepalive: 0,
        keepalive_timeout: Duration::from_secs(60),
        keepalive_requests: 1000,
        keepalive_time: Duration::from_secs(3600),
        span: r.span.clone(),
        conns: Default::default(),
    });
    Ok(upstreams.len() - 1)
}

/// `server { }` in `stream`.
pub(super) fn server(d: &Directive, env: &mut Env, out: &mut Vec<ServerBuild>) -> Result<()> {
    let mut b = ServerBuild {
        server: StreamServer {
            listen: Vec::new(),
            proxy_pass: None,
            conf: StreamLevel::default(),
        },
        pass: None,
    };
    walk(
        children(d),
        directives::SSRV,
        &mut Scope::StreamServer(&mut b),
        env,
    )?;
    out.push(b);
    Ok(())
}

/// `listen address:port [reuseport] [backlog=N] [so_keepalive=...] [proxy_protocol] ...`.
pub(crate) fn listen(b: &mut ServerBuild, d: &Directive, _: &mut Env) -> Result<()> {
    let text = d.arg(0);
    if text.starts_with("unix:") {
        return Err(err(
            d,
            "unix domain sockets in \"listen\" are not supported by ringproxy",
        ));
    }
    let hp = parse_host_port(text, true)
        .map_err(|e| err(d, format!("{e} in \"{text}\" of the \"listen\" directive")))?;
    let Some(port) = hp.port else {
        return Err(err(
            d,
            format!("no port in \"{text}\" of the \"listen\" directive"),
        ));
    };
    let addr = resolve(&hp.host, port)
        .and_then(|v| v.first().copied())
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
            "reuseport" => l.reuseport = true,
            "bind" => {}
            "proxy_protocol" => l.proxy_protocol = true,
            "udp" => {
                return Err(err(d, "the \"udp\" parameter of the \"listen\" directive is not supported by ringproxy: stream proxies TCP only"))
            }
            "ssl" => {
                return Err(err(d, "the \"ssl\" parameter of the \"listen\" directive in \"stream\" is not supported by ringproxy: TLS passes through (ssl_preread), it is not terminated"))
            }
            _ => {
                if let Some(n) = v.strip_prefix("backlog=") {
                    l.backlog = parse_number(n)
                        .and_then(|n| i32::try_from(n).ok())
                        .filter(|&n| n > 0)
                        .ok_or_else(|| bad("backlog"))?;
                } else if let Some(n) = v.strip_prefix("rcvbuf=") {
                    l.rcvbuf = Some(parse_size(n).ok_or_else(|| bad("rcvbuf"))?);
                } else if let Some(n) = v.strip_prefix("sndbuf=") {
                    l.sndbuf = Some(parse_size(n).ok_or_else(|| bad("sndbuf"))?);
                } else if let Some(f) = v.strip_prefix("ipv6only=") {
                    l.ipv6only = parse_flag(f)
                        .ok_or_else(|| err(d, format!("invalid ipv6only flags \"{f}\"")))?;
                } else if let Some(f) = v.strip_prefix("so_keepalive=") {
                    l.so_keepalive = Some(match parse_flag(f) {
                        Some(b) => b,
                        None if f.split(':').count() == 3 => true,
                        None => {
                            return Err(err(d, format!("invalid so_keepalive value: \"{f}\"")))
                        }
                    });
                } else {
                    return Err(err(d, format!("invalid parameter \"{v}\"")));
                }
            }
        }
    }
    b.server.listen.push(l);
    Ok(())
}

/// `proxy_pass address | upstream | $variable`.
pub(crate) fn proxy_pass(b: &mut ServerBuild, d: &Directive, e: &mut Env) -> Result<()> {
    if b.pass.is_some() {
        return Err(err(d, "\"proxy_pass\" directive is duplicate"));
    }
    let text = d.arg(0);
    let t = e.template(text, d)?;
    if t.parts.iter().any(|p| !matches!(p, Part::Literal(_))) {
        b.pass = Some(PassRef::Var(t));
        return Ok(());
    }
    if text.starts_with("unix:") {
        return Err(err(
            d,
            "unix domain sockets in \"proxy_pass\" are not supported by ringproxy",
        ));
    }
    let hp =
        parse_host_port(text, false).map_err(|m| err(d, format!("{m} in upstream \"{text}\"")))?;
    e.proxy_refs.push(ProxyRef {
        host: hp.host.to_string(),
        port: hp.port,
        tls: false,
        span: d.span.clone(),
    });
    b.pass = Some(PassRef::Ref(e.proxy_refs.len() - 1));
    Ok(())
}

/// `return value` (the stream return module).
pub(crate) fn return_(b: &mut ServerBuild, d: &Directive, e: &mut Env) -> Result<()> {
    if b.pass.is_some() {
        return Err(err(d, "\"return\" directive is duplicate"));
    }
    b.pass = Some(PassRef::Return(e.template(d.arg(0), d)?));
    Ok(())
}

/// `access_log path format [buffer=] [flush=] [if=] | off`.
pub(crate) fn access_log(c: &mut StreamLevel, d: &Directive, e: &mut Env) -> Result<()> {
    if d.arg(0) != "off" && d.args.len() < 2 {
        return Err(err(d, "log format is not specified"));
    }
    let mut level = super::model::LocConf::default();
    super::handlers::access_log(&mut level, d, e)?;
    c.access_log
        .get_or_insert_with(Vec::new)
        .extend(level.access_log.into_iter().flatten());
    Ok(())
}

/// `log_format name [escape=...] string ...` in stream.
pub(crate) fn log_format(s: &mut StreamConf, d: &Directive, e: &mut Env) -> Result<()> {
    let mut http = super::model::HttpConf {
        log_formats: std::mem::take(&mut s.log_formats),
        ..Default::default()
    };
    let r = super::handlers::log_format(&mut http, d, e);
    s.log_formats = http.log_formats;
    r
}

/// Handlers of the stream-level settings, inline in the table.
pub(crate) fn time(c: &mut Option<Duration>, d: &Directive) -> Result<()> {
    set_once(c, directives::time(d, 0)?, d)
}

/// `ssl_preread on|off` etc.: a flag at the stream or server level.
pub(crate) fn flag(c: &mut Option<bool>, d: &Directive) -> Result<()> {
    set_once(c, directives::flag(d)?, d)
}

/// A size (`preread_buffer_size`).
pub(crate) fn size(c: &mut Option<u64>, d: &Directive) -> Result<()> {
    set_once(c, directives::size(d, 0)?, d)
}

/// A number (`proxy_next_upstream_tries`).
pub(crate) fn number(c: &mut Option<u32>, d: &Directive) -> Result<()> {
    set_once(c, directives::num(d, 0)?, d)
}

/// A directive of nginx's stream modules that ringproxy does not do in stream (its http
/// namesake may work): refused by name, with the context said.
pub(crate) fn refuse(_: &mut StreamLevel, d: &Directive, _: &mut Env) -> Result<()> {
    Err(err(
        d,
        format!(
            "\"{}\" directive is not supported by ringproxy in stream",
            d.name()
        ),
    ))
}
