//! One request's context, [`Req`]: what every step after the head needs (the configuration
//! generation, the connection and its facts, the parsed head, the request's variables, and the
//! conf of the location serving it), in one value instead of long parameter lists. A head comes
//! from `read_head`; [`start`] chooses the server, normalises `$uri`, builds the variables and
//! hands the request to the location loop (`locations::serve_request`). The access-log line is
//! written here too, once the request is done.

use std::net::SocketAddr;
use std::rc::Rc;

use super::answer::fail;
use super::handler::{Conn, State};
use super::locations::serve_request;
use crate::config::model::{HttpConf, LocConf, LocationMatch, ServerName};
use crate::http::realip::{self, RealIpHeader};
use crate::http::request::{RequestHead, Version};
use crate::http::script::{self, Level, Outcome};
use crate::http::status;
use crate::http::vars::{ConnFacts, RequestVars};
use crate::log;
use crate::shard::ShardCtx;
use crate::tls::client_auth::{optional_error, Mode};

/// A request being served, from its routing to its access-log line.
pub(super) struct Req<'a> {
    /// The configuration generation serving it (the connection's first request's, or the
    /// shard's current one after a reload).
    pub(super) ctx: &'a Rc<ShardCtx>,
    /// That generation's `http` section.
    pub(super) http: &'a HttpConf,
    pub(super) conn: &'a mut Conn,
    /// What the variables know of the connection (`$remote_addr`, `$server_name`, ...).
    pub(super) facts: &'a ConnFacts<'a>,
    pub(super) head: &'a RequestHead<'a, 'a>,
    /// Bytes read after the head: the start of the body, or the next pipelined request.
    pub(super) early: &'a [u8],
    pub(super) vars: RequestVars<'a>,
    /// The matched server (an index into `HttpConf::servers`).
    pub(super) server: usize,
    /// The conf of the location serving the request: the server's until a location is found,
    /// then the last one found (its `error_page`, `access_log`).
    pub(super) conf: &'a LocConf,
    /// That location's matcher (`SERVER_LEVEL` for none): what `proxy_pass` and `alias` replace.
    pub(super) matcher: &'a LocationMatch,
}

/// The matcher static files and `proxy_pass` use for the server level (no location matched).
pub(super) static SERVER_LEVEL: LocationMatch = LocationMatch::Named(String::new());

/// Chooses the server for a head read on `conn` (`early`: the bytes read after it), normalises
/// `$uri` and builds the request's variables, then serves it. `default_idx`: the address's
/// default server, whose `merge_slashes` normalises the URI, as nginx.
pub(super) async fn start(
    ctx: &Rc<ShardCtx>,
    http: &HttpConf,
    conn: &mut Conn,
    head: &RequestHead<'_, '_>,
    early: &[u8],
    default_idx: usize,
) -> State {
    let dconf = &http.servers[default_idx].conf;
    let Ok(sm) = ctx.proxy.router.server_for(conn.local, head.host) else {
        return fail(conn, 400, dconf).await;
    };
    let server = &http.servers[sm.server];
    let uri = match crate::route::uri::normalize(head.target.path, dconf.merge_slashes()) {
        Ok(u) => u,
        Err(_) => return fail(conn, 400, &server.conf).await,
    };
    // nginx's `$server_name` (and the `server:` of its log lines) is the first name as written.
    let server_name = server.names.first().map(ServerName::as_written);
    let tls = conn.stream.tls_info();
    // A copy: `Req` borrows the connection mutably (only PROXY protocol connections pay).
    let proxy_protocol = conn.proxy_protocol.clone();
    let facts = ConnFacts {
        remote: conn.peer,
        local: conn.local,
        tls: tls.as_ref().map(|t| t.facts()),
        server_name: server_name.as_deref().unwrap_or(""),
        connection: conn.id,
        requests: conn.requests as u64,
        hostname: &ctx.proxy.hostname,
        pid: ctx.proxy.pid,
        underscores_in_headers: server.conf.underscores_in_headers()
            || !server.conf.ignore_invalid_headers(),
        proxy_protocol: proxy_protocol.as_ref(),
    };
    let mut vars = RequestVars::new(head, &facts, &http.maps, uri, std::time::SystemTime::now());
    if let (Some(c), Some(host)) = (&sm.captures, head.host) {
        // As nginx's `ngx_http_find_virtual_server`: the name's captures (`$1`, named groups)
        // are the request's until another regex matches.
        vars.match_regex(c.regex(), &crate::route::host_name(host));
    }
    let mut req = Req {
        ctx,
        http,
        conn,
        facts: &facts,
        head,
        early,
        vars,
        server: sm.server,
        conf: &server.conf,
        matcher: &SERVER_LEVEL,
    };
    // nginx's post-read phase: the realip module with the server's settings.
    req.real_ip(&server.conf);
    serve_request(&mut req).await
}

impl<'a> Req<'a> {
    /// Answers with ringproxy's own page for `code` under the current location's conf.
    pub(super) async fn fail(&self, code: u16) -> State {
        fail(self.conn, code, self.conf).await
    }

