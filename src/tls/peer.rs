//! A client certificate a connection presented, and the `$ssl_client_*` values nginx derives
//! from it. A connection holds one only when a certificate was sent; its verdict is fixed at
//! the end of the handshake ([`super::client_auth`]), everything else is formatted when a
//! variable asks for it, from the DER.
//!
//! Formats are OpenSSL's as nginx 1.22 prints them: names per RFC 2253 (last RDN first,
//! `,`-separated, `X509_NAME_print_ex` with `XN_FLAG_RFC2253`) or as the legacy
//! `X509_NAME_oneline` (`/CN=...`), the serial in uppercase hex, the SHA-1 fingerprint in
//! lowercase hex, dates as `ASN1_TIME_print` (`Dec  3 19:27:19 2026 GMT`).

use std::io::Write;

use rustls::pki_types::CertificateDer;
use sha1::Digest;
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Name;

use super::client_auth::Failure;

/// What a client sent, and how its chain fared.
#[derive(Debug)]
pub struct PeerCert {
    /// The chain as sent, the leaf first.
    chain: Vec<CertificateDer<'static>>,
    /// The chain's verdict under the handshake server's settings.
    pub verdict: Result<(), Failure>,
}

impl PeerCert {
    /// A chain and its verdict.
    pub fn new(chain: Vec<CertificateDer<'static>>, verdict: Result<(), Failure>) -> PeerCert {
        PeerCert { chain, verdict }
    }

    fn leaf(&self) -> Option<X509Certificate<'_>> {
        let der = self.chain.first()?;
        x509_parser::parse_x509_certificate(der)
            .ok()
            .map(|(_, c)| c)
    }

    fn pem(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.chain[0]);
        let mut out = b"-----BEGIN CERTIFICATE-----\n".to_vec();
        for line in b64.as_bytes().chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
        out
    }
}

/// Writes `$name` (an `ssl_client_*` variable) for a TLS connection with `cert` (`None`: no
/// certificate sent) at `now` (seconds since the epoch). `false`: not such a variable.
pub fn write(name: &str, cert: Option<&PeerCert>, now: i64, out: &mut Vec<u8>) -> bool {
    if name == "ssl_client_verify" {
        match cert.map(|c| c.verdict) {
            None => out.extend_from_slice(b"NONE"),
            Some(Ok(())) => out.extend_from_slice(b"SUCCESS"),
            Some(Err((_, why))) => {
                out.extend_from_slice(b"FAILED:");
                out.extend_from_slice(why.as_bytes());
            }
        }
        return true;
    }
    let Some(cert) = cert else {
        return is_cert_var(name);
    };
    match name {
        "ssl_client_raw_cert" => out.extend_from_slice(&cert.pem()),
        // The deprecated form: a tab after every line break but the last, which is dropped.
        "ssl_client_cert" => {
            let pem = cert.pem();
            for &b in &pem[..pem.len() - 1] {
                out.push(b);
                if b == b'\n' {
                    out.push(b'\t');
                }
            }
        }
        "ssl_client_escaped_cert" => {
            for &b in &cert.pem() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(b);
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
        "ssl_client_fingerprint" => {
            for b in sha1::Sha1::digest(&cert.chain[0]) {
                let _ = write!(out, "{b:02x}");
            }
        }
        _ => {
            let Some(leaf) = cert.leaf() else {
                return is_cert_var(name);
            };
            match name {
                "ssl_client_s_dn" => rfc2253(leaf.subject(), out),
                "ssl_client_i_dn" => rfc2253(leaf.issuer(), out),
                "ssl_client_s_dn_legacy" => oneline(leaf.subject(), out),
                "ssl_client_i_dn_legacy" => oneline(leaf.issuer(), out),
                "ssl_client_serial" => {
                    let raw = leaf.raw_serial();
                    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len() - 1);
                    for b in &raw[start.min(raw.len().saturating_sub(1))..] {
                        let _ = write!(out, "{b:02X}");
                    }
                }
                "ssl_client_v_start" => asn1_time(leaf.validity().not_before.timestamp(), out),
                "ssl_client_v_end" => asn1_time(leaf.validity().not_after.timestamp(), out),
                "ssl_client_v_remain" => {
                    let end = leaf.validity().not_after.timestamp();
                    let _ = write!(out, "{}", if end < now { 0 } else { (end - now) / 86400 });
                }
                _ => return false,
            }
        }
    }
    true
}

