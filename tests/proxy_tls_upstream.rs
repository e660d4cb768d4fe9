//! TLS to backends (`proxy_pass https://`), with certificates generated per test (rcgen),
//! against an independent TLS backend (tokio-rustls, `common::tls_backend`) that answers with
//! what it observed of the session: the SNI, the protocol version and cipher suite, whether
//! the session was resumed and the client certificate's name. Each `proxy_ssl_*` directive
//! has a test that fails without its effect; WebSocket over TLS to the backend, and a peer
//! failing the handshake, are tested too.

mod common;

use common::certs::Ca;
use common::tls::*;
use common::tls_backend::{field, ClientAuth, TlsBackend};
use common::{Echo, Proxy};
use tokio::net::TcpStream;

/// A backend serving `backend.test` (ECDSA, signed by `ca`) without client authentication.
fn backend(ca: &Ca) -> TlsBackend {
    TlsBackend::start(&ca.leaf(&["backend.test"], false), ClientAuth::None)
}

/// ringproxy on a new port with `locations` in one server, `ca.pem` holding `ca`,
/// `other.pem` another CA, and certificates from `files`.
fn front(ca: &Ca, files: &[(&str, &common::certs::Leaf)], locations: &str) -> Proxy {
    let port = common::free_port();
    let dir = prefix_with(files);
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("other.pem"), Ca::new().pem()).unwrap();
    let conf = format!(
        "error_log logs/error.log info;\nevents {{}}\nhttp {{ server {{ listen 127.0.0.1:{port};\n{locations}\n}} }}\n"
    );
    start(dir, port, &conf)
}

/// The backend's report for a GET of `path` through the proxy, which must answer 200.
async fn report(p: &Proxy, path: &str) -> String {
    let r = plain(p.port, path).await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n"),
        "{path}: {r}\n{}",
        p.stderr()
    );
    body(&r).to_string()
}

