//! One stream session, from accept to the access-log line: PROXY protocol header in, preread,
//! `proxy_pass`, peer pick and connect (with `proxy_next_upstream`), PROXY protocol header
//! out, the tunnel, and the log. nginx's `ngx_stream_proxy_module` phases in one function, in
//! its order; its error-log wording.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::preread::{self, Parse};
use super::vars::SessionVars;
use super::ShardStream;
use crate::config::model::{Balance, SpliceMode};
use crate::config::stream::{StreamConf, StreamLevel, StreamPass, StreamServer};
use crate::log;
use crate::proxy::conn::{read_now, until, Stream};
use crate::proxy::tunnel::{self, Path, TunnelConfig};
use crate::shard::listener::ListenSpec;
use crate::shard::{ConnGuard, ShardCtx};
use crate::upstream::balancer::{Outcome as PeerOutcome, PickState};

/// nginx's `proxy_protocol_timeout` default: how long a PROXY header may take to arrive.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest PROXY header read (v2 with TLVs fits).
const PROXY_HEADER_MAX: usize = 4096;

/// Serves one connection accepted on a stream address.
pub async fn serve(
    gen: Rc<ShardCtx>,
    guard: ConnGuard,
    spec: ListenSpec,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let _guard = guard;
    let (Some(stream), Some(shard)) = (gen.config.stream.as_ref(), gen.proxy.stream.as_ref())
    else {
        return;
    };
    if crate::proxy::io::set_nonblocking(&tcp).is_err() {
        return;
    }
    let _ = tcp.set_nodelay(true);
    let local = if spec.addr.ip().is_unspecified() {
        tcp.local_addr().unwrap_or(spec.addr)
    } else {
        spec.addr
    };
    let listens_on = |s: &&StreamServer, a: SocketAddr| s.listen.iter().any(|l| l.addr == a);
    let Some(server) = stream
        .servers
        .iter()
        .find(|s| listens_on(s, local))
        .or_else(|| stream.servers.iter().find(|s| listens_on(s, spec.addr)))
    else {
        return;
    };
    let id = gen.proxy.next_connection_id();
    let mut vars = SessionVars::new(peer, local, id, &gen.proxy.hostname, &stream.maps);
    let s = Session {
        gen: &gen,
        shard,
        stream,
        server,
        conf: &server.conf,
    };
    vars.status = s.run(&spec, tcp, &mut vars).await;
    let logs = server.conf.access_log.as_deref().unwrap_or(&[]);
    if !logs.is_empty() {
        if let Err(e) = shard.access.borrow_mut().log(logs, &mut vars) {
            log!(Alert, "{e}");
        }
    }
}

struct Session<'a> {
    gen: &'a Rc<ShardCtx>,
    shard: &'a ShardStream,
    stream: &'a StreamConf,
    server: &'a StreamServer,
    conf: &'a StreamLevel,
}

/// Where `proxy_pass` sends a session.
enum Target {
    Group(usize),
    Address(SocketAddr),
}