/// The variables read from a certificate (empty when none was sent).
fn is_cert_var(name: &str) -> bool {
    matches!(
        name,
        "ssl_client_raw_cert"
            | "ssl_client_cert"
            | "ssl_client_escaped_cert"
            | "ssl_client_fingerprint"
            | "ssl_client_s_dn"
            | "ssl_client_i_dn"
            | "ssl_client_s_dn_legacy"
            | "ssl_client_i_dn_legacy"
            | "ssl_client_serial"
            | "ssl_client_v_start"
            | "ssl_client_v_end"
            | "ssl_client_v_remain"
    )
}

/// OpenSSL's short name for an attribute type (its dotted OID when it has none).
fn short_name(oid: &str) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Borrowed(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.46" => "dnQualifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        other => return std::borrow::Cow::Owned(other.to_string()),
    })
}

/// Each RDN's attributes as (short name, value bytes).
fn attributes<'n>(name: &'n X509Name<'_>) -> Vec<Vec<(std::borrow::Cow<'static, str>, &'n [u8])>> {
    name.iter()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let value = a
                        .as_str()
                        .map_or(a.attr_value().data.as_ref(), str::as_bytes);
                    (short_name(&a.attr_type().to_id_string()), value)
                })
                .collect()
        })
        .collect()
}

/// RFC 2253, as OpenSSL's `XN_FLAG_RFC2253`: RDNs last first, `,` between them, `+` within one,
/// special characters escaped with `\`, control and non-ASCII bytes as `\XX`.
fn rfc2253(name: &X509Name<'_>, out: &mut Vec<u8>) {
    for (i, rdn) in attributes(name).iter().rev().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        for (j, (sn, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push(b'+');
            }
            out.extend_from_slice(sn.as_bytes());
            out.push(b'=');
            for (k, &b) in value.iter().enumerate() {
                let edge =
                    (k == 0 && (b == b'#' || b == b' ')) || (k + 1 == value.len() && b == b' ');
                if edge || b",+\"\\<>;".contains(&b) {
                    out.push(b'\\');
                    out.push(b);
                } else if !(0x20..0x7f).contains(&b) {
                    let _ = write!(out, "\\{b:02X}");
                } else {
                    out.push(b);
                }
            }
        }
    }
}

/// `X509_NAME_oneline`: `/SN=value` for each attribute in order, unprintable bytes as `\xXX`.
fn oneline(name: &X509Name<'_>, out: &mut Vec<u8>) {
    for rdn in attributes(name) {
        for (j, (sn, value)) in rdn.iter().enumerate() {
            out.push(if j == 0 { b'/' } else { b'+' });
            out.extend_from_slice(sn.as_bytes());
            out.push(b'=');
            for &b in *value {
                if (b' '..=b'~').contains(&b) {
                    out.push(b);
                } else {
                    let _ = write!(out, "\\x{b:02X}");
                }
            }
        }
    }
}

/// `ASN1_TIME_print`: `Dec  3 19:27:19 2026 GMT`.
fn asn1_time(t: i64, out: &mut Vec<u8>) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let at = if t >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(t.unsigned_abs())
    };
    let c = crate::http::time::local_time(at, 0);
    let _ = write!(
        out,
        "{} {:2} {:02}:{:02}:{:02} {} GMT",
        MONTHS[c.month as usize - 1],
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.year
    );
}
