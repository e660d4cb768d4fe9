//! The typed, validated configuration the shards run on.
//!
//! Built by `build.rs` from the AST through the directive table; immutable afterwards and shared
//! as one `Arc<Config>` by every shard. Settings that nginx inherits from `http` to `server` to
//! `location` live in [`LocConf`] as `Option`s, merged down once at build time so a request
//! reads its location's values without walking parents. Every element
//! keeps the [`Span`] it came from so later checks can still name file:line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::Span;
use super::template::Template;

pub use super::model_out::{
    default_charset_types, Charset, CookieFlags, CookieName, CookieRewrite, Expires, ExpiresMode,
    GzipStatic,
};
pub use super::regex::Regex;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Main (top-level) context.
    pub main: MainConf,
    /// `events { }`.
    pub events: EventsConf,
    /// `http { }`, if present.
    pub http: Option<HttpConf>,
    /// `stream { }`, if present.
    pub stream: Option<super::stream::StreamConf>,
}

/// `worker_processes N|auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerProcesses {
    /// One shard per available core.
    Auto,
    /// This many shards.
    Count(u32),
}

/// `worker_cpu_affinity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuAffinity {
    /// `auto [mask]`: shard i on the i-th allowed core (optionally limited by the mask).
    Auto(Option<Vec<bool>>),
    /// One mask per shard, as written (`0101`), rightmost digit CPU 0.
    Masks(Vec<Vec<bool>>),
}

/// nginx log levels for `error_log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `notice`.
    Notice,
    /// `warn`.
    Warn,
    /// `error` (the default).
    Error,
    /// `crit`.
    Crit,
    /// `alert`.
    Alert,
    /// `emerg`.
    Emerg,
}

/// Where a log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// A file (absolute after prefix resolution).
    File(PathBuf),
    /// The standard error stream (`stderr`).
    Stderr,
}

/// `error_log target [level]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorLog {
    /// Destination.
    pub target: LogTarget,
    /// Minimum level written.
    pub level: LogLevel,
}

/// `worker_shutdown_spread`'s default: long enough that a draining node's clients do not all
/// reconnect in the same second, short enough that a stop is not felt as slow.
pub const DEFAULT_SHUTDOWN_SPREAD: Duration = Duration::from_secs(5);

/// Main context.
#[derive(Clone, Debug, PartialEq)]
pub struct MainConf {
    /// Number of shards.
    pub worker_processes: WorkerProcesses,
    /// Soft `RLIMIT_NOFILE` to set at start.
    pub worker_rlimit_nofile: Option<u64>,
    /// How long a graceful stop waits for connections.
    pub worker_shutdown_timeout: Option<Duration>,
    /// The window over which a graceful stop closes WebSocket tunnels, each at a random
    /// moment (ringproxy's own; default [`DEFAULT_SHUTDOWN_SPREAD`]).
    pub worker_shutdown_spread: Duration,
    /// Pinning.
    pub worker_cpu_affinity: Option<CpuAffinity>,
    /// Pid file (absolute); default `logs/ringproxy.pid` under the prefix.
    pub pid: PathBuf,
    /// Error logs as configured; empty means the default (`logs/error.log` at `error`, or what
    /// `-e` names), see [`MainConf::error_logs`].
    pub error_log: Vec<ErrorLog>,
    /// Detach from the terminal (default on).
    pub daemon: bool,
    /// `user name [group]`, resolved; set only when started as root (otherwise nginx warns and
    /// ignores it). The shards' privileges are dropped to it once listeners, logs and the pid
    /// file are open.
    pub user: Option<RunAs>,
    /// Where `-p`/default prefix pointed: relative paths resolve against it.
    pub prefix: PathBuf,
}

/// The user and group `user` names, with their ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User name (for the supplementary groups).
    pub user: String,
    /// User id.
    pub uid: u32,
    /// Group id (the named group; nginx's default group is the user's name).
    pub gid: u32,
}

impl MainConf {
    /// The error logs to open: the configured ones, else `-e`'s (`stderr` or a file), else
    /// `logs/error.log` under the prefix, as nginx.
    pub fn error_logs(&self, cli: Option<&str>) -> Vec<ErrorLog> {
        if !self.error_log.is_empty() {
            return self.error_log.clone();
        }
        let target = match cli {
            Some("stderr") => LogTarget::Stderr,
            Some(path) => LogTarget::File(self.prefix.join(path)),
            None => LogTarget::File(self.prefix.join("logs/error.log")),
        };
        vec![ErrorLog {
            target,
            level: LogLevel::Error,
        }]
    }
}

/// `use` in `events`: which driver the shards run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventMethod {
    /// io_uring with the epoll fallback (ringproxy's default).
    IoUring,
    /// Force the epoll driver.
    Epoll,
}

/// `events { }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsConf {
    /// Connections per shard (default 512).
    pub worker_connections: u32,
    /// Driver choice; `None` is the default (io_uring, falling back to epoll).
    pub method: Option<EventMethod>,
}

