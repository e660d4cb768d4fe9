//! `ssl_conf_command` and `proxy_ssl_conf_command`: OpenSSL's configuration commands as
//! written for nginx (`Options PrioritizeChaCha`, `Ciphersuites`, `MinProtocol`, ...) change
//! what the handshake negotiates, on either side; unknown commands and bad values are
//! OpenSSL's errors with the file and line, and what rustls cannot do is a warning.

mod common;

use common::certs::Ca;
use common::tls::*;
use common::tls_backend::{field, ClientAuth, TlsBackend};
use rustls::CipherSuite as S;

const VARS: &str = "return 200 \"$ssl_protocol $ssl_cipher\";";

// effect: ssl_conf_command
/// `PrioritizeChaCha` with the server's preference: a client listing CHACHA20 first gets it,
/// one listing AES first gets the server's first choice; `Ciphersuites` restricts TLSv1.3;
/// `MinProtocol` refuses TLSv1.2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_commands_change_the_negotiation() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["a.test"], false);
    let port = common::free_port();
    let (suites, min) = (common::free_port(), common::free_port());
    let conf = format!(
        "events {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          server {{ listen 127.0.0.1:{port} ssl; ssl_prefer_server_ciphers on;
                    ssl_conf_command Options PrioritizeChaCha;
                    location / {{ {VARS} }} }}
          server {{ listen 127.0.0.1:{suites} ssl;
                    ssl_conf_command Ciphersuites TLS_AES_128_CCM_SHA256:TLS_AES_128_GCM_SHA256;
                    location / {{ {VARS} }} }}
          server {{ listen 127.0.0.1:{min} ssl; ssl_conf_command MinProtocol TLSv1.3;
                    location / {{ {VARS} }} }}
        }}\n"
    );
    let p = start(prefix_with(&[("a", &leaf)]), port, &conf);
    let tls13 = [&rustls::version::TLS13];
    let chacha_first = client(
        &tls13,
        &[
            S::TLS13_CHACHA20_POLY1305_SHA256,
            S::TLS13_AES_128_GCM_SHA256,
            S::TLS13_AES_256_GCM_SHA384,
        ],
    );
    let aes_first = client(
        &tls13,
        &[
            S::TLS13_AES_128_GCM_SHA256,
            S::TLS13_CHACHA20_POLY1305_SHA256,
            S::TLS13_AES_256_GCM_SHA384,
        ],
    );
    let r = a_test(p.port, chacha_first.clone()).await;
    assert_eq!(
        body(&r),
        "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256",
        "{r}\n{}",
        p.stderr()
    );
    let r = a_test(p.port, aes_first.clone()).await;
    assert_eq!(body(&r), "TLSv1.3 TLS_AES_256_GCM_SHA384", "{r}");
    // Ciphersuites: only AES128 for TLSv1.3 (the CCM suite is skipped), whatever the client
    // prefers; a client without it cannot speak TLSv1.3 there.
    let r = a_test(suites, chacha_first).await;
    assert_eq!(body(&r), "TLSv1.3 TLS_AES_128_GCM_SHA256", "{r}");
    let no_aes128 = client(&tls13, &[S::TLS13_AES_256_GCM_SHA384]);
    assert!(connect(suites, Some("a.test"), no_aes128).await.is_err());
    // MinProtocol TLSv1.3.
    let v12 = client(&[&rustls::version::TLS12], &[]);
    assert!(connect(min, Some("a.test"), v12.clone()).await.is_err());
    assert!(body(&a_test(port, v12).await).starts_with("TLSv1.2 "));
    assert!(body(&a_test(min, aes_first).await).starts_with("TLSv1.3 "));
    // `-t` warned about the CCM suite.
    assert!(
        p.stderr()
            .contains("ringproxy skips \"TLS_AES_128_CCM_SHA256\" of \"ssl_conf_command\""),
        "{}",
        p.stderr()
    );
}

// effect: proxy_ssl_conf_command
/// Towards a TLS backend: `Ciphersuites` and `MaxProtocol` choose what the proxy offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_commands_change_what_the_backend_sees() {
    let ca = Ca::new();
    let tls = TlsBackend::start(&ca.leaf(&["backend.test"], false), ClientAuth::None);
    let b = tls.port();
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{ server {{ listen 127.0.0.1:{port};
           location /chacha {{ proxy_pass https://127.0.0.1:{b};
             proxy_ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256; }}
           location /tls12 {{ proxy_pass https://127.0.0.1:{b};
             proxy_ssl_conf_command MaxProtocol TLSv1.2; }}
           location /plain {{ proxy_pass https://127.0.0.1:{b}; }}
        }} }}\n"
    );
    let p = start(prefix_with(&[]), port, &conf);
    let report = |path: &'static str| {
        let port = p.port;
        async move {
            let r = plain(port, path).await;
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {r}");
            body(&r).to_string()
        }
    };
    let r = report("/chacha").await;
    assert_eq!(field(&r, "cipher"), "TLS13_CHACHA20_POLY1305_SHA256", "{r}");
    let r = report("/tls12").await;
    assert_eq!(field(&r, "version"), "TLSv1.2", "{r}");
    let r = report("/plain").await;
    assert_eq!(field(&r, "version"), "TLSv1.3", "{r}");
    assert_ne!(field(&r, "cipher"), "TLS13_CHACHA20_POLY1305_SHA256", "{r}");
}

/// OpenSSL's errors for an unknown command and a bad value, with nginx's file and line.
#[test]
fn unknown_commands_and_bad_values_are_errors() {
    for (line, want) in [
        (
            "ssl_conf_command Foo bar;",
            "[emerg] SSL_CONF_cmd(\"Foo\", \"bar\") failed (SSL: unknown cmd name:cmd=Foo) in ",
        ),
        (
            "ssl_conf_command Options Bogus;",
            "[emerg] SSL_CONF_cmd(\"Options\", \"Bogus\") failed (SSL: bad value:cmd=Options, value=Bogus) in ",
        ),
        (
            "proxy_ssl_conf_command MinProtocol TLSv9;",
            "[emerg] SSL_CONF_cmd(\"MinProtocol\", \"TLSv9\") failed (SSL: bad value:cmd=MinProtocol, value=TLSv9) in ",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("ringproxy.conf");
        std::fs::write(
            &conf,
            format!("events {{}}\nhttp {{\n{line}\nserver {{ listen 127.0.0.1:1; }} }}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringproxy"))
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line}: {err}");
        assert!(err.contains(want), "{line}: {err}");
        assert!(err.contains("ringproxy.conf:3"), "{line}: {err}");
    }
}
