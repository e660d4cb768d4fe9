//! Golden tests: every `tests/data/bad/*.conf` is refused by `ringproxy -t` with exactly the
//! message in its `.expected` file (nginx's words and line; `$DIR` stands for the directory).
//! All but the ones listed in `ringproxy-only.txt` were checked against nginx 1.22 with
//! `scripts/check-golden-nginx.sh`.

mod common;

use std::path::Path;

#[test]
fn every_bad_config_fails_with_its_exact_message() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad");
    let dir = common::copy_tree(&data);
    let dir_str = dir.path().to_str().expect("utf-8 temp path");
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("conf") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{name} has no .expected file"))
            .trim_end()
            .replace("$DIR", dir_str);
        let out = common::run(&["-p", dir_str, "-c", name, "-t"]);
        let err = common::stderr(&out);
        let first = err.lines().next().unwrap_or("");
        let last = err.lines().last().unwrap_or("");
        let want_last = format!("ringproxy: configuration file {dir_str}/{name} test failed");
        if out.status.code() != Some(1) || first != expected || last != want_last {
            failures.push(format!(
                "{name}: exit {:?}\n  want: {expected}\n  got:  {first}\n  last: {last}",
                out.status.code()
            ));
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} golden configs found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn balancing_methods_parse_and_a_second_one_warns_as_nginx() {
    use ringproxy::config::model::Balance;
    let method = |directive: &str| {
        let text = format!(
            "events {{}}\nhttp {{ upstream b {{ {directive} server 127.0.0.1:9001; }} \
             server {{ listen 127.0.0.1:1; location / {{ proxy_pass http://b; }} }} }}\n"
        );
        let config = ringproxy::config::load_str("t.conf", &text, Path::new("/"))
            .unwrap_or_else(|e| panic!("{directive}: {e}"));
        config.http.unwrap().upstreams[0].balance.clone()
    };
    assert_eq!(method("ip_hash;"), Balance::IpHash);
    assert_eq!(method("least_conn;"), Balance::LeastConn);
    assert_eq!(method("random;"), Balance::Random { two: false });
    assert_eq!(method("random two;"), Balance::Random { two: true });
    assert_eq!(
        method("random two least_conn;"),
        Balance::Random { two: true }
    );
    assert_eq!(method("ip_hash; least_conn;"), Balance::LeastConn);

    // nginx 1.22: a second method is a warning, the last one wins, and `backup` is judged by
    // the method in force when the `server` line is read (least_conn allows it).
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("a.conf");
    std::fs::write(
        &conf,
        "events {}\nhttp {\n    upstream b {\n        ip_hash;\n        least_conn;\n        \
         server 127.0.0.1:9001 backup;\n        server 127.0.0.1:9002;\n    }\n}\n",
    )
    .unwrap();
    let out = common::run(&["-p", dir.path().to_str().unwrap(), "-c", "a.conf", "-t"]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    let want = format!(
        "ringproxy: [warn] load balancing method redefined in {}:5",
        conf.display()
    );
    assert_eq!(err.lines().next(), Some(want.as_str()), "{err}");
}

#[test]
fn aio_proxy_cache_off_and_proxy_store_off_are_accepted_with_nginx_values() {
    let load = |directive: &str| {
        let text = format!(
            "events {{}}\nhttp {{ server {{ listen 127.0.0.1:1; location / {{ {directive} }} }} }}\n"
        );
        ringproxy::config::load_str("t.conf", &text, Path::new("/")).map(|_| ())
    };
    for ok in [
        "aio on;",
        "aio off;",
        "aio threads;",
        "aio threads=default;",
        "proxy_cache off;",
        "proxy_store off;",
    ] {
        load(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for refused in [
        "proxy_cache $zone;",
        "proxy_store on;",
        "proxy_store /data$uri;",
    ] {
        let e = load(refused).unwrap_err().to_string();
        assert!(e.contains("ringproxy has no cache"), "{refused}: {e}");
    }
}