/// `http { }`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpConf {
    /// `map` blocks, in order.
    pub maps: Vec<MapConf>,
    /// `upstream` blocks (and implicit ones made for `proxy_pass host:port`).
    pub upstreams: Vec<UpstreamConf>,
    /// `server` blocks, in order.
    pub servers: Vec<ServerConf>,
    /// `log_format` definitions (the predefined `combined` included).
    pub log_formats: Vec<LogFormat>,
    /// `limit_req_zone` and `limit_conn_zone` definitions.
    pub limit_zones: Vec<super::limits::LimitZone>,
    /// Settings at the `http` level (servers merged from these).
    pub conf: LocConf,
}

/// `log_format name [escape=...] string ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFormat {
    /// Name used by `access_log`.
    pub name: String,
    /// `default`, `json` or `none`.
    pub escape: String,
    /// The format with its variables.
    pub format: Template,
}

/// A `map` block.
#[derive(Clone, Debug, PartialEq)]
pub struct MapConf {
    /// The source value (`$http_upgrade`).
    pub source: Template,
    /// The variable defined (without `$`).
    pub variable: String,
    /// `hostnames;`: keys may be wildcards.
    pub hostnames: bool,
    /// `volatile;`: not cached per request.
    pub volatile: bool,
    /// `default value;` (empty string when absent).
    pub default: Template,
    /// Exact keys (lowercase: nginx compares them case-insensitively) and their values.
    pub exact: Vec<(String, Template)>,
    /// `hostnames` wildcard keys (`*.example.com`, `.example.com`, `www.example.*`).
    pub wildcards: Vec<(String, Template)>,
    /// Regex keys in order, with `~*` compiled case-insensitively.
    pub regexes: Vec<(Regex, Template)>,
    /// Where the block starts.
    pub span: Span,
}

/// Balancing method of an upstream group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin (default).
    RoundRobin,
    /// `hash KEY [consistent]`.
    Hash {
        /// The key.
        key: Template,
        /// Ketama placement.
        consistent: bool,
    },
    /// `ip_hash`: the client's /24 (IPv4) or whole address (IPv6).
    IpHash,
    /// `least_conn`.
    LeastConn,
    /// `random [two [least_conn]]`.
    Random {
        /// `two`: the less loaded of two drawn peers.
        two: bool,
    },
}

impl Balance {
    /// Whether `server ... backup` may follow the method (nginx's `NGX_HTTP_UPSTREAM_BACKUP`).
    pub fn allows_backup(&self) -> bool {
        matches!(self, Balance::RoundRobin | Balance::LeastConn)
    }
}

/// An upstream `server`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConf {
    /// As written (`127.0.0.1:9001`, `backend.local`), which consistent hashing uses.
    pub name: String,
    /// Resolved addresses (a name may resolve to several: each becomes a peer, as in nginx).
    pub addrs: Vec<crate::upstream::peer::PeerAddr>,
    /// `weight=` (default 1).
    pub weight: u32,
    /// `max_fails=` (default 1; 0 disables accounting).
    pub max_fails: u32,
    /// `fail_timeout=` (default 10s).
    pub fail_timeout: Duration,
    /// `backup`.
    pub backup: bool,
    /// `down`.
    pub down: bool,
    /// `max_conns=` (0: unlimited).
    pub max_conns: u32,
    /// `route=`: the server ID `sticky` binds clients to (default: the MD5 of the address).
    pub route: Option<String>,
    /// Where it was written.
    pub span: Span,
}

impl PeerConf {
    /// A peer with nginx's defaults (weight 1, max_fails 1, fail_timeout 10s).
    pub fn new(name: String, addrs: Vec<crate::upstream::peer::PeerAddr>, span: Span) -> PeerConf {
        PeerConf {
            name,
            addrs,
            weight: 1,
            max_fails: crate::upstream::peer::DEFAULT_MAX_FAILS,
            fail_timeout: crate::upstream::peer::DEFAULT_FAIL_TIMEOUT,
            backup: false,
            down: false,
            max_conns: 0,
            route: None,
            span,
        }
    }
}

/// An `upstream` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConf {
    /// Group name (or `host:port` for an implicit group made by `proxy_pass`).
    pub name: String,
    /// Whether it was written as an `upstream` block.
    pub explicit: bool,
    /// Peers in order.
    pub peers: Vec<PeerConf>,
    /// Balancing method.
    pub balance: Balance,
    /// `keepalive N`: idle connections cached per shard (0: none).
    pub keepalive: u32,
    /// `keepalive_timeout` for cached upstream connections (default 60s).
    pub keepalive_timeout: Duration,
    /// `keepalive_requests` per cached upstream connection (default 1000).
    pub keepalive_requests: u32,
    /// `keepalive_time`: longest life of a cached upstream connection (default 1h).
    pub keepalive_time: Duration,
    /// Where it was defined (or first referenced).
    pub span: Span,
    /// Run-time state, not configuration: the open connections on each peer, shared by the
    /// shards serving this configuration (`least_conn` and `random two` compare them).
    pub conns: crate::upstream::peer::SharedConns,
    /// `zone name [size]` (size 0 when not given here): `max_conns` counts across shards.
    pub zone: Option<(String, u64)>,
    /// `sticky`: session affinity over the balancing method.
    pub sticky: Option<super::sticky::StickyConf>,
}

