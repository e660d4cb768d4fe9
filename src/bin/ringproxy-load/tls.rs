//! TLS for the load tool: rustls' sans-IO connection driven over monoio's owned-buffer TCP,
//! on the same runtime as everything else (no second runtime, no adapter crate).
//!
//! rustls never touches the socket: ciphertext read from TCP is handed to `read_tls`, decrypted
//! by `process_new_packets` and drained through `reader()`; plaintext goes in through `writer()`
//! and the records come out of `write_tls` into one buffer sent with a single write. The client
//! configuration (trust, SNI, versions, resumption) and the echo server's certificate are built
//! here too, once per run, and shared by every thread.

use std::io::{self, BufRead as _, Write as _};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, ServerConfig};

use crate::cli::{TlsArgs, TlsVersion};

/// One read from TCP: a whole maximum-size TLS record (16 KiB plus header and tag) fits.
const TLS_READ: usize = 17 * 1024 + 512;

fn provider() -> Arc<CryptoProvider> {
    // Explicit, so another crate enabling rustls' `ring` feature cannot make the default
    // provider ambiguous.
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

static ONLY_TLS12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
static ONLY_TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(v: Option<TlsVersion>) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match v {
        Some(TlsVersion::V12) => &ONLY_TLS12,
        Some(TlsVersion::V13) => &ONLY_TLS13,
        None => rustls::DEFAULT_VERSIONS,
    }
}

/// What every TLS client connection of a run shares.
#[derive(Debug)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    /// Sent as SNI (unless it is an IP address) and checked against the certificate.
    pub name: ServerName<'static>,
}

/// The client's provider offers only the classic key exchanges (X25519, then P-256), as
/// OpenSSL 3.0 does, not rustls' default X25519MLKEM768 hybrid: a rustls server and nginx or
/// HAProxy then do the same key exchange, and the client's own cost per handshake stays low.
fn client_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::kx_group;
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1];
    Arc::new(p)
}