async fn bad_gateway(p: &Proxy, path: &str) {
    let r = plain(p.port, path).await;
    assert!(r.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{path}: {r}");
}

const TRUSTED: &str = "proxy_ssl_verify on; proxy_ssl_trusted_certificate ca.pem;";

// effect: proxy_ssl_server_name proxy_ssl_name
/// The backend receives `proxy_ssl_name` as SNI only with `proxy_ssl_server_name on`; the
/// name is also what verification checks (a wrong one fails unless verification is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_sent_and_verified() {
    let ca = Ca::new();
    let tls = backend(&ca);
    let b = tls.port();
    let p = front(
        &ca,
        &[],
        &format!(
            "location /sni {{ proxy_pass https://127.0.0.1:{b}; {TRUSTED} proxy_ssl_name backend.test; proxy_ssl_server_name on; }}
             location /nosni {{ proxy_pass https://127.0.0.1:{b}; {TRUSTED} proxy_ssl_name backend.test; }}
             location /other {{ proxy_pass https://127.0.0.1:{b}; proxy_ssl_name other.test; proxy_ssl_server_name on; }}
             location /wrong {{ proxy_pass https://127.0.0.1:{b}; {TRUSTED} proxy_ssl_name other.test; }}"
        ),
    );
    let r = report(&p, "/sni").await;
    assert_eq!(field(&r, "sni"), "backend.test", "{r}");
    assert_eq!(field(&r, "version"), "TLSv1.3", "{r}");
    assert_eq!(field(&report(&p, "/nosni").await, "sni"), "-");
    assert_eq!(field(&report(&p, "/other").await, "sni"), "other.test");
    bad_gateway(&p, "/wrong").await;
}

// effect: proxy_ssl_verify proxy_ssl_trusted_certificate
/// With verification on, the chain must lead to `proxy_ssl_trusted_certificate` (none: every
/// certificate fails) and the name must match; off, any certificate is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_on_and_off() {
    let ca = Ca::new();
    let tls = backend(&ca);
    let b = tls.port();
    let p = front(
        &ca,
        &[],
        &format!(
            "location /ok {{ proxy_pass https://127.0.0.1:{b}; {TRUSTED} proxy_ssl_name backend.test; }}
             location /wrong {{ proxy_pass https://127.0.0.1:{b}; {TRUSTED} proxy_ssl_name wrong.test; }}
             location /untrusted {{ proxy_pass https://127.0.0.1:{b}; proxy_ssl_verify on; proxy_ssl_name backend.test; }}
             location /othertrust {{ proxy_pass https://127.0.0.1:{b}; proxy_ssl_verify on; proxy_ssl_trusted_certificate other.pem; proxy_ssl_name backend.test; }}
             location /noverify {{ proxy_pass https://127.0.0.1:{b}; proxy_ssl_name wrong.test; }}"
        ),
    );
    assert_eq!(field(&report(&p, "/ok").await, "version"), "TLSv1.3");
    assert_eq!(field(&report(&p, "/noverify").await, "version"), "TLSv1.3");
    for path in ["/wrong", "/untrusted", "/othertrust"] {
        bad_gateway(&p, path).await;
    }
    assert!(
        p.stderr().contains("upstream SSL certificate verify error"),
        "{}",
        p.stderr()
    );
}

// effect: proxy_ssl_protocols
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_towards_backends() {
    let ca = Ca::new();
    let tls = backend(&ca);
    let b = tls.port();
    let p = front(
        &ca,
        &[],
        &format!(
            "location /default {{ proxy_pass https://127.0.0.1:{b}; }}
             location /tls12 {{ proxy_pass https://127.0.0.1:{b}; proxy_ssl_protocols TLSv1.2; }}
             location /tls13 {{ proxy_pass https://127.0.0.1:{b}; proxy_ssl_protocols TLSv1.3; }}"
        ),
    );
    assert_eq!(field(&report(&p, "/default").await, "version"), "TLSv1.3");
    assert_eq!(field(&report(&p, "/tls12").await, "version"), "TLSv1.2");
    assert_eq!(field(&report(&p, "/tls13").await, "version"), "TLSv1.3");
}

// effect: proxy_ssl_ciphers
/// Over TLSv1.2 the backend (ECDSA certificate, the client's order) agrees on the one suite
/// `proxy_ssl_ciphers` leaves; without it, on rustls' first, AES-256-GCM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciphers_towards_backends() {
    let ca = Ca::new();
    let tls = backend(&ca);
    let b = tls.port();
    let tls12 = format!("proxy_pass https://127.0.0.1:{b}; proxy_ssl_protocols TLSv1.2;");
    let p = front(
        &ca,
        &[],
        &format!(
            "location /default {{ {tls12} }}
             location /aes128 {{ {tls12} proxy_ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256; }}
             location /chacha {{ {tls12} proxy_ssl_ciphers ECDHE-ECDSA-CHACHA20-POLY1305; }}"
        ),
    );
    let cipher = |r: String| field(&r, "cipher").to_string();
    assert_eq!(
        cipher(report(&p, "/default").await),
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    );
    assert_eq!(
        cipher(report(&p, "/aes128").await),
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    );
    assert_eq!(
        cipher(report(&p, "/chacha").await),
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
    );
}

// effect: proxy_ssl_session_reuse
/// Every request opens a new connection to the backend (no `keepalive`): with session reuse on
/// (the default) the second one resumes the first one's session, over TLSv1.3 (tickets) and
/// TLSv1.2; off, none does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_reuse_towards_backends() {
    let ca = Ca::new();
    let tls = backend(&ca);
    let b = tls.port();
    let to = format!("proxy_pass https://127.0.0.1:{b};");
    let p = front(
        &ca,
        &[],
        &format!(
            "location /on {{ {to} }}
             location /on12 {{ {to} proxy_ssl_protocols TLSv1.2; }}
             location /off {{ {to} proxy_ssl_session_reuse off; }}
             location /off12 {{ {to} proxy_ssl_session_reuse off; proxy_ssl_protocols TLSv1.2; }}"
        ),
    );
    for (path, want) in [
        ("/on", ["no", "yes", "yes"]),
        ("/on12", ["no", "yes", "yes"]),
        ("/off", ["no", "no", "no"]),
        ("/off12", ["no", "no", "no"]),
    ] {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(field(&report(&p, path).await, "resumed").to_string());
        }
        assert_eq!(got, want, "{path}");
    }
}

// effect: proxy_ssl_certificate proxy_ssl_certificate_key
/// The client certificate is presented to a backend that asks for one (its name reported),
/// and without it a backend that requires one refuses the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_towards_backends() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["backend.test"], false);
    let optional = TlsBackend::start(&leaf, ClientAuth::Optional(&ca));
    let required = TlsBackend::start(&leaf, ClientAuth::Required(&ca));
    let (o, r) = (optional.port(), required.port());
    let cert =
        "proxy_ssl_certificate certs/client.crt; proxy_ssl_certificate_key certs/client.key;";
    let p = front(
        &ca,
        &[("client", &ca.leaf(&["client.test"], false))],
        &format!(
            "location /opt-cert {{ proxy_pass https://127.0.0.1:{o}; {cert} }}
             location /opt-nocert {{ proxy_pass https://127.0.0.1:{o}; }}
             location /req-cert {{ proxy_pass https://127.0.0.1:{r}; {cert} }}
             location /req-nocert {{ proxy_pass https://127.0.0.1:{r}; }}"
        ),
    );
    assert_eq!(
        field(&report(&p, "/opt-cert").await, "client"),
        "client.test"
    );
    assert_eq!(field(&report(&p, "/opt-nocert").await, "client"), "-");
    assert_eq!(
        field(&report(&p, "/req-cert").await, "client"),
        "client.test"
    );
    bad_gateway(&p, "/req-nocert").await;
}

// effect: proxy_ssl_verify_depth
/// A backend presenting leaf + intermediate: depth 1 (the default) allows no intermediate,
/// depth 2 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_depth_towards_backends() {
    let ca = Ca::new();
    let inter = ca.intermediate();
    let mut chained = inter.leaf(&["backend.test"], true);
    chained.cert_pem.push_str(&inter.pem());
    let tls = TlsBackend::start(&chained, ClientAuth::None);
    let b = tls.port();
    let verify =
        format!("proxy_pass https://127.0.0.1:{b}; {TRUSTED} proxy_ssl_name backend.test;");
    let p = front(
        &ca,
        &[],
        &format!(
            "location /depth1 {{ {verify} }}
             location /depth2 {{ {verify} proxy_ssl_verify_depth 2; }}"
        ),
    );
    bad_gateway(&p, "/depth1").await;
    assert_eq!(field(&report(&p, "/depth2").await, "version"), "TLSv1.3");
}

/// WebSocket through a plain front to a TLS backend (`proxy_splice on` must copy: a TLS side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_to_a_tls_backend() {
    let ca = Ca::new();
    let tls = backend(&ca);
    let b = tls.port();
    let p = front(
        &ca,
        &[],
        &format!(
            "location /websocket {{ proxy_pass https://127.0.0.1:{b}; {TRUSTED} proxy_ssl_name backend.test; proxy_splice on;
               proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}"
        ),
    );
    let s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    wss_echo(s, "ws://front/websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backend_handshake_tries_the_next_peer() {
    // As nginx: the TLS handshake is part of connecting, so a peer that fails it (here a plain
    // HTTP backend) is a failed peer, and proxy_next_upstream's `error` moves to the next one.
    let ca = Ca::new();
    let echo = Echo::start();
    let tls = backend(&ca);
    let port = common::free_port();
    let conf = format!(
        "error_log logs/error.log info;\nevents {{}}\nhttp {{ upstream both {{ server {}; server {}; }}
          server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass https://both; }} }} }}\n",
        echo.addr, tls.addr
    );
    let p = start(prefix_with(&[]), port, &conf);
    for _ in 0..3 {
        let r = report(&p, "/").await;
        assert_eq!(field(&r, "version"), "TLSv1.3", "{r}");
        assert_eq!(field(&r, "sni"), "-", "{r}");
    }
}