/// A `listen` directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// The address to bind (`*:80` is 0.0.0.0:80).
    pub addr: SocketAddr,
    /// `default_server`.
    pub default_server: bool,
    /// `ssl`.
    pub ssl: bool,
    /// `backlog=N` (default 511, as nginx on Linux).
    pub backlog: i32,
    /// `reuseport` (ringproxy always uses SO_REUSEPORT per shard; kept for dumps).
    pub reuseport: bool,
    /// `ipv6only=on|off` (default on).
    pub ipv6only: bool,
    /// `rcvbuf=`.
    pub rcvbuf: Option<u64>,
    /// `sndbuf=`.
    pub sndbuf: Option<u64>,
    /// `so_keepalive=on|off`.
    pub so_keepalive: Option<bool>,
    /// `deferred` (TCP_DEFER_ACCEPT).
    pub deferred: bool,
    /// `fastopen=N`.
    pub fastopen: Option<u32>,
    /// `proxy_protocol`: connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Where it was written.
    pub span: Span,
}

impl Listen {
    /// `listen addr` with nginx's defaults (backlog 511 on Linux, ipv6only on).
    pub fn new(addr: SocketAddr, span: Span) -> Listen {
        Listen {
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
            proxy_protocol: false,
            span,
        }
    }
}

/// A `server_name` entry.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerName {
    /// `example.com` (stored lowercase).
    Exact(String),
    /// `*.example.com` (stored as `.example.com`) and `.example.com` (also matches the bare
    /// name, stored with `also_bare`).
    LeadingWildcard {
        /// The suffix including the leading dot.
        suffix: String,
        /// `.example.com` form: also matches `example.com`.
        also_bare: bool,
    },
    /// `www.example.*` (stored as `www.example.`).
    TrailingWildcard(String),
    /// `~regex`.
    Regex(Regex),
}

impl ServerName {
    /// The name as nginx gives it in `$server_name` when it is a server's first: as written,
    /// but lowercase and without the leading dot of `.example.com` (nginx 1.22 by hand).
    pub fn as_written(&self) -> std::borrow::Cow<'_, str> {
        match self {
            ServerName::Exact(n) => n.as_str().into(),
            ServerName::LeadingWildcard {
                suffix,
                also_bare: true,
            } => suffix[1..].into(),
            ServerName::LeadingWildcard { suffix, .. } => format!("*{suffix}").into(),
            ServerName::TrailingWildcard(p) => format!("{p}*").into(),
            ServerName::Regex(r) => format!("~{}", r.source).into(),
        }
    }
}

/// A `server` block.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConf {
    /// `listen` directives (default `*:80` as root, `*:8000` otherwise, like nginx).
    pub listen: Vec<Listen>,
    /// `server_name` entries (default `""`).
    pub names: Vec<ServerName>,
    /// Merged settings at the server level.
    pub conf: LocConf,
    /// Locations at the server level, in order of appearance.
    pub locations: Vec<Location>,
    /// Where the block starts.
    pub span: Span,
}

/// How a location matches.
#[derive(Clone, Debug, PartialEq)]
pub enum LocationMatch {
    /// `location = /uri`.
    Exact(String),
    /// `location /uri` or, with `no_regex`, `location ^~ /uri`.
    Prefix {
        /// The prefix.
        path: String,
        /// `^~`: a longest match stops the regex search.
        no_regex: bool,
    },
    /// `location ~ re` / `location ~* re`.
    Regex(Regex),
    /// `location @name`.
    Named(String),
}

/// A `location` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    /// How it matches.
    pub matcher: LocationMatch,
    /// Merged settings.
    pub conf: LocConf,
    /// Nested locations.
    pub locations: Vec<Location>,
    /// `limit_except`.
    pub limit_except: Option<LimitExcept>,
    /// Where the block starts.
    pub span: Span,
}

/// `proxy_pass` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyPass {
    /// `https://` instead of `http://`.
    pub tls: bool,
    /// Index into `HttpConf::upstreams` (explicit group or implicit `host:port`).
    pub upstream: usize,
    /// The host part as written (`backend`, `127.0.0.1:9001`): `$proxy_host`.
    pub host: String,
    /// The URI part, if any (`proxy_pass http://group/;` has `/`).
    pub uri: Option<String>,
    /// A URI part with variables (`http://backend$request_uri`): rendered per request and sent
    /// as it comes out, the location's prefix not replaced (as nginx); `uri` is then `None`.
    pub uri_vars: Option<Template>,
    /// The whole URL, when its scheme or host has variables (`http://$backend`): evaluated per
    /// request into a `ProxyPass` naming an upstream group or a `direct` address, as nginx
    /// does (`proxy::dynamic_pass`). `upstream` is [`ProxyPass::UNRESOLVED`] until then.
    pub dynamic: Option<Template>,
    /// The peer of an evaluated URL whose host is no upstream group's name but an address
    /// (`http://127.0.0.1:8081`, `http://unix:/path`): a group of its own for the request.
    pub direct: Option<crate::upstream::peer::PeerAddr>,
    /// Where it was written.
    pub span: Span,
}

