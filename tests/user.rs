//! The `user` directive as nginx 1.22 treats it: started as root, the process runs as that user
//! once listeners, logs and the pid file are open (every shard thread) and keeps serving; the
//! names are resolved at load time with nginx's messages (the group defaults to the user's
//! name); started as another user, it is ignored with nginx's warning.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::Proxy;
use nix::unistd::{geteuid, Group, User};

fn nobody() -> (u32, u32) {
    let u = User::from_name("nobody").unwrap().expect("a nobody user");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// The group `nobody`'s primary group is called (`nogroup` on Debian).
fn nobody_group() -> String {
    let gid = nobody().1;
    Group::from_gid(gid.into())
        .unwrap()
        .expect("nobody's group")
        .name
}

/// Every thread's `Uid:` line of process `pid` (real, effective, saved, fs).
fn thread_uids(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .unwrap()
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn conf(user_line: &str, port: u16) -> String {
    format!("{user_line}\nworker_processes 2;\nevents {{}}\nhttp {{\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{ return 200 \"served\"; }}\n    }}\n}}\n")
}

fn get(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

// effect: user
#[test]
fn as_root_every_shard_runs_as_the_user_and_still_serves() {
    if !geteuid().is_root() {
        // Not root: the directive is ignored with nginx's warning (checked below); nothing to
        // drop here, but the proxy must still start and serve.
        let port = common::free_port();
        let p = Proxy::start(&conf("user nobody;", port), port, "", &[]);
        assert!(get(port).ends_with("served"));
        assert!(p
            .stderr()
            .contains("[warn] the \"user\" directive makes sense only if"));
        return;
    }
    let (uid, _) = nobody();
    let port = common::free_port();
    let line = format!("user nobody {};", nobody_group());
    let p = Proxy::start(&conf(&line, port), port, "", &[]);
    // The pid file is written before the drop: wait (bounded) until every thread has dropped.
    let want = format!("{uid} {uid} {uid} {uid}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let uids = thread_uids(p.pid());
        if uids.iter().all(|u| *u == want) {
            assert!(uids.len() >= 3, "main thread and two shards: {uids:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{uids:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..4 {
        let r = get(port);
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("served"),
            "{r}"
        );
    }
}

fn test_config(text: &str, as_nobody: bool) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(dir.path().join("ringproxy.conf"), text).unwrap();
    let mut cmd = Command::new(common::ringproxy());
    cmd.args([
        "-p",
        dir.path().to_str().unwrap(),
        "-c",
        "ringproxy.conf",
        "-t",
        "-e",
        "stderr",
    ]);
    if as_nobody && geteuid().is_root() {
        let (uid, gid) = nobody();
        cmd.uid(uid).gid(gid);
    }
    let out = common::run_command(cmd);
    let text = String::from_utf8_lossy(&out.stderr).replace(dir.path().to_str().unwrap(), "DIR");
    (out.status.success(), text)
}

#[test]
fn names_are_resolved_as_nginx_does() {
    if !geteuid().is_root() {
        return names_are_ignored_with_a_warning_when_not_root();
    }
    let port = common::free_port();
    // nginx 1.22.1 on this machine, as root:
    //   user nosuchuser;  -> [emerg] getpwnam("nosuchuser") failed in ...:1
    //   user nobody;      -> [emerg] getgrnam("nobody") failed in ...:1 (Debian has no group
    //                        "nobody": the group defaults to the user's name)
    let (ok, err) = test_config(&conf("user ringproxy-no-such-user;", port), false);
    assert!(!ok);
    assert!(
        err.contains("ringproxy: [emerg] getpwnam(\"ringproxy-no-such-user\") failed in DIR/ringproxy.conf:1"),
        "{err}"
    );
    let (ok, err) = test_config(&conf("user nobody ringproxy-no-such-group;", port), false);
    assert!(!ok);
    assert!(
        err.contains("ringproxy: [emerg] getgrnam(\"ringproxy-no-such-group\") failed in DIR/ringproxy.conf:1"),
        "{err}"
    );
    if Group::from_name("nobody").unwrap().is_none() {
        let (ok, err) = test_config(&conf("user nobody;", port), false);
        assert!(!ok);
        assert!(err.contains("getgrnam(\"nobody\") failed"), "{err}");
    }
    let twice = format!("user nobody {g};\nuser nobody {g};", g = nobody_group());
    let (ok, err) = test_config(&conf(&twice, port), false);
    assert!(!ok);
    assert!(
        err.contains("[emerg] \"user\" directive is duplicate in DIR/ringproxy.conf:2"),
        "{err}"
    );
    names_are_ignored_with_a_warning_when_not_root();
}

/// Run as nobody (or as whoever runs the tests when not root): nginx's warning, and success.
fn names_are_ignored_with_a_warning_when_not_root() {
    let port = common::free_port();
    let (ok, err) = test_config(&conf("user ringproxy-no-such-user;", port), true);
    assert!(ok, "{err}");
    assert!(
        err.contains("ringproxy: [warn] the \"user\" directive makes sense only if the master process runs with super-user privileges, ignored in DIR/ringproxy.conf:1"),
        "{err}"
    );
}
