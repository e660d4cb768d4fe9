//! TLS termination: one rustls `ServerConfig` per `server` block with certificates, built by
//! each shard (its own session cache and ticket keys), and the accept path.
//!
//! The server is chosen from the ClientHello before any certificate is sent (rustls'
//! `Acceptor`): the SNI name goes through the router's `server_name` rules
//! ([`crate::route::Router::server_for_sni`]), a ClientHello without SNI gets the address's
//! default server, and an unknown name the default server too (whose certificate answers,
//! unless it has `ssl_reject_handshake on`). The request's Host then picks the server that
//! serves the request, as in nginx.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use monoio::net::TcpStream;
use rustix::net::RecvFlags;

use super::client_auth::{ClientAuth, Handshake, Mode};
use super::conf_command::{self, Role, Tuning};
use super::peer::PeerCert;
use super::session::{cache_entries, Cache, Tickets};
use super::stapling::{self, Staple};
use super::{load_pair, provider, versions, ClientConfigs, TlsError};
use crate::config::model::{Config, HttpConf, LocConf};
use crate::log;
use crate::proxy::conn::{handshake, until, FdIo, Stream, Tls, TlsSide, TlsStream};
use crate::shard::listener::ListenSpec;
use crate::shard::ShardCtx;
use crate::sys::fd;
use crate::tls::stream::read_more;
use rustls::server::{
    Acceptor, ClientHello, NoServerSessionStorage, ResolvesServerCert, UnbufferedServerConnection,
};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// A fatal `unrecognized_name` alert (what `ssl_reject_handshake on` answers).
const REJECT_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// Several certificates of one server (RSA and ECDSA): the first, in configuration order,
/// whose key can sign with a scheme the client offers.
#[derive(Debug)]
struct Certs(Vec<Cert>);

/// A certificate, with its OCSP staple when `ssl_stapling` applies to it.
#[derive(Debug)]
enum Cert {
    Plain(Arc<CertifiedKey>),
    Stapled(Arc<Staple>),
}

impl Cert {
    fn base(&self) -> &CertifiedKey {
        match self {
            Cert::Plain(k) => k,
            Cert::Stapled(s) => s.base(),
        }
    }

    fn key(&self) -> Arc<CertifiedKey> {
        match self {
            Cert::Plain(k) => k.clone(),
            Cert::Stapled(s) => s.key(),
        }
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|c| c.base().key.choose_scheme(schemes).is_some())
            .or(self.0.first())
            .map(Cert::key)
    }
}

/// A server's client-certificate settings (`None`: `ssl_verify_client off`).
fn client_auth(
    conf: &LocConf,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
) -> Result<Option<Arc<ClientAuth>>, TlsError> {
    let Some(mode) = Mode::parse(&conf.ssl_verify_client()) else {
        return Ok(None);
    };
    let ca = conf.ssl_client_certificate();
    if ca.as_os_str().is_empty() && mode != Mode::OptionalNoCa {
        return Err(TlsError::Rustls(
            "no ssl_client_certificate for ssl_verify_client".into(),
        ));
    }
    let auth = ClientAuth::load(
        &ca,
        &conf.ssl_trusted_certificate(),
        &conf.ssl_crl(),
        conf.ssl_verify_depth(),
        algs,
    )?;
    Ok(Some(Arc::new(auth)))
}

/// A server's rustls configuration and its client-certificate settings.
type Built = (ServerConfig, Option<Arc<ClientAuth>>);

/// Which configuration generation and server a shard builds (for the staples they share).
type Shared<'a> = Option<(&'a Arc<Config>, usize)>;

