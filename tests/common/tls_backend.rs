//! A TLS backend for the `proxy_ssl_*` tests, independent of the proxy: tokio-rustls in front
//! of the echo backend (`echo::serve`, so WebSockets echo too), answering every request but
//! `/headers` with what it observed of the TLS session:
//!
//! `sni=backend.test version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384 resumed=no client=-`
//!
//! (`sni=-`: no SNI; `client=CN`: the subject common name of the certificate the client
//! presented, `-` for none). Sessions resume from rustls' default server session store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{HandshakeKind, ProtocolVersion, ServerConfig, ServerConnection};

use super::certs::{Ca, Leaf};
use super::echo::{serve, Server};

/// Whether the backend asks for a client certificate.
pub enum ClientAuth<'a> {
    None,
    /// Asks for one signed by the CA; a client without one is served (`client=-`).
    Optional(&'a Ca),
    /// Refuses the handshake of a client without one signed by the CA.
    Required(&'a Ca),
}

pub struct TlsBackend {
    pub addr: SocketAddr,
    _server: Server,
}

impl TlsBackend {
    /// Serves `leaf` (its PEM may carry intermediates after the leaf).
    pub fn start(leaf: &Leaf, auth: ClientAuth<'_>) -> TlsBackend {
        let p = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let verifier = |ca: &Ca| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(ca.der())).unwrap();
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), p.clone())
        };
        let builder = ServerConfig::builder_with_provider(p.clone())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap();
        let builder = match auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(ca) => builder
                .with_client_cert_verifier(verifier(ca).allow_unauthenticated().build().unwrap()),
            ClientAuth::Required(ca) => {
                builder.with_client_cert_verifier(verifier(ca).build().unwrap())
            }
        };
        let cfg = builder.with_single_cert(chain, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let server = Server::start(
            "tls-backend",
            Arc::new(move |tcp| {
                let acceptor = acceptor.clone();
                Box::pin(async move {
                    let hs = tokio::time::timeout(Duration::from_secs(20), acceptor.accept(tcp));
                    if let Ok(Ok(tls)) = hs.await {
                        let seen = observed(tls.get_ref().1);
                        serve(tls, seen.into_bytes()).await;
                    }
                })
            }),
        );
        TlsBackend {
            addr: server.addr,
            _server: server,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// The report line for a completed handshake.
fn observed(c: &ServerConnection) -> String {
    let version = match c.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        other => format!("{other:?}"),
    };
    let cipher = c
        .negotiated_cipher_suite()
        .map_or("-".to_string(), |s| format!("{:?}", s.suite()));
    let resumed = if c.handshake_kind() == Some(HandshakeKind::Resumed) {
        "yes"
    } else {
        "no"
    };
    let client = c
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map_or("-".to_string(), |cert| {
            subject_cn(cert).unwrap_or_else(|| "?".to_string())
        });
    format!(
        "sni={} version={version} cipher={cipher} resumed={resumed} client={client}",
        c.server_name().unwrap_or("-")
    )
}

/// One field of a report (`field(body, "sni")`).
pub fn field<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in {report:?}"))
}

/// DER: (tag, contents, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &x| a << 8 | x as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject's common name (OID 2.5.4.3) of an X.509 certificate.
fn subject_cn(der: &[u8]) -> Option<String> {
    let (_, cert, _) = tlv(der)?;
    let (_, mut tbs, _) = tlv(cert)?;
    // TBSCertificate: [0] version, serial, signature algorithm, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (_, mut rdns, _) = tlv(tbs)?;
    while !rdns.is_empty() {
        let (_, set, next) = tlv(rdns)?;
        rdns = next;
        let (_, atv, _) = tlv(set)?;
        let (_, oid, value) = tlv(atv)?;
        if oid == [0x55, 0x04, 0x03] {
            return String::from_utf8(tlv(value)?.1.to_vec()).ok();
        }
    }
    None
}