/// Builds the client side from the flags; `host` is the URL's host, the default server name.
pub fn client(args: &TlsArgs, host: &str) -> Result<ClientTls> {
    let builder = ClientConfig::builder_with_provider(client_provider())
        .with_protocol_versions(versions(args.version))
        .context("TLS protocol versions")?;
    let mut config = if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(ringproxy::tls::Verifier::none(provider()))
            .with_no_client_auth()
    } else {
        let Some(ca) = &args.ca else {
            bail!("a wss:// URL needs --ca FILE (PEM certificates to trust) or --insecure");
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in load_certs(ca)? {
            roots
                .add(cert)
                .with_context(|| format!("{}: unusable certificate", ca.display()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.resumption = if args.resume {
        Resumption::default()
    } else {
        Resumption::disabled()
    };
    let name = args.sni.clone().unwrap_or_else(|| {
        let h = host.rsplit_once(':').map_or(host, |(h, _)| h);
        h.trim_start_matches('[').trim_end_matches(']').to_string()
    });
    let name = ServerName::try_from(name.clone())
        .with_context(|| format!("{name:?} is not a valid TLS server name"))?;
    Ok(ClientTls {
        config: Arc::new(config),
        name,
    })
}

/// The echo server's TLS configuration from a PEM certificate chain and key.
pub fn server(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{}: no PEM private key", key.display()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("certificate and key do not make a TLS server identity")?;
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: invalid PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate", path.display());
    }
    Ok(certs)
}

/// A TCP connection carrying TLS, client or server side.
pub struct TlsStream {
    tcp: TcpStream,
    conn: rustls::Connection,
    /// Ciphertext read from TCP; `inbuf[in_pos..]` has not been given to rustls yet.
    inbuf: Vec<u8>,
    in_pos: usize,
    /// Records waiting to be written, reused between writes.
    outbuf: Vec<u8>,
    tcp_eof: bool,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    pub fn client(tcp: TcpStream, tls: &ClientTls) -> io::Result<Self> {
        let conn = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
            .map_err(tls_error)?;
        Ok(Self::new(tcp, conn.into()))
    }

    pub fn server(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn = rustls::ServerConnection::new(config).map_err(tls_error)?;
        Ok(Self::new(tcp, conn.into()))
    }

    fn new(tcp: TcpStream, mut conn: rustls::Connection) -> Self {
        // Whole messages (up to the bulk scenario's MiBs) are encrypted in one go and written
        // at once; the caller bounds what it sends.
        conn.set_buffer_limit(None);
        Self {
            tcp,
            conn,
            inbuf: Vec::new(),
            in_pos: 0,
            outbuf: Vec::new(),
            tcp_eof: false,
        }
    }

    /// Whether the handshake resumed an earlier session (only possible with `--resume`).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// Runs the handshake to completion: an invalid certificate, a version mismatch or a
    /// peer that closes fails here.
    pub async fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush().await?;
            } else if self.conn.wants_read() {
                self.feed().await?;
            } else {
                return Err(io::Error::other("TLS handshake stalled"));
            }
        }
        self.flush().await
    }

    /// Writes every pending record with one TCP write.
    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.outbuf)?;
        }
        if self.outbuf.is_empty() {
            return Ok(());
        }
        let (res, mut buf) = self.tcp.write_all(std::mem::take(&mut self.outbuf)).await;
        buf.clear();
        self.outbuf = buf;
        res.map(|_| ())
    }

    /// Hands buffered ciphertext to rustls, reading TCP once first if none is buffered, and
    /// processes it. A TLS error sends rustls' alert before it is returned.
    async fn feed(&mut self) -> io::Result<()> {
        if self.in_pos >= self.inbuf.len() {
            if self.tcp_eof {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut buf = std::mem::take(&mut self.inbuf);
            buf.clear();
            buf.reserve(TLS_READ);
            // A Vec is read into from its start; its length becomes the bytes read.
            let (res, buf) = self.tcp.read(buf).await;
            self.inbuf = buf;
            self.in_pos = 0;
            if res? == 0 {
                self.tcp_eof = true;
                self.conn.read_tls(&mut io::empty())?;
            }
        }
        if self.in_pos < self.inbuf.len() {
            let mut rest = &self.inbuf[self.in_pos..];
            self.in_pos += self.conn.read_tls(&mut rest)?;
        }
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.flush().await;
            return Err(tls_error(e));
        }
        Ok(())
    }

    /// Reads plaintext once, appending at most `buf`'s spare capacity to it (copied out of
    /// rustls' buffer, so nothing is zero-filled first). `Ok(0)` is the peer's close_notify;
    /// TCP closing without one is `UnexpectedEof`.
    pub async fn read_append(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let room = (buf.capacity() - buf.len()).max(1);
        let res = loop {
            let mut reader = self.conn.reader();
            match reader.fill_buf() {
                Ok(data) => {
                    let n = data.len().min(room);
                    buf.extend_from_slice(&data[..n]);
                    reader.consume(n);
                    break Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => break Err(e),
            }
            if let Err(e) = self.feed().await {
                break Err(e);
            }
            // Post-handshake messages (key updates) may need an answer.
            if self.conn.wants_write() {
                if let Err(e) = self.flush().await {
                    break Err(e);
                }
            }
        };
        (res, buf)
    }

    /// Encrypts all of `buf` and writes the records with one TCP write.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let res = match self.conn.writer().write_all(&buf) {
            Ok(()) => self.flush().await,
            Err(e) => Err(e),
        };
        (res, buf)
    }

    /// Sends close_notify (before the TCP close), as nginx and OpenSSL peers expect.
    pub async fn close_notify(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush().await
    }

    /// Frees the ciphertext buffers while the connection idles (`hold`).
    pub fn release_buffers(&mut self) {
        if self.in_pos >= self.inbuf.len() {
            self.inbuf = Vec::new();
            self.in_pos = 0;
        }
        self.outbuf = Vec::new();
    }
}