impl ProxyPass {
    /// `upstream` of a URL with variables before it is evaluated, and of a `direct` peer.
    pub const UNRESOLVED: usize = usize::MAX;

    /// A URL with variables in its scheme or host, not yet evaluated for this request.
    pub fn needs_eval(&self) -> bool {
        self.dynamic.is_some() && self.direct.is_none() && self.upstream == Self::UNRESOLVED
    }
}

/// One step of the rewrite module's script (run in order, per server and per location).
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptOp {
    /// `rewrite regex replacement [last|break|redirect|permanent]`.
    Rewrite {
        /// The pattern.
        regex: Regex,
        /// The replacement.
        replacement: Template,
        /// The flag.
        flag: RewriteFlag,
    },
    /// `return code [text|URL]` or `return URL`.
    Return {
        /// Status code.
        code: u16,
        /// Body text or redirect URL.
        text: Option<Template>,
    },
    /// `set $var value`.
    Set {
        /// Variable name without `$`.
        var: String,
        /// Value.
        value: Template,
    },
    /// `break`.
    Break,
    /// `if (condition) { ... }`: when the condition holds, the block's ops run in place (and
    /// the script goes on after the block unless they end it).
    If {
        /// The test.
        cond: Condition,
        /// In a location, the block's configuration (merged from the location's): the request
        /// uses it from then on, as nginx's nameless location. `None` in a server.
        conf: Option<Box<LocConf>>,
        /// The rewrite directives inside the block.
        ops: Vec<ScriptOp>,
    },
}

/// The condition of an `if`.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `($var)`: false when empty or `0`.
    Var(String),
    /// `($var = value)`, `($var != value)`.
    Equal {
        /// The variable (without `$`).
        var: String,
        /// What it is compared with.
        value: Template,
        /// `!=`.
        negate: bool,
    },
    /// `($var ~ re)`, `~*`, `!~`, `!~*`: captures of a match become `$1`...
    Match {
        /// The variable (without `$`).
        var: String,
        /// The pattern (`caseless` for `~*`).
        regex: Regex,
        /// `!~`.
        negate: bool,
    },
    /// `(-f path)`, `-d`, `-e`, `-x` and their `!` forms.
    File {
        /// The path.
        path: Template,
        /// Which test.
        test: FileTest,
        /// `!-f`...
        negate: bool,
    },
}

/// The file tests of `if`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileTest {
    /// `-f`: a regular file.
    Plain,
    /// `-d`: a directory.
    Dir,
    /// `-e`: a file, directory or symbolic link.
    Exists,
    /// `-x`: executable by its owner.
    Exec,
}

/// One `allow` or `deny` rule (the access module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRule {
    /// `deny`.
    pub deny: bool,
    /// The network; `None` for `all`. `unix:` rules never match TCP clients.
    pub net: Option<(std::net::IpAddr, u8)>,
    /// `unix:`.
    pub unix: bool,
}

/// `auth_basic_user_file`: the path (variables allowed) and the directory a relative one is
/// under (nginx's conf prefix).
#[derive(Clone, Debug, PartialEq)]
pub struct AuthUserFile {
    /// The path as written.
    pub path: Template,
    /// The main configuration file's directory.
    pub conf_dir: PathBuf,
}

/// `satisfy`: how the access phase's checks combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Satisfy {
    /// Every check must allow.
    All,
    /// One check allowing is enough.
    Any,
}

/// `limit_except METHOD ... { }`: the configuration used for the methods not listed.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitExcept {
    /// The methods listed, uppercase (`GET` brings `HEAD`).
    pub methods: Vec<String>,
    /// The block's configuration, merged from the location's.
    pub conf: Box<LocConf>,
}

impl LimitExcept {
    /// Whether a request with `method` uses the block's configuration.
    pub fn limits(&self, method: &str) -> bool {
        !self.methods.iter().any(|m| m == method)
    }
}

/// `rewrite` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteFlag {
    /// No flag: go on with the next rewrite directive.
    None,
    /// `last`: search a location for the new URI.
    Last,
    /// `break`: stop rewriting, stay in this location.
    Break,
    /// `redirect`: 302.
    Redirect,
    /// `permanent`: 301.
    Permanent,
}

/// `try_files` final fallback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryFilesLast {
    /// `=404`.
    Code(u16),
    /// `@name`.
    Named(String),
    /// An internal redirect to a URI.
    Uri(Template),
}

/// `try_files file ... last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TryFiles {
    /// Candidates (a trailing `/` means a directory).
    pub files: Vec<Template>,
    /// What to do when none exists.
    pub last: TryFilesLast,
}

