//! `ssl_session_timeout` and `ssl_reject_handshake` through a running ringproxy: a session
//! resumes within the timeout and not after it, from the session cache and from tickets, over
//! TLSv1.2 and TLSv1.3; a server with a certificate and `ssl_reject_handshake on` refuses the
//! names it would answer for. (The other `ssl_*` directives have theirs in `proxy_tls.rs`.)

mod common;

use std::time::Duration;

use common::certs::Ca;
use common::tls::*;
use rustls::HandshakeKind::{Full, Resumed};

// effect: ssl_session_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_after_ssl_session_timeout() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["a.test"], false);
    let (cache, tickets) = (common::free_port(), common::free_port());
    // One shard: cache and ticket keys are per shard.
    let conf = format!(
        "worker_processes 1;\nevents {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          ssl_session_timeout 3s;
          server {{ listen 127.0.0.1:{cache} ssl; ssl_session_cache shared:SSL:1m; ssl_session_tickets off; return 200 x; }}
          server {{ listen 127.0.0.1:{tickets} ssl; return 200 x; }}
        }}\n"
    );
    let _p = start(prefix_with(&[("a", &leaf)]), cache, &conf);
    let cases = [
        (cache, &rustls::version::TLS12),
        (cache, &rustls::version::TLS13),
        (tickets, &rustls::version::TLS12),
        (tickets, &rustls::version::TLS13),
    ];
    // Each case: one client that resumes at once (the session works), one that comes back
    // after the timeout (a full handshake). Both have their own session store.
    let mut late = Vec::new();
    for (port, version) in cases {
        let soon = client(&[version], &[]);
        let later = client(&[version], &[]);
        for cfg in [&soon, &later] {
            let mut s = connect(port, Some("a.test"), cfg.clone()).await.unwrap();
            // Read the response: TLSv1.3 tickets arrive after the handshake.
            assert!(get(&mut s, "a.test", "/").await.starts_with("HTTP/1.1 200"));
        }
        let again = connect(port, Some("a.test"), soon).await.unwrap();
        assert_eq!(
            again.get_ref().1.handshake_kind(),
            Some(Resumed),
            "port {port} {version:?} within the timeout"
        );
        late.push((port, version, later));
    }
    // 5 s on, every session is older than the 3 s timeout, however whole seconds fall (nginx
    // and ringproxy count whole seconds). Waiting for time to pass is the point here: there is
    // nothing to poll.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (port, version, cfg) in late {
        let s = connect(port, Some("a.test"), cfg).await.unwrap();
        assert_eq!(
            s.get_ref().1.handshake_kind(),
            Some(Full),
            "port {port} {version:?} after the timeout"
        );
    }
}

// effect: ssl_reject_handshake
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_reject_handshake_refuses_a_server_that_has_a_certificate() {
    let ca = Ca::new();
    let (a, b) = (ca.leaf(&["a.test"], false), ca.leaf(&["b.test"], false));
    let (port, open) = (common::free_port(), common::free_port());
    // The default server has a certificate: without the directive, unknown names and clients
    // without SNI would get it. `open` is the same without the directive.
    let servers = |port: u16, reject: &str| {
        format!(
            "server {{ listen 127.0.0.1:{port} ssl default_server; {reject}
                      ssl_certificate certs/b.crt; ssl_certificate_key certs/b.key; return 200 b; }}
             server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
                      ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key; return 200 a; }}"
        )
    };
    let conf = format!(
        "error_log logs/error.log info;\nevents {{}}\nhttp {{\n{}\n{}\n}}\n",
        servers(port, "ssl_reject_handshake on;"),
        servers(open, "")
    );
    let p = start(prefix_with(&[("a", &a), ("b", &b)]), port, &conf);
    assert_eq!(body(&a_test(port, client(&[], &[])).await), "a");
    for sni in [Some("other.test"), None] {
        let e = connect(port, sni, client(&[], &[])).await.unwrap_err();
        assert!(e.to_string().contains("nrecognisedName"), "{sni:?}: {e}");
        let mut s = connect(open, sni, client(&[], &[])).await.unwrap();
        assert_eq!(body(&get(&mut s, "x", "/").await), "b", "{sni:?}");
    }
    let log = "[info] ";
    let want = "SSL handshake rejected by \"ssl_reject_handshake\" for server name \"other.test\"";
    let deadline = std::time::Instant::now() + T;
    while !p
        .stderr()
        .lines()
        .any(|l| l.contains(log) && l.contains(want))
    {
        assert!(std::time::Instant::now() < deadline, "{}", p.stderr());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
