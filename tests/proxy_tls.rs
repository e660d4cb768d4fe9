//! TLS termination, with certificates generated per test (rcgen): seed 005 unchanged with a
//! wss client (small and 1 MiB messages, both directions at once), SNI among three servers and
//! the default for no SNI or an unknown name, TLSv1.2-only and TLSv1.3-only clients with the
//! `$ssl_*` variables, `ssl_protocols`/`ssl_ciphers`/`ssl_prefer_server_ciphers`/
//! `ssl_ecdh_curve`, RSA+ECDSA, session resumption (cache and tickets), `ssl_reject_handshake`,
//! a stalled handshake, plain HTTP on the TLS port, broken certificates, and an independent wss
//! client (scripts/wss_client.py: Python's ssl + websockets) through seed 005.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::certs::{Ca, Leaf};
use common::tls::*;
use common::{Echo, Proxy};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_005_unchanged_echoes_over_wss() {
    let echo = Echo::start();
    let port = common::free_port();
    let dir = common::seed_copy();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let conf = common::seed("005-wss.conf", port, echo.addr, echo.addr)
        .replace("listen 8443", &format!("listen 127.0.0.1:{port}"));
    std::fs::write(dir.path().join("ringproxy.conf"), conf).unwrap();
    let p = Proxy::start_in(dir, port, "", &[]);
    for _ in 0..2 {
        let s = connect(p.port, Some("localhost"), client(&[], &[]))
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), None);
        wss_echo(s, "wss://localhost/websocket").await;
    }
    // Both directions at once, more than any buffer holds: the TLS sides block, queue in
    // rustls and resume without losing or reordering a byte.
    let s = connect(p.port, Some("localhost"), client(&[], &[]))
        .await
        .unwrap();
    let (ws, _) = tokio::time::timeout(
        T,
        tokio_tungstenite::client_async("wss://localhost/websocket", s),
    )
    .await
    .expect("upgrade in time")
    .unwrap();
    let (mut tx, mut rx) = ws.split();
    let msgs: Vec<Message> = (0..16u8)
        .map(|i| Message::binary(big(256 * 1024 + i as usize)))
        .collect();
    let sent = msgs.clone();
    let sender = tokio::spawn(async move {
        for m in sent {
            tx.send(m).await.unwrap();
        }
        tx
    });
    for m in &msgs {
        let got = tokio::time::timeout(T, rx.next())
            .await
            .expect("echo in time")
            .unwrap()
            .unwrap();
        assert!(got == *m, "echo differs");
    }
    let _sink = tokio::time::timeout(T, sender)
        .await
        .expect("sent in time")
        .expect("the sender did not panic");
}

const VARS: &str =
    "return 200 \"$server_name $scheme $https $ssl_protocol $ssl_cipher [$ssl_server_name]\";";

fn three_servers(port: u16, extra_b: &str) -> String {
    let server = |name: &str, stem: &str, extra: &str| {
        format!(
            "server {{ listen 127.0.0.1:{port} ssl{extra}; server_name {name};
               ssl_certificate certs/{stem}.crt; ssl_certificate_key certs/{stem}.key;
               location / {{ {VARS} }} }}\n"
        )
    };
    format!(
        "error_log logs/error.log info;\nevents {{}}\nhttp {{\n{}{}{}}}\n",
        server("a.test", "a", ""),
        server("b.test", "b", &format!(" default_server{extra_b}")),
        server("*.c.test", "c", ""),
    )
}

// effect: ssl_certificate ssl_certificate_key
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_among_three_servers_and_no_sni_gets_the_default() {
    let ca = Ca::new();
    let (a, b, c) = (
        ca.leaf(&["a.test"], false),
        ca.leaf(&["b.test"], true),
        ca.leaf(&["*.c.test"], false),
    );
    let port = common::free_port();
    let p = start(
        prefix_with(&[("a", &a), ("b", &b), ("c", &c)]),
        port,
        &three_servers(port, ""),
    );
    let cases: [(Option<&str>, &Leaf, &str); 5] = [
        (Some("a.test"), &a, "a.test"),
        (Some("b.test"), &b, "b.test"),
        (Some("x.c.test"), &c, "x.c.test"),
        (Some("unknown.test"), &b, "unknown.test"),
        (None, &b, "b.test"),
    ];
    // ALPN: a browser offering h2 and http/1.1 gets http/1.1.
    let mut alpn = (*client(&[], &[])).clone();
    alpn.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let s = connect(p.port, Some("a.test"), Arc::new(alpn))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    for (sni, leaf, host) in cases {
        let mut s = connect(p.port, sni, client(&[], &[])).await.unwrap();
        let got = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        assert!(got == leaf.der, "{sni:?}: wrong certificate");
        let r = get(&mut s, host, "/").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(body(&r).contains(" https on TLSv1.3 TLS_"), "{sni:?}: {r}");
        if host != "x.c.test" {
            let want = if host == "a.test" {
                "a.test "
            } else {
                "b.test "
            };
            assert!(body(&r).starts_with(want), "{sni:?}: {r}");
        }
        assert!(
            body(&r).ends_with(&format!("[{}]", sni.unwrap_or(""))),
            "{r}"
        );
    }
}

