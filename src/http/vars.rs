//! Per-request variables: nginx's `$name` values, `map` and `set`, and template rendering.
//!
//! Place in the data flow: request head -> route -> **variables** -> rewrite script
//! ([`super::script`]) -> upstream request (`proxy::request`) -> response -> access log. A
//! [`RequestVars`] is built once the head is parsed and the server/location chosen; it borrows the
//! head, the connection facts and the configuration, so reading `$http_upgrade` copies nothing.
//! Values that must be formatted (`$remote_addr`, `$msec`) are written straight into the caller's
//! buffer by [`RequestVars::render`]. `map` values are computed on first use and cached for the
//! request (unless `volatile`), as nginx does.
//!
//! nginx 1.22 rules kept here (observed on nginx 1.22 by hand): `$http_NAME` takes the first
//! header whose name, lowercased with `-` as `_`, equals NAME, except `$http_x_forwarded_for`
//! (all values joined with `, `) and `$http_cookie` (joined with `; `); `$cookie_NAME` and
//! `$arg_NAME` compare names case-insensitively and take the first match; `$host` is the
//! validated Host (lowercase, no port, no trailing dot) or the server's name; a `map` regex that
//! matches replaces the request's captures (`$1` read later sees them, an nginx quirk).

use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use super::request::{RequestHead, Version};
pub use super::time::{format_msec, local_time, CivilTime};
use crate::config::model::{MapConf, ProxyPass, Regex};
use crate::config::template::{Part, Template};

/// The nginx version whose behaviour ringproxy follows: the value of `$nginx_version`.
pub const NGINX_VERSION: &str = "1.22.1";

/// How deep `map` variables may refer to other `map` variables before the evaluation gives up
/// (nginx: "cycle while evaluating variable"); the value is then empty.
const MAX_DEPTH: u8 = 16;

/// Facts about the client connection, owned by the engine.
#[derive(Clone, Debug)]
pub struct ConnFacts<'a> {
    /// The client's address (`$remote_addr`, `$remote_port`).
    pub remote: SocketAddr,
    /// The address the client connected to (`$server_addr`, `$server_port`).
    pub local: SocketAddr,
    /// TLS details when the connection is TLS (`$https`, `$scheme`, `$ssl_*`).
    pub tls: Option<TlsFacts<'a>>,
    /// The first `server_name` of the matched server (`$server_name`; `""` when none).
    pub server_name: &'a str,
    /// Connection serial number (`$connection`).
    pub connection: u64,
    /// Requests on this connection so far, this one included (`$connection_requests`).
    pub requests: u64,
    /// `gethostname()` (`$hostname`).
    pub hostname: &'a str,
    /// Process id (`$pid`).
    pub pid: u32,
    /// `underscores_in_headers`: when off, headers with `_` in their name do not exist for
    /// `$http_*` (nginx ignores them).
    pub underscores_in_headers: bool,
    /// The PROXY protocol header's addresses (`$proxy_protocol_*`).
    pub proxy_protocol: Option<&'a super::proxy_protocol::ProxyAddrs>,
}

/// TLS facts of a connection.
#[derive(Clone, Debug, Default)]
pub struct TlsFacts<'a> {
    /// `$ssl_protocol` (`TLSv1.3`).
    pub protocol: &'a str,
    /// `$ssl_cipher`, in OpenSSL's naming.
    pub cipher: &'a str,
    /// `$ssl_server_name` (SNI).
    pub server_name: Option<&'a str>,
    /// `$ssl_session_reused`: the handshake resumed a session.
    pub session_reused: bool,
    /// The client's certificate, when it sent one (`$ssl_client_*`).
    pub client: Option<&'a crate::tls::peer::PeerCert>,
}

