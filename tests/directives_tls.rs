//! `ssl_session_timeout` through a running ringproxy: a session resumes within the timeout and
//! not after it, from the session cache and from tickets, over TLSv1.2 and TLSv1.3. (The other
//! `ssl_*` directives have theirs in `proxy_tls.rs`.)

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
