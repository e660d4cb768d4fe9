//! `ringproxy-load cert`: a self-signed certificate and its key for one or more names, so
//! scripts/bench.sh and the tests need no openssl command line.
//!
//! The certificate is its own trust anchor: clients pass the same `cert.pem` as their CA file.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{CertificateParams, DnType, KeyPair};

use crate::cli::{CertArgs, KeyType};

/// Writes `cert.pem` and `key.pem` (mode 0600) into `args.out`, creating it if needed.
pub fn run(args: &CertArgs) -> Result<()> {
    let alg = match args.key_type {
        KeyType::Ecdsa => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::Rsa => &rcgen::PKCS_RSA_SHA256,
    };
    let key = KeyPair::generate_for(alg).context("cannot generate the key")?;
    // Names that parse as IP addresses become IP subjectAltNames, the rest DNS names.
    let mut params =
        CertificateParams::new(args.names.clone()).context("invalid certificate name")?;
    params
        .distinguished_name
        .push(DnType::CommonName, args.names[0].as_str());
    let cert = params
        .self_signed(&key)
        .context("cannot sign the certificate")?;
    fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    write(&args.out.join("cert.pem"), cert.pem().as_bytes(), 0o644)?;
    write(
        &args.out.join("key.pem"),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    println!(
        "wrote {0}/cert.pem and {0}/key.pem for {1}",
        args.out.display(),
        args.names.join(", ")
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
