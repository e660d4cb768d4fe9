//! Client side helpers for the TLS tests: a rustls client that accepts any certificate
//! (`proxy_ssl_verify off`'s verifier: the tests compare what they received with what they
//! generated), HTTP over any stream, a wss echo, and ringproxy in a prefix with generated
//! certificates.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

use super::certs::Leaf;
use super::Proxy;

pub const T: Duration = Duration::from_secs(20);

/// A client speaking `versions` (empty: both) with `suites` (empty: rustls' defaults).
pub fn client(
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: &[rustls::CipherSuite],
) -> Arc<ClientConfig> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    if !suites.is_empty() {
        p.cipher_suites = suites
            .iter()
            .map(|s| {
                *rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
                    .iter()
                    .find(|c| c.suite() == *s)
                    .unwrap()
            })
            .collect();
    }
    let p = Arc::new(p);
    let versions = if versions.is_empty() {
        rustls::ALL_VERSIONS.to_vec()
    } else {
        versions.to_vec()
    };
    let cfg = ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(ringproxy::tls::Verifier::none(p))
        .with_no_client_auth();
    Arc::new(cfg)
}

/// Connects with SNI `sni` (`None`: an IP address, so no SNI is sent).
pub async fn connect(
    port: u16,
    sni: Option<&str>,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    tokio::time::timeout(T, tokio_rustls::TlsConnector::from(cfg).connect(name, tcp))
        .await
        .expect("handshake in time")
}

/// A GET over `s` with `Connection: close`; the whole response.
pub async fn get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    path: &str,
) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // Over TLS, the end must be a close_notify (tokio-rustls reports a bare FIN as an error).
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("a clean end of stream");
    String::from_utf8_lossy(&out).into_owned()
}

/// A GET for `/` on host `a.test` (SNI too) over a new connection.
pub async fn a_test(port: u16, cfg: Arc<ClientConfig>) -> String {
    let mut s = connect(port, Some("a.test"), cfg).await.unwrap();
    get(&mut s, "a.test", "/").await
}

pub fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

pub fn prefix_with(files: &[(&str, &Leaf)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    for (stem, leaf) in files {
        leaf.write(&dir.path().join("certs"), stem);
    }
    dir
}

pub fn start(dir: tempfile::TempDir, port: u16, conf: &str) -> Proxy {
    std::fs::write(dir.path().join("ringproxy.conf"), conf).unwrap();
    Proxy::start_in(dir, port, "", &[])
}

pub use super::big;

pub async fn wss_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: S, url: &str) {
    let (mut ws, resp) = tokio::time::timeout(T, tokio_tungstenite::client_async(url, s))
        .await
        .expect("upgrade in time")
        .unwrap();
    assert_eq!(resp.status(), 101);
    let messages = [
        Message::text("hello over wss"),
        Message::binary(big(1024 * 1024)),
    ];
    super::echo_each(&mut ws, messages, url).await;
    ws.close(None).await.unwrap();
}

/// A GET over a new plain connection to 127.0.0.1:`port`.
pub async fn plain(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    get(&mut s, "front", path).await
}
