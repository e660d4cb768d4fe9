//! TLS to backends (`proxy_pass https://`), with certificates generated per test (rcgen):
//! verification on and off, a wrong name rejected, no trusted certificates, SNI on and off,
//! `proxy_ssl_protocols`, WebSocket over TLS to the backend, a client certificate, and
//! `proxy_ssl_verify_depth` with an intermediate.

mod common;

use std::sync::Arc;

use common::certs::Ca;
use common::tls::*;
use common::{Echo, Proxy};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A ringproxy serving TLS as `backend.test` (signed by `ca`): `/websocket` to the echo
/// backend (with `proxy_splice on`, which a TLS side must turn into copying), everything else
/// answers with the SNI it received.
fn tls_backend(ca: &Ca, echo: std::net::SocketAddr) -> Proxy {
    let leaf = ca.leaf(&["backend.test"], false);
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{ server {{ listen 127.0.0.1:{port} ssl;
          ssl_certificate certs/b.crt; ssl_certificate_key certs/b.key;
          location / {{ return 200 \"backend [$ssl_server_name] $ssl_protocol\"; }}
          location /websocket {{ proxy_pass http://{echo}; proxy_http_version 1.1; proxy_splice on;
            proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }} }} }}\n"
    );
    start(prefix_with(&[("b", &leaf)]), port, &conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_backends_with_verification_on_and_off() {
    let ca = Ca::new();
    let echo = Echo::start();
    let backend = tls_backend(&ca, echo.addr);
    let b = backend.port;
    let port = common::free_port();
    let dir = prefix_with(&[]);
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let trusted = "proxy_ssl_verify on; proxy_ssl_trusted_certificate ca.pem;";
    let conf = format!(
        "error_log logs/error.log info;\nevents {{}}\nhttp {{ server {{ listen 127.0.0.1:{port};
          location /ok {{ proxy_pass https://127.0.0.1:{b}; {trusted} proxy_ssl_name backend.test; proxy_ssl_server_name on; }}
          location /nosni {{ proxy_pass https://127.0.0.1:{b}; {trusted} proxy_ssl_name backend.test; }}
          location /wrong {{ proxy_pass https://127.0.0.1:{b}; {trusted} proxy_ssl_name wrong.test; }}
          location /untrusted {{ proxy_pass https://127.0.0.1:{b}; proxy_ssl_verify on; proxy_ssl_name backend.test; }}
          location /noverify {{ proxy_pass https://127.0.0.1:{b}; proxy_ssl_name wrong.test; proxy_ssl_server_name on; }}
          location /tls12 {{ proxy_pass https://127.0.0.1:{b}; proxy_ssl_protocols TLSv1.2; }}
          location /websocket {{ proxy_pass https://127.0.0.1:{b}; {trusted} proxy_ssl_name backend.test; proxy_splice on;
            proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}
        }} }}\n"
    );
    let p = start(dir, port, &conf);
    assert_eq!(
        body(&plain(port, "/ok").await),
        "backend [backend.test] TLSv1.3"
    );
    assert_eq!(body(&plain(port, "/nosni").await), "backend [] TLSv1.3");
    assert_eq!(
        body(&plain(port, "/noverify").await),
        "backend [wrong.test] TLSv1.3"
    );
    assert_eq!(body(&plain(port, "/tls12").await), "backend [] TLSv1.2");
    for path in ["/wrong", "/untrusted"] {
        let r = plain(port, path).await;
        assert!(r.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{path}: {r}");
    }
    assert!(
        p.stderr().contains("upstream SSL certificate verify error"),
        "{}",
        p.stderr()
    );
    // WebSocket through a plain front to a TLS backend (`proxy_splice on` copies: TLS upstream).
    let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    wss_echo(s, "ws://front/websocket").await;
}

/// A TLS backend (tokio-rustls) that requires a client certificate signed by `ca`; answers
/// every request with 200 "client certificate ok".
async fn client_auth_backend(ca: &Ca) -> u16 {
    let leaf = ca.leaf(&["backend.test"], false);
    let p = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der())).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), p.clone())
            .build()
            .unwrap();
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(leaf.der.clone())], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "client certificate ok";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_verify_depth_towards_backends() {
    let ca = Ca::new();
    let auth = client_auth_backend(&ca).await;
    // A backend whose certificate chain goes through an intermediate.
    let inter = ca.intermediate();
    let mut chained = inter.leaf(&["backend.test"], true);
    chained.cert_pem.push_str(&inter.pem());
    let bport = common::free_port();
    let bconf = format!(
        "events {{}}\nhttp {{ server {{ listen 127.0.0.1:{bport} ssl;
          ssl_certificate certs/b.crt; ssl_certificate_key certs/b.key; return 200 chained; }} }}\n"
    );
    let _backend = start(prefix_with(&[("b", &chained)]), bport, &bconf);
    let port = common::free_port();
    let dir = prefix_with(&[("client", &ca.leaf(&["client.test"], false))]);
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let verify =
        "proxy_ssl_verify on; proxy_ssl_trusted_certificate ca.pem; proxy_ssl_name backend.test;";
    let conf = format!(
        "events {{}}\nhttp {{ server {{ listen 127.0.0.1:{port};
          location /cert {{ proxy_pass https://127.0.0.1:{auth};
            proxy_ssl_certificate certs/client.crt; proxy_ssl_certificate_key certs/client.key; }}
          location /nocert {{ proxy_pass https://127.0.0.1:{auth}; }}
          location /depth1 {{ proxy_pass https://127.0.0.1:{bport}; {verify} }}
          location /depth2 {{ proxy_pass https://127.0.0.1:{bport}; {verify} proxy_ssl_verify_depth 2; }}
        }} }}\n"
    );
    let _p = start(dir, port, &conf);
    assert_eq!(body(&plain(port, "/cert").await), "client certificate ok");
    assert!(plain(port, "/nocert").await.starts_with("HTTP/1.1 502 "));
    assert!(plain(port, "/depth1").await.starts_with("HTTP/1.1 502 "));
    assert_eq!(body(&plain(port, "/depth2").await), "chained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backend_handshake_tries_the_next_peer() {
    // As nginx: the TLS handshake is part of connecting, so a peer that fails it (here a plain
    // HTTP backend) is a failed peer, and proxy_next_upstream's `error` moves to the next one.
    let ca = Ca::new();
    let echo = Echo::start();
    let backend = tls_backend(&ca, echo.addr);
    let port = common::free_port();
    let conf = format!(
        "error_log logs/error.log info;\nevents {{}}\nhttp {{ upstream both {{ server {}; server 127.0.0.1:{}; }}
          server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass https://both; }} }} }}\n",
        echo.addr, backend.port
    );
    let p = start(prefix_with(&[]), port, &conf);
    for _ in 0..3 {
        let r = plain(port, "/").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}\n{}", p.stderr());
        assert_eq!(body(&r), "backend [] TLSv1.3");
    }
}