/// The upstream side, filled in by the proxy as it learns it (`$proxy_*`, `$upstream_*`).
#[derive(Clone, Debug, Default)]
pub struct UpstreamFacts {
    /// `$proxy_host`: the `proxy_pass` host as nginx writes it in `Host`.
    pub proxy_host: String,
    /// `$proxy_port`.
    pub proxy_port: String,
    /// `$upstream_addr` (every peer tried, `, `-separated, as nginx writes it).
    pub addr: String,
    /// `$upstream_status`.
    pub status: String,
    /// `$upstream_connect_time`.
    pub connect_time: String,
    /// `$upstream_header_time`.
    pub header_time: String,
    /// `$upstream_response_time`.
    pub response_time: String,
    /// `$upstream_bytes_received`.
    pub bytes_received: String,
    /// `$upstream_bytes_sent`.
    pub bytes_sent: String,
    /// The upstream response's headers (`$upstream_http_*`).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl UpstreamFacts {
    /// `$proxy_host`/`$proxy_port` of a `proxy_pass` (nginx's `ngx_http_proxy_set_vars`: the
    /// scheme's default port is left out of the host).
    pub fn for_proxy_pass(pass: &ProxyPass) -> UpstreamFacts {
        if pass.host.starts_with("unix:") {
            // nginx's `$proxy_host` for a unix socket, with no port.
            return UpstreamFacts {
                proxy_host: "localhost".to_string(),
                ..UpstreamFacts::default()
            };
        }
        let default = if pass.tls { "443" } else { "80" };
        let (host, port) = split_port(&pass.host);
        let (proxy_host, proxy_port) = match port {
            Some(p) if p != default => (pass.host.clone(), p.to_string()),
            _ => (host.to_string(), default.to_string()),
        };
        UpstreamFacts {
            proxy_host,
            proxy_port,
            ..UpstreamFacts::default()
        }
    }
}

fn split_port(host: &str) -> (&str, Option<&str>) {
    let after_literal = host.rfind(']').map_or(0, |i| i + 1);
    match host[after_literal..].rfind(':') {
        Some(i) => (
            &host[..after_literal + i],
            Some(&host[after_literal + i + 1..]),
        ),
        None => (host, None),
    }
}

/// What the response side reports (`$status`, `$body_bytes_sent`, `$sent_http_*`).
#[derive(Clone, Debug, Default)]
pub struct ResponseFacts {
    /// Status sent (0: none yet, written `000` as nginx does).
    pub status: u16,
    /// Body bytes sent.
    pub body_bytes_sent: u64,
    /// All bytes sent.
    pub bytes_sent: u64,
    /// Headers sent to the client.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body bytes in and out of gzip, when the response was compressed (`$gzip_ratio`).
    pub gzip: Option<(u64, u64)>,
    /// `WWW-Authenticate` of an access check's 401.
    pub www_authenticate: Option<Vec<u8>>,
}

/// Where a value lives, so lookups can borrow the request buffer instead of copying it.
enum Val<'a> {
    None,
    Bytes(&'a [u8]),
    Written,
    Set(usize),
    Map(usize),
}

/// The variables of one request. See the module doc.
pub struct RequestVars<'a> {
    head: &'a RequestHead<'a, 'a>,
    conn: &'a ConnFacts<'a>,
    maps: &'a [MapConf],
    uri: Cow<'a, str>,
    args: Option<Cow<'a, str>>,
    uri_changed: bool,
    location_valid: bool,
    captures: Vec<(usize, usize)>,
    subject: String,
    sets: Vec<(String, Vec<u8>)>,
    map_cache: Vec<Option<Vec<u8>>>,
    depth: u8,
    /// When the request's first byte arrived (`$request_time`).
    pub start: SystemTime,
    /// The clock for `$msec`, `$time_*` and `$request_time`; `None` reads the system clock.
    pub now: Option<SystemTime>,
    /// Offset of local time from UTC in seconds, for `$time_local` and `$time_iso8601`.
    pub utc_offset: i32,
    /// `$request_id` (16 random bytes from the engine, written as hex).
    pub request_id: [u8; 16],
    /// `$request_length` (head and body bytes read; the head length until the body is read).
    pub request_length: u64,
    /// `$document_root` of the location, when it has one.
    pub document_root: Option<std::borrow::Cow<'a, std::path::Path>>,
    /// How `$request_filename` maps `$uri` under `document_root`: `None` for `root` (the whole
    /// URI is appended), `Some(n)` for `alias` (the first `n` bytes are replaced; `usize::MAX`
    /// in a regex location: the alias is the whole path).
    pub alias_prefix: Option<usize>,
    /// Upstream facts, once known.
    pub upstream: UpstreamFacts,
    /// Response facts, once known.
    pub response: ResponseFacts,
    /// The client's address found by the realip module: `$remote_addr` and `$remote_port`
    /// (port 0: none) for this request; the connection's stays in `$realip_remote_*`.
    pub real: Option<super::realip::Found>,
    /// `$limit_req_status` and `$limit_conn_status`, once the modules have decided.
    pub limits: LimitStatus,
}