/// The rustls configuration of a server with certificates (`None` without any), and its
/// client-certificate settings; `chacha_first` puts the CHACHA20-POLY1305 suites first
/// (`PrioritizeChaCha`).
fn server_config(
    conf: &LocConf,
    chacha_first: bool,
    shared: Shared,
) -> Result<Option<Built>, TlsError> {
    let certs = conf.ssl_certificate();
    if certs.is_empty() {
        return Ok(None);
    }
    let tuning = tuning(conf)?;
    let protocols = tuning.versions(&conf.ssl_protocols());
    if protocols.is_empty() {
        return Err(TlsError::Rustls(
            "\"ssl_conf_command\" leaves no protocol rustls speaks (TLSv1.2, TLSv1.3)".into(),
        ));
    }
    let ciphers = tuning.cipher_string.clone().unwrap_or(conf.ssl_ciphers());
    let curves = tuning.groups.clone().unwrap_or(conf.ssl_ecdh_curve());
    let p = provider(&ciphers, &protocols, "ssl_ciphers", &curves)?;
    let p = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: tuning.suites(&p.cipher_suites, chacha_first),
        ..(*p).clone()
    });
    let passwords = conf.ssl_password_file();
    let pairs = certs
        .iter()
        .zip(conf.ssl_certificate_key().iter())
        .enumerate()
        .map(|(i, (c, k))| {
            let key = Arc::new(load_pair(c, k, &passwords, &p)?);
            let staple = match shared {
                Some((config, server)) => stapling::shared(config, server, i, conf, &key)?,
                None => None,
            };
            Ok(staple.map_or(Cert::Plain(key), Cert::Stapled))
        })
        .collect::<Result<Vec<_>, TlsError>>()?;
    let algs = p.signature_verification_algorithms;
    let builder = ServerConfig::builder_with_provider(p)
        .with_protocol_versions(&versions(&protocols))
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let auth = client_auth(conf, algs)?;
    let builder = match &auth {
        Some(a) => builder.with_client_cert_verifier(Arc::new(Handshake(a.clone()))),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(Certs(pairs)));
    cfg.ignore_client_order = tuning
        .server_preference
        .unwrap_or(conf.ssl_prefer_server_ciphers());
    cfg.max_fragment_size = Some(record_limit(conf.ssl_buffer_size()));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let timeout = conf.ssl_session_timeout();
    let cache = cache_entries(&conf.ssl_session_cache());
    cfg.session_storage = match cache {
        Some(n) => Cache::new(n, timeout),
        None => Arc::new(NoServerSessionStorage {}),
    };
    if tuning.session_ticket.unwrap_or(conf.ssl_session_tickets()) {
        cfg.ticketer = Tickets::new(timeout).map_err(|e| TlsError::Rustls(e.to_string()))?;
    } else if cache.is_none() {
        cfg.send_tls13_tickets = 0;
    }
    if let Some(n) = tuning.num_tickets {
        cfg.send_tls13_tickets = n;
    }
    Ok(Some((cfg, auth)))
}