/// `access_log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLog {
    /// `access_log off`.
    Off,
    /// `access_log path [format] [buffer=] [flush=] [if=]`.
    File {
        /// Destination (absolute).
        path: PathBuf,
        /// Format name (default `combined`).
        format: String,
        /// `buffer=size`.
        buffer: Option<u64>,
        /// `flush=time`.
        flush: Option<Duration>,
        /// `if=condition`.
        condition: Option<Template>,
    },
}

/// `error_page code ... [=[response]] uri`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPage {
    /// Status codes it applies to.
    pub codes: Vec<u16>,
    /// `=`: keep the page's own code; `=N`: answer N; absent: the original code.
    pub response: Option<Option<u16>>,
    /// Where to go.
    pub uri: Template,
}

/// `add_header name value [always]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddHeader {
    /// Header name.
    pub name: String,
    /// Value (an empty result adds nothing, as nginx).
    pub value: Template,
    /// Also on error responses.
    pub always: bool,
}

/// One `gzip_disable` entry, matched against `User-Agent`.
#[derive(Clone, Debug, PartialEq)]
pub enum UaMatch {
    /// `msie6`: MSIE 4 to 6 (not 6.0 with SV1).
    Msie6,
    /// `degradation`: nginx's degradation mode, which ringproxy never enters.
    Degradation,
    /// A regular expression (case-insensitive, as nginx).
    Regex(Regex),
}

/// `resolver address ... [valid=time] [ipv4=on|off] [ipv6=on|off]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConf {
    /// The name servers (port 53 unless given).
    pub addrs: Vec<SocketAddr>,
    /// `valid=`: how long an answer is kept, instead of its TTL.
    pub valid: Option<Duration>,
    /// Ask for A records.
    pub ipv4: bool,
    /// Ask for AAAA records.
    pub ipv6: bool,
}

impl Default for ResolverConf {
    fn default() -> Self {
        ResolverConf {
            addrs: Vec::new(),
            valid: None,
            ipv4: true,
            ipv6: true,
        }
    }
}

/// One `proxy_redirect` rule.
#[derive(Clone, Debug, PartialEq)]
pub enum ProxyRedirect {
    /// `off`: no rewriting at this level.
    Off,
    /// `default`: the `proxy_pass` URL becomes the location's prefix.
    Default,
    /// `redirect replacement`: a case-sensitive prefix.
    Prefix(Template, Template),
    /// `~regex replacement` / `~*regex replacement`.
    Regex(Regex, Template),
}

/// `proxy_http_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    /// 1.0 (nginx's default): no upstream keep-alive, no upgrade.
    Http10,
    /// 1.1.
    Http11,
}

/// `proxy_next_upstream` conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextUpstream {
    /// `off`: never retry.
    pub off: bool,
    /// Conditions as written (`error`, `timeout`, `invalid_header`, `http_502`, `non_idempotent`...).
    pub when: Vec<String>,
}

/// `proxy_splice on|off|auto`: which tunnel forwarding path plain-TCP WebSockets use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpliceMode {
    /// Always `splice(2)` through a pooled pipe.
    On,
    /// Always copy through a pooled buffer.
    Off,
    /// Decided per tunnel by ringproxy (see README's benchmark section).
    Auto,
}

/// `ssl_protocols` members (rustls speaks only these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLSv1.2.
    Tls12,
    /// TLSv1.3.
    Tls13,
}

/// `root path` or `alias path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocRoot {
    /// `root`: the URI is appended to the path.
    Root(PathBuf),
    /// `alias`: the location's prefix is replaced by the path.
    Alias(PathBuf),
    /// `root` with variables, rendered per request; a relative result is under the prefix.
    RootVars(Template, PathBuf),
    /// `alias` with variables (often a regex location's captures), rendered per request.
    AliasVars(Template, PathBuf),
}

impl DocRoot {
    /// The path for this request and whether it is an alias: `render` evaluates the template
    /// of a root with variables, and nginx's `ngx_get_full_name` puts a relative result under
    /// the prefix.
    pub fn rendered(&self, render: &mut dyn FnMut(&Template) -> Vec<u8>) -> (PathBuf, bool) {
        use std::os::unix::ffi::OsStringExt;
        let mut full = |t: &Template, prefix: &PathBuf| {
            prefix.join(PathBuf::from(std::ffi::OsString::from_vec(render(t))))
        };
        match self {
            DocRoot::Root(p) => (p.clone(), false),
            DocRoot::Alias(p) => (p.clone(), true),
            DocRoot::RootVars(t, prefix) => (full(t, prefix), false),
            DocRoot::AliasVars(t, prefix) => (full(t, prefix), true),
        }
    }
}

/// `types { }`: extension to MIME type.
pub type Types = Vec<(String, String)>;

