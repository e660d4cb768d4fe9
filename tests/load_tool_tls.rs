//! TLS integration tests of `ringproxy-load` against independent peers: its wss client against
//! a tokio-rustls + tokio-tungstenite server started here (a certificate for another name and a
//! corrupting server must show up as failures), and its TLS `echo` backend against a
//! tokio-rustls + tokio-tungstenite client. Certificates come from the tool's own `cert`
//! subcommand. Everything binds 127.0.0.1:0 and every wait has a deadline.

mod load_common;

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use load_common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

fn client_args<'a>(scenario: &'a str, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        scenario,
        "--url",
        url,
        "--connections",
        "3",
        "--duration",
        "1s",
        "--json",
    ];
    a.extend(extra);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_client_against_tokio_rustls_server() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), &["localhost", "127.0.0.1"], "ecdsa").await;
    let addr = start_wss_server(&cert, &key, Mode::Echo).await;
    let by_ip = format!("wss://{addr}/");
    let by_name = format!("wss://localhost:{}/", addr.port());

    let v = run_json(&client_args("rtt", &by_ip, &["--ca", &cert]), &[]).await;
    assert_clean(&v);
    assert_eq!(v["tls"], true, "{v}");
    let v = run_json(
        &client_args("rtt", &by_name, &["--ca", &cert, "--tls-version", "1.2"]),
        &[],
    )
    .await;
    assert_clean(&v);
    let v = run_json(
        &client_args("bulk", &by_ip, &["--ca", &cert, "--size", "256k"]),
        &[],
    )
    .await;
    assert_clean(&v);

    // Every handshake is a full one unless --resume; each cycle is one TLS connection.
    let v = run_json(
        &client_args("handshake", &by_ip, &["--ca", &cert, "--sni", "localhost"]),
        &[],
    )
    .await;
    assert_clean(&v);
    assert_eq!(num(&v, "tls_resumed"), 0.0, "{v}");
    assert!(num(&v, "established") >= num(&v, "ops"), "{v}");
    let v = run_json(
        &client_args("handshake", &by_ip, &["--ca", &cert, "--resume"]),
        &[],
    )
    .await;
    assert_clean(&v);
    assert!(num(&v, "tls_resumed") > 0.0, "--resume never resumed: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_certificate_and_tls13_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), &["localhost"], "rsa").await;
    let addr = start_wss_server(&cert, &key, Mode::Echo).await;
    let url = format!("wss://localhost:{}/", addr.port());
    let v = run_json(
        &client_args("handshake", &url, &["--ca", &cert, "--tls-version", "1.3"]),
        &[],
    )
    .await;
    assert_clean(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_another_name_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), &["other.test"], "ecdsa").await;
    let addr = start_wss_server(&cert, &key, Mode::Echo).await;
    let url = format!("wss://localhost:{}/", addr.port());
    for scenario in ["rtt", "handshake"] {
        let out = run_raw(&client_args(scenario, &url, &["--ca", &cert]), &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{scenario}: a certificate for other.test accepted for localhost"
        );
        assert!(
            stderr.contains("not valid for name"),
            "{scenario}: {stderr}"
        );
    }
    // The same server is fine when asked for the name it has, or without verification.
    let v = run_json(
        &client_args("rtt", &url, &["--ca", &cert, "--sni", "other.test"]),
        &[],
    )
    .await;
    assert_clean(&v);
    let v = run_json(&client_args("rtt", &url, &["--insecure"]), &[]).await;
    assert_clean(&v);
    // An untrusted issuer fails too.
    let other = tempfile::tempdir().unwrap();
    let (ca2, _) = make_cert(other.path(), &["other.test"], "ecdsa").await;
    let out = run_raw(
        &client_args("rtt", &url, &["--ca", &ca2, "--sni", "other.test"]),
        &[],
    )
    .await;
    assert!(!out.status.success(), "an untrusted certificate accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_replies_over_tls_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), &["127.0.0.1"], "ecdsa").await;
    let addr = start_wss_server(&cert, &key, Mode::Corrupt).await;
    let url = format!("wss://{addr}/");
    let v = run_json(&client_args("rtt", &url, &["--ca", &cert]), &[]).await;
    assert!(num(&v, "errors") > 0.0, "corruption went unnoticed: {v}");
    assert_eq!(num(&v, "ops"), 0.0, "corrupted round trips counted: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_echo_backend_speaks_wss() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), &["localhost"], "ecdsa").await;
    let echo = start_echo(&["--tls-cert", &cert, "--tls-key", &key], &[]).await;

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(echo.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = timeout(STEP, connector.connect(name, tcp))
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake");
    let url = format!("wss://localhost:{}/", echo.addr.port());
    let (mut ws, resp) = timeout(STEP, tokio_tungstenite::client_async(url.as_str(), tls))
        .await
        .expect("upgrade in time")
        .expect("upgrade");
    assert_eq!(resp.status(), 101);
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    for msg in [
        Message::text("hello"),
        Message::binary(big),
        Message::Ping("p".into()),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let want = match msg {
            Message::Ping(p) => Message::Pong(p),
            m => m,
        };
        let got = timeout(STEP, ws.next()).await.expect("reply in time");
        assert_eq!(got.expect("a message").expect("no error"), want);
    }
    ws.close(None).await.unwrap();
    loop {
        match timeout(STEP, ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(_))) => {}
            None => break,
            Some(Ok(m)) => panic!("unexpected {m:?}"),
            Some(Err(e)) => panic!("close handshake failed: {e}"),
        }
    }

    // Broadcasts are plain-only: /push over TLS is refused, not served as an echo.
    let push = format!("wss://localhost:{}/push", echo.addr.port());
    let out = run_raw(&client_args("push", &push, &["--ca", &cert]), &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expected 101, got 501"), "{stderr}");

    // The tool's own client against its TLS backend; a plain client is refused.
    let v = run_json(&client_args("rtt", &url, &["--ca", &cert]), &[]).await;
    assert_clean(&v);
    let plain = format!("ws://{}/", echo.addr);
    let v = run_json(&client_args("rtt", &plain, &[]), &[]).await;
    assert_eq!(
        num(&v, "ops"),
        0.0,
        "plain WebSocket through a TLS port: {v}"
    );
    assert!(num(&v, "errors") > 0.0, "{v}");
}
