//! The checks of the test harness (`common::Proxy`, `common::free_port`) fire: a proxy that
//! died under a test, an alarm line in its logs and a second listener on its port each fail the
//! test, and ports are never handed out twice.

mod common;

use common::Proxy;

fn conf(port: u16) -> String {
    format!("events {{}}\nhttp {{ server {{ listen 127.0.0.1:{port}; return 200 ok; }} }}\n")
}

fn start() -> Proxy {
    let port = common::free_port();
    Proxy::start(&conf(port), port, "", &[])
}

#[test]
#[should_panic(expected = "ringproxy exited on its own")]
fn a_proxy_that_died_under_the_test_fails_it() {
    let p = start();
    ringproxy::sys::kill(p.pid(), libc::SIGKILL).unwrap();
    // Dead once it is a zombie (its parent, this test, has not reaped it) with no thread left:
    // the main thread shows Z as soon as it is gone, while the shard threads may still be
    // exiting (tearing their rings down), and until they are, waitpid reports nothing.
    let stat = format!("/proc/{}/stat", p.pid());
    let tasks = format!("/proc/{}/task", p.pid());
    let dead = || {
        std::fs::read_to_string(&stat).unwrap().contains(") Z ")
            && std::fs::read_dir(&tasks).map_or(0, |d| d.count()) <= 1
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !dead() {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGKILL did not end it"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn append_to_error_log(p: &Proxy, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(p.dir.path().join("logs/error.log"))
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

#[test]
#[should_panic(expected = "ringproxy logged")]
fn an_alert_line_fails_the_test() {
    let p = start();
    append_to_error_log(&p, "2026/01/01 00:00:00 [alert] 1#1: something is wrong");
}

#[test]
#[should_panic(expected = "ringproxy logged")]
fn a_panic_on_stderr_fails_a_stopped_proxy_too() {
    let p = start();
    std::fs::write(
        p.dir.path().join("stderr.log"),
        "thread 'ringproxy-shard-0' panicked at src/x.rs:1:1:\nboom\n",
    )
    .unwrap();
    let _ = p.stop_with(libc::SIGTERM, std::time::Duration::from_secs(20));
}

#[test]
fn an_allowed_alert_does_not_fail_it() {
    let mut p = start();
    p.allow_log("something is wrong");
    append_to_error_log(&p, "2026/01/01 00:00:00 [alert] 1#1: something is wrong");
}

#[test]
#[should_panic(expected = "port collision")]
fn a_second_proxy_on_the_same_port_fails_the_test() {
    let port = common::free_port();
    let _first = Proxy::start(&conf(port), port, "", &[]);
    // SO_REUSEPORT lets this one bind too: the harness must notice the sharing.
    let _second = Proxy::start(&conf(port), port, "", &[]);
}

#[test]
fn free_ports_are_never_handed_out_twice() {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ports: Vec<u16> = (0..2000).map(|_| common::free_port()).collect();
    let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len());
    assert!(
        ports.iter().all(|&p| p < low),
        "outside the ephemeral range"
    );
}