/// A server's `ssl_conf_command` list, read (it was checked with the configuration).
fn tuning(conf: &LocConf) -> Result<Tuning, TlsError> {
    conf_command::tuning(&conf.ssl_conf_command(), Role::Server)
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

/// Whether `ssl_conf_command Options PrioritizeChaCha` applies: as OpenSSL, only with the
/// server's preference on.
fn prioritizes_chacha(conf: &LocConf) -> Result<bool, TlsError> {
    let t = tuning(conf)?;
    Ok(t.prioritize_chacha
        && t.server_preference
            .unwrap_or(conf.ssl_prefer_server_ciphers()))
}

/// A server's configurations: the one it serves with and, with `PrioritizeChaCha`, one
/// preferring CHACHA20-POLY1305 for clients that list it first (sharing the certificates,
/// session cache and ticket keys).
fn served(conf: &LocConf, shared: Shared) -> Result<Option<Served>, TlsError> {
    let Some((config, auth)) = server_config(conf, false, shared)? else {
        return Ok(None);
    };
    let chacha_first = match prioritizes_chacha(conf)? {
        // The same certificates (and staples) too; the client-certificate checks after the
        // handshake are the first configuration's.
        true => server_config(conf, true, None)?.map(|(mut c, _)| {
            c.session_storage = config.session_storage.clone();
            c.ticketer = config.ticketer.clone();
            c.cert_resolver = config.cert_resolver.clone();
            Arc::new(c)
        }),
        false => None,
    };
    Ok(Some(Served {
        config: Arc::new(config),
        chacha_first,
        auth,
    }))
}

/// What a server with certificates serves with.
struct Served {
    config: Arc<ServerConfig>,
    /// For a client whose first suite is a CHACHA20-POLY1305 one (`PrioritizeChaCha`).
    chacha_first: Option<Arc<ServerConfig>>,
    /// The client-certificate settings (`None`: `ssl_verify_client off`).
    auth: Option<Arc<ClientAuth>>,
}

impl Served {
    fn for_client(&self, first_suite: Option<&rustls::CipherSuite>) -> Arc<ServerConfig> {
        match (&self.chacha_first, first_suite) {
            (Some(c), Some(s)) if conf_command::is_chacha(*s) => c.clone(),
            _ => self.config.clone(),
        }
    }
}

/// rustls' `max_fragment_size` for `ssl_buffer_size` (the plaintext of one record): it counts
/// the 5-byte record header, and takes 32 to 16,389 (so 27 bytes of plaintext at least, and at
/// most TLS's 16 KiB).
fn record_limit(ssl_buffer_size: u64) -> usize {
    const HEADER: usize = 5;
    usize::try_from(ssl_buffer_size).map_or(16384, |n| n.clamp(27, 16384)) + HEADER
}

/// Checks a server's certificates, keys and TLS settings (configuration time).
pub fn check_server(conf: &LocConf) -> Result<(), TlsError> {
    served(conf, None).map(drop)
}

/// How a shard answers a handshake that selects a server.
enum Answer {
    /// With this configuration.
    Serve(Served),
    /// With a fatal alert: `ssl_reject_handshake on`.
    Reject,
    /// With a fatal alert: the server has no certificate (it shares a TLS address).
    NoCertificate,
}

/// A shard's TLS state: the servers' configurations (with this shard's session cache and
/// ticket keys) and the configurations towards TLS backends.
pub struct ShardTls {
    servers: Vec<Answer>,
    /// Client configurations for `proxy_pass https://`.
    pub clients: ClientConfigs,
}

impl ShardTls {
    /// Builds the configurations of every server with certificates.
    pub fn new(config: &Arc<Config>, http: &HttpConf) -> Result<ShardTls, String> {
        let mut servers = Vec::with_capacity(http.servers.len());
        for (i, s) in http.servers.iter().enumerate() {
            let shared = Some((config, i));
            let answer = match served(&s.conf, shared).map_err(|e| e.to_string())? {
                _ if s.conf.ssl_reject_handshake() => Answer::Reject,
                Some(c) => Answer::Serve(c),
                None => Answer::NoCertificate,
            };
            servers.push(answer);
        }
        Ok(ShardTls {
            servers,
            clients: ClientConfigs::default(),
        })
    }
}

/// Why a handshake ended without a connection.
enum Failed {
    Io(std::io::Error),
    Rejected,
    NoCertificate,
    PlainHttp,
}

impl From<std::io::Error> for Failed {
    fn from(e: std::io::Error) -> Failed {
        Failed::Io(e)
    }
}

/// Turns an accepted connection into a [`Stream`]: plain on a plain address; on a TLS one,
/// the handshake (before `deadline`, `client_header_timeout` after the accept). `None` when
/// the connection is done (handshake failure, logged at `info` as nginx does; a plain HTTP
/// request, answered with nginx's 400).
pub async fn accept(
    ctx: &Rc<ShardCtx>,
    spec: &ListenSpec,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    accepted: Instant,
) -> Option<Stream> {
    if !spec.listen.ssl {
        return Some(Stream::Plain(tcp));
    }
    let http = ctx.config.http.as_ref()?;
    let default = ctx.proxy.router.default_server(local).ok()?;
    let dconf = &http.servers[default].conf;
    let deadline = accepted + dconf.client_header_timeout();
    let mut sni = None;
    let client = peer.ip();
    let server = spec.addr;
    match tls_accept(ctx, &tcp, local, default, deadline, &mut sni).await {
        Ok((conn, peer)) => {
            let mut stream = TlsStream::new(tcp, conn, sni);
            stream.set_client_cert(peer);
            Some(Stream::Tls(Box::new(stream)))
        }
        Err(Failed::PlainHttp) => {
            plain_http(Stream::Plain(tcp), dconf, peer, deadline).await;
            None
        }
        Err(Failed::Rejected) => {
            log!(Info, "SSL handshake rejected by \"ssl_reject_handshake\" for server name \"{}\" while SSL handshaking, client: {client}, server: {server}", sni.as_deref().unwrap_or(""));
            None
        }
        Err(Failed::NoCertificate) => {
            log!(Error, "no \"ssl_certificate\" is defined in server listening on SSL port while SSL handshaking, client: {client}, server: {server}");
            None
        }
        Err(Failed::Io(e)) => {
            match e.kind() {
                std::io::ErrorKind::TimedOut => log!(Info, "client timed out (110: Connection timed out) while SSL handshaking, client: {client}, server: {server}"),
                std::io::ErrorKind::UnexpectedEof => log!(Info, "peer closed connection in SSL handshake while SSL handshaking, client: {client}, server: {server}"),
                _ => log!(Info, "SSL_do_handshake() failed ({e}) while SSL handshaking, client: {client}, server: {server}"),
            }
            None
        }
    }
}

/// Whether the first byte starts a TLS (or SSLv2) record; nginx's test.
fn looks_like_tls(first: u8) -> bool {
    first == 0x16 || first & 0x80 != 0
}

async fn tls_accept(
    ctx: &ShardCtx,
    tcp: &TcpStream,
    local: SocketAddr,
    default: usize,
    deadline: Instant,
    sni: &mut Option<String>,
) -> Result<(Tls, Option<Rc<PeerCert>>), Failed> {
    // Peek at the first byte: a plain HTTP request gets nginx's 400, not a TLS alert.
    loop {
        let mut first = [0u8; 1];
        match rustix::net::recv(fd(tcp), &mut first, RecvFlags::PEEK) {
            Ok((0, _)) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?,
            Ok(_) if looks_like_tls(first[0]) => break,
            Ok(_) => return Err(Failed::PlainHttp),
            Err(rustix::io::Errno::AGAIN) => until(tcp.readable(false), deadline).await?,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(std::io::Error::from(e))?,
        }
    }
    // The ClientHello is read into `hello` and shown to rustls' acceptor, which picks the
    // server; the connection then processes the same bytes from the start.
    let mut acceptor = Acceptor::default();
    let mut hello = Vec::new();
    let mut fed = 0;
    let accepted = loop {
        read_more(tcp, &mut hello, deadline).await?;
        while fed < hello.len() {
            match acceptor.read_tls(&mut &hello[fed..]) {
                Ok(0) => break,
                Ok(n) => fed += n,
                Err(e) => return Err(e)?,
            }
        }
        match acceptor.accept() {
            Ok(Some(a)) => break a,
            Ok(None) => {}
            Err((e, mut alert)) => {
                let _ = alert.write_all(&mut FdIo(tcp));
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            }
        }
    };
    *sni = accepted.client_hello().server_name().map(str::to_owned);
    let server = match sni.as_deref() {
        Some(name) => ctx
            .proxy
            .router
            .server_for_sni(local, Some(name))
            .map_or(default, |m| m.server),
        None => default,
    };
    // A server without certificates on a TLS address answers with the default server's, as
    // nginx keeps the default context when the SNI-selected server has none.
    let servers = &ctx.proxy.tls.servers;
    let answer = match servers.get(server) {
        Some(Answer::NoCertificate) => servers.get(default),
        a => a,
    };
    let (config, auth) = match answer {
        Some(Answer::Serve(c)) => (
            c.for_client(accepted.client_hello().cipher_suites().first()),
            c.auth.clone(),
        ),
        other => {
            let _ = rustix::io::write(fd(tcp), &REJECT_ALERT);
            return Err(match other {
                Some(Answer::Reject) => Failed::Rejected,
                _ => Failed::NoCertificate,
            });
        }
    };
    drop(accepted);
    let conn = UnbufferedServerConnection::new(config)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let tls = handshake(tcp, TlsSide::Server(conn), hello, deadline).await?;
    let peer = match (auth, tls.common().peer_certificates()) {
        (Some(auth), Some(chain)) if !chain.is_empty() => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let verdict = auth.verify(chain, now);
            Some(Rc::new(PeerCert::new(chain.to_vec(), verdict)))
        }
        _ => None,
    };
    Ok((tls, peer))
}