impl Session<'_> {
    /// The session's phases; returns `$status`.
    async fn run(&self, spec: &ListenSpec, tcp: TcpStream, vars: &mut SessionVars<'_>) -> u16 {
        let (peer, local) = (vars.remote, vars.local);
        if spec.listen.proxy_protocol {
            let deadline = Instant::now() + PROXY_HEADER_TIMEOUT;
            let read =
                crate::proxy::proxy_header::read(&tcp, PROXY_HEADER_MAX, deadline, peer, local);
            match read.await {
                Some(addrs) => vars.proxy_protocol = addrs,
                None => return 400,
            }
        }
        let mut first = Vec::new();
        if self.conf.ssl_preread() {
            match self.preread(&tcp, &mut first, vars).await {
                Ok(()) => {}
                Err(status) => {
                    vars.received = first.len() as u64;
                    return status;
                }
            }
        }
        vars.received = first.len() as u64;
        if let Some(StreamPass::Return(t)) = &self.server.proxy_pass {
            let mut text = Vec::new();
            vars.render(t, &mut text);
            let client = Stream::Plain(tcp);
            if client.write_all(&text, self.conf.timeout()).await.is_ok() {
                vars.sent = text.len() as u64;
            }
            return 200;
        }
        let target = match self.target(vars) {
            Ok(t) => t,
            Err(status) => return status,
        };
        let Some((upstream, picked)) = self.connect(target, vars).await else {
            return 502;
        };
        let upstream = Stream::Plain(upstream);
        let client = Stream::Plain(tcp);
        let timeout = self.conf.timeout();
        let mut head = Vec::new();
        if self.conf.proxy_protocol() {
            head = proxy_v1(peer, local).into_bytes();
        }
        head.extend_from_slice(&first);
        let mut up_sent = 0u64;
        if !head.is_empty() {
            if let Err(e) = upstream.write_all(&head, timeout).await {
                log!(
                    Info,
                    "{e} while proxying to upstream, client: {}, server: {local}",
                    peer.ip()
                );
                vars.upstream_sent.push(0);
                vars.upstream_received.push(0);
                self.release(picked);
                return 200;
            }
            up_sent = head.len() as u64;
        }
        let path = match self.conf.splice() {
            SpliceMode::On => Path::Splice,
            SpliceMode::Off => Path::Copy,
            SpliceMode::Auto => Path::Auto,
        };
        let cfg = TunnelConfig {
            read_timeout: timeout,
            client_send_timeout: timeout,
            upstream_send_timeout: timeout,
            path,
            frames: None,
            generation: self.gen.serial,
            half_close: self.conf.half_close(),
        };
        let out = tunnel::run(&client, &upstream, cfg).await;
        vars.received += out.up_bytes;
        vars.sent = out.down_bytes;
        vars.upstream_sent.push(up_sent + out.up_bytes);
        vars.upstream_received.push(out.down_bytes);
        if let tunnel::End::ReadTimeout = out.end {
            log!(Info, "connection timed out (110: Connection timed out) while proxying connection, client: {}, server: {local}", peer.ip());
        }
        self.release(picked);
        200
    }

    fn release(&self, picked: Option<(usize, crate::upstream::peer::PeerId)>) {
        if let Some((group, id)) = picked {
            self.shard.balancers[group].borrow_mut().release(id);
        }
    }

    /// Reads the ClientHello (what is read is kept in `first`, sent to the upstream first).
    async fn preread(
        &self,
        tcp: &TcpStream,
        first: &mut Vec<u8>,
        vars: &mut SessionVars<'_>,
    ) -> Result<(), u16> {
        let max = self.conf.preread_buffer_size();
        let deadline = Instant::now() + self.conf.preread_timeout();
        let mut buf = vec![0u8; max.clamp(1, 64 * 1024)];
        loop {
            match preread::parse(first) {
                Parse::Done(h) => {
                    vars.hello = Some(h);
                    return Ok(());
                }
                Parse::NotTls => return Ok(()),
                Parse::NeedMore => {}
            }
            if first.len() >= max {
                log!(
                    Error,
                    "preread buffer full while prereading client data, client: {}, server: {}",
                    vars.remote.ip(),
                    vars.local
                );
                return Err(400);
            }
            let room = (max - first.len()).min(buf.len());
            match read_now(tcp, &mut buf[..room]) {
                Ok(Some(0)) => return Err(200),
                Ok(Some(n)) => first.extend_from_slice(&buf[..n]),
                Ok(None) => {
                    // nginx goes on to proxying when the preread time is up.
                    if until(tcp.readable(false), deadline).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(200),
            }
        }
    }

    /// Evaluates `proxy_pass`.
    fn target(&self, vars: &mut SessionVars<'_>) -> Result<Target, u16> {
        match &self.server.proxy_pass {
            Some(StreamPass::Upstream(i)) => Ok(Target::Group(*i)),
            Some(StreamPass::Var(t)) => {
                let mut v = Vec::new();
                vars.render(t, &mut v);
                let name = String::from_utf8_lossy(&v).into_owned();
                if let Some(i) = self
                    .stream
                    .upstreams
                    .iter()
                    .position(|u| u.name.eq_ignore_ascii_case(&name))
                {
                    return Ok(Target::Group(i));
                }
                match name.parse::<SocketAddr>() {
                    Ok(a) => Ok(Target::Address(a)),
                    Err(_) => {
                        log!(Error, "no resolver defined to resolve {name} while connecting to upstream, client: {}, server: {}", vars.remote.ip(), vars.local);
                        Err(502)
                    }
                }
            }
            Some(StreamPass::Return(_)) | None => {
                log!(
                    Error,
                    "no proxy_pass in the stream server listening on {}",
                    vars.local
                );
                Err(500)
            }
        }
    }

    /// Picks and connects a peer, trying the next as `proxy_next_upstream` allows.
    async fn connect(
        &self,
        target: Target,
        vars: &mut SessionVars<'_>,
    ) -> Option<(TcpStream, Option<(usize, crate::upstream::peer::PeerId)>)> {
        let group = match target {
            Target::Address(addr) => {
                vars.upstream_addr.push(addr.to_string());
                return match self.attempt(addr, vars).await {
                    Ok(s) => Some((s, None)),
                    Err(_) => None,
                };
            }
            Target::Group(g) => g,
        };
        let conf = self.conf;
        let upstream = &self.stream.upstreams[group];
        let balancer = &self.shard.balancers[group];
        let key = match &upstream.balance {
            Balance::Hash { key, .. } => {
                let mut k = Vec::new();
                vars.render(key, &mut k);
                Some(k)
            }
            _ => None,
        };
        let max_tries = match conf.next_upstream_tries() {
            0 => usize::MAX,
            n => n as usize,
        };
        let (started, limit) = (Instant::now(), conf.next_upstream_timeout());
        let mut state = PickState::new();
        let mut tries = 0;
        loop {
            let picked = balancer
                .borrow_mut()
                .pick(key.as_deref(), Instant::now(), &mut state);
            let Some(id) = picked else {
                // nginx's $upstream_addr names the group when no peer could be tried at all;
                // after failed tries it lists only those.
                if tries == 0 {
                    vars.upstream_addr.push(upstream.name.clone());
                }
                log!(Error, "no live upstreams while connecting to upstream, client: {}, server: {}, upstream: \"{}\"", vars.remote.ip(), vars.local, upstream.name);
                return None;
            };
            // Configuration refuses unix sockets in stream upstreams.
            let crate::upstream::peer::PeerAddr::Inet(addr) =
                balancer.borrow().peers().spec(id).addr.clone()
            else {
                return None;
            };
            vars.upstream_addr.push(addr.to_string());
            tries += 1;
            match self.attempt(addr, vars).await {
                Ok(s) => {
                    balancer
                        .borrow_mut()
                        .report(id, PeerOutcome::Success, Instant::now());
                    return Some((s, Some((group, id))));
                }
                Err(()) => {
                    vars.upstream_sent.push(0);
                    vars.upstream_received.push(0);
                    let mut b = balancer.borrow_mut();
                    b.report(id, PeerOutcome::Failure, Instant::now());
                    b.release(id);
                }
            }
            let out_of_time = !limit.is_zero() && started.elapsed() >= limit;
            if !conf.next_upstream() || tries >= max_tries || out_of_time {
                return None;
            }
        }
    }

    /// One connection to `addr` within `proxy_connect_timeout`.
    async fn attempt(&self, addr: SocketAddr, vars: &mut SessionVars<'_>) -> Result<TcpStream, ()> {
        let started = Instant::now();
        let connected =
            monoio::time::timeout(self.conf.connect_timeout(), TcpStream::connect_addr(addr)).await;
        let (client, server) = (vars.remote.ip(), vars.local);
        match connected {
            Ok(Ok(s)) if crate::proxy::io::set_nonblocking(&s).is_ok() => {
                let _ = s.set_nodelay(true);
                let d = started.elapsed();
                vars.connect_times
                    .push(format!("{}.{:03}", d.as_secs(), d.subsec_millis()));
                Ok(s)
            }
            Ok(Ok(_)) => Err(()),
            Ok(Err(e)) => {
                vars.connect_times.push("-".into());
                log!(Error, "connect() failed ({}) while connecting to upstream, client: {client}, server: {server}, upstream: \"{addr}\"", crate::config::os_error(&e));
                Err(())
            }
            Err(_) => {
                vars.connect_times.push("-".into());
                log!(Error, "upstream timed out (110: Connection timed out) while connecting to upstream, client: {client}, server: {server}, upstream: \"{addr}\"");
                Err(())
            }
        }
    }
}

/// The PROXY protocol v1 line nginx sends for a TCP client.
pub fn proxy_v1(peer: SocketAddr, local: SocketAddr) -> String {
    let family = if peer.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        peer.ip(),
        local.ip(),
        peer.port(),
        local.port()
    )
}
