//! 5,000 concurrent WebSocket tunnels through ringproxy (2 shards), on both io drivers (each test
//! checks, from ringproxy's start-up notice, that the driver it names is the one that ran) and both
//! forwarding paths, driven by the load tool's `hold` scenario in its own process (each process
//! here gets `ulimit -n` 20,000: the proxy needs two descriptors per tunnel). Needs the load
//! tool, so the `load` feature (`cargo test --features load`, as scripts/test.sh runs it).

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
/// upstream group's membership and balancing, and the tunnel timeouts.
fn generation(i: usize, port: u16, push: std::net::SocketAddr) -> String {
    let second = if i % 2 == 1 {
        format!("server {push} weight=2;")
    } else {
        String::new()
    };
    let balance = if i % 3 == 0 { "hash $remote_port;" } else { "" };
    format!(
        "error_log logs/error.log notice;\nworker_processes 2;\nworker_rlimit_nofile 20000;\n\
         events {{ worker_connections 12000; }}\nhttp {{\n\
           upstream push {{ {balance} server {push}; {second} }}\n\
           server {{\n listen 127.0.0.1:{port} backlog=4096;\n\
             location /gen {{ return 200 \"{i}\"; }}\n\
             location / {{ proxy_pass http://push; proxy_http_version 1.1;\n\
               proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade;\n\
               proxy_read_timeout {}s; proxy_send_timeout {}s; }}\n\
           }}\n}}\n",
        60 + i,
        30 + i
    )
}

/// 5,000 WebSockets receiving pushed messages while the configuration is reloaded 20 times:
/// every tunnel survives, none loses a message, and each reload takes effect.
#[test]
fn five_thousand_pushed_tunnels_across_twenty_reloads() {
    let (push, _backend) = push_backend(20);
    let port = common::free_port();
    let proxy = Proxy::start(&generation(0, port, push), port, "", &[]);
    let mut client = Command::new(env!("CARGO_BIN_EXE_ringproxy-load"))
        .args(["push", "--url", &format!("ws://127.0.0.1:{port}/push")])
        .args(["--connections", "5000", "--duration", "20s", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client_pid = client.id();
    // Reloads begin once the tunnels are up (the proxy holds two descriptors per tunnel).
    let up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while open_descriptors(proxy.pid()) < 10_000 {
        assert!(
            std::time::Instant::now() < up,
            "the 5,000 tunnels did not open"
        );
        assert!(
            client.try_wait().unwrap().is_none(),
            "the client ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for i in 1..=20 {
        std::fs::write(
            proxy.dir.path().join("ringproxy.conf"),
            generation(i, port, push),
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
        let got = runtime().block_on(common::roundtrip(
            port,
            b"GET /gen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ));
        assert!(got.ends_with(&format!("\r\n\r\n{i}")), "reload {i}: {got}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while client.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = ringproxy::sys::kill(client_pid as i32, libc::SIGKILL);
            panic!("the push client did not finish within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = client.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["established"], 5000, "{v}\n{}", proxy.stderr());
    assert_eq!(v["errors"], 0, "{v}\n{}", proxy.stderr());
    assert_eq!(v["lost"], 0, "{v}");
    assert!(v["ops"].as_u64().unwrap() > 5000 * 10, "{v}");
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