// effect: ssl_protocols ssl_ciphers ssl_prefer_server_ciphers ssl_ecdh_curve
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_and_tls13_only_clients_and_protocol_and_cipher_settings() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["a.test"], false);
    let port = common::free_port();
    let (p12, p13) = (common::free_port(), common::free_port());
    let conf = format!(
        "events {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          server {{ listen 127.0.0.1:{port} ssl; location / {{ {VARS} }} }}
          server {{ listen 127.0.0.1:{p12} ssl; ssl_protocols TLSv1.2;
                    ssl_ciphers ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256;
                    ssl_prefer_server_ciphers on; location / {{ {VARS} }} }}
          server {{ listen 127.0.0.1:{p13} ssl; ssl_protocols TLSv1.3; ssl_ecdh_curve secp384r1;
                    location / {{ {VARS} }} }}
        }}\n"
    );
    let p = start(prefix_with(&[("a", &leaf)]), port, &conf);
    let v12 = client(&[&rustls::version::TLS12], &[]);
    let v13 = client(&[&rustls::version::TLS13], &[]);
    let r = a_test(p.port, v12.clone()).await;
    assert!(
        body(&r).contains(" https on TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384 [a.test]"),
        "{r}"
    );
    let r = a_test(p.port, v13.clone()).await;
    assert!(
        body(&r).contains(" https on TLSv1.3 TLS_AES_256_GCM_SHA384 [a.test]"),
        "{r}"
    );
    // ssl_protocols: each port refuses the other version.
    assert!(connect(p12, Some("a.test"), v13.clone()).await.is_err());
    assert!(connect(p13, Some("a.test"), v12.clone()).await.is_err());
    let r = a_test(p13, v13).await;
    assert!(body(&r).contains("TLSv1.3"), "{r}");
    // ssl_ciphers restricts TLSv1.2 and ssl_prefer_server_ciphers picks the server's order
    // (the client prefers AES128).
    use rustls::CipherSuite as S;
    let prefers_aes = client(
        &[&rustls::version::TLS12],
        &[
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
    );
    let r = a_test(p12, prefers_aes).await;
    assert!(
        body(&r).contains("TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305 "),
        "{r}"
    );
    let only_aes256 = client(
        &[&rustls::version::TLS12],
        &[S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384],
    );
    assert!(connect(p12, Some("a.test"), only_aes256).await.is_err());
    // ssl_ecdh_curve: secp384r1 only on p13.
    let kx = |group: &'static dyn rustls::crypto::SupportedKxGroup| {
        let mut p = rustls::crypto::aws_lc_rs::default_provider();
        p.kx_groups = vec![group];
        let p = Arc::new(p);
        let c = ClientConfig::builder_with_provider(p.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(ringproxy::tls::Verifier::none(p))
            .with_no_client_auth();
        Arc::new(c)
    };
    use rustls::crypto::aws_lc_rs::kx_group;
    assert!(connect(p13, Some("a.test"), kx(kx_group::X25519))
        .await
        .is_err());
    assert!(connect(p13, Some("a.test"), kx(kx_group::SECP384R1))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ecdsa_certificates_in_one_server() {
    let ca = Ca::new();
    let (rsa, ec) = (ca.leaf(&["a.test"], true), ca.leaf(&["a.test"], false));
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{ server {{ listen 127.0.0.1:{port} ssl;
          ssl_certificate certs/rsa.crt; ssl_certificate_key certs/rsa.key;
          ssl_certificate certs/ec.crt; ssl_certificate_key certs/ec.key;
          location / {{ return 200 ok; }} }} }}\n"
    );
    let p = start(prefix_with(&[("rsa", &rsa), ("ec", &ec)]), port, &conf);
    use rustls::CipherSuite as S;
    let v12 = &[&rustls::version::TLS12];
    for (suite, want) in [
        (S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, &rsa),
        (S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, &ec),
    ] {
        let s = connect(p.port, Some("a.test"), client(v12, &[suite]))
            .await
            .unwrap();
        assert!(s.get_ref().1.peer_certificates().unwrap()[0].as_ref() == want.der.as_slice());
    }
}

