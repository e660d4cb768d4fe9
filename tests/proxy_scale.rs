//! 5,000 concurrent WebSocket tunnels through ringproxy (2 shards), on both io drivers (each test
//! checks, from ringproxy's start-up notice, that the driver it names is the one that ran) and both
//! forwarding paths, driven by the load tool's `hold` scenario in its own process (each process
//! here gets `ulimit -n` 20,000: the proxy needs two descriptors per tunnel). Needs the load
//! tool, so the `load` feature (`cargo test --features load`, as scripts/test.sh runs it).
//! Then pushed tunnels, plain and wss, across 20 reloads that also alternate the certificate.

mod common;

use std::process::{Command, Stdio};

use common::{Echo, Proxy};

fn hold_through(driver: &str, splice: &str) {
    let echo = Echo::start();
    let port = common::free_port();
    let conf = format!(
        "error_log logs/error.log notice;\nworker_processes 2;\nworker_rlimit_nofile 20000;\nevents {{ worker_connections 12000; }}\nhttp {{\n    server {{\n        listen 127.0.0.1:{port} backlog=4096;\n        location / {{\n            proxy_pass http://{};\n            proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection \"upgrade\";\n            proxy_read_timeout 60s;\n            proxy_splice {splice};\n        }}\n    }}\n}}\n",
        echo.addr
    );
    let env: &[(&str, &str)] = if driver == "epoll" {
        &[("RINGPROXY_DRIVER", "epoll")]
    } else {
        &[]
    };
    let proxy = Proxy::start(&conf, port, "", env);
    // ringproxy falls back to epoll by itself where io_uring is blocked: an io_uring test that
    // ran on epoll would pass without testing what it names.
    assert_eq!(
        proxy.event_method(),
        driver,
        "{driver}/{splice}: the proxy runs another driver (is io_uring available here?)"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringproxy-load"))
        .args([
            "hold",
            "--url",
            &format!("ws://127.0.0.1:{port}/"),
            "--connections",
            "5000",
            "--idle",
            "2s",
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("hold did not finish within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        v["established"],
        5000,
        "{driver}/{splice}: {v}\n{}",
        proxy.stderr()
    );
    assert_eq!(
        v["survived"],
        5000,
        "{driver}/{splice}: {v}\n{}",
        proxy.stderr()
    );
    assert_eq!(v["dropped"], 0, "{driver}/{splice}: {v}");
}

#[test]
fn five_thousand_tunnels_io_uring_copy() {
    hold_through("io_uring", "off");
}

#[test]
fn five_thousand_tunnels_io_uring_splice() {
    hold_through("io_uring", "on");
}

#[test]
fn five_thousand_tunnels_epoll_copy() {
    hold_through("epoll", "off");
}

#[test]
fn five_thousand_tunnels_epoll_splice() {
    hold_through("epoll", "on");
}

/// The load tool's own echo backend (it has the `/push` broadcast) on 127.0.0.1:0.
fn push_backend(rate_hz: u32) -> (std::net::SocketAddr, common::Child) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringproxy-load"))
        .args(["echo", "--listen", "127.0.0.1:0", "--push-rate"])
        .arg(rate_hz.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    (addr, common::Child(child))
}

/// Generation `i` of a configuration that changes what a reload can change: a location, the
/// upstream group's membership and balancing, the tunnel timeouts, and the certificate of the
/// TLS listener on `tls` (`certs/a.crt` in even generations, `certs/b.crt` in odd ones).
fn generation(i: usize, port: u16, tls: u16, push: std::net::SocketAddr) -> String {
    let second = if i % 2 == 1 {
        format!("server {push} weight=2;")
    } else {
        String::new()
    };
    let balance = if i % 3 == 0 { "hash $remote_port;" } else { "" };
    let cert = if i % 2 == 0 { "a" } else { "b" };
    format!(
        "error_log logs/error.log notice;\nworker_processes 2;\nworker_rlimit_nofile 20000;\n\
         events {{ worker_connections 12000; }}\nhttp {{\n\
           upstream push {{ {balance} server {push}; {second} }}\n\
           server {{\n listen 127.0.0.1:{port} backlog=4096;\n\
             listen 127.0.0.1:{tls} ssl backlog=4096;\n\
             ssl_certificate certs/{cert}.crt; ssl_certificate_key certs/{cert}.key;\n\
             location /gen {{ return 200 \"{i}\"; }}\n\
             location / {{ proxy_pass http://push; proxy_http_version 1.1;\n\
               proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade;\n\
               proxy_read_timeout {}s; proxy_send_timeout {}s; }}\n\
           }}\n}}\n",
        60 + i,
        30 + i
    )
}

/// Plain and wss WebSocket tunnels receiving pushed messages while the configuration is reloaded
/// 20 times, the certificate alternating: every tunnel survives, none loses a message, each
/// reload takes effect, and a TLS handshake after each one is served the new certificate.
#[test]
fn five_thousand_pushed_tunnels_and_wss_ones_across_twenty_reloads_of_the_certificate() {
    const PLAIN: usize = 5000;
    const WSS: usize = 300;
    let started = std::time::Instant::now();
    let (push, _backend) = push_backend(20);
    let (port, tls) = (common::free_port(), common::free_port());
    let ca = common::certs::Ca::new();
    let leaves = [
        ca.leaf(&["127.0.0.1"], false),
        ca.leaf(&["127.0.0.1"], false),
    ];
    let dir = common::tls::prefix_with(&[("a", &leaves[0]), ("b", &leaves[1])]);
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(
        dir.path().join("ringproxy.conf"),
        generation(0, port, tls, push),
    )
    .unwrap();
    let proxy = Proxy::start_in(dir, port, "", &[]);
    let rt = runtime();
    // Trusts any certificate: which one came is what is checked.
    let tls_client = common::tls::client(&[], &[]);
    let served_cert = |rt: &tokio::runtime::Runtime| -> Vec<u8> {
        let s = rt
            .block_on(common::tls::connect(tls, None, tls_client.clone()))
            .unwrap();
        s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    assert_eq!(served_cert(&rt), leaves[0].der, "generation 0");
    let client = |url: String, n: usize, ca: Option<&std::path::Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringproxy-load"));
        cmd.args(["push", "--url", &url, "--connections", &n.to_string()])
            .args(["--duration", "120s", "--json"]);
        if let Some(ca) = ca {
            cmd.arg("--ca").arg(ca);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map(common::Child)
            .unwrap()
    };
    let mut plain = client(format!("ws://127.0.0.1:{port}/push"), PLAIN, None);
    let mut wss = client(format!("wss://127.0.0.1:{tls}/push"), WSS, Some(&ca_pem));
    // Reloads begin once the tunnels are up (the proxy holds two descriptors per tunnel).
    let up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while open_descriptors(proxy.pid()) < 2 * (PLAIN + WSS) {
        assert!(
            std::time::Instant::now() < up,
            "the {} tunnels did not open",
            PLAIN + WSS
        );
        for c in [&mut plain, &mut wss] {
            assert!(c.0.try_wait().unwrap().is_none(), "a client ended early");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for i in 1..=20 {
        std::fs::write(
            proxy.dir.path().join("ringproxy.conf"),
            generation(i, port, tls, push),
        )
        .unwrap();
        ringproxy::sys::kill(proxy.pid(), libc::SIGHUP).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // Logged once every shard has the new configuration in place.
        while proxy.stderr().matches("reconfigured: 2 shards").count() < i {
            assert!(
                std::time::Instant::now() < deadline,
                "reload {i} did not finish"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let got = rt.block_on(common::roundtrip(
            port,
            b"GET /gen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ));
        assert!(got.ends_with(&format!("\r\n\r\n{i}")), "reload {i}: {got}");
        assert!(
            served_cert(&rt) == leaves[i % 2].der,
            "reload {i}: a new TLS handshake was not served the new certificate"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // The reloads ran under the whole load, not after part of it had ended (the clients' 120 s
    // leave room for a loaded machine: the suite runs the other 5,000-tunnel tests beside this).
    for c in [&mut plain, &mut wss] {
        assert!(
            c.0.try_wait().unwrap().is_none(),
            "a client ended before the last reload ({:?} in)",
            started.elapsed()
        );
    }
    for (c, n, what) in [(plain, PLAIN, "ws"), (wss, WSS, "wss")] {
        let v = finish(c, what);
        assert_eq!(v["established"], n, "{what}: {v}\n{}", proxy.stderr());
        assert_eq!(v["errors"], 0, "{what}: {v}\n{}", proxy.stderr());
        assert_eq!(v["lost"], 0, "{what}: {v}");
        assert!(v["ops"].as_u64().unwrap() > n as u64 * 10, "{what}: {v}");
    }
}

/// Waits (120 s at most) for a `push` client and returns its JSON report.
fn finish(mut c: common::Child, what: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while c.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the {what} push client did not finish within 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(c.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: {e}: {out}"))
}

fn open_descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
