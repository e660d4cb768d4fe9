//! Client certificates through a running ringproxy, against nginx 1.22's behaviour:
//! `ssl_verify_client` (on, optional, optional_no_ca, off) with `ssl_client_certificate` and
//! `ssl_trusted_certificate` (trusted, but not named in the CertificateRequest),
//! `ssl_verify_depth`, `ssl_crl`, the 400 pages of nginx's 495/496 and `error_page` for them,
//! 421 for a Host other than the negotiated name, and the `$ssl_client_*` variables.

mod common;

use std::sync::{Arc, Mutex};

use common::certs::{Ca, Leaf};
use common::tls::*;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureScheme};

/// Presents a chain and records the CA names the server asked for.
#[derive(Debug)]
struct Presenter {
    key: Arc<CertifiedKey>,
    hints: Mutex<Option<Vec<Vec<u8>>>>,
}

impl ResolvesClientCert for Presenter {
    fn resolve(&self, hints: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        *self.hints.lock().unwrap() = Some(hints.iter().map(|h| h.to_vec()).collect());
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client presenting `leaf` followed by `chain` (PEM certificates).
fn presenting(leaf: &Leaf, chain: &[String]) -> (Arc<ClientConfig>, Arc<Presenter>) {
    let p = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut certs = vec![CertificateDer::from(leaf.der.clone())];
    for pem in chain {
        certs.push(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap());
    }
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let signing = p.key_provider.load_private_key(key).unwrap();
    let presenter = Arc::new(Presenter {
        key: Arc::new(CertifiedKey::new(certs, signing)),
        hints: Mutex::new(None),
    });
    let cfg = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(ringproxy::tls::Verifier::none(p))
        .with_client_cert_resolver(presenter.clone());
    (Arc::new(cfg), presenter)
}

fn anonymous() -> Arc<ClientConfig> {
    client(&[], &[])
}

/// A GET for `path` with SNI `sni` and Host `host`: the response.
async fn fetch(port: u16, sni: &str, host: &str, path: &str, cfg: Arc<ClientConfig>) -> String {
    let mut s = connect(port, Some(sni), cfg).await.unwrap();
    get(&mut s, host, path).await
}

fn status(resp: &str) -> &str {
    resp.split(' ').nth(1).unwrap_or("")
}

fn header<'r>(resp: &'r str, name: &str) -> Option<&'r str> {
    let head = resp.split("\r\n\r\n").next()?;
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

fn pem_file(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join("certs").join(name), text).unwrap();
}

/// A DER name (what a CertificateRequest lists) of a CA's certificate.
fn subject(ca: &Ca) -> Vec<u8> {
    let der = ca.der();
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    c.subject().as_raw().to_vec()
}

