//! scripts/wss_client.py (Python's ssl + `websockets`, independent of rustls and of this
//! crate's WebSocket code) against wss endpoints: the load tool's TLS `echo` backend must pass
//! it; a certificate for another name and a corrupting server must make it fail. The same
//! script run through ringproxy terminating TLS belongs with the proxy's TLS tests.
//!
//! Needs python3 with `websockets` (scripts/test.sh installs it); a missing one fails the test.

mod load_common;

use std::path::PathBuf;
use std::process::Stdio;

use load_common::*;
use tokio::process::Command;
use tokio::time::timeout;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/wss_client.py")
}

/// Runs the script with a deadline; returns (success, stdout + stderr).
async fn wss_client(url: &str, ca: &str, server_name: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .args([url, ca])
        .args(server_name)
        .args(["--timeout", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .expect("python3 must be installed (scripts/test.sh)");
    let out = timeout(RUN_DEADLINE, child.wait_with_output())
        .await
        .expect("wss_client.py did not finish in time")
        .expect("wss_client.py output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("websockets package is missing"),
        "python3 lacks the websockets package: run scripts/test.sh or \
         `apt-get install python3-websockets` / `pip install websockets`"
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_wss_client_against_tls_echo_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), &["localhost", "127.0.0.1"], "ecdsa").await;
    let echo = start_echo(&["--tls-cert", &cert, "--tls-key", &key], &[]).await;
    let port = echo.addr.port();

    let (ok, out) = wss_client(&format!("wss://127.0.0.1:{port}/"), &cert, None).await;
    assert!(ok, "by IP: {out}");
    let (ok, out) = wss_client(&format!("wss://localhost:{port}/"), &cert, None).await;
    assert!(ok, "by name: {out}");
    let (ok, out) = wss_client(
        &format!("wss://127.0.0.1:{port}/"),
        &cert,
        Some("localhost"),
    )
    .await;
    assert!(ok, "with a server name: {out}");

    let (ok, out) = wss_client(
        &format!("wss://127.0.0.1:{port}/"),
        &cert,
        Some("other.test"),
    )
    .await;
    assert!(
        !ok,
        "a certificate for localhost accepted as other.test: {out}"
    );
    assert!(out.contains("CERTIFICATE_VERIFY_FAILED"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_wss_client_detects_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), &["127.0.0.1"], "ecdsa").await;
    let addr = start_wss_server(&cert, &key, Mode::Corrupt).await;
    let (ok, out) = wss_client(&format!("wss://{addr}/"), &cert, None).await;
    assert!(!ok, "corrupted echoes accepted: {out}");
    assert!(out.contains("1 MiB message: got"), "{out}");
}
