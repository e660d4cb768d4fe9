//! TLS with rustls: termination for `listen ... ssl` (`server`: per-shard server
//! configurations, SNI selection with the router's `server_name` rules, the handshake, nginx's
//! answer to plain HTTP on a TLS port) and TLS to backends for `proxy_pass https://`
//! (`client`). The bytes then flow through [`crate::proxy::conn::Stream`] like plain ones.
//!
//! Place in the data flow: accept -> [`accept`] (handshake, bounded by `client_header_timeout`)
//! -> request head ...; connect to a peer -> [`upstream`] (handshake, bounded by
//! `proxy_connect_timeout`) -> upstream request ... Certificates and keys are read when the
//! configuration is built (a broken file is a configuration error) and again by each shard.
//! `ssl_stapling`'s OCSP responses (`ocsp`, `stapling`) are fetched once per process and
//! configuration generation, and shared by the shards.

mod client;
pub mod client_auth;
pub mod conf_command;
pub mod keys;
mod ocsp;
pub mod peer;
mod server;
mod session;
mod stapling;
pub mod stream;
pub mod suites;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

pub use client::{check_upstream, upstream, ClientConfigs, Verifier};
pub use server::{accept, check_server, ShardTls};
pub use stapling::warnings as stapling_warnings;

use crate::config::model::TlsVersion;

/// Why a TLS setting cannot be used (reported as a configuration error).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file cannot be read or holds no certificate.
    #[error("cannot load certificate \"{path}\": {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key file cannot be read, holds no key, or a key rustls cannot use.
    #[error("cannot load certificate key \"{path}\": {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("certificate \"{cert}\" and key \"{key}\" do not match ({reason})")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// rustls' words.
        reason: String,
    },
    /// A cipher string rustls cannot honour.
    #[error("\"{directive}\": {source}")]
    Ciphers {
        /// `ssl_ciphers` or `proxy_ssl_ciphers`.
        directive: &'static str,
        /// What is wrong.
        source: suites::CipherError,
    },
    /// An `ssl_ecdh_curve` list with no curve rustls implements.
    #[error("\"ssl_ecdh_curve\": no curve in \"{0}\" is supported by rustls (supported: X25519, prime256v1, secp384r1, X25519MLKEM768)")]
    Curve(String),
    /// Anything else rustls refused while building a configuration.
    #[error("{0}")]
    Rustls(String),
}

/// The crypto provider for a cipher string, protocol list and `ssl_ecdh_curve` value
/// (`directive` names the cipher directive in errors).
fn provider(
    ciphers: &str,
    versions: &[TlsVersion],
    directive: &'static str,
    curves: &str,
) -> Result<Arc<CryptoProvider>, TlsError> {
    let tls12 = versions.contains(&TlsVersion::Tls12);
    // What the string skips was warned about when the configuration was read.
    let cipher_suites = suites::from_cipher_string(ciphers, tls12)
        .map_err(|source| TlsError::Ciphers { directive, source })?
        .suites;
    let defaults = rustls::crypto::aws_lc_rs::default_provider();
    let kx_groups = match curves {
        "auto" => defaults.kx_groups.clone(),
        // Curves rustls lacks were warned about and skipped when the configuration was read.
        list => {
            let groups: Vec<_> = list.split(':').filter_map(curve).collect();
            if groups.is_empty() {
                return Err(TlsError::Curve(list.to_string()));
            }
            groups
        }
    };
    Ok(Arc::new(CryptoProvider {
        cipher_suites,
        kx_groups,
        ..defaults
    }))
}

/// A key exchange group by its OpenSSL names (`ssl_ecdh_curve`).
pub fn curve(name: &str) -> Option<&'static dyn rustls::crypto::SupportedKxGroup> {
    use rustls::crypto::aws_lc_rs::kx_group;
    Some(match name {
        "X25519" | "x25519" => kx_group::X25519,
        "prime256v1" | "P-256" | "secp256r1" => kx_group::SECP256R1,
        "secp384r1" | "P-384" => kx_group::SECP384R1,
        "X25519MLKEM768" => kx_group::X25519MLKEM768,
        _ => return None,
    })
}

/// rustls' protocol versions for `ssl_protocols`/`proxy_ssl_protocols`.
fn versions(list: &[TlsVersion]) -> Vec<&'static rustls::SupportedProtocolVersion> {
    list.iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect()
}

fn open_failed(e: &std::io::Error) -> String {
    format!("open() failed ({})", crate::config::os_error(e))
}

/// The certificates of a PEM file (a chain: the leaf first).
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(open_failed(&e)))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("invalid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(fail("no certificate in PEM file".into()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC; encrypted PKCS#8, opened
/// with one of `passwords`).
fn load_key(path: &Path, passwords: &keys::Passwords) -> Result<PrivateKeyDer<'static>, TlsError> {
    let fail = |reason: String| TlsError::Key {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(open_failed(&e)))?;
    if let Some(key) = keys::decrypt(&bytes, passwords) {
        return key.map_err(fail);
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => fail("no private key in PEM file".into()),
        e => fail(format!("invalid PEM ({e})")),
    })
}

/// A certificate chain with its key, checked to belong together.
fn load_pair(
    cert: &Path,
    key: &Path,
    passwords: &keys::Passwords,
    p: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let der = load_key(key, passwords)?;
    let signing = p
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::Key {
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
    let mismatch = |reason: String| TlsError::Mismatch {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        reason,
    };
    // Compared here rather than with rustls' `keys_match`, which parses the certificate with
    // webpki: that refuses X.509 v1 certificates, which OpenSSL (and so nginx) serves.
    let spki = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| mismatch(format!("cannot parse the certificate: {e}")))?
        .1
        .tbs_certificate
        .subject_pki
        .raw
        .to_vec();
    match signing.public_key() {
        Some(public) if public.as_ref() != spki.as_slice() => {
            Err(mismatch("the key is not the certificate's".into()))
        }
        _ => Ok(CertifiedKey::new(chain, signing)),
    }
}
