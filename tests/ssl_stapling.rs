//! `ssl_stapling` through a running ringproxy, with an OCSP responder written here (answers
//! signed by the test CA, or by a key the CA never saw) and a rustls client that keeps the
//! OCSP response the server staples: the responder's answer arrives once fetched (the first
//! handshake starts the request, as in nginx), `ssl_stapling_file`'s response is stapled as is,
//! a certificate without a responder URL staples nothing with nginx's warning, and an answer
//! signed by the wrong key is refused while `ssl_stapling_verify` is on.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use common::tls::{prefix_with, start};
use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, IsCa, KeyPair,
    SigningKey,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    OcspResponseStatus, ResponderId, ResponseBytes, ResponseData, SingleResponse, Version,
};

const T: Duration = Duration::from_secs(20);
const ECDSA_SHA256: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OCSP_BASIC: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");

/// A CA whose key the responder can sign with.
struct Ca(CertifiedIssuer<'static, KeyPair>);

/// A leaf written as `certs/<stem>.crt` (with the CA after it when `chain`) and `.key`.
struct Leaf(common::certs::Leaf);

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "stapling test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A leaf for `a.test`; `aia`: its OCSP responder URL; `chain`: the CA follows it in the
    /// certificate file (else the issuer must come from `ssl_trusted_certificate`).
    fn leaf(&self, aia: Option<&str>, chain: bool) -> Leaf {
        let mut params = CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        if let Some(url) = aia {
            let syntax = AuthorityInfoAccessSyntax(vec![AccessDescription {
                access_method: der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1"),
                access_location: GeneralName::UniformResourceIdentifier(
                    der::asn1::Ia5String::new(url).unwrap(),
                ),
            }]);
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                    syntax.to_der().unwrap(),
                ));
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        let pem = if chain {
            format!("{}{}", cert.pem(), self.0.pem())
        } else {
            cert.pem()
        };
        Leaf(common::certs::Leaf {
            der: cert.der().to_vec(),
            cert_pem: pem,
            key_pem: key.serialize_pem(),
        })
    }
}

fn gtime(t: SystemTime) -> OcspGeneralizedTime {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    OcspGeneralizedTime::from(der::DateTime::from_unix_duration(since).unwrap())
}

/// Who signs a responder's answers: the certificate named as responder (and carried in the
/// response, as `openssl ocsp` does) and the key that signs, which may not be its.
struct Signer {
    cert: x509_cert::Certificate,
    key: KeyPair,
}

impl Signer {
    /// The CA itself.
    fn ca(ca: &Ca) -> Signer {
        Signer {
            cert: x509_cert::Certificate::from_der(ca.0.der()).unwrap(),
            key: KeyPair::from_pem(&ca.0.key().serialize_pem()).unwrap(),
        }
    }

    /// The CA's name and certificate with a key that is not its own.
    fn forged(ca: &Ca) -> Signer {
        Signer {
            key: KeyPair::generate().unwrap(),
            ..Signer::ca(ca)
        }
    }

    /// A self-signed responder the CA never certified.
    fn rogue() -> Signer {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rogue responder");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Signer {
            cert: x509_cert::Certificate::from_der(cert.der()).unwrap(),
            key,
        }
    }
}

/// A successful OCSP response saying `good` for every certificate of `req`.
fn response(req: &OcspRequest, signer: &Signer) -> Vec<u8> {
    let now = SystemTime::now();
    let responses = req
        .tbs_request
        .request_list
        .iter()
        .map(|r| SingleResponse {
            cert_id: r.req_cert.clone(),
            cert_status: CertStatus::good(),
            this_update: gtime(now - Duration::from_secs(60)),
            next_update: Some(gtime(now + Duration::from_secs(3600))),
            single_extensions: None,
        })
        .collect();
    let tbs = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByName(signer.cert.tbs_certificate.subject.clone()),
        produced_at: gtime(now),
        responses,
        response_extensions: None,
    };
    let signature = signer.key.sign(&tbs.to_der().unwrap()).unwrap();
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_SHA256,
            parameters: None,
        },
        signature: BitString::from_bytes(&signature).unwrap(),
        // The signer's certificate, as `openssl ocsp` sends it.
        certs: Some(vec![signer.cert.clone()]),
    };
    OcspResponse {
        response_status: OcspResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: OCSP_BASIC,
            response: OctetString::new(basic.to_der().unwrap()).unwrap(),
        }),
    }
    .to_der()
    .unwrap()
}

/// An OCSP responder on 127.0.0.1 answering nginx's GET requests; its port and how many
/// requests it answered.
fn responder(signer: Signer) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            s.set_read_timeout(Some(T)).unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split(' ').nth(1).unwrap_or_default();
            let b64 = path
                .trim_start_matches("/ocsp/")
                .replace("%2B", "+")
                .replace("%2F", "/")
                .replace("%3D", "=");
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let req = OcspRequest::from_der(&der).unwrap();
            let body = response(&req, &signer);
            let _ = s.write_all(
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = s.write_all(&body);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, served)
}

