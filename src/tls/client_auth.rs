//! Client certificates (`ssl_verify_client`, `ssl_client_certificate`,
//! `ssl_trusted_certificate`, `ssl_verify_depth`, `ssl_crl`), with OpenSSL's semantics as nginx
//! uses them.
//!
//! nginx never fails a handshake over a client certificate: its verify callback accepts every
//! chain, and the request is answered 495/496 later (`req::start`), so `error_page` and
//! `$ssl_client_verify` can see the result. The handshake verifier here does the same: it asks
//! for a certificate (naming the `ssl_client_certificate` subjects, not the
//! `ssl_trusted_certificate` ones), checks only the handshake signature (the client holds the
//! key), and the chain is judged once the handshake is done ([`ClientAuth::verify`]).
//!
//! The chain is built as OpenSSL builds it rather than with webpki, because OpenSSL accepts
//! what webpki refuses and nginx's users rely on it: a trusted CA certificate presented as the
//! client certificate, CA certificates as leaves, and `ssl_verify_depth` counting the
//! certificates above the leaf (the trusted root included). The failure reasons are OpenSSL's
//! `X509_verify_cert_error_string` texts, which `$ssl_client_verify` reports.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::certificate::X509Certificate;
use x509_parser::revocation_list::CertificateRevocationList;

use super::client::by_raw_key;
use super::{load_certs, open_failed, TlsError};

/// `ssl_verify_client`'s modes other than `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `on`: a certificate is required and must verify (496 without one, 495 when bad).
    On,
    /// `optional`: a certificate sent must verify.
    Optional,
    /// `optional_no_ca`: a certificate sent need not lead to a trusted CA.
    OptionalNoCa,
}

impl Mode {
    /// The mode for `ssl_verify_client`'s value (`None`: off).
    pub fn parse(value: &str) -> Option<Mode> {
        match value {
            "on" => Some(Mode::On),
            "optional" => Some(Mode::Optional),
            "optional_no_ca" => Some(Mode::OptionalNoCa),
            _ => None,
        }
    }
}

/// A server's client-certificate settings, read when its configuration is built.
#[derive(Debug)]
pub struct ClientAuth {
    /// The trust store: `ssl_client_certificate` then `ssl_trusted_certificate`.
    store: Vec<CertificateDer<'static>>,
    /// The subjects sent in the CertificateRequest (`ssl_client_certificate`'s only).
    hints: Vec<DistinguishedName>,
    /// `ssl_crl`'s lists (DER).
    crls: Vec<Vec<u8>>,
    /// `ssl_verify_depth`.
    depth: u32,
    algs: WebPkiSupportedAlgorithms,
}