// effect: ssl_verify_client ssl_client_certificate ssl_trusted_certificate
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_verify_client_modes_answer_as_nginx() {
    let server = Ca::named("server CA").leaf(&["a.test"], false);
    let (ca1, ca2, other) = (
        Ca::named("CA one"),
        Ca::named("CA two"),
        Ca::named("CA other"),
    );
    let (by1, by2, by_other) = (
        ca1.leaf(&["one.client"], false),
        ca2.leaf(&["two.client"], true),
        other.leaf(&["other.client"], false),
    );
    let dir = prefix_with(&[("a", &server)]);
    pem_file(dir.path(), "ca1.crt", &ca1.pem());
    pem_file(dir.path(), "ca2.crt", &ca2.pem());
    let ports: Vec<u16> = (0..4).map(|_| common::free_port()).collect();
    let conf = format!(
        "events {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          ssl_client_certificate certs/ca1.crt;
          ssl_trusted_certificate certs/ca2.crt;
          add_header X-Verify $ssl_client_verify always;
          server {{ listen 127.0.0.1:{} ssl; ssl_verify_client on; return 200 \"$ssl_client_s_dn\"; }}
          server {{ listen 127.0.0.1:{} ssl; ssl_verify_client optional; return 200 \"$ssl_client_s_dn\"; }}
          server {{ listen 127.0.0.1:{} ssl; ssl_verify_client optional_no_ca; return 200 \"$ssl_client_s_dn\"; }}
          server {{ listen 127.0.0.1:{} ssl; return 200 \"$ssl_client_s_dn\"; }}
        }}\n",
        ports[0], ports[1], ports[2], ports[3]
    );
    let _p = start(dir, ports[0], &conf);
    let (on, optional, no_ca, off) = (ports[0], ports[1], ports[2], ports[3]);

    // `on` without a certificate: nginx's 496, sent as 400 with its page.
    let r = fetch(on, "a.test", "a.test", "/", anonymous()).await;
    assert_eq!(status(&r), "400", "{r}");
    assert!(
        r.contains("<title>400 No required SSL certificate was sent</title>"),
        "{r}"
    );
    assert_eq!(header(&r, "X-Verify"), Some("NONE"), "{r}");
    assert_eq!(header(&r, "Connection"), Some("close"), "{r}");

    // Signed by the `ssl_client_certificate` CA, and by the `ssl_trusted_certificate` one,
    // which is trusted but not named in the request.
    let (cfg, presenter) = presenting(&by1, &[]);
    let r = fetch(on, "a.test", "a.test", "/", cfg).await;
    assert_eq!((status(&r), body(&r)), ("200", "CN=one.client"), "{r}");
    assert_eq!(header(&r, "X-Verify"), Some("SUCCESS"), "{r}");
    assert_eq!(
        presenter.hints.lock().unwrap().clone(),
        Some(vec![subject(&ca1)]),
        "only ssl_client_certificate's names are sent"
    );
    let r = fetch(on, "a.test", "a.test", "/", presenting(&by2, &[]).0).await;
    assert_eq!((status(&r), body(&r)), ("200", "CN=two.client"), "{r}");

    // A certificate from an unknown CA: nginx's 495.
    for port in [on, optional] {
        let r = fetch(port, "a.test", "a.test", "/", presenting(&by_other, &[]).0).await;
        assert_eq!(status(&r), "400", "{r}");
        assert!(
            r.contains("<title>400 The SSL certificate error</title>"),
            "{r}"
        );
        assert_eq!(
            header(&r, "X-Verify"),
            Some("FAILED:unable to get local issuer certificate"),
            "{r}"
        );
    }

    // `optional`: none is fine; `optional_no_ca`: an unknown issuer is fine too.
    let r = fetch(optional, "a.test", "a.test", "/", anonymous()).await;
    assert_eq!(
        (status(&r), header(&r, "X-Verify")),
        ("200", Some("NONE")),
        "{r}"
    );
    let r = fetch(no_ca, "a.test", "a.test", "/", presenting(&by_other, &[]).0).await;
    assert_eq!(status(&r), "200", "{r}");
    assert_eq!(
        header(&r, "X-Verify"),
        Some("FAILED:unable to get local issuer certificate"),
        "{r}"
    );
    assert_eq!(body(&r), "CN=other.client", "{r}");

    // `off` never asks.
    let (cfg, presenter) = presenting(&by1, &[]);
    let r = fetch(off, "a.test", "a.test", "/", cfg).await;
    assert_eq!(
        (status(&r), header(&r, "X-Verify")),
        ("200", Some("NONE")),
        "{r}"
    );
    assert_eq!(body(&r), "", "{r}");
    assert!(
        presenter.hints.lock().unwrap().is_none(),
        "no certificate requested"
    );
}

// effect: ssl_verify_depth
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_verify_depth_counts_the_certificates_above_the_client_one() {
    let server = Ca::named("server CA").leaf(&["a.test"], false);
    let root = Ca::named("root CA");
    let int = root.intermediate();
    let leaf = int.leaf(&["deep.client"], false);
    let dir = prefix_with(&[("a", &server)]);
    pem_file(dir.path(), "root.crt", &root.pem());
    let (one, two) = (common::free_port(), common::free_port());
    let conf = format!(
        "events {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          ssl_verify_client optional; ssl_client_certificate certs/root.crt;
          add_header X-Verify $ssl_client_verify always;
          server {{ listen 127.0.0.1:{one} ssl; return 200 ok; }}
          server {{ listen 127.0.0.1:{two} ssl; ssl_verify_depth 2; return 200 ok; }}
        }}\n"
    );
    let _p = start(dir, one, &conf);
    let chain = [int.pem()];
    // The default depth, 1: the root alone above the client's certificate.
    let r = fetch(one, "a.test", "a.test", "/", presenting(&leaf, &chain).0).await;
    assert_eq!(status(&r), "400", "{r}");
    assert_eq!(
        header(&r, "X-Verify"),
        Some("FAILED:certificate chain too long"),
        "{r}"
    );
    let r = fetch(two, "a.test", "a.test", "/", presenting(&leaf, &chain).0).await;
    assert_eq!(
        (status(&r), header(&r, "X-Verify")),
        ("200", Some("SUCCESS")),
        "{r}"
    );
    // Without the intermediate the chain cannot be built at any depth.
    let r = fetch(two, "a.test", "a.test", "/", presenting(&leaf, &[]).0).await;
    assert_eq!(
        header(&r, "X-Verify"),
        Some("FAILED:unable to get local issuer certificate"),
        "{r}"
    );
}

// effect: ssl_crl
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_crl_revokes_a_client_certificate() {
    let server = Ca::named("server CA").leaf(&["a.test"], false);
    let ca = Ca::named("CA one");
    let (revoked, kept) = (
        ca.leaf(&["revoked.client"], false),
        ca.leaf(&["kept.client"], false),
    );
    let dir = prefix_with(&[("a", &server)]);
    pem_file(dir.path(), "ca.crt", &ca.pem());
    pem_file(dir.path(), "ca.crl", &ca.crl(&[&revoked.der]));
    let (with, without) = (common::free_port(), common::free_port());
    let conf = format!(
        "events {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          ssl_verify_client on; ssl_client_certificate certs/ca.crt;
          add_header X-Verify $ssl_client_verify always;
          server {{ listen 127.0.0.1:{with} ssl; ssl_crl certs/ca.crl; return 200 ok; }}
          server {{ listen 127.0.0.1:{without} ssl; return 200 ok; }}
        }}\n"
    );
    let _p = start(dir, with, &conf);
    let r = fetch(with, "a.test", "a.test", "/", presenting(&revoked, &[]).0).await;
    assert_eq!(status(&r), "400", "{r}");
    assert_eq!(
        header(&r, "X-Verify"),
        Some("FAILED:certificate revoked"),
        "{r}"
    );
    let r = fetch(with, "a.test", "a.test", "/", presenting(&kept, &[]).0).await;
    assert_eq!(
        (status(&r), header(&r, "X-Verify")),
        ("200", Some("SUCCESS")),
        "{r}"
    );
    let r = fetch(
        without,
        "a.test",
        "a.test",
        "/",
        presenting(&revoked, &[]).0,
    )
    .await;
    assert_eq!(
        (status(&r), header(&r, "X-Verify")),
        ("200", Some("SUCCESS")),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_page_answers_495_and_496_and_a_foreign_host_gets_421() {
    let server = Ca::named("server CA").leaf(&["a.test", "b.test"], false);
    let (ca, other) = (Ca::named("CA one"), Ca::named("CA other"));
    let (good, bad) = (
        ca.leaf(&["good.client"], false),
        other.leaf(&["bad.client"], false),
    );
    let dir = prefix_with(&[("a", &server)]);
    pem_file(dir.path(), "ca.crt", &ca.pem());
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          server {{ listen 127.0.0.1:{port} ssl; server_name a.test; return 200 a; }}
          server {{
            listen 127.0.0.1:{port} ssl; server_name b.test;
            ssl_verify_client on; ssl_client_certificate certs/ca.crt;
            error_page 495 /bad;
            error_page 496 =403 /none;
            location = /bad {{ return 200 \"bad:$ssl_client_verify\"; }}
            location = /none {{ return 200 \"none\"; }}
            location / {{ return 200 \"b:$ssl_client_s_dn\"; }}
          }}
        }}\n"
    );
    let _p = start(dir, port, &conf);
    // `error_page 495 /bad` keeps nginx's 400; `=403` replaces it.
    let r = fetch(port, "b.test", "b.test", "/", presenting(&bad, &[]).0).await;
    assert_eq!(status(&r), "400", "{r}");
    assert_eq!(
        body(&r),
        "bad:FAILED:unable to get local issuer certificate",
        "{r}"
    );
    let r = fetch(port, "b.test", "b.test", "/", anonymous()).await;
    assert_eq!((status(&r), body(&r)), ("403", "none"), "{r}");
    let r = fetch(port, "b.test", "b.test", "/", presenting(&good, &[]).0).await;
    assert_eq!((status(&r), body(&r)), ("200", "b:CN=good.client"), "{r}");
    // The handshake named a.test (which asks for no certificate): b.test, which verifies
    // certificates, will not answer on it.
    let r = fetch(port, "a.test", "b.test", "/", presenting(&good, &[]).0).await;
    assert_eq!(status(&r), "421", "{r}");
    assert!(r.contains("<title>421 Misdirected Request</title>"), "{r}");
    let r = fetch(port, "a.test", "a.test", "/", anonymous()).await;
    assert_eq!((status(&r), body(&r)), ("200", "a"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_client_variables_describe_the_certificate_as_nginx() {
    use sha1::Digest;
    let server = Ca::named("server CA").leaf(&["a.test"], false);
    let ca = Ca::named("CA one");
    let leaf = ca.leaf(&["vars.client"], true);
    let dir = prefix_with(&[("a", &server)]);
    pem_file(dir.path(), "ca.crt", &ca.pem());
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          ssl_verify_client optional; ssl_client_certificate certs/ca.crt;
          server {{
            listen 127.0.0.1:{port} ssl;
            location /names {{ return 200 \"$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_s_dn_legacy|$ssl_client_i_dn_legacy\"; }}
            location /ids {{ return 200 \"$ssl_client_serial|$ssl_client_fingerprint|$ssl_client_v_remain\"; }}
            location /dates {{ return 200 \"$ssl_client_v_start|$ssl_client_v_end\"; }}
            location /raw {{ return 200 \"$ssl_client_raw_cert\"; }}
            location /tabbed {{ return 200 \"$ssl_client_cert\"; }}
            location /escaped {{ return 200 \"$ssl_client_escaped_cert\"; }}
          }}
        }}\n"
    );
    let _p = start(dir, port, &conf);
    let ask = |path: &'static str, cfg: Arc<ClientConfig>| async move {
        let r = fetch(port, "a.test", "a.test", path, cfg).await;
        assert_eq!(status(&r), "200", "{r}");
        body(&r).to_string()
    };
    let cfg = presenting(&leaf, &[]).0;
    assert_eq!(
        ask("/names", cfg.clone()).await,
        "CN=vars.client|CN=CA one|/CN=vars.client|/CN=CA one"
    );
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.der).unwrap();
    let serial: String = {
        let raw = parsed.raw_serial();
        let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len() - 1);
        raw[start..].iter().map(|b| format!("{b:02X}")).collect()
    };
    let fingerprint: String = sha1::Sha1::digest(&leaf.der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let end = parsed.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ids = ask("/ids", cfg.clone()).await;
    let parts: Vec<&str> = ids.split('|').collect();
    assert_eq!(parts[..2], [serial.as_str(), fingerprint.as_str()], "{ids}");
    // Whole days left; the request may straddle a day boundary.
    let remain: i64 = parts[2].parse().unwrap();
    assert!(
        ((end - now) / 86400 - 1..=(end - now) / 86400).contains(&remain),
        "{ids}"
    );
    // rcgen's default validity: 1975-01-01 to 4096-01-01, printed as OpenSSL does.
    assert_eq!(
        ask("/dates", cfg.clone()).await,
        "Jan  1 00:00:00 1975 GMT|Jan  1 00:00:00 4096 GMT"
    );
    let pem = leaf.cert_pem.replace("\r\n", "\n");
    assert_eq!(ask("/raw", cfg.clone()).await, pem);
    assert_eq!(
        ask("/tabbed", cfg.clone()).await,
        pem.trim_end_matches('\n').replace('\n', "\n\t")
    );
    let escaped = ask("/escaped", cfg.clone()).await;
    assert!(
        escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
        "{escaped}"
    );
    assert!(
        escaped.ends_with("-----END%20CERTIFICATE-----%0A"),
        "{escaped}"
    );
    assert!(!escaped.contains(['+', '/', '=', '\n']), "{escaped}");
    // No certificate: NONE and empty values.
    assert_eq!(ask("/names", anonymous()).await, "|||");
    assert_eq!(ask("/raw", anonymous()).await, "");
}