// effect: ssl_session_cache ssl_session_tickets
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_by_cache_and_by_ticket_within_a_shard() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["a.test"], false);
    let (cache, tickets, none) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let conf = format!(
        "worker_processes 1;\nevents {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          server {{ listen 127.0.0.1:{cache} ssl; ssl_session_cache shared:SSL:1m; ssl_session_tickets off; return 200 x; }}
          server {{ listen 127.0.0.1:{tickets} ssl; return 200 x; }}
          server {{ listen 127.0.0.1:{none} ssl; ssl_session_tickets off; return 200 x; }}
        }}\n"
    );
    let p = start(prefix_with(&[("a", &leaf)]), cache, &conf);
    use rustls::HandshakeKind::{Full, Resumed};
    for (port, version, want) in [
        (cache, &rustls::version::TLS12, Resumed),
        (cache, &rustls::version::TLS13, Resumed),
        (tickets, &rustls::version::TLS12, Resumed),
        (tickets, &rustls::version::TLS13, Resumed),
        (none, &rustls::version::TLS12, Full),
        (none, &rustls::version::TLS13, Full),
    ] {
        let cfg = client(&[version], &[]);
        let mut first = connect(port, Some("a.test"), cfg.clone()).await.unwrap();
        // Read the response so that TLSv1.3 tickets (sent after the handshake) arrive.
        assert!(get(&mut first, "a.test", "/")
            .await
            .starts_with("HTTP/1.1 200"));
        let second = connect(port, Some("a.test"), cfg).await.unwrap();
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(want),
            "port {port} {version:?}"
        );
    }
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_handshake_refuses_unknown_names_and_serves_known_ones() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["a.test"], false);
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{
          server {{ listen 127.0.0.1:{port} ssl default_server; ssl_reject_handshake on; }}
          server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
                    ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key; return 200 a; }}
        }}\n"
    );
    let p = start(prefix_with(&[("a", &leaf)]), port, &conf);
    let r = a_test(p.port, client(&[], &[])).await;
    assert_eq!(body(&r), "a");
    let e = connect(p.port, Some("other.test"), client(&[], &[]))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("UnrecognisedName") || e.to_string().contains("nrecogni"),
        "{e}"
    );
    assert!(connect(p.port, None, client(&[], &[])).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_certificate_on_a_tls_address_uses_the_default_certificate() {
    // As nginx: `ssl` on one listen makes the address TLS; the SNI-selected server has no
    // certificate, so the default server's answers and b's configuration serves the request.
    let leaf = Ca::new().leaf(&["a.test"], false);
    let port = common::free_port();
    let conf = format!(
        "events {{}}\nhttp {{
          server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
                    ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key; return 200 a; }}
          server {{ listen 127.0.0.1:{port}; server_name b.test; return 200 b; }}
        }}\n"
    );
    let p = start(prefix_with(&[("a", &leaf)]), port, &conf);
    let mut s = connect(p.port, Some("b.test"), client(&[], &[]))
        .await
        .unwrap();
    assert!(s.get_ref().1.peer_certificates().unwrap()[0].as_ref() == leaf.der.as_slice());
    assert_eq!(body(&get(&mut s, "b.test", "/").await), "b");
}

