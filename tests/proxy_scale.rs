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
