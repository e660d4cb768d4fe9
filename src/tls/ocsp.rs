//! OCSP for `ssl_stapling`: the responder URL of a certificate (its AIA extension), its
//! issuer, the request nginx sends (one SHA-1 `CertID`), and the checks nginx makes of a
//! response before stapling it (status, signature by the issuer or a responder it delegated
//! to, the certificate's status `good`, thisUpdate/nextUpdate with 5 minutes of leeway).
//!
//! The ASN.1 is RustCrypto's (`x509-cert`, `x509-ocsp`); signatures are checked with the
//! algorithms of rustls' crypto provider, so no other crypto library comes in.

use std::time::{SystemTime, UNIX_EPOCH};

use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use rustls::pki_types::SignatureVerificationAlgorithm;
use sha1::{Digest, Sha1};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AuthorityInfoAccessSyntax, ExtendedKeyUsage};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest, Version,
};

/// `id-pe-authorityInfoAccess`.
const AIA: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
/// `id-ad-ocsp`.
const AD_OCSP: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// `id-ce-extKeyUsage`.
const EXT_KEY_USAGE: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.5.29.37");
/// `id-kp-OCSPSigning`.
const KP_OCSP_SIGNING: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
/// `id-pkix-ocsp-basic`.
const OCSP_BASIC: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// SHA-1, the hash of nginx's (OpenSSL's default) `CertID`.
const SHA1: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.3.14.3.2.26");

/// How far thisUpdate may be ahead of the clock and nextUpdate behind it (OpenSSL's
/// `OCSP_check_validity(..., 300, -1)` as nginx calls it).
const LEEWAY: i64 = 300;

/// A parsed certificate with its DER.
pub struct Cert {
    pub der: Vec<u8>,
    pub parsed: Certificate,
}

impl Cert {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Option<Cert> {
        Some(Cert {
            der: der.to_vec(),
            parsed: Certificate::from_der(der).ok()?,
        })
    }
}

/// The first OCSP responder URL of a certificate's AIA extension.
pub fn responder_url(cert: &Cert) -> Option<String> {
    let exts = cert.parsed.tbs_certificate.extensions.as_ref()?;
    let aia = exts.iter().find(|e| e.extn_id == AIA)?;
    let aia = AuthorityInfoAccessSyntax::from_der(aia.extn_value.as_bytes()).ok()?;
    aia.0.iter().find_map(|d| match &d.access_location {
        GeneralName::UniformResourceIdentifier(u) if d.access_method == AD_OCSP => {
            Some(u.to_string())
        }
        _ => None,
    })
}

/// The issuer of `leaf` among `candidates`: its subject is the leaf's issuer and its key
/// verifies the leaf's signature.
pub fn find_issuer<'a>(leaf: &Cert, candidates: &'a [Cert]) -> Option<&'a Cert> {
    let tbs = leaf.parsed.tbs_certificate.to_der().ok()?;
    candidates.iter().find(|c| {
        c.parsed.tbs_certificate.subject == leaf.parsed.tbs_certificate.issuer
            && verify(
                c,
                &leaf.parsed.signature_algorithm,
                &tbs,
                leaf.parsed.signature.raw_bytes(),
            )
    })
}

/// The `CertID` of `leaf` issued by `issuer`.
pub fn cert_id(leaf: &Cert, issuer: &Cert) -> Option<CertId> {
    let name = issuer.parsed.tbs_certificate.subject.to_der().ok()?;
    let key = issuer
        .parsed
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    Some(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: SHA1,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(Sha1::digest(&name).to_vec()).ok()?,
        issuer_key_hash: OctetString::new(Sha1::digest(key).to_vec()).ok()?,
        serial_number: leaf.parsed.tbs_certificate.serial_number.clone(),
    })
}

/// The DER of an unsigned OCSP request for one certificate.
pub fn request(id: &CertId) -> Option<Vec<u8>> {
    OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .ok()
}

