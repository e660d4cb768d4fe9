//! TLS to backends (`proxy_pass https://`): one rustls `ClientConfig` per distinct set of
//! `proxy_ssl_*` settings, built by a shard the first time a location needs it (its session
//! cache then serves `proxy_ssl_session_reuse`), and the handshake after the TCP connect,
//! bounded by `proxy_connect_timeout` as in nginx.
//!
//! Verification follows nginx: off by default (any certificate is accepted, the handshake's
//! signatures are still checked); with `proxy_ssl_verify on` the chain must lead to a
//! certificate of `proxy_ssl_trusted_certificate` (none configured: every certificate fails,
//! as OpenSSL fails with an empty store), the name is `proxy_ssl_name` (default `$proxy_host`,
//! without its port), and at most `proxy_ssl_verify_depth - 1` intermediates may be presented.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, Tls12Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::conf_command::{self, Role};
use super::{load_certs, load_key, provider, versions, TlsError};
use crate::config::model::{LocConf, ProxyPass, TlsVersion};
use crate::http::vars::RequestVars;
use crate::log;
use crate::proxy::conn::{handshake, Stream, TlsSide, TlsStream};
use crate::shard::ShardCtx;

/// The settings a client configuration depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    verify: bool,
    depth: u32,
    trusted: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    passwords: super::keys::Passwords,
    reuse: bool,
    sni: bool,
    ciphers: String,
    protocols: Vec<TlsVersion>,
    commands: Vec<(String, String)>,
}

impl Key {
    fn of(conf: &LocConf) -> Key {
        Key {
            verify: conf.proxy_ssl_verify(),
            depth: conf.proxy_ssl_verify_depth(),
            trusted: conf.proxy_ssl_trusted_certificate(),
            cert: conf.proxy_ssl_certificate(),
            key: conf.proxy_ssl_certificate_key(),
            passwords: conf.proxy_ssl_password_file(),
            reuse: conf.proxy_ssl_session_reuse(),
            sni: conf.proxy_ssl_server_name(),
            ciphers: conf.proxy_ssl_ciphers(),
            protocols: conf.proxy_ssl_protocols(),
            commands: conf.proxy_ssl_conf_command(),
        }
    }
}

/// A shard's client configurations, by settings.
#[derive(Default)]
pub struct ClientConfigs {
    built: RefCell<HashMap<Key, Arc<ClientConfig>>>,
}

