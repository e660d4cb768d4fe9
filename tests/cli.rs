//! The command line behaves as nginx's: flags, `-g`, `-q`, the default configuration path, and
//! `-s` signalling the process named by the pid file.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MINIMAL: &str = "worker_processes 1;\npid logs/test.pid;\nevents {}\nhttp {\n    server {\n        listen 127.0.0.1:8080;\n    }\n}\n";

fn conf_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.conf"), MINIMAL).unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    dir
}

#[test]
fn version_help_and_bad_options() {
    let out = common::run(&["-v"]);
    assert!(out.status.success());
    assert_eq!(
        common::stderr(&out),
        format!(
            "ringproxy version: ringproxy/{}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let out = common::run(&["-h"]);
    assert!(out.status.success());
    assert!(common::stderr(&out)
        .contains("-s signal     : send signal to a master process: stop, quit, reopen, reload"));
    let out = common::run(&["-x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(common::stderr(&out), "ringproxy: invalid option: \"-x\"\n");
    let out = common::run(&["-s", "restart"]);
    assert_eq!(
        common::stderr(&out),
        "ringproxy: invalid option: \"-s restart\"\n"
    );
}

#[test]
fn g_directives_come_before_the_file() {
    let dir = conf_dir();
    let p = dir.path().to_str().unwrap();
    let out = common::run(&["-p", p, "-c", "r.conf", "-t", "-g", "daemon off;"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = common::run(&["-p", p, "-c", "r.conf", "-t", "-g", "bogus on;"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out)
        .starts_with("ringproxy: [emerg] unknown directive \"bogus\" in command line\n"));
    // nginx reads -g first, so the file's directive is the duplicate.
    let out = common::run(&["-p", p, "-c", "r.conf", "-t", "-g", "worker_processes 2;"]);
    assert!(common::stderr(&out).starts_with(&format!(
        "ringproxy: [emerg] \"worker_processes\" directive is duplicate in {p}/r.conf:1\n"
    )));
}

#[test]
fn quiet_test_prints_nothing_on_success() {
    let dir = conf_dir();
    let p = dir.path().to_str().unwrap();
    let out = common::run(&["-p", p, "-c", "r.conf", "-tq"]);
    assert!(out.status.success());
    assert_eq!(common::stderr(&out), "");
}

#[test]
fn default_configuration_is_config_ringproxy_conf_under_the_prefix() {
    let dir = conf_dir();
    let p = dir.path().to_str().unwrap();
    let out = common::run(&["-p", p, "-t"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).starts_with(&format!(
        "ringproxy: [emerg] open() \"{p}/config/ringproxy.conf\" failed (2: No such file or directory)\n"
    )));
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::copy(
        dir.path().join("r.conf"),
        dir.path().join("config/ringproxy.conf"),
    )
    .unwrap();
    let out = common::run(&["-p", p, "-t"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("signalled process did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Restores the default action of the signals `-s` sends, then waits to be killed by one.
const STAND_IN: &str = "import signal, sys, time
for s in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1):
    signal.signal(s, signal.SIG_DFL)
print('ready', flush=True)
time.sleep(30)
";

#[test]
fn s_sends_nginx_signals_to_the_pid_in_the_pid_file() {
    let dir = conf_dir();
    let p = dir.path().to_str().unwrap();
    for (name, sig) in [
        ("stop", libc::SIGTERM),
        ("quit", libc::SIGQUIT),
        ("reload", libc::SIGHUP),
        ("reopen", libc::SIGUSR1),
    ] {
        // A stand-in process that dies of each of these signals. It restores their default
        // actions first (a test run under `nohup` would otherwise hand it SIGHUP ignored) and
        // says when it has.
        let mut target = Command::new("python3")
            .args(["-c", STAND_IN])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(target.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready, "ready\n");
        std::fs::write(
            dir.path().join("logs/test.pid"),
            format!("{}\n", target.id()),
        )
        .unwrap();
        let out = common::run(&["-p", p, "-c", "r.conf", "-s", name]);
        assert!(out.status.success(), "{name}: {}", common::stderr(&out));
        let status = wait_exit(&mut target);
        assert_eq!(status.signal(), Some(sig), "-s {name}");
    }
}

#[test]
fn s_reports_a_missing_or_bad_pid_file() {
    let dir = conf_dir();
    let p = dir.path().to_str().unwrap();
    let out = common::run(&["-p", p, "-c", "r.conf", "-s", "reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        common::stderr(&out),
        format!("ringproxy: [error] open() \"{p}/logs/test.pid\" failed (2: No such file or directory)\n")
    );
    std::fs::write(dir.path().join("logs/test.pid"), "abc\n").unwrap();
    let out = common::run(&["-p", p, "-c", "r.conf", "-s", "reload"]);
    assert_eq!(
        common::stderr(&out),
        format!("ringproxy: [error] invalid PID number \"abc\" in \"{p}/logs/test.pid\"\n")
    );
}