/// A verifier that accepts any certificate and keeps the OCSP response it was shown.
#[derive(Debug)]
struct Keep {
    inner: Arc<ringproxy::tls::Verifier>,
    ocsp: Mutex<Vec<u8>>,
}

impl ServerCertVerifier for Keep {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.ocsp.lock().unwrap() = ocsp.to_vec();
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The OCSP response stapled in one handshake with 127.0.0.1:`port` (empty: none).
async fn staple(port: u16, version: &'static rustls::SupportedProtocolVersion) -> Vec<u8> {
    let p = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let keep = Arc::new(Keep {
        inner: ringproxy::tls::Verifier::none(p.clone()),
        ocsp: Mutex::new(Vec::new()),
    });
    let cfg = ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(keep.clone())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("a.test").unwrap();
    let connect = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp);
    tokio::time::timeout(T, connect)
        .await
        .expect("handshake in time")
        .expect("handshake");
    let ocsp = keep.ocsp.lock().unwrap().clone();
    ocsp
}

/// The first non-empty staple within `T`, handshaking again every 50 ms.
async fn first_staple(port: u16) -> Vec<u8> {
    let deadline = Instant::now() + T;
    loop {
        let got = staple(port, &rustls::version::TLS13).await;
        if !got.is_empty() || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn conf(port: u16, extra: &str) -> String {
    format!(
        "worker_processes 2;\nevents {{}}\nhttp {{
          server {{ listen 127.0.0.1:{port} ssl;
                   ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
                   ssl_stapling on; {extra}
                   return 200 x; }}
        }}\n"
    )
}

/// Waits (within `T`) until `served` reaches `n`.
fn wait_served(served: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + T;
    while served.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "the responder was not asked");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// effect: ssl_stapling
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_responder_named_in_the_certificate_is_asked_and_its_answer_stapled() {
    let ca = Ca::new();
    let (rport, served) = responder(Signer::ca(&ca));
    let leaf = ca.leaf(Some(&format!("http://127.0.0.1:{rport}/ocsp")), true);
    let port = common::free_port();
    let _p = start(prefix_with(&[("a", &leaf.0)]), port, &conf(port, ""));
    // As in nginx, the first handshake starts the request and goes without.
    assert!(staple(port, &rustls::version::TLS13).await.is_empty());
    let got = first_staple(port).await;
    assert!(!got.is_empty(), "no OCSP response stapled within {T:?}");
    let parsed = OcspResponse::from_der(&got).expect("an OCSP response");
    assert_eq!(parsed.response_status, OcspResponseStatus::Successful);
    // Both protocol versions staple it, from either shard, without asking again.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        for _ in 0..4 {
            assert_eq!(staple(port, version).await, got, "{version:?}");
        }
    }
    assert_eq!(served.load(Ordering::SeqCst), 1, "one request per refresh");
}