    /// Runs a rewrite script on the request's variables, logging its steps under
    /// `rewrite_log on` (the location's flag for its script, the server's for the server's).
    /// A true `if` in a location makes its block's conf the request's from then on.
    pub(super) fn run_script(&mut self, conf: &'a LocConf, level: Level) -> Outcome {
        let script = &conf.script;
        let mut selected = None;
        let outcome = if !conf.rewrite_log() {
            script::run_logged(script, level, &mut self.vars, &mut |_| {}, &mut selected)
        } else {
            let (id, peer) = (self.conn.id, self.conn.peer);
            let mut notice = rewrite_log(id, peer, self.head, self.facts.server_name);
            script::run_logged(script, level, &mut self.vars, &mut notice, &mut selected)
        };
        if let Some(c) = selected {
            self.conf = c;
        }
        outcome
    }

    /// Writes the request's access-log line (nginx logs upgraded connections when they close;
    /// ringproxy logs them when the tunnel opens, with status 101).
    pub(super) fn log(&mut self) {
        let logs = self.conf.access_log.as_deref().unwrap_or(&[]);
        if logs.is_empty() {
            return;
        }
        let (conn, vars) = (&*self.conn, &mut self.vars);
        vars.response.status = conn.status.get();
        vars.response.bytes_sent = conn.sent.get();
        vars.response.gzip = conn.gzip_io.get();
        vars.response.body_bytes_sent = conn.sent.get().saturating_sub(conn.head_sent.get());
        vars.request_length = self
            .head
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum::<usize>() as u64;
        if let Err(e) = self.ctx.proxy.access.borrow_mut().log(logs, vars) {
            log!(Alert, "{e}");
        }
    }

    /// The realip module (`http::realip`) under `conf`: once an address is found it stays for
    /// the request, as nginx's module context does (internal redirects included).
    pub(super) fn real_ip(&mut self, conf: &LocConf) {
        let Some(from) = conf.set_real_ip_from.as_deref() else {
            return;
        };
        if self.vars.real.is_some() {
            return;
        }
        let named = |name: &str| {
            let mut all = self.head.headers.iter();
            all.find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let header = conf
            .real_ip_header
            .as_ref()
            .unwrap_or(&RealIpHeader::XRealIp);
        let pp = self.facts.proxy_protocol;
        let values: Vec<&[u8]> = match header {
            RealIpHeader::XRealIp => named("x-real-ip").into_iter().collect(),
            RealIpHeader::Other(name) => named(name).into_iter().collect(),
            RealIpHeader::XForwardedFor => {
                let all = self.head.headers.iter();
                let xff = all.filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"));
                xff.map(|h| h.value).collect()
            }
            RealIpHeader::ProxyProtocol => pp.map(|p| p.src_addr.as_bytes()).into_iter().collect(),
        };
        let recursive = conf.real_ip_recursive();
        let Some(mut found) = realip::forwarded(self.conn.peer.ip(), &values, from, recursive)
        else {
            return;
        };
        if let (RealIpHeader::ProxyProtocol, Some(p)) = (header, pp) {
            found.1 = p.src_port;
        }
        self.vars.real = Some(found);
    }

    /// nginx's client-certificate checks of a request on a TLS connection, under the
    /// `ssl_verify_client` of the server its Host chose (`ngx_http_set_virtual_server`,
    /// `ngx_http_process_request`): 421 when that server verifies certificates and the Host
    /// is not the name the handshake negotiated, 495 for a certificate that failed, 496 for
    /// none under `on`.
    pub(super) fn client_cert_error(&self) -> Option<u16> {
        let tls = self.facts.tls.as_ref()?;
        let conf = &self.http.servers[self.server].conf;
        // Borrowed: the accessor clones, and this runs for every request on TLS.
        let mode = Mode::parse(conf.ssl_verify_client.as_deref().unwrap_or("off"))?;
        let client = self.conn.peer.ip();
        if let (Some(sni), Some(host)) = (tls.server_name, self.head.host) {
            if !crate::route::host_name(host).eq_ignore_ascii_case(sni) {
                log!(Info, "client attempted to request the server name different from the one that was negotiated, client: {client}");
                return Some(421);
            }
        }
        match tls.client.map(|c| c.verdict) {
            Some(Err(f)) if mode != Mode::OptionalNoCa || !optional_error(f) => {
                log!(
                    Info,
                    "client SSL certificate verify error: ({}:{}), client: {client}",
                    f.0,
                    f.1
                );
                Some(status::CERT_ERROR)
            }
            None if mode == Mode::On => {
                log!(
                    Info,
                    "client sent no required SSL certificate, client: {client}"
                );
                Some(status::NO_CERT)
            }
            _ => None,
        }
    }

    /// A request header's value, when it is text.
    pub(super) fn header(&self, name: &str) -> Option<&'a str> {
        header_str(self.head, name)
    }
}

/// `rewrite_log on`: the rewrite script's notices with nginx's request context.
fn rewrite_log<'a>(
    id: u64,
    peer: SocketAddr,
    head: &'a RequestHead<'_, '_>,
    server: &'a str,
) -> impl FnMut(&str) + 'a {
    move |m| {
        let v = if head.version == Version::Http10 {
            0
        } else {
            1
        };
        let host = header_str(head, "host").map_or(String::new(), |h| format!(", host: \"{h}\""));
        log!(
            Notice,
            "*{} {m}, client: {}, server: {server}, request: \"{} {} HTTP/1.{v}\"{host}",
            id,
            peer.ip(),
            head.method,
            head.target.raw
        );
    }
}

fn header_str<'b>(head: &RequestHead<'_, 'b>, name: &str) -> Option<&'b str> {
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}