/// What the limit_req and limit_conn modules decided for a request (nginx's words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitStatus {
    /// `PASSED`, `DELAYED`, `REJECTED`, `DELAYED_DRY_RUN` or `REJECTED_DRY_RUN`.
    pub req: Option<&'static str>,
    /// `PASSED`, `REJECTED` or `REJECTED_DRY_RUN`.
    pub conn: Option<&'static str>,
}

impl<'a> RequestVars<'a> {
    /// Variables for `head` on `conn`, with `maps` from `http { }`. `uri` is the normalised,
    /// decoded path the router matched (`$uri`); the args start as the target's query.
    pub fn new(
        head: &'a RequestHead<'a, 'a>,
        conn: &'a ConnFacts<'a>,
        maps: &'a [MapConf],
        uri: Cow<'a, str>,
        start: SystemTime,
    ) -> RequestVars<'a> {
        RequestVars {
            head,
            conn,
            maps,
            uri,
            args: head.target.query.map(Cow::Borrowed),
            uri_changed: false,
            location_valid: true,
            captures: Vec::new(),
            subject: String::new(),
            sets: Vec::new(),
            map_cache: vec![None; maps.len()],
            depth: 0,
            start,
            now: None,
            utc_offset: 0,
            request_id: [0; 16],
            request_length: 0,
            document_root: None,
            alias_prefix: None,
            upstream: UpstreamFacts::default(),
            response: ResponseFacts::default(),
            real: None,
            limits: LimitStatus::default(),
        }
    }

    /// The request head.
    pub fn head(&self) -> &'a RequestHead<'a, 'a> {
        self.head
    }

    /// The connection facts.
    pub fn conn(&self) -> &'a ConnFacts<'a> {
        self.conn
    }

    /// `$remote_addr`: the realip module's address, else the connection's.
    pub fn remote_ip(&self) -> IpAddr {
        self.real.map_or(self.conn.remote.ip(), |r| r.0)
    }

    /// `$uri`: the current (normalised, possibly rewritten) URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// `$args` (`None`: the request has no `?`).
    pub fn args(&self) -> Option<&str> {
        self.args.as_deref()
    }

    /// Whether a rewrite changed the URI: the original `$request_uri` is then no longer what
    /// the proxy sends (nginx's `valid_unparsed_uri` cleared).
    pub fn uri_changed(&self) -> bool {
        self.uri_changed
    }

    /// Whether the client's raw path had `%` escapes (nginx's `quoted_uri`): the decoded `$uri`
    /// is then escaped again when the proxy sends it.
    pub fn quoted_uri(&self) -> bool {
        self.head.target.path.contains('%')
    }

    /// Replaces the URI and args (a rewrite or an internal redirect). `args: None` keeps the
    /// current args, `Some(None)` drops them.
    pub fn set_uri(&mut self, uri: String, args: Option<Option<String>>) {
        self.uri = Cow::Owned(uri);
        if let Some(a) = args {
            self.args = a.filter(|a| !a.is_empty()).map(Cow::Owned);
        }
        self.uri_changed = true;
    }

    /// Whether the location's prefix still describes `$uri` (nginx's `valid_location`): a
    /// `rewrite ... break` clears it, so `proxy_pass` with a URI part then sends `$uri` whole.
    pub fn location_valid(&self) -> bool {
        self.location_valid
    }

    /// Sets [`Self::location_valid`]: the router sets it after matching a location, the script
    /// clears it on `rewrite ... break`.
    pub fn set_location_valid(&mut self, valid: bool) {
        self.location_valid = valid;
    }

    /// `set $name value` (`$args` is writable, as in nginx).
    pub fn set_var(&mut self, name: &str, value: Vec<u8>) {
        if name == "args" {
            self.args = Some(Cow::Owned(String::from_utf8_lossy(&value).into_owned()));
            return;
        }
        match self.sets.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.sets.push((name.to_string(), value)),
        }
    }

    /// Runs `re` on `subject`; on a match the captures (`$0`..`$9`) and named groups (as
    /// variables) become the request's, as nginx's `ngx_http_regex_exec` does.
    pub fn match_regex(&mut self, re: &Regex, subject: &str) -> bool {
        let Some(found) = re.exec(subject.as_bytes()) else {
            return false;
        };
        self.captures.clear();
        for i in 0..re.captures_len() {
            self.captures
                .push(found.get(i).unwrap_or((usize::MAX, usize::MAX)));
        }
        self.subject.clear();
        self.subject.push_str(subject);
        for (i, name) in re.names() {
            if let Some((s, e)) = found.get(i) {
                let value = subject.as_bytes()[s..e].to_vec();
                self.set_var(&name.to_ascii_lowercase(), value);
            }
        }
        true
    }

    /// Capture `n` of the last match (`$n`), if it took part. Bytes: a group may end inside a
    /// character (nginx's regexes are not in UTF mode).
    pub fn capture(&self, n: usize) -> Option<&[u8]> {
        let &(s, e) = self.captures.get(n)?;
        self.subject.as_bytes().get(s..e)
    }

    /// The value of `$name` (lowercase, without `$`), or `None` when the variable has no value
    /// (nginx's "not found", rendered as empty).
    pub fn get(&mut self, name: &str) -> Option<Cow<'_, [u8]>> {
        let mut buf = Vec::new();
        match self.eval(name, &mut buf) {
            Val::None => None,
            Val::Bytes(b) => Some(Cow::Borrowed(b)),
            Val::Written => Some(Cow::Owned(buf)),
            Val::Set(i) => Some(Cow::Borrowed(&self.sets[i].1)),
            Val::Map(i) => self.map_cache[i].as_deref().map(Cow::Borrowed),
        }
    }

    /// Appends the value of `t` to `out`.
    pub fn render(&mut self, t: &Template, out: &mut Vec<u8>) {
        for p in &t.parts {
            match p {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Var(name) => self.append_var(name, out),
                Part::Capture(n) => {
                    if let Some(c) = self.capture(usize::from(*n)) {
                        out.extend_from_slice(c);
                    }
                }
            }
        }
    }

    /// Appends the value of `$name` to `out` (nothing when it has none).
    pub fn append_var(&mut self, name: &str, out: &mut Vec<u8>) {
        match self.eval(name, out) {
            Val::None | Val::Written => {}
            Val::Bytes(b) => out.extend_from_slice(b),
            Val::Set(i) => out.extend_from_slice(&self.sets[i].1),
            Val::Map(i) => {
                if let Some(v) = &self.map_cache[i] {
                    out.extend_from_slice(v);
                }
            }
        }
    }

    fn eval(&mut self, name: &str, out: &mut Vec<u8>) -> Val<'a> {
        if let Some(i) = self.sets.iter().position(|(n, _)| n == name) {
            return Val::Set(i);
        }
        if let Some(i) = self.maps.iter().position(|m| m.variable == name) {
            return self.eval_map(i, out);
        }
        if let Some(v) = self.builtin(name, out) {
            return v;
        }
        self.prefixed(name, out)
    }

    fn builtin(&mut self, name: &str, out: &mut Vec<u8>) -> Option<Val<'a>> {
        let head = self.head;
        let conn = self.conn;
        let bytes = |s: &'a str| Val::Bytes(s.as_bytes());
        macro_rules! w {
            ($($t:tt)*) => {{
                let _ = write!(out, $($t)*);
                Val::Written
            }};
        }
        Some(match name {
            "args" | "query_string" => match &self.args {
                Some(a) => w!("{a}"),
                None => Val::None,
            },
            "is_args" => match self.args.as_deref() {
                Some(a) if !a.is_empty() => bytes("?"),
                _ => bytes(""),
            },
            "uri" | "document_uri" => w!("{}", self.uri),
            "request_uri" => bytes(head.target.raw),
            "request" => w!(
                "{} {} {}",
                head.method,
                head.target.raw,
                protocol(head.version)
            ),
            "request_method" => bytes(head.method),
            "server_protocol" => bytes(protocol(head.version)),
            "scheme" => bytes(if conn.tls.is_some() { "https" } else { "http" }),
            "https" => bytes(if conn.tls.is_some() { "on" } else { "" }),
            "host" => match head.host {
                Some(h) if h.bytes().any(|c| c.is_ascii_uppercase()) => {
                    w!("{}", h.to_ascii_lowercase())
                }
                Some(h) => bytes(h),
                None => bytes(conn.server_name),
            },
            "server_name" => bytes(conn.server_name),
            "hostname" => bytes(conn.hostname),
            "pid" => w!("{}", conn.pid),
            "nginx_version" => bytes(NGINX_VERSION),
            "remote_addr" => w!("{}", self.remote_ip()),
            "remote_port" => match self.real.map_or(conn.remote.port(), |r| r.1) {
                0 => bytes(""),
                p => w!("{p}"),
            },
            "limit_req_status" => self.limits.req.map_or(Val::None, bytes),
            "limit_conn_status" => self.limits.conn.map_or(Val::None, bytes),
            // As nginx: from any `Authorization: Basic` header, with or without auth_basic.
            "remote_user" => match head
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                .and_then(|h| super::basic_auth::credentials(h.value))
            {
                Some((user, _)) => {
                    out.extend_from_slice(&user);
                    Val::Written
                }
                None => Val::None,
            },
            "realip_remote_addr" => w!("{}", conn.remote.ip()),
            "realip_remote_port" => w!("{}", conn.remote.port()),
            "proxy_protocol_addr"
            | "proxy_protocol_port"
            | "proxy_protocol_server_addr"
            | "proxy_protocol_server_port" => match conn.proxy_protocol {
                None => Val::None,
                Some(p) => match &name[15..] {
                    "addr" => bytes(&p.src_addr),
                    "port" => w!("{}", p.src_port),
                    "server_addr" => bytes(&p.dst_addr),
                    _ => w!("{}", p.dst_port),
                },
            },
            "binary_remote_addr" => {
                match self.remote_ip() {
                    IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                    IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                }
                Val::Written
            }
            "server_addr" => w!("{}", conn.local.ip()),
            "server_port" => w!("{}", conn.local.port()),
            "connection" => w!("{}", conn.connection),
            "connection_requests" => w!("{}", conn.requests),
            "content_length" => head.header("content-length").map_or(Val::None, Val::Bytes),
            "content_type" => head.header("content-type").map_or(Val::None, Val::Bytes),
            "document_root" => match &self.document_root {
                Some(r) => w!("{}", r.display()),
                None => Val::None,
            },
            "request_filename" => match self.document_root.as_deref().map(std::path::Path::display)
            {
                Some(r) => {
                    let rest = match self.alias_prefix {
                        None => Some(&*self.uri),
                        Some(usize::MAX) => Some(""),
                        Some(n) => self.uri.get(n..),
                    };
                    match rest {
                        Some(rest) => w!("{r}{rest}"),
                        None => Val::None,
                    }
                }
                None => Val::None,
            },
            "proxy_add_x_forwarded_for" => {
                if join_headers(head, "x-forwarded-for", b", ", out) {
                    out.extend_from_slice(b", ");
                }
                let _ = write!(out, "{}", self.remote_ip());
                Val::Written
            }
            "request_id" => {
                for b in self.request_id {
                    let _ = write!(out, "{b:02x}");
                }
                Val::Written
            }
            "request_length" => w!("{}", self.request_length),
            "gzip_ratio" => match self.response.gzip {
                Some((zin, zout)) if zout > 0 => w!("{}", crate::proxy::gzip::ratio(zin, zout)),
                _ => Val::None,
            },
            "msec" => {
                let d = self.now().duration_since(UNIX_EPOCH).unwrap_or_default();
                w!("{}.{:03}", d.as_secs(), d.subsec_millis())
            }
            "request_time" => {
                let d = self.now().duration_since(self.start).unwrap_or_default();
                w!("{}.{:03}", d.as_secs(), d.subsec_millis())
            }
            "time_local" | "time_iso8601" => {
                let t = local_time(self.now(), self.utc_offset);
                if name == "time_local" {
                    t.write_clf(out);
                } else {
                    t.write_iso8601(out);
                }
                Val::Written
            }
            "status" => w!("{:03}", self.response.status),
            "body_bytes_sent" => w!("{}", self.response.body_bytes_sent),
            "bytes_sent" => w!("{}", self.response.bytes_sent),
            "ssl_protocol" => conn.tls.as_ref().map_or(Val::None, |t| bytes(t.protocol)),
            "ssl_cipher" => conn.tls.as_ref().map_or(Val::None, |t| bytes(t.cipher)),
            // Early data (0-RTT) is never accepted (`ssl_early_data`): on TLS the value is
            // nginx's empty one, never its "1".
            "ssl_early_data" => conn.tls.as_ref().map_or(Val::None, |_| bytes("")),
            "ssl_session_reused" => conn.tls.as_ref().map_or(Val::None, |t| {
                bytes(if t.session_reused { "r" } else { "." })
            }),
            "ssl_server_name" => conn
                .tls
                .as_ref()
                .and_then(|t| t.server_name)
                .map_or(Val::None, bytes),
            n if n.starts_with("ssl_client_") => match &conn.tls {
                None => Val::None,
                Some(t) => {
                    let now = self
                        .now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    if !crate::tls::peer::write(n, t.client, now as i64, out) {
                        return None;
                    }
                    Val::Written
                }
            },
            "proxy_host" => owned(&self.upstream.proxy_host, out),
            "proxy_port" => owned(&self.upstream.proxy_port, out),
            "upstream_addr" => owned(&self.upstream.addr, out),
            "upstream_status" => owned(&self.upstream.status, out),
            "upstream_connect_time" => owned(&self.upstream.connect_time, out),
            "upstream_header_time" => owned(&self.upstream.header_time, out),
            "upstream_response_time" => owned(&self.upstream.response_time, out),
            "upstream_bytes_received" => owned(&self.upstream.bytes_received, out),
            "upstream_bytes_sent" => owned(&self.upstream.bytes_sent, out),
            _ => return None,
        })
    }

    fn prefixed(&mut self, name: &str, out: &mut Vec<u8>) -> Val<'a> {
        let head = self.head;
        if let Some(h) = name.strip_prefix("http_") {
            let joined = match h {
                "x_forwarded_for" => Some(&b", "[..]),
                "cookie" => Some(&b"; "[..]),
                _ => None,
            };
            if let Some(sep) = joined {
                let name = if h == "cookie" {
                    "cookie"
                } else {
                    "x-forwarded-for"
                };
                return match head
                    .headers
                    .iter()
                    .filter(|x| x.name.eq_ignore_ascii_case(name))
                    .count()
                {
                    0 => Val::None,
                    1 => head.header(name).map_or(Val::None, Val::Bytes),
                    _ => {
                        join_headers(head, name, sep, out);
                        Val::Written
                    }
                };
            }
            let underscores = self.conn.underscores_in_headers;
            return head
                .headers
                .iter()
                .filter(|x| underscores || !x.name.contains('_'))
                .find(|x| header_is_var(x.name, h))
                .map_or(Val::None, |x| Val::Bytes(x.value));
        }
        if let Some(arg) = name.strip_prefix("arg_") {
            return match self.args.as_deref().and_then(|a| find_arg(a, arg)) {
                Some((s, e)) => match &self.args {
                    Some(Cow::Borrowed(a)) => Val::Bytes(&a.as_bytes()[s..e]),
                    Some(Cow::Owned(a)) => {
                        out.extend_from_slice(&a.as_bytes()[s..e]);
                        Val::Written
                    }
                    None => Val::None,
                },
                None => Val::None,
            };
        }
        if let Some(c) = name.strip_prefix("cookie_") {
            return head
                .headers
                .iter()
                .filter(|x| x.name.eq_ignore_ascii_case("cookie"))
                .find_map(|x| find_cookie(x.value, c.as_bytes()))
                .map_or(Val::None, Val::Bytes);
        }
        if let Some(h) = name.strip_prefix("sent_http_") {
            return response_header(&self.response.headers, h, out);
        }
        if let Some(h) = name.strip_prefix("upstream_http_") {
            return response_header(&self.upstream.headers, h, out);
        }
        Val::None
    }

    /// The request's clock (the system clock unless a test fixed it).
    pub fn now(&self) -> SystemTime {
        self.now.unwrap_or_else(SystemTime::now)
    }

    fn eval_map(&mut self, i: usize, out: &mut Vec<u8>) -> Val<'a> {
        if self.map_cache[i].is_some() {
            return Val::Map(i);
        }
        if self.depth >= MAX_DEPTH {
            return Val::None;
        }
        let map: &'a MapConf = &self.maps[i];
        self.depth += 1;
        let mut key_buf = Vec::new();
        let key = self.source(&map.source, &mut key_buf);
        let mut value = Vec::new();
        let chosen = self.lookup_map(map, &key);
        self.render(chosen, &mut value);
        self.depth -= 1;
        if map.volatile {
            out.extend_from_slice(&value);
            return Val::Written;
        }
        self.map_cache[i] = Some(value);
        Val::Map(i)
    }

    /// The value of a map's source template: borrowed from the request when it is one
    /// variable that lives there (`$http_upgrade`), else rendered into `scratch`.
    fn source(&mut self, t: &Template, scratch: &mut Vec<u8>) -> Cow<'a, [u8]> {
        if let [Part::Var(name)] = t.parts.as_slice() {
            if let Val::Bytes(b) = self.eval(name, scratch) {
                return Cow::Borrowed(b);
            }
            scratch.clear();
        }
        self.render(t, scratch);
        Cow::Owned(std::mem::take(scratch))
    }

    fn lookup_map(&mut self, map: &'a MapConf, key: &[u8]) -> &'a Template {
        let mut key = key;
        if map.hostnames {
            if let [rest @ .., b'.'] = key {
                key = rest;
            }
        }
        if let Some((_, v)) = map
            .exact
            .iter()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(key))
        {
            return v;
        }
        if map.hostnames && !key.is_empty() {
            if let Some(v) = wildcard(&map.wildcards, key) {
                return v;
            }
        }
        if !key.is_empty() {
            if let Ok(s) = std::str::from_utf8(key) {
                for (re, v) in &map.regexes {
                    if self.match_regex(re, s) {
                        return v;
                    }
                }
            }
        }
        &map.default
    }
}

