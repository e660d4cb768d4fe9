//! Helpers shared by the `ringproxy-load` integration tests (tests/load_tool*.rs,
//! tests/wss_client.rs): the tool's `echo` backend as a child process, client runs with a
//! deadline, certificates from the tool's `cert` subcommand, and an independent
//! tokio-tungstenite WebSocket server (plain, or behind tokio-rustls) that echoes or corrupts.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub const BIN: &str = env!("CARGO_BIN_EXE_ringproxy-load");
pub const STEP: Duration = Duration::from_secs(10);
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// The `echo` backend as a child process, killed when dropped.
pub struct Echo {
    _child: Child,
    pub addr: SocketAddr,
    /// The io driver the echo's threads run (`io_uring` or `epoll`), from its second line.
    pub driver: String,
}

pub async fn start_echo(extra: &[&str], env: &[(&str, &str)]) -> Echo {
    let mut cmd = Command::new(BIN);
    cmd.args(["echo", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn echo");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    timeout(STEP, stdout.read_line(&mut line))
        .await
        .expect("echo did not print its address in time")
        .expect("read echo stdout");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("address");
    let mut line = String::new();
    timeout(STEP, stdout.read_line(&mut line))
        .await
        .expect("echo did not print its driver in time")
        .expect("read echo stdout");
    let driver = line
        .trim()
        .strip_prefix("driver ")
        .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
        .to_string();
    Echo {
        _child: child,
        addr,
        driver,
    }
}

/// Runs a client scenario with `--json` and returns the parsed object.
pub async fn run_json(args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = run_raw(args, env).await;
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let mut lines = stdout.lines();
    let v: Value = serde_json::from_str(lines.next().expect("one line")).expect("JSON");
    assert!(lines.next().is_none(), "more than one line: {stdout}");
    v
}

pub async fn run_raw(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn client");
    timeout(RUN_DEADLINE, child.wait_with_output())
        .await
        .expect("client did not finish in time")
        .expect("client output")
}

pub fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or null in {v}"))
}

pub fn assert_clean(v: &Value) {
    assert!(num(v, "ops") > 0.0, "no ops: {v}");
    assert_eq!(num(v, "errors"), 0.0, "errors: {v}");
}

/// How the in-test tokio-tungstenite server treats messages.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Echo,
    /// Flips one byte of every echoed payload.
    Corrupt,
    /// Echoes this many messages, then closes with Close 1001 (Going Away).
    GoAwayAfter(usize),
    /// Echoes this many messages, then closes the TCP connection without a Close frame.
    DropAfter(usize),
}

/// An independent WebSocket server: echoes (or corrupts) on every path, and on `/push*`
/// broadcasts `ringproxy-load`'s push format every 10 ms.
pub async fn start_ws_server(mode: Mode) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_ws(s, mode));
        }
    });
    addr
}

pub async fn serve_ws<S>(s: S, mode: Mode)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut path = String::new();
    // The callback's signature is tungstenite's, large error type included.
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        path = req.uri().path().to_string();
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(s, cb).await else {
        return;
    };
    if path.starts_with("/push") {
        let mut seq = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    seq += 1;
                    let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
                    let mut m = vec![0x5Au8; 64];
                    m[..8].copy_from_slice(&ts.to_le_bytes());
                    m[8..16].copy_from_slice(&seq.to_le_bytes());
                    if ws.send(Message::binary(m)).await.is_err() { return; }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    _ => {}
                }
            }
        }
    }
    let mut echoed = 0;
    while let Some(Ok(msg)) = ws.next().await {
        match mode {
            Mode::DropAfter(n) if echoed == n => return,
            Mode::GoAwayAfter(n) if echoed == n => {
                let away = CloseFrame {
                    code: CloseCode::Away,
                    reason: "".into(),
                };
                let _ = ws.close(Some(away)).await;
                // tungstenite ends the stream once the client's answer has come.
                while let Some(Ok(_)) = ws.next().await {}
                return;
            }
            _ => {}
        }
        echoed += 1;
        let reply = match msg {
            Message::Binary(b) => {
                let mut v = b.to_vec();
                if mode == Mode::Corrupt && !v.is_empty() {
                    let i = v.len() / 2;
                    v[i] ^= 0xFF;
                }
                Message::binary(v)
            }
            Message::Text(t) => Message::Text(t),
            // Pings are answered and closes completed by tungstenite itself.
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// `ringproxy-load cert` into `dir`; returns (cert.pem, key.pem).
pub async fn make_cert(dir: &Path, names: &[&str], kind: &str) -> (String, String) {
    let mut args = vec!["cert", "--out", dir.to_str().unwrap(), "--type", kind];
    for n in names {
        args.extend(["--name", n]);
    }
    let out = run_raw(&args, &[]).await;
    assert!(
        out.status.success(),
        "cert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    (p("cert.pem"), p("key.pem"))
}

/// tokio-rustls in front of the tokio-tungstenite server of load_common.
pub async fn start_wss_server(cert: &str, key: &str, mode: Mode) -> SocketAddr {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(Ok(tls)) = timeout(STEP, acceptor.accept(s)).await {
                    serve_ws(tls, mode).await;
                }
            });
        }
    });
    addr
}