// effect: ssl_stapling_responder ssl_trusted_certificate
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_stapling_responder_with_the_issuer_from_ssl_trusted_certificate() {
    let ca = Ca::new();
    let (rport, served) = responder(Signer::ca(&ca));
    // No AIA in the certificate, no CA in its file. Verified: the CA signs, and it is the
    // issuer and a root of ssl_trusted_certificate.
    let leaf = ca.leaf(None, false);
    let port = common::free_port();
    let dir = prefix_with(&[("a", &leaf.0)]);
    std::fs::write(dir.path().join("certs/ca.crt"), ca.0.pem()).unwrap();
    let extra = format!(
        "ssl_stapling_responder http://127.0.0.1:{rport}/ocsp/; ssl_trusted_certificate certs/ca.crt;
         ssl_stapling_verify on;"
    );
    let _p = start(dir, port, &conf(port, &extra));
    let got = first_staple(port).await;
    assert!(!got.is_empty(), "no OCSP response stapled within {T:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

// effect: ssl_stapling_file
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_stapling_file_is_stapled_as_is_from_the_first_handshake() {
    let ca = Ca::new();
    // No responder anywhere: the file is all there is.
    let leaf = ca.leaf(None, false);
    let req = OcspRequest::from_der(&request_for(&ca, &leaf)).unwrap();
    let der = response(&req, &Signer::ca(&ca));
    let port = common::free_port();
    let dir = prefix_with(&[("a", &leaf.0)]);
    std::fs::write(dir.path().join("certs/a.ocsp"), &der).unwrap();
    let _p = start(dir, port, &conf(port, "ssl_stapling_file certs/a.ocsp;"));
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        assert_eq!(staple(port, version).await, der, "{version:?}");
    }
}

/// An OCSP request for `leaf` (the file test needs a response without a responder).
fn request_for(ca: &Ca, leaf: &Leaf) -> Vec<u8> {
    use sha1::Digest;
    let issuer = x509_cert::Certificate::from_der(ca.0.der()).unwrap();
    let cert = x509_cert::Certificate::from_der(&leaf.0.der).unwrap();
    let id = x509_ocsp::CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: der::oid::ObjectIdentifier::new_unwrap("1.3.14.3.2.26"),
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: OctetString::new(
            sha1::Sha1::digest(issuer.tbs_certificate.subject.to_der().unwrap()).to_vec(),
        )
        .unwrap(),
        issuer_key_hash: OctetString::new(
            sha1::Sha1::digest(
                issuer
                    .tbs_certificate
                    .subject_public_key_info
                    .subject_public_key
                    .raw_bytes(),
            )
            .to_vec(),
        )
        .unwrap(),
        serial_number: cert.tbs_certificate.serial_number,
    };
    OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_a_responder_url_staples_nothing_with_nginx_warning() {
    let ca = Ca::new();
    let leaf = ca.leaf(None, true);
    let port = common::free_port();
    let p = start(prefix_with(&[("a", &leaf.0)]), port, &conf(port, ""));
    let cert = p.dir.path().join("certs/a.crt");
    let warning = format!(
        "[warn] \"ssl_stapling\" ignored, no OCSP responder URL in the certificate \"{}\"",
        cert.display()
    );
    assert!(p.stderr().contains(&warning), "{}", p.stderr());
    for _ in 0..3 {
        assert!(staple(port, &rustls::version::TLS13).await.is_empty());
    }
}

// effect: ssl_stapling_verify
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_the_ca_never_certified_is_stapled_only_without_ssl_stapling_verify() {
    let ca = Ca::new();
    let (rogue, rogue_served) = responder(Signer::rogue());
    let (forged, forged_served) = responder(Signer::forged(&ca));
    let leaf = ca.leaf(None, true);
    let (on, off, bad) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let url = |port: u16| format!("ssl_stapling_responder http://127.0.0.1:{port}/ocsp/;");
    let conf = format!(
        "worker_processes 1;\nevents {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key; ssl_stapling on;
          server {{ listen 127.0.0.1:{on} ssl; ssl_stapling_verify on; {} return 200 x; }}
          server {{ listen 127.0.0.1:{off} ssl; {} return 200 x; }}
          server {{ listen 127.0.0.1:{bad} ssl; {} return 200 x; }}
        }}\n",
        url(rogue),
        url(rogue),
        url(forged)
    );
    let p = start(prefix_with(&[("a", &leaf.0)]), on, &conf);
    // Without verification (nginx's default) the rogue's answer is stapled: its signature holds.
    assert!(!first_staple(off).await.is_empty(), "{}", p.stderr());
    for port in [on, bad] {
        assert!(staple(port, &rustls::version::TLS13).await.is_empty());
    }
    wait_served(&rogue_served, 2);
    wait_served(&forged_served, 1);
    let deadline = Instant::now() + T;
    while p.stderr().matches("OCSP_basic_verify() failed").count() < 2 {
        assert!(Instant::now() < deadline, "{}", p.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Checked and refused: no staple, now or later, and no new request before 5 minutes.
    for port in [on, bad] {
        assert!(staple(port, &rustls::version::TLS13).await.is_empty());
    }
    assert_eq!(rogue_served.load(Ordering::SeqCst), 2);
    assert_eq!(forged_served.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_asks_the_responder_again_and_open_connections_carry_on() {
    let ca = Ca::new();
    let (rport, served) = responder(Signer::ca(&ca));
    let leaf = ca.leaf(Some(&format!("http://127.0.0.1:{rport}/ocsp")), true);
    let port = common::free_port();
    let text = format!("error_log logs/error.log notice;\n{}", conf(port, ""));
    let p = start(prefix_with(&[("a", &leaf.0)]), port, &text);
    let first = first_staple(port).await;
    assert!(!first.is_empty(), "no OCSP response stapled within {T:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
    let mut open = common::tls::connect(port, Some("a.test"), common::tls::client(&[], &[]))
        .await
        .unwrap();
    ringproxy::sys::kill(p.pid(), libc::SIGHUP).unwrap();
    let deadline = Instant::now() + T;
    while !p.stderr().contains("reconfigured") {
        assert!(Instant::now() < deadline, "{}", p.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The new generation has its own staple: asked for again, and stapled once answered.
    let again = first_staple(port).await;
    assert!(
        !again.is_empty(),
        "no OCSP response stapled after the reload"
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
    let answer = common::tls::get(&mut open, "a.test", "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