/// Whether a DER blob is an OCSP response at all (what nginx asks of `ssl_stapling_file`).
pub fn parses(der: &[u8]) -> bool {
    OcspResponse::from_der(der).is_ok()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks a response for `id` as nginx does before stapling it: `Ok(valid)`, the time until
/// which it may be stapled (its nextUpdate, or forever without one), or the message nginx
/// logs. `verify`: `ssl_stapling_verify`.
pub fn check(
    der: &[u8],
    id: &CertId,
    issuer: &Cert,
    verify: bool,
    now: i64,
) -> Result<i64, String> {
    let resp = OcspResponse::from_der(der).map_err(|_| "d2i_OCSP_RESPONSE() failed".to_string())?;
    if resp.response_status != OcspResponseStatus::Successful {
        let n = resp.response_status as u32;
        return Err(format!(
            "OCSP response not successful ({n}: {})",
            status_str(resp.response_status)
        ));
    }
    let basic = resp
        .response_bytes
        .filter(|b| b.response_type == OCSP_BASIC)
        .and_then(|b| BasicOcspResponse::from_der(b.response.as_bytes()).ok())
        .ok_or_else(|| "OCSP_response_get1_basic() failed".to_string())?;
    if verify && !signed_by_issuer(&basic, issuer) {
        return Err("OCSP_basic_verify() failed".into());
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| r.cert_id == *id)
        .ok_or_else(|| "certificate status not found in the OCSP response".to_string())?;
    match single.cert_status {
        CertStatus::Good(_) => {}
        CertStatus::Revoked(_) => {
            return Err("certificate status \"revoked\" in the OCSP response".into())
        }
        CertStatus::Unknown(_) => {
            return Err("certificate status \"unknown\" in the OCSP response".into())
        }
    }
    let this = secs(&single.this_update);
    let next = single.next_update.as_ref().map(secs);
    let valid = this <= now + LEEWAY && next.is_none_or(|n| n >= now - LEEWAY && n >= this);
    if !valid {
        return Err("OCSP_check_validity() failed".into());
    }
    Ok(next.unwrap_or(i64::MAX))
}

fn secs(t: &x509_ocsp::OcspGeneralizedTime) -> i64 {
    t.0.to_unix_duration().as_secs() as i64
}

/// OpenSSL's `OCSP_response_status_str`.
fn status_str(s: OcspResponseStatus) -> &'static str {
    match s {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedrequest",
        OcspResponseStatus::InternalError => "internalerror",
        OcspResponseStatus::TryLater => "trylater",
        OcspResponseStatus::SigRequired => "sigrequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}

/// Whether the response is signed by the issuer itself, or by a certificate it carries that
/// the issuer signed for OCSP signing (a delegated responder).
fn signed_by_issuer(basic: &BasicOcspResponse, issuer: &Cert) -> bool {
    let Ok(tbs) = basic.tbs_response_data.to_der() else {
        return false;
    };
    let sig = basic.signature.raw_bytes();
    if verify(issuer, &basic.signature_algorithm, &tbs, sig) {
        return true;
    }
    let delegated = basic.certs.iter().flatten().filter_map(|c| {
        let der = c.to_der().ok()?;
        let cert = Cert::parse(&der)?;
        let signs_ocsp = cert
            .parsed
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == EXT_KEY_USAGE)
            .filter_map(|e| ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok())
            .any(|eku| eku.0.contains(&KP_OCSP_SIGNING));
        signs_ocsp.then_some(cert)
    });
    delegated
        .filter(|d| find_issuer(d, std::slice::from_ref(issuer)).is_some())
        .any(|d| verify(&d, &basic.signature_algorithm, &tbs, sig))
}

/// The DER contents (without the SEQUENCE header) of an algorithm identifier, as rustls'
/// algorithms name themselves.
fn alg_contents(alg: &AlgorithmIdentifierOwned) -> Option<Vec<u8>> {
    let mut v = alg.oid.to_der().ok()?;
    if let Some(p) = &alg.parameters {
        v.extend(p.to_der().ok()?);
    }
    Some(v)
}

/// Whether `signer`'s key made `sig` over `msg` with `alg`.
fn verify(signer: &Cert, alg: &AlgorithmIdentifierOwned, msg: &[u8], sig: &[u8]) -> bool {
    let spki = &signer.parsed.tbs_certificate.subject_public_key_info;
    let (Some(sig_alg), Some(key_alg)) = (alg_contents(alg), alg_contents(&spki.algorithm)) else {
        return false;
    };
    let key = spki.subject_public_key.raw_bytes();
    let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    algs.all
        .iter()
        .any(|a: &&dyn SignatureVerificationAlgorithm| {
            a.signature_alg_id().as_ref() == sig_alg.as_slice()
                && a.public_key_alg_id().as_ref() == key_alg.as_slice()
                && a.verify_signature(key, msg, sig).is_ok()
        })
}