fn owned<'a>(s: &str, out: &mut Vec<u8>) -> Val<'a> {
    if s.is_empty() {
        return Val::None;
    }
    out.extend_from_slice(s.as_bytes());
    Val::Written
}

/// `HTTP/1.1` or `HTTP/1.0` (`$server_protocol`).
pub fn protocol(v: Version) -> &'static str {
    match v {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    }
}

/// Whether header `name` is the one `$http_<var>` names: lowercase, `-` read as `_`.
pub fn header_is_var(name: &str, var: &str) -> bool {
    name.len() == var.len()
        && name.bytes().zip(var.bytes()).all(|(h, v)| {
            let h = if h == b'-' {
                b'_'
            } else {
                h.to_ascii_lowercase()
            };
            h == v
        })
}

/// Appends every value of header `name` joined by `sep`; whether any was found.
fn join_headers(head: &RequestHead<'_, '_>, name: &str, sep: &[u8], out: &mut Vec<u8>) -> bool {
    let mut any = false;
    for h in head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
    {
        if any {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(h.value);
        any = true;
    }
    any
}

fn response_header<'a>(headers: &[(String, Vec<u8>)], var: &str, out: &mut Vec<u8>) -> Val<'a> {
    let mut found = headers.iter().filter(|(n, _)| header_is_var(n, var));
    let Some((_, first)) = found.next() else {
        return Val::None;
    };
    out.extend_from_slice(first);
    // nginx 1.22 joins these two with ", "; every other header is its first value.
    if var == "cache_control" || var == "link" {
        for (_, v) in found {
            out.extend_from_slice(b", ");
            out.extend_from_slice(v);
        }
    }
    Val::Written
}

/// nginx's `ngx_http_arg`: the first `name=` (case-insensitive) at the start of the args or
/// after `&`; the value runs to the next `&`. Returns the value's byte range.
pub fn find_arg(args: &str, name: &str) -> Option<(usize, usize)> {
    let a = args.as_bytes();
    let n = name.as_bytes();
    if n.is_empty() || a.len() <= n.len() {
        return None;
    }
    for p in 0..a.len() - n.len() {
        if (p == 0 || a[p - 1] == b'&')
            && a[p..p + n.len()].eq_ignore_ascii_case(n)
            && a[p + n.len()] == b'='
        {
            let start = p + n.len() + 1;
            let end = a[start..]
                .iter()
                .position(|&c| c == b'&')
                .map_or(a.len(), |e| start + e);
            return Some((start, end));
        }
    }
    None
}

/// nginx 1.22's `ngx_http_parse_multi_header_lines` on one Cookie value: `name` (compared
/// case-insensitively) at the start or after `;`/`,` and spaces, then optional spaces, `=`,
/// spaces; the value runs to the next `;` (trailing spaces kept, as nginx does).
pub fn find_cookie<'v>(value: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    let end = value.len();
    let mut start = 0;
    while start < end {
        let rest = &value[start..];
        if rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name) {
            let mut p = start + name.len();
            while p < end && value[p] == b' ' {
                p += 1;
            }
            if p < end && value[p] == b'=' {
                p += 1;
                while p < end && value[p] == b' ' {
                    p += 1;
                }
                let last = value[p..]
                    .iter()
                    .position(|&c| c == b';')
                    .map_or(end, |e| p + e);
                return Some(&value[p..last]);
            }
        }
        while start < end {
            let c = value[start];
            start += 1;
            if c == b';' || c == b',' {
                break;
            }
        }
        while start < end && value[start] == b' ' {
            start += 1;
        }
    }
    None
}