/// Verification with `proxy_ssl_verify`: webpki against the trusted certificates (none: every
/// certificate fails), then the depth; or, with it off, none (the handshake's signatures are
/// still checked).
#[derive(Debug)]
pub struct Verifier {
    /// `None`: verification off.
    webpki: Option<Option<Arc<WebPkiServerVerifier>>>,
    depth: u32,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    /// `proxy_ssl_verify off`: any certificate is accepted (also what test and load clients
    /// use towards generated certificates).
    pub fn none(provider: Arc<CryptoProvider>) -> Arc<Verifier> {
        Arc::new(Verifier {
            webpki: None,
            depth: 0,
            provider,
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.webpki {
            None => Ok(ServerCertVerified::assertion()),
            Some(None) => Err(rustls::CertificateError::UnknownIssuer.into()),
            Some(Some(v)) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
                if intermediates.len() as u64 >= self.depth as u64 {
                    return Err(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                        std::io::Error::other("certificate chain too long"),
                    )))
                    .into());
                }
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        match rustls::crypto::verify_tls12_signature(message, cert, dss, algs) {
            Err(rustls::Error::InvalidCertificate(_)) if self.webpki.is_none() => {
                by_raw_key(message, cert, (dss.scheme, dss.signature()), algs, false)
            }
            r => r,
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        match rustls::crypto::verify_tls13_signature(message, cert, dss, algs) {
            Err(rustls::Error::InvalidCertificate(_)) if self.webpki.is_none() => {
                by_raw_key(message, cert, (dss.scheme, dss.signature()), algs, true)
            }
            r => r,
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// With verification off: checks a handshake signature by the key of a certificate webpki
/// will not parse (X.509 v1, which OpenSSL accepts, so nginx's backends may present it): the
/// key is read with x509-parser and the signature checked with the scheme's algorithms.
pub(super) fn by_raw_key(
    message: &[u8],
    cert: &CertificateDer<'_>,
    (scheme, signature): (SignatureScheme, &[u8]),
    algs: &rustls::crypto::WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let key = &parsed.tbs_certificate.subject_pki.subject_public_key.data;
    let unadvertised = || {
        rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        )
    };
    use rustls::SignatureScheme as S;
    // TLSv1.3 forbids PKCS#1 v1.5 and SHA-1 signatures in the handshake (RFC 8446, 4.2.3).
    let in_tls13 = matches!(
        scheme,
        S::ECDSA_NISTP256_SHA256
            | S::ECDSA_NISTP384_SHA384
            | S::ECDSA_NISTP521_SHA512
            | S::ED25519
            | S::ED448
            | S::RSA_PSS_SHA256
            | S::RSA_PSS_SHA384
            | S::RSA_PSS_SHA512
    );
    if tls13 && !in_tls13 {
        return Err(unadvertised());
    }
    let (_, candidates) = algs
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .ok_or_else(unadvertised)?;
    if candidates
        .iter()
        .any(|a| a.verify_signature(key, message, signature).is_ok())
    {
        Ok(HandshakeSignatureValid::assertion())
    } else {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadSignature,
        ))
    }
}

fn client_config(k: &Key) -> Result<ClientConfig, TlsError> {
    // `proxy_ssl_conf_command` was checked with the configuration; it overrides the directives.
    let tuning = conf_command::tuning(&k.commands, Role::Client)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let protocols = tuning.versions(&k.protocols);
    if protocols.is_empty() {
        return Err(TlsError::Rustls(
            "\"proxy_ssl_conf_command\" leaves no protocol rustls speaks (TLSv1.2, TLSv1.3)".into(),
        ));
    }
    let ciphers = tuning.cipher_string.as_deref().unwrap_or(&k.ciphers);
    let curves = tuning.groups.as_deref().unwrap_or("auto");
    let p = provider(ciphers, &protocols, "proxy_ssl_ciphers", curves)?;
    let p = Arc::new(CryptoProvider {
        cipher_suites: tuning.suites(&p.cipher_suites, false),
        ..(*p).clone()
    });
    let webpki = if !k.verify {
        None
    } else if k.trusted.as_os_str().is_empty() {
        Some(None)
    } else {
        let mut roots = RootCertStore::empty();
        for c in load_certs(&k.trusted)? {
            roots.add(c).map_err(|e| TlsError::Certificate {
                path: k.trusted.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), p.clone())
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        Some(Some(v))
    };
    let verifier = Arc::new(Verifier {
        webpki,
        depth: k.depth,
        provider: p.clone(),
    });
    let builder = ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&versions(&protocols))
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = if k.cert.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let chain = load_certs(&k.cert)?;
        let key = load_key(&k.key, &k.passwords)?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Key {
                path: k.key.display().to_string(),
                reason: e.to_string(),
            })?
    };
    cfg.enable_sni = k.sni;
    if !k.reuse {
        cfg.resumption = Resumption::disabled();
    } else if tuning.session_ticket == Some(false) {
        cfg.resumption = Resumption::default().tls12_resumption(Tls12Resumption::SessionIdOnly);
    }
    Ok(cfg)
}

/// Checks a location's `proxy_ssl_*` files and settings (configuration time).
pub fn check_upstream(conf: &LocConf) -> Result<(), TlsError> {
    client_config(&Key::of(conf)).map(drop)
}

/// The name to verify and send: `proxy_ssl_name` rendered, without a port.
fn ssl_name(conf: &LocConf, vars: &mut RequestVars<'_>) -> Option<ServerName<'static>> {
    let mut out = Vec::new();
    vars.render(&conf.proxy_ssl_name(), &mut out);
    let name = String::from_utf8(out).ok()?;
    let host = match name.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => name.split(':').next().unwrap_or(&name),
    };
    ServerName::try_from(host.to_string()).ok()
}

