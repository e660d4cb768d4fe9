//! Certificates generated for the tests (rcgen): a CA and leaves it signs, written as PEM
//! files. No key is ever committed.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate: its DER (to compare with what a client received) and PEM files.
pub struct Leaf {
    pub der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// Writes `<stem>.crt` (the leaf, then `chain` PEM if given) and `<stem>.key` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{stem}.crt")), &self.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), &self.key_pem).unwrap();
    }
}

impl Ca {
    /// A new CA (ECDSA P-256).
    pub fn new() -> Ca {
        Ca::named("ringproxy test CA")
    }

    /// A new CA (ECDSA P-256) whose subject is `CN=<cn>`.
    pub fn named(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// The CA certificate as PEM (for `proxy_ssl_trusted_certificate`).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate as DER (for a client's root store).
    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ringproxy test intermediate");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer =
            CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &self.issuer).unwrap();
        Ca { issuer }
    }

    /// A CRL from this CA (PEM) revoking `revoked` (for `ssl_crl`).
    pub fn crl(&self, revoked: &[&[u8]]) -> String {
        let serial = |der: &[u8]| {
            let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
            rcgen::SerialNumber::from_slice(c.raw_serial())
        };
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2040, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|der| rcgen::RevokedCertParams {
                    serial_number: serial(der),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }

    /// A leaf for `names`, ECDSA P-256 or RSA (2048).
    pub fn leaf(&self, names: &[&str], rsa: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].clone());
        let key = if rsa {
            KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
        } else {
            KeyPair::generate().unwrap()
        };
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Writes `certs/localhost.crt` and `certs/localhost.key` under `prefix` (what seed 005
/// names) and returns the CA that signed them.
pub fn write_localhost(prefix: &Path) -> Ca {
    let ca = Ca::new();
    ca.leaf(&["localhost", "127.0.0.1"], false)
        .write(&prefix.join("certs"), "localhost");
    ca
}
