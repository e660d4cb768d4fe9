//! Listening sockets: one per `listen` address per shard, each with SO_REUSEPORT so the kernel
//! spreads connections over the shards without a shared accept queue or lock.
//!
//! Bound in the main thread before any shard starts, so a bind error is reported (in nginx's
//! words) before the pid file exists and before daemonizing.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::model::{Config, HttpConf, Listen};

/// One address to listen on, with the socket options of its first `listen` that set any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    /// Where to bind.
    pub addr: SocketAddr,
    /// The `listen` it came from (options).
    pub listen: Listen,
    /// A `stream` server's address: sessions go to `crate::stream`, not to http.
    pub stream: bool,
}

/// An address both http and stream listen on: each module binds its own socket in nginx, and
/// the second bind fails; with SO_REUSEPORT both would bind here and split the connections, so
/// it is refused in nginx's words.
pub fn check_shared(specs: &[ListenSpec]) -> Result<(), String> {
    for s in specs.iter().filter(|s| s.stream) {
        let clash = specs.iter().any(|h| {
            !h.stream
                && h.addr.port() == s.addr.port()
                && h.addr.is_ipv4() == s.addr.is_ipv4()
                && (h.addr.ip() == s.addr.ip()
                    || h.addr.ip().is_unspecified()
                    || s.addr.ip().is_unspecified())
        });
        if clash {
            return Err(format!(
                "bind() to {} failed (98: Address already in use)",
                s.addr
            ));
        }
    }
    Ok(())
}

/// Every address of a configuration: http's, then stream's.
pub fn all_specs(config: &Config) -> Vec<ListenSpec> {
    let mut out = config.http.as_ref().map(specs).unwrap_or_default();
    if let Some(stream) = &config.stream {
        let listens = stream.servers.iter().flat_map(|s| &s.listen);
        out.extend(distinct(listens).into_iter().map(|mut s| {
            s.stream = true;
            s
        }));
    }
    out
}

/// The distinct addresses of a configuration. Like nginx, a specific `ip:port` is not bound when
/// a wildcard `*:port` of the same family exists: the wildcard socket receives those
/// connections and the server is chosen by the connection's local address.
pub fn specs(http: &HttpConf) -> Vec<ListenSpec> {
    distinct(http.servers.iter().flat_map(|s| &s.listen))
}

fn distinct<'a>(listens: impl Iterator<Item = &'a Listen>) -> Vec<ListenSpec> {
    let mut out: Vec<ListenSpec> = Vec::new();
    {
        for l in listens {
            if let Some(have) = out.iter_mut().find(|s| s.addr == l.addr) {
                // `ssl` on any listen of an address makes the address TLS, as in nginx.
                have.listen.ssl |= l.ssl;
                // So does `proxy_protocol`.
                have.listen.proxy_protocol |= l.proxy_protocol;
                continue;
            }
            out.push(ListenSpec {
                addr: l.addr,
                listen: l.clone(),
                stream: false,
            });
        }
    }
    let wildcard_ports: Vec<(bool, u16)> = out
        .iter()
        .filter(|s| s.addr.ip().is_unspecified())
        .map(|s| (s.addr.is_ipv4(), s.addr.port()))
        .collect();
    out.retain(|s| {
        s.addr.ip().is_unspecified() || !wildcard_ports.contains(&(s.addr.is_ipv4(), s.addr.port()))
    });
    out
}

/// Takes a listening socket out of service now: it leaves its SO_REUSEPORT group and refuses
/// new connections, whoever else still holds it (an io_uring accept in flight holds it until
/// the ring is torn down, which the kernel does after the process has exited).
pub fn shut(listener: &std::net::TcpListener) {
    let _ = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Both);
}

/// Binds one shard's socket for `spec`. The error text is nginx's:
/// `bind() to 0.0.0.0:80 failed (98: Address already in use)`.
pub fn bind(spec: &ListenSpec) -> Result<std::net::TcpListener, String> {
    let l = &spec.listen;
    let fail = |call: &str, e: std::io::Error| {
        format!(
            "{call}() to {} failed ({})",
            spec.addr,
            crate::config::os_error(&e)
        )
    };
    let domain = if spec.addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket =
        Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(|e| fail("socket", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| fail("setsockopt(SO_REUSEADDR)", e))?;
    socket
        .set_reuse_port(true)
        .map_err(|e| fail("setsockopt(SO_REUSEPORT)", e))?;
    if spec.addr.is_ipv6() {
        socket
            .set_only_v6(l.ipv6only)
            .map_err(|e| fail("setsockopt(IPV6_V6ONLY)", e))?;
    }
    if let Some(n) = l.rcvbuf {
        socket
            .set_recv_buffer_size(n as usize)
            .map_err(|e| fail("setsockopt(SO_RCVBUF)", e))?;
    }
    if let Some(n) = l.sndbuf {
        socket
            .set_send_buffer_size(n as usize)
            .map_err(|e| fail("setsockopt(SO_SNDBUF)", e))?;
    }
    if let Some(on) = l.so_keepalive {
        socket
            .set_keepalive(on)
            .map_err(|e| fail("setsockopt(SO_KEEPALIVE)", e))?;
    }
    if l.deferred {
        crate::sys::setsockopt_int(&socket, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1)
            .map_err(|e| fail("setsockopt(TCP_DEFER_ACCEPT)", e))?;
    }
    if let Some(q) = l.fastopen {
        let q = i32::try_from(q).unwrap_or(i32::MAX);
        crate::sys::setsockopt_int(&socket, libc::IPPROTO_TCP, libc::TCP_FASTOPEN, q)
            .map_err(|e| fail("setsockopt(TCP_FASTOPEN)", e))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| fail("fcntl(O_NONBLOCK)", e))?;
    socket
        .bind(&spec.addr.into())
        .map_err(|e| fail("bind", e))?;
    socket.listen(l.backlog).map_err(|e| fail("listen", e))?;
    Ok(socket.into())
}