macro_rules! loc_conf {
    (
        merged { $( $(#[$m:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)? }
        own { $( $(#[$wm:meta])* $wfield:ident : $wty:ty ),* $(,)? }
    ) => {
        /// Settings of one level (`http`, `server` or `location`). `Option` means "not set at this
        /// level"; [`LocConf::merge`] fills unset values from the enclosing level, and the
        /// accessor of the same name returns the value or nginx's default.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct LocConf {
            $( $(#[$m])* pub $field: Option<$ty>, )*
            $( $(#[$wm])* pub $wfield: $wty, )*
        }

        impl LocConf {
            /// Takes from `parent` every value not set at this level (nginx's merge; arrays such
            /// as `proxy_set_header` are inherited only when the level sets none).
            pub fn merge(&mut self, parent: &LocConf) {
                $( if self.$field.is_none() { self.$field = parent.$field.clone(); } )*
            }

            $(
                $(#[$m])*
                #[allow(clippy::redundant_closure_call)]
                pub fn $field(&self) -> $ty {
                    self.$field.clone().unwrap_or_else(|| $default)
                }
            )*
        }
    };
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

loc_conf! {
    merged {
        /// `proxy_http_version`.
        proxy_http_version: HttpVersion = HttpVersion::Http10,
        /// `proxy_set_header` (in order; nginx's defaults are added by the proxy).
        proxy_set_header: Vec<(String, Template)> = Vec::new(),
        /// `proxy_hide_header`.
        proxy_hide_header: Vec<String> = Vec::new(),
        /// `proxy_pass_header`.
        proxy_pass_header: Vec<String> = Vec::new(),
        /// `proxy_connect_timeout`.
        proxy_connect_timeout: Duration = secs(60),
        /// `resolver` (no address: none defined).
        resolver: ResolverConf = ResolverConf::default(),
        /// `resolver_timeout`.
        resolver_timeout: Duration = secs(30),
        /// `proxy_read_timeout`.
        proxy_read_timeout: Duration = secs(60),
        /// `proxy_send_timeout`.
        proxy_send_timeout: Duration = secs(60),
        /// `proxy_buffer_size` (largest upstream response head).
        proxy_buffer_size: u64 = 4096,
        /// `proxy_next_upstream`.
        proxy_next_upstream: NextUpstream = NextUpstream { off: false, when: vec!["error".into(), "timeout".into()] },
        /// `proxy_next_upstream_tries` (0: unlimited).
        proxy_next_upstream_tries: u32 = 0,
        /// `proxy_next_upstream_timeout` (0: unlimited).
        proxy_next_upstream_timeout: Duration = secs(0),
        /// `proxy_intercept_errors`.
        proxy_intercept_errors: bool = false,
        /// `proxy_ignore_client_abort`.
        proxy_ignore_client_abort: bool = false,
        /// `proxy_pass_request_headers`.
        proxy_pass_request_headers: bool = true,
        /// `proxy_pass_request_body`.
        proxy_pass_request_body: bool = true,
        /// `proxy_socket_keepalive`.
        proxy_socket_keepalive: bool = false,
        /// `proxy_redirect` (`default` when unset).
        proxy_redirect: Vec<ProxyRedirect> = vec![ProxyRedirect::Default],
        /// `proxy_splice` (ringproxy's own).
        proxy_splice: SpliceMode = SpliceMode::Auto,
        /// `proxy_allow_upgrade`: upgrade protocols forwarded besides WebSocket (ringproxy's
        /// own; `h2c` is refused unless listed).
        proxy_allow_upgrade: Vec<String> = Vec::new(),
        /// `proxy_ssl_server_name`.
        proxy_ssl_server_name: bool = false,
        /// `proxy_ssl_name`.
        proxy_ssl_name: Template = Template::parse("$proxy_host").expect("static"),
        /// `proxy_ssl_verify`.
        proxy_ssl_verify: bool = false,
        /// `proxy_ssl_verify_depth`.
        proxy_ssl_verify_depth: u32 = 1,
        /// `proxy_ssl_trusted_certificate`.
        proxy_ssl_trusted_certificate: PathBuf = PathBuf::new(),
        /// `proxy_ssl_certificate`.
        proxy_ssl_certificate: PathBuf = PathBuf::new(),
        /// `proxy_ssl_certificate_key`.
        proxy_ssl_certificate_key: PathBuf = PathBuf::new(),
        /// `proxy_ssl_password_file`: its passwords, read when the configuration is.
        proxy_ssl_password_file: crate::tls::keys::Passwords = Default::default(),
        /// `proxy_ssl_session_reuse`.
        proxy_ssl_session_reuse: bool = true,
        /// `proxy_ssl_ciphers`.
        proxy_ssl_ciphers: String = "DEFAULT".into(),
        /// `proxy_ssl_conf_command` (name, value), the list of one level.
        proxy_ssl_conf_command: Vec<(String, String)> = Vec::new(),
        /// `proxy_ssl_protocols`.
        proxy_ssl_protocols: Vec<TlsVersion> = vec![TlsVersion::Tls12, TlsVersion::Tls13],
        /// `keepalive_timeout` (0 disables client keep-alive).
        keepalive_timeout: Duration = secs(75),
        /// `keepalive_timeout`'s second argument (`Keep-Alive: timeout=`).
        keepalive_header_timeout: Duration = secs(0),
        /// `keepalive_requests`.
        keepalive_requests: u32 = 1000,
        /// `client_header_timeout` (one deadline from accept to the end of the head).
        client_header_timeout: Duration = secs(60),
        /// `client_header_buffer_size`.
        client_header_buffer_size: u64 = 1024,
        /// `large_client_header_buffers number size`.
        large_client_header_buffers: (u32, u64) = (4, 8192),
        /// `client_max_body_size` (0: unlimited).
        client_max_body_size: u64 = 1024 * 1024,
        /// `client_body_timeout`.
        client_body_timeout: Duration = secs(60),
        /// `send_timeout`.
        send_timeout: Duration = secs(60),
        /// `keepalive_time`: longest life of a client keep-alive connection.
        keepalive_time: Duration = secs(3600),
        /// `merge_slashes`.
        merge_slashes: bool = true,
        /// `underscores_in_headers`.
        underscores_in_headers: bool = false,
        /// `ignore_invalid_headers`.
        ignore_invalid_headers: bool = true,
        /// `chunked_transfer_encoding`.
        chunked_transfer_encoding: bool = true,
        /// `etag`.
        etag: bool = true,
        /// `log_not_found`.
        log_not_found: bool = true,
        /// `absolute_redirect`.
        absolute_redirect: bool = true,
        /// `port_in_redirect`.
        port_in_redirect: bool = true,
        /// `server_name_in_redirect`.
        server_name_in_redirect: bool = false,
        /// `rewrite_log`.
        rewrite_log: bool = false,
        /// `tcp_nodelay`.
        tcp_nodelay: bool = true,
        /// `server_tokens`.
        server_tokens: bool = true,
        /// `root` or `alias` (they are one setting in nginx; default `root html` under the
        /// prefix, set at the `http` level by the builder).
        root: DocRoot = DocRoot::Root(PathBuf::from("html")),
        /// `index`.
        index: Vec<Template> = vec![Template::parse("index.html").expect("static")],
        /// `default_type`.
        default_type: String = "text/plain".into(),
        /// `types`.
        types: Types = default_types(),
        /// `error_page`.
        error_page: Vec<ErrorPage> = Vec::new(),
        /// `add_header`.
        add_header: Vec<AddHeader> = Vec::new(),
        /// `allow` and `deny`, in order (the first that matches decides).
        access: Vec<AccessRule> = Vec::new(),
        /// `auth_basic`: the realm (`off`, or unset: no authentication).
        auth_basic: Template = Template::default(),
        /// `auth_basic_user_file`.
        auth_basic_user_file: AuthUserFile = AuthUserFile { path: Template::default(), conf_dir: PathBuf::new() },
        /// `satisfy`.
        satisfy: Satisfy = Satisfy::All,
        /// `auth_delay`: how long a 401 of the access phase waits before it is sent.
        auth_delay: Duration = secs(0),
        /// `auth_request` (empty: `off`).
        auth_request: String = String::new(),
        /// `auth_request_set $name value`, in order.
        auth_request_set: Vec<(String, Template)> = Vec::new(),
        /// `expires` (off when unset).
        expires: Expires = Expires { mode: ExpiresMode::Off, time: 0, value: None },
        /// `charset`.
        charset: Charset = Charset::Off,
        /// `source_charset` (only equal to `charset`: ringproxy does not recode).
        source_charset: Charset = Charset::Off,
        /// `proxy_cookie_domain` (`off`: an empty list).
        proxy_cookie_domain: Vec<CookieRewrite> = Vec::new(),
        /// `proxy_cookie_path` (`off`: an empty list).
        proxy_cookie_path: Vec<CookieRewrite> = Vec::new(),
        /// `proxy_cookie_flags` (`off`: an empty list).
        proxy_cookie_flags: Vec<CookieFlags> = Vec::new(),
        /// `charset_types` (lowercase; `*` for all).
        charset_types: Vec<String> = default_charset_types(),
        /// `access_log` (default `logs/access.log combined`).
        access_log: Vec<AccessLog> = Vec::new(),
        /// `error_log` at this level.
        error_log: Vec<ErrorLog> = Vec::new(),
        /// `gzip`.
        gzip: bool = false,
        /// `gzip_comp_level`.
        gzip_comp_level: u32 = 1,
        /// `gzip_min_length`.
        gzip_min_length: u64 = 20,
        /// `gzip_http_version`.
        gzip_http_version: HttpVersion = HttpVersion::Http11,
        /// `gzip_proxied` (as written: `off`, `any`, `expired`, ...).
        gzip_proxied: Vec<String> = vec!["off".into()],
        /// `gzip_types` (`text/html` is always included).
        gzip_types: Vec<String> = vec!["text/html".into()],
        /// `gzip_vary`.
        gzip_vary: bool = false,
        /// `gzip_static`.
        gzip_static: GzipStatic = GzipStatic::Off,
        /// `gzip_disable`.
        gzip_disable: Vec<UaMatch> = Vec::new(),
        /// `ssl_certificate` files (several for RSA + ECDSA).
        ssl_certificate: Vec<PathBuf> = Vec::new(),
        /// `ssl_certificate_key` files, paired in order with `ssl_certificate`.
        ssl_certificate_key: Vec<PathBuf> = Vec::new(),
        /// `ssl on` (deprecated in nginx): every `listen` of the server is TLS.
        ssl: bool = false,
        /// `ssl_protocols`.
        ssl_protocols: Vec<TlsVersion> = vec![TlsVersion::Tls12, TlsVersion::Tls13],
        /// `ssl_ciphers` (as written; mapped to rustls suites by the TLS layer).
        ssl_ciphers: String = "HIGH:!aNULL:!MD5".into(),
        /// `ssl_prefer_server_ciphers`.
        ssl_prefer_server_ciphers: bool = false,
        /// `ssl_session_timeout`.
        ssl_session_timeout: Duration = secs(300),
        /// `ssl_session_tickets`.
        ssl_session_tickets: bool = true,
        /// `ssl_buffer_size`: the most plaintext per TLS record sent.
        ssl_buffer_size: u64 = 16384,
        /// `ssl_session_cache` (as written: `off`, `none`, `builtin[:size]`, `shared:name:size`).
        ssl_session_cache: Vec<String> = vec!["none".into()],
        /// `ssl_reject_handshake`.
        ssl_reject_handshake: bool = false,
        /// `ssl_verify_client`.
        ssl_verify_client: String = "off".into(),
        /// `ssl_client_certificate`.
        ssl_client_certificate: PathBuf = PathBuf::new(),
        /// `ssl_verify_depth`.
        ssl_verify_depth: u32 = 1,
        /// `ssl_trusted_certificate`: CAs trusted for client certificates (not named in the
        /// CertificateRequest), and where the OCSP issuer is looked for after the chain.
        ssl_trusted_certificate: PathBuf = PathBuf::new(),
        /// `ssl_crl`.
        ssl_crl: PathBuf = PathBuf::new(),
        /// `ssl_password_file`: its passwords, read when the configuration is (nginx reads
        /// the file once, which may be a pipe).
        ssl_password_file: crate::tls::keys::Passwords = Default::default(),
        /// `ssl_ecdh_curve`.
        ssl_ecdh_curve: String = "auto".into(),
        /// `ssl_conf_command` (name, value), the list of one level.
        ssl_conf_command: Vec<(String, String)> = Vec::new(),
        /// `ssl_stapling`.
        ssl_stapling: bool = false,
        /// `ssl_stapling_verify`.
        ssl_stapling_verify: bool = false,
        /// `ssl_stapling_file`: a DER OCSP response stapled as is.
        ssl_stapling_file: PathBuf = PathBuf::new(),
        /// `ssl_stapling_responder` (overrides the certificate's AIA URL).
        ssl_stapling_responder: String = String::new(),
        /// `set_real_ip_from` (the list of one level; inherited when a level has none).
        set_real_ip_from: Vec<crate::http::realip::Trusted> = Vec::new(),
        /// `real_ip_header`.
        real_ip_header: crate::http::realip::RealIpHeader = crate::http::realip::RealIpHeader::XRealIp,
        /// `real_ip_recursive`.
        real_ip_recursive: bool = false,
        /// `limit_req` lines (the list of one level; inherited when a level has none).
        limit_req: Vec<super::limits::LimitReq> = Vec::new(),
        /// `limit_req_status`.
        limit_req_status: u16 = 503,
        /// `limit_req_log_level` (delays are logged one level lower, as nginx).
        limit_req_log_level: LogLevel = LogLevel::Error,
        /// `limit_req_dry_run`.
        limit_req_dry_run: bool = false,
        /// `limit_conn` lines (the list of one level; inherited when a level has none).
        limit_conn: Vec<super::limits::LimitConn> = Vec::new(),
        /// `limit_conn_status`.
        limit_conn_status: u16 = 503,
        /// `limit_conn_log_level`.
        limit_conn_log_level: LogLevel = LogLevel::Error,
        /// `limit_conn_dry_run`.
        limit_conn_dry_run: bool = false,
    }
    own {
        /// `proxy_pass` (nginx does not inherit it into nested locations).
        proxy_pass: Option<ProxyPass>,
        /// `try_files` (location only, not inherited).
        try_files: Option<TryFiles>,
        /// `stub_status` (location only).
        stub_status: bool,
        /// `internal` (location only).
        internal: bool,
        /// The rewrite module's script for this level (not inherited: nginx runs the server's
        /// script, then the location's).
        script: Vec<ScriptOp>,
    }
}

/// nginx's built-in `types` when none are configured.
fn default_types() -> Types {
    vec![
        ("html".into(), "text/html".into()),
        ("gif".into(), "image/gif".into()),
        ("jpg".into(), "image/jpeg".into()),
    ]
}