fn simple_tls(port: u16, extra: &str) -> String {
    format!(
        "error_log logs/error.log info;\nevents {{}}\nhttp {{ server {{ listen 127.0.0.1:{port} ssl; {extra}
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key; return 200 a; }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_when_client_header_timeout_expires() {
    let leaf = Ca::new().leaf(&["a.test"], false);
    let port = common::free_port();
    let p = start(
        prefix_with(&[("a", &leaf)]),
        port,
        &simple_tls(port, "client_header_timeout 1s;"),
    );
    // Stalled inside the ClientHello record, and after a whole ClientHello (the server's
    // flight is sent, the client never finishes).
    let mut hello = Vec::new();
    let name = ServerName::try_from("a.test").unwrap();
    rustls::ClientConnection::new(client(&[], &[]), name)
        .unwrap()
        .write_tls(&mut hello)
        .unwrap();
    for (first, answered) in [
        (&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01][..], false),
        (&hello[..], true),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        s.write_all(first).await.unwrap();
        let mut got = Vec::new();
        let r = tokio::time::timeout(T, s.read_to_end(&mut got))
            .await
            .expect("closed by the proxy");
        // An end of stream in both cases, as nginx (reset_timedout_connection off: a timed-out
        // handshake is closed without an alert, normally); the proxy read all the client
        // sent, so its close is a FIN.
        r.expect("an end of stream, not a reset");
        // The ServerHello starts with a handshake record.
        assert_eq!(got.first() == Some(&0x16), answered, "{got:?}");
    }
    let log_deadline = std::time::Instant::now() + T;
    while p
        .stderr()
        .matches("client timed out (110: Connection timed out) while SSL handshaking")
        .count()
        < 2
    {
        assert!(std::time::Instant::now() < log_deadline, "{}", p.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The shard lives on.
    let r = a_test(p.port, client(&[], &[])).await;
    assert_eq!(body(&r), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_gets_nginx_400() {
    let leaf = Ca::new().leaf(&["a.test"], false);
    let port = common::free_port();
    let p = start(prefix_with(&[("a", &leaf)]), port, &simple_tls(port, ""));
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    let r = get(&mut s, "x", "/").await;
    // nginx 1.22.1's page, as seen in a run made by hand (its signature line says nginx).
    let page = "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>ringproxy</center>\r\n</body>\r\n</html>\r\n";
    assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
    assert!(r.contains("\r\nContent-Type: text/html\r\n"), "{r}");
    assert!(
        r.contains(&format!("\r\nContent-Length: {}\r\n", page.len())),
        "{r}"
    );
    assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
    assert_eq!(body(&r), page);
    assert!(p.stderr().contains(
        "client sent plain HTTP request to HTTPS port while reading client request headers"
    ));
    // And a garbage handshake never kills the shard.
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    let mut buf = Vec::new();
    // Closed normally: the proxy read the whole record, so its close is a FIN.
    tokio::time::timeout(T, s.read_to_end(&mut buf))
        .await
        .expect("closed")
        .expect("an end of stream, not a reset");
    let r = a_test(p.port, client(&[], &[])).await;
    assert_eq!(body(&r), "a");
}

/// GETs `/` from `host` over TLS 1.3 with a hand-driven rustls client and returns the sizes
/// of the application-data records as they came off the wire, and the plaintext.
fn record_sizes(port: u16, host: &str) -> (Vec<usize>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut c =
        rustls::ClientConnection::new(client(&[&rustls::version::TLS13], &[]), name).unwrap();
    while c.is_handshaking() {
        c.complete_io(&mut sock).unwrap();
    }
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    c.writer().write_all(req.as_bytes()).unwrap();
    while c.wants_write() {
        c.write_tls(&mut sock).unwrap();
    }
    let mut wire = Vec::new();
    sock.read_to_end(&mut wire).unwrap();
    let (mut sizes, mut at) = (Vec::new(), 0);
    while at + 5 <= wire.len() {
        let len = u16::from_be_bytes([wire[at + 3], wire[at + 4]]) as usize;
        if wire[at] == 23 {
            sizes.push(len);
        }
        at += 5 + len;
    }
    let mut plain = Vec::new();
    let mut rd = &wire[..];
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets().unwrap();
    }
    // Ok only after the server's close_notify (without it the reader wants more data).
    c.reader()
        .read_to_end(&mut plain)
        .expect("the response ends with a close_notify");
    (sizes, plain)
}

// effect: ssl_buffer_size
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_buffer_size_caps_the_plaintext_of_each_record() {
    let ca = Ca::new();
    let (a, b) = (ca.leaf(&["a.test"], false), ca.leaf(&["b.test"], false));
    let port = common::free_port();
    let text = "x".repeat(6000);
    let conf = format!(
        "events {{}}\nhttp {{\n  server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
           ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key; return 200 {text}; }}
         server {{ listen 127.0.0.1:{port} ssl; server_name b.test; ssl_buffer_size 1k;
           ssl_certificate certs/b.crt; ssl_certificate_key certs/b.key; return 200 {text}; }}\n}}\n"
    );
    let p = start(prefix_with(&[("a", &a), ("b", &b)]), port, &conf);
    let port = p.port;
    let (big, small) = tokio::task::spawn_blocking(move || {
        (record_sizes(port, "a.test"), record_sizes(port, "b.test"))
    })
    .await
    .unwrap();
    for (_, plain) in [&big, &small] {
        let plain = String::from_utf8_lossy(plain);
        assert!(plain.ends_with(&text), "whole body: {plain:.80}");
    }
    // TLS 1.3 adds the content type byte and a 16-byte tag to each record's plaintext.
    let most = |s: &[usize]| s.iter().copied().max().unwrap_or(0);
    assert!(
        most(&big.0) >= 6000 + 17,
        "default 16k: the body in one record {:?}",
        big.0
    );
    assert!(most(&small.0) <= 1024 + 17, "1k records: {:?}", small.0);
    assert!(
        small.0.len() >= 6,
        "6,000 bytes in 1k records: {:?}",
        small.0
    );
}