/// Turns a connection to a peer into a [`Stream`]: plain for `http://`, after a TLS
/// handshake for `https://`. `Err(status)` is 502 (504 when the handshake timed out), logged
/// as nginx logs it.
pub async fn upstream(
    ctx: &ShardCtx,
    tcp: TcpStream,
    client: SocketAddr,
    conf: &LocConf,
    pp: &ProxyPass,
    vars: &mut RequestVars<'_>,
) -> Result<Stream, u16> {
    if !pp.tls {
        return Ok(Stream::Plain(tcp));
    }
    let key = Key::of(conf);
    let built = ctx.proxy.tls.clients.built.borrow().get(&key).cloned();
    let cfg = match built {
        Some(c) => c,
        None => match client_config(&key) {
            Ok(c) => {
                let c = Arc::new(c);
                ctx.proxy
                    .tls
                    .clients
                    .built
                    .borrow_mut()
                    .insert(key, c.clone());
                c
            }
            Err(e) => {
                log!(
                    Error,
                    "{e} while SSL handshaking to upstream, client: {}",
                    client.ip()
                );
                return Err(502);
            }
        },
    };
    // The peer being tried: the last of `$upstream_addr`'s list.
    let upstream = vars
        .upstream
        .addr
        .rsplit(", ")
        .next()
        .unwrap_or("")
        .to_string();
    let Some(name) = ssl_name(conf, vars) else {
        log!(Error, "invalid \"proxy_ssl_name\" while SSL handshaking to upstream, client: {}, upstream: \"{upstream}\"", client.ip());
        return Err(502);
    };
    let conn = match rustls::client::UnbufferedClientConnection::new(cfg, name) {
        Ok(c) => c,
        Err(e) => {
            log!(
                Error,
                "SSL_connect() failed ({e}) while SSL handshaking to upstream, client: {}",
                client.ip()
            );
            return Err(502);
        }
    };
    let deadline = Instant::now() + conf.proxy_connect_timeout();
    match handshake(&tcp, TlsSide::Client(conn), Vec::new(), deadline).await {
        Ok(tls) => Ok(Stream::Tls(Box::new(TlsStream::new(tcp, tls, None)))),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            log!(Error, "upstream timed out (110: Connection timed out) while SSL handshaking to upstream, client: {}, upstream: \"https://{upstream}\"", client.ip());
            Err(504)
        }
        Err(e) => {
            let verify = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            if verify {
                log!(Error, "upstream SSL certificate verify error: ({e}) while SSL handshaking to upstream, client: {}, upstream: \"https://{upstream}\"", client.ip());
            } else {
                log!(Error, "SSL_do_handshake() failed ({e}) while SSL handshaking to upstream, client: {}, upstream: \"https://{upstream}\"", client.ip());
            }
            Err(502)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn a_v1_certificates_handshake_signature_is_checked_by_its_key() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
        let cert = load_certs(&dir.join("x509v1.crt")).unwrap().remove(0);
        let der = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("x509v1.key")).unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = provider.key_provider.load_private_key(der).unwrap();
        let algs = &provider.signature_verification_algorithms;
        let signed = |scheme| {
            let signer = key.choose_scheme(&[scheme]).unwrap();
            (scheme, signer.sign(b"transcript").unwrap())
        };
        let check = |msg: &[u8], (scheme, sig): &(SignatureScheme, Vec<u8>), tls13| {
            by_raw_key(msg, &cert, (*scheme, sig), algs, tls13).is_ok()
        };
        let pss = signed(SignatureScheme::RSA_PSS_SHA256);
        assert!(check(b"transcript", &pss, true) && check(b"transcript", &pss, false));
        assert!(
            !check(b"other bytes", &pss, true),
            "a signature over other bytes"
        );
        let pkcs1 = signed(SignatureScheme::RSA_PKCS1_SHA256);
        assert!(check(b"transcript", &pkcs1, false));
        assert!(
            !check(b"transcript", &pkcs1, true),
            "PKCS#1 v1.5 is not TLSv1.3's"
        );
    }
}