/// The longest `hostnames` wildcard matching `key`: `*.example.com` matches names below it,
/// `.example.com` also the bare name, `www.example.*` names above it. Leading wildcards win over
/// trailing ones, as in nginx's combined hash.
pub(crate) fn wildcard<'m>(list: &'m [(String, Template)], key: &[u8]) -> Option<&'m Template> {
    let mut best: Option<(usize, &Template)> = None;
    for (k, v) in list {
        let k = k.as_bytes();
        let len = if let Some(suffix) = k.strip_prefix(b"*") {
            (key.len() > suffix.len() && ends_with_ci(key, suffix)).then_some(suffix.len())
        } else if let Some(bare) = k.strip_prefix(b".") {
            (key.eq_ignore_ascii_case(bare) || (key.len() > k.len() && ends_with_ci(key, k)))
                .then_some(k.len())
        } else {
            None
        };
        if let Some(len) = len {
            if best.is_none_or(|(l, _)| len > l) {
                best = Some((len, v));
            }
        }
    }
    if let Some((_, v)) = best {
        return Some(v);
    }
    list.iter()
        .filter_map(|(k, v)| {
            let prefix = k.as_bytes().strip_suffix(b"*")?;
            (key.len() > prefix.len() && key[..prefix.len()].eq_ignore_ascii_case(prefix))
                .then_some((prefix.len(), v))
        })
        .max_by_key(|(l, _)| *l)
        .map(|(_, v)| v)
}

fn ends_with_ci(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}