/// A plain HTTP request on a TLS address: read its head (within the same deadline), answer
/// nginx's "400 The plain HTTP request was sent to HTTPS port" and close.
async fn plain_http(s: Stream, conf: &LocConf, peer: SocketAddr, deadline: Instant) {
    let (count, size) = conf.large_client_header_buffers();
    let limit = (conf.client_header_buffer_size() as usize).max(count as usize * size as usize);
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < limit {
        match crate::proxy::io::read_into(&s, &mut head, 4096, deadline).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    log!(
        Info,
        "client sent plain HTTP request to HTTPS port while reading client request headers, client: {}",
        peer.ip()
    );
    let page =
        crate::proxy::respond::error(crate::http::status::TO_HTTPS, false, conf.server_tokens());
    let _ = s.write_all(&page, conf.send_timeout()).await;
}

#[cfg(test)]
mod tests {
    use super::record_limit;

    #[test]
    fn ssl_buffer_size_maps_into_rustls_fragment_range() {
        // rustls takes 32..=16389, header included.
        assert_eq!(record_limit(1024), 1029);
        assert_eq!(record_limit(16384), 16389);
        assert_eq!(record_limit(1 << 20), 16389);
        assert_eq!(record_limit(0), 32);
        assert_eq!(record_limit(4), 32);
    }
}
