//! OCSP for `ssl_stapling`: the responder URL of a certificate (its AIA extension), its
//! issuer, the request nginx sends (one SHA-1 `CertID`), and the checks nginx makes of a
//! response before stapling it (status; its signer and signature, see [`Trust`]; the
//! certificate's status `good`; thisUpdate/nextUpdate with 5 minutes of leeway).
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
    ResponderId, TbsRequest, Version,
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
#[derive(Clone)]
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
/// logs. `trust`: who may sign it.
pub fn check(
    der: &[u8],
    id: &CertId,
    issuer: &Cert,
    trust: &Trust,
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
    if !signed_by_trusted(&basic, issuer, trust) {
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

/// What a response's signer is checked against, as nginx's `OCSP_basic_verify(...,
/// OCSP_TRUSTOTHER or OCSP_NOVERIFY)`: the signer, named by the responder ID, is a
/// certificate of the server's chain (trusted as it is) or one the response carries; its
/// signature must hold. With `ssl_stapling_verify on`, a carried signer must also lead to a
/// self-signed certificate of `ssl_trusted_certificate` and be the issuer or a responder the
/// issuer made for OCSP signing.
pub struct Trust {
    /// The server's chain after its leaf.
    pub chain: Vec<Cert>,
    /// `ssl_trusted_certificate`.
    pub store: Vec<Cert>,
    /// `ssl_stapling_verify`.
    pub verify: bool,
}

/// The longest chain followed up to a trusted root.
const MAX_DEPTH: usize = 10;

/// Whether the certificate is the one the responder ID names.
fn named(c: &Cert, id: &ResponderId) -> bool {
    match id {
        ResponderId::ByName(name) => c.parsed.tbs_certificate.subject == *name,
        ResponderId::ByKey(hash) => {
            let key = c
                .parsed
                .tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes();
            Sha1::digest(key).as_slice() == hash.as_bytes()
        }
    }
}

/// Whether the response's signer is one `trust` accepts.
fn signed_by_trusted(basic: &BasicOcspResponse, issuer: &Cert, trust: &Trust) -> bool {
    let Ok(tbs) = basic.tbs_response_data.to_der() else {
        return false;
    };
    let carried: Vec<Cert> = basic
        .certs
        .iter()
        .flatten()
        .filter_map(|c| Cert::parse(&c.to_der().ok()?))
        .collect();
    let id = &basic.tbs_response_data.responder_id;
    let (signer, in_chain) = match trust.chain.iter().find(|c| named(c, id)) {
        Some(c) => (c, true),
        None => match carried.iter().find(|c| named(c, id)) {
            Some(c) => (c, false),
            None => return false,
        },
    };
    if !verify(
        signer,
        &basic.signature_algorithm,
        &tbs,
        basic.signature.raw_bytes(),
    ) {
        return false;
    }
    if !trust.verify || in_chain {
        return true;
    }
    let others: Vec<&Cert> = carried
        .iter()
        .chain(&trust.chain)
        .chain(&trust.store)
        .collect();
    let is_issuer = signer.parsed.tbs_certificate.subject == issuer.parsed.tbs_certificate.subject
        && signer.parsed.tbs_certificate.subject_public_key_info
            == issuer.parsed.tbs_certificate.subject_public_key_info;
    leads_to_root(signer, &others, &trust.store) && (is_issuer || delegated(signer, issuer))
}

/// Whether `cert` was made by `issuer` for OCSP signing.
fn delegated(cert: &Cert, issuer: &Cert) -> bool {
    let signs_ocsp = cert
        .parsed
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == EXT_KEY_USAGE)
        .filter_map(|e| ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok())
        .any(|eku| eku.0.contains(&KP_OCSP_SIGNING));
    signs_ocsp && find_issuer(cert, std::slice::from_ref(issuer)).is_some()
}

/// Whether `cert`, through certificates of `others`, leads to a self-signed one of `store`.
fn leads_to_root(cert: &Cert, others: &[&Cert], store: &[Cert]) -> bool {
    let mut at = cert;
    for _ in 0..MAX_DEPTH {
        if store.iter().any(|s| s.der == at.der)
            && find_issuer(at, std::slice::from_ref(at)).is_some()
        {
            return true;
        }
        let Some(up) = others
            .iter()
            .copied()
            .find(|o| o.der != at.der && find_issuer(at, std::slice::from_ref(*o)).is_some())
        else {
            return false;
        };
        at = up;
    }
    false
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