#[test]
fn broken_certificates_and_keys_are_config_errors_with_file_and_line() {
    let ca = Ca::new();
    let (leaf, other) = (ca.leaf(&["a.test"], false), ca.leaf(&["a.test"], false));
    let dir = prefix_with(&[("a", &leaf), ("other", &other)]);
    let d = dir.path();
    std::fs::write(d.join("certs/garbage.pem"), "not a certificate\n").unwrap();
    let check = |cert: &str, key: &str| {
        let conf = format!(
            "events {{}}\nhttp {{\n    server {{\n        listen 127.0.0.1:1 ssl;\n        ssl_certificate {cert};\n        ssl_certificate_key {key};\n    }}\n}}\n"
        );
        std::fs::write(d.join("t.conf"), conf).unwrap();
        let out = common::run(&["-p", d.to_str().unwrap(), "-c", "t.conf", "-t"]);
        assert!(!out.status.success());
        common::stderr(&out)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let at = format!("in {}/t.conf:3", d.display());
    let p = |f: &str| d.join(f).display().to_string();
    assert_eq!(
        check("certs/garbage.pem", "certs/a.key"),
        format!(
            "ringproxy: [emerg] cannot load certificate \"{}\": no certificate in PEM file {at}",
            p("certs/garbage.pem")
        )
    );
    assert_eq!(
        check("certs/a.crt", "certs/garbage.pem"),
        format!("ringproxy: [emerg] cannot load certificate key \"{}\": no private key in PEM file {at}", p("certs/garbage.pem"))
    );
    let mismatch = check("certs/a.crt", "certs/other.key");
    assert!(
        mismatch.starts_with(&format!(
            "ringproxy: [emerg] certificate \"{}\" and key \"{}\" do not match",
            p("certs/a.crt"),
            p("certs/other.key")
        )),
        "{mismatch}"
    );
    assert!(mismatch.ends_with(&at), "{mismatch}");
}
/// scripts/wss_client.py (Python's ssl + `websockets`: a TLS and WebSocket stack independent
/// of rustls and of this crate) through seed 005, trusting only the test CA, for the server
/// name `localhost` (the certificate's) and `other.test` (refused by the client's check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_wss_client_through_seed_005() {
    let echo = Echo::start();
    let port = common::free_port();
    let dir = common::copy_tree(&common::seed_dir());
    let ca = common::certs::write_localhost(dir.path());
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let conf = common::seed("005-wss.conf", port, echo.addr, echo.addr)
        .replace("listen 8443", &format!("listen 127.0.0.1:{port}"));
    std::fs::write(dir.path().join("ringproxy.conf"), conf).unwrap();
    let p = Proxy::start_in(dir, port, "", &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wss_client.py");
    let url = format!("wss://127.0.0.1:{}/websocket", p.port);
    for (name, want_ok) in [("localhost", true), ("other.test", false)] {
        let child = tokio::process::Command::new("python3")
            .arg(&script)
            .args([
                url.as_str(),
                ca_file.to_str().unwrap(),
                name,
                "--timeout",
                "20",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 (scripts/test.sh installs websockets)");
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("wss_client.py finished in time")
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("websockets package is missing"), "{text}");
        assert_eq!(out.status.success(), want_ok, "{name}: {text}");
    }
}