/// Why a chain failed: OpenSSL's error code and text.
pub type Failure = (u32, &'static str);

const UNABLE_TO_GET_ISSUER_CERT: Failure = (2, "unable to get issuer certificate");
const UNABLE_TO_GET_CRL: Failure = (3, "unable to get certificate CRL");
const CRL_SIGNATURE_FAILURE: Failure = (8, "CRL signature failure");
const CERT_NOT_YET_VALID: Failure = (9, "certificate is not yet valid");
const CERT_HAS_EXPIRED: Failure = (10, "certificate has expired");
const CRL_NOT_YET_VALID: Failure = (11, "CRL is not yet valid");
const CRL_HAS_EXPIRED: Failure = (12, "CRL has expired");
const DEPTH_ZERO_SELF_SIGNED: Failure = (18, "self-signed certificate");
const SELF_SIGNED_IN_CHAIN: Failure = (19, "self-signed certificate in certificate chain");
const UNABLE_TO_GET_ISSUER_LOCALLY: Failure = (20, "unable to get local issuer certificate");
const CHAIN_TOO_LONG: Failure = (22, "certificate chain too long");
const CERT_REVOKED: Failure = (23, "certificate revoked");
const INVALID_CA: Failure = (24, "invalid CA certificate");
const BAD_ENCODING: Failure = (13, "format error in certificate's notBefore field");

/// The chains `optional_no_ca` accepts although they do not verify (nginx's
/// `ngx_ssl_verify_error_optional`: the issuer is not trusted or unknown).
pub fn optional_error(f: Failure) -> bool {
    matches!(f.0, 2 | 18 | 19 | 20 | 21)
}

impl ClientAuth {
    /// Reads the settings' files (a broken file is a configuration error, as in nginx).
    pub fn load(
        client_certificate: &Path,
        trusted_certificate: &Path,
        crl: &Path,
        depth: u32,
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<ClientAuth, TlsError> {
        let mut store = Vec::new();
        let mut hints = Vec::new();
        if !client_certificate.as_os_str().is_empty() {
            for c in load_certs(client_certificate)? {
                let subject = parse(&c)
                    .map_err(|_| TlsError::Certificate {
                        path: client_certificate.display().to_string(),
                        reason: "cannot parse a certificate".into(),
                    })?
                    .subject()
                    .as_raw()
                    .to_vec();
                // OpenSSL's `SSL_load_client_CA_file` names each subject once.
                let hint = DistinguishedName::from(subject);
                if !hints
                    .iter()
                    .any(|h: &DistinguishedName| h.as_ref() == hint.as_ref())
                {
                    hints.push(hint);
                }
                store.push(c);
            }
        }
        if !trusted_certificate.as_os_str().is_empty() {
            store.extend(load_certs(trusted_certificate)?);
        }
        let crls = if crl.as_os_str().is_empty() {
            Vec::new()
        } else {
            load_crls(crl)?
        };
        Ok(ClientAuth {
            store,
            hints,
            crls,
            depth,
            algs,
        })
    }

    /// Verifies a client's chain (the leaf first) at `now` (seconds since the epoch).
    ///
    /// nginx's verify callback lets OpenSSL go on after every error, and the result is the
    /// last error found; so every check runs, in OpenSSL's order (the chain, the CA flags,
    /// revocation, then signatures and dates from the top down), and the last failure wins.
    pub fn verify(&self, chain: &[CertificateDer<'_>], now: i64) -> Result<(), Failure> {
        let parsed: Vec<X509Certificate<'_>> = chain
            .iter()
            .map(|c| parse(c))
            .collect::<Result<_, _>>()
            .map_err(|_| BAD_ENCODING)?;
        let store: Vec<X509Certificate<'_>> =
            self.store.iter().filter_map(|c| parse(c).ok()).collect();
        let mut last = None;
        let path = self.build(&parsed, &store, &mut last);
        for cert in &path[1..] {
            if !may_issue(cert) {
                last = Some(INVALID_CA);
            }
        }
        if !self.crls.is_empty() {
            self.check_revocation(&path, now, &mut last);
        }
        for cert in path.iter().rev() {
            let v = cert.validity();
            if v.not_before.timestamp() > now {
                last = Some(CERT_NOT_YET_VALID);
            }
            if v.not_after.timestamp() < now {
                last = Some(CERT_HAS_EXPIRED);
            }
        }
        last.map_or(Ok(()), Err)
    }

    /// The chain from the leaf up to a self-signed certificate of the store, issuers found in
    /// the store first and then among the certificates the client sent; as far as it goes
    /// when it cannot be completed (`last`: why).
    fn build<'c>(
        &self,
        sent: &'c [X509Certificate<'c>],
        store: &'c [X509Certificate<'c>],
        last: &mut Option<Failure>,
    ) -> Vec<&'c X509Certificate<'c>> {
        let mut path = vec![&sent[0]];
        loop {
            let top = path[path.len() - 1];
            let trusted = store.iter().any(|s| s.as_ref() == top.as_ref());
            if self_issued(top) && self.signed_by(top, top) {
                if !trusted {
                    *last = Some(if path.len() == 1 {
                        DEPTH_ZERO_SELF_SIGNED
                    } else {
                        SELF_SIGNED_IN_CHAIN
                    });
                }
                break;
            }
            let named = |c: &&X509Certificate<'_>| c.subject().as_raw() == top.issuer().as_raw();
            // A namesake whose key did not sign it is another CA (OpenSSL tells them apart by
            // key identifiers and goes on looking).
            let issuer = store
                .iter()
                .filter(named)
                .chain(sent[1..].iter().filter(named))
                .filter(|c| !path.iter().any(|p| p.as_ref() == c.as_ref()))
                .find(|c| self.signed_by(top, c));
            match issuer {
                Some(i) => path.push(i),
                None => {
                    *last = Some(if trusted {
                        UNABLE_TO_GET_ISSUER_CERT
                    } else {
                        UNABLE_TO_GET_ISSUER_LOCALLY
                    });
                    break;
                }
            }
        }
        if path.len() > self.depth as usize + 1 {
            *last = Some(CHAIN_TOO_LONG);
        }
        path
    }

    /// nginx sets `X509_V_FLAG_CRL_CHECK_ALL`: every certificate of the chain needs a CRL
    /// from its issuer.
    fn check_revocation(
        &self,
        path: &[&X509Certificate<'_>],
        now: i64,
        last: &mut Option<Failure>,
    ) {
        let crls: Vec<CertificateRevocationList<'_>> = self
            .crls
            .iter()
            .filter_map(|d| x509_parser::parse_x509_crl(d).ok().map(|(_, c)| c))
            .collect();
        for (i, cert) in path.iter().enumerate() {
            let issuer = match path.get(i + 1) {
                Some(i) => Some(*i),
                None if self_issued(cert) => Some(*cert),
                None => None,
            };
            let Some(crl) = crls
                .iter()
                .find(|c| c.issuer().as_raw() == cert.issuer().as_raw())
            else {
                *last = Some(UNABLE_TO_GET_CRL);
                continue;
            };
            let signed = issuer.is_some_and(|i| {
                self.verifies(i, crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
            });
            if !signed {
                *last = Some(CRL_SIGNATURE_FAILURE);
                continue;
            }
            if crl.last_update().timestamp() > now {
                *last = Some(CRL_NOT_YET_VALID);
            }
            if crl.next_update().is_some_and(|t| t.timestamp() < now) {
                *last = Some(CRL_HAS_EXPIRED);
            }
            if crl
                .iter_revoked_certificates()
                .any(|r| r.raw_serial() == cert.raw_serial())
            {
                *last = Some(CERT_REVOKED);
            }
        }
    }

    fn signed_by(&self, cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
        self.verifies(
            issuer,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data,
        )
    }

    /// Whether `signature` over `message` verifies with `issuer`'s key under one of the
    /// provider's algorithms for that key type.
    fn verifies(&self, issuer: &X509Certificate<'_>, message: &[u8], signature: &[u8]) -> bool {
        let key = &issuer.public_key().subject_public_key.data;
        self.algs
            .all
            .iter()
            .any(|a| a.verify_signature(key, message, signature).is_ok())
    }
}

/// Whether a certificate may sign others (OpenSSL's `X509_check_ca`: basicConstraints CA, or
/// an X.509 v1 certificate, which has no extensions to say so).
fn may_issue(cert: &X509Certificate<'_>) -> bool {
    match cert.basic_constraints() {
        Ok(Some(bc)) => bc.value.ca,
        Ok(None) => cert.version() == x509_parser::x509::X509Version::V1,
        Err(_) => false,
    }
}

fn self_issued(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
}

fn parse<'c>(der: &'c CertificateDer<'_>) -> Result<X509Certificate<'c>, ()> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(drop)
}

/// The CRLs of a PEM file (`ssl_crl`).
fn load_crls(path: &Path) -> Result<Vec<Vec<u8>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateRevocationListDer;
    let fail = |reason: String| {
        TlsError::Rustls(format!("cannot load CRL \"{}\": {reason}", path.display()))
    };
    let bytes = std::fs::read(path).map_err(|e| fail(open_failed(&e)))?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("invalid PEM ({e})")))?;
    for c in &crls {
        x509_parser::parse_x509_crl(c).map_err(|e| fail(format!("cannot parse a CRL ({e})")))?;
    }
    Ok(crls)
}

/// The handshake's side of client authentication: ask, accept any chain (judged after the
/// handshake), check the handshake signature.
#[derive(Debug)]
pub struct Handshake(pub Arc<ClientAuth>);

impl ClientCertVerifier for Handshake {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.algs) {
            // X.509 v1, which webpki will not parse and OpenSSL accepts.
            Err(rustls::Error::InvalidCertificate(_)) => by_raw_key(
                message,
                cert,
                (dss.scheme, dss.signature()),
                &self.0.algs,
                false,
            ),
            r => r,
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.algs) {
            Err(rustls::Error::InvalidCertificate(_)) => by_raw_key(
                message,
                cert,
                (dss.scheme, dss.signature()),
                &self.0.algs,
                true,
            ),
            r => r,
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algs.supported_schemes()
    }
}
