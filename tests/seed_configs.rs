//! The seed configurations (`tests/data/seed-configs`, from the articles) pass `ringproxy -t`
//! unchanged, `-T` dumps every file read, and dumping then re-parsing gives the same model.

mod common;

use std::path::Path;

use ringproxy::config::{self, dump, model::*, LoadOptions};

const SEEDS: &[&str] = &[
    "000-websocket-location.conf",
    "001-chat-map.conf",
    "002-cluster.conf",
    "003-nginx.conf",
    "004-hash-consistent.conf",
    "005-wss.conf",
];

fn load(dir: &Path, name: &str) -> config::Loaded {
    config::load(&LoadOptions {
        file: dir.join(name),
        prefix: dir.to_path_buf(),
        params: None,
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_seed_config_passes_t_unchanged() {
    let dir = common::seed_copy();
    let p = dir.path().to_str().unwrap();
    for name in SEEDS {
        let out = common::run(&["-p", p, "-c", name, "-t"]);
        let err = common::stderr(&out);
        assert!(out.status.success(), "{name}: {err}");
        assert!(
            err.contains(&format!("the configuration file {p}/{name} syntax is ok")),
            "{err}"
        );
        assert!(
            err.contains(&format!("configuration file {p}/{name} test is successful")),
            "{err}"
        );
    }
}

#[test]
fn dump_lists_every_included_file() {
    let dir = common::seed_copy();
    let p = dir.path().to_str().unwrap();
    let out = common::run(&["-p", p, "-c", "003-nginx.conf", "-T"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let headers: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("# configuration file "))
        .collect();
    assert_eq!(
        headers,
        [
            format!("# configuration file {p}/003-nginx.conf:"),
            format!("# configuration file {p}/mime.types:"),
            format!("# configuration file {p}/conf.d/default.conf:"),
        ]
    );
    assert!(text.contains("try_files $uri $uri/ /index.html =404;"));
}

#[test]
fn dump_and_reparse_give_the_same_model() {
    for name in SEEDS {
        let dir = common::seed_copy();
        let first = load(dir.path(), name);
        let bytes = dump::dump(&first.ast);
        // Remove every file the configuration read, then restore them from the dump alone.
        for f in &first.ast.files {
            std::fs::remove_file(&*f.path).unwrap();
        }
        let files = dump::undump(&bytes);
        assert_eq!(files.len(), first.ast.files.len(), "{name}");
        for (path, text) in &files {
            std::fs::write(path, text).unwrap();
        }
        let second = load(dir.path(), name);
        assert_eq!(
            first.config, second.config,
            "{name}: model differs after -T round trip"
        );
        assert_eq!(
            first.ast, second.ast,
            "{name}: AST differs after -T round trip"
        );
        assert_eq!(dump::dump(&second.ast), bytes, "{name}: dump differs");
    }
}

fn http(c: &config::Config) -> &HttpConf {
    c.http.as_ref().expect("http block")
}

#[test]
fn seed_models_hold_what_the_articles_configure() {
    let dir = common::seed_copy();
    let d = dir.path();

    // 001: map $http_upgrade $connection_upgrade, keepalive_timeout 75s inherited by the location.
    let c = load(d, "001-chat-map.conf").config;
    let h = http(&c);
    assert_eq!(h.maps[0].variable, "connection_upgrade");
    assert_eq!(h.maps[0].default.as_literal(), Some("upgrade"));
    assert_eq!(h.maps[0].exact[0].0, "");
    assert_eq!(h.maps[0].exact[0].1.as_literal(), Some("close"));
    let loc = &h.servers[0].locations[0];
    assert_eq!(
        loc.matcher,
        LocationMatch::Prefix {
            path: "/chat/".into(),
            no_regex: false
        }
    );
    assert_eq!(
        loc.conf.keepalive_timeout(),
        std::time::Duration::from_secs(75)
    );
    assert_eq!(loc.conf.proxy_http_version(), HttpVersion::Http11);
    let headers: Vec<(String, String)> = loc
        .conf
        .proxy_set_header()
        .iter()
        .map(|(n, v)| (n.clone(), v.to_string()))
        .collect();
    assert_eq!(
        headers,
        [
            ("Upgrade".into(), "${http_upgrade}".into()),
            ("Connection".into(), "${connection_upgrade}".into())
        ]
    );

    // 002: two groups, round robin over two peers, server_name, two listen ports.
    let c = load(d, "002-cluster.conf").config;
    let h = http(&c);
    let ws = h.upstreams.iter().find(|u| u.name == "wsbackend").unwrap();
    assert_eq!(ws.peers.len(), 2);
    assert_eq!(ws.balance, Balance::RoundRobin);
    assert_eq!(
        h.servers[1].names,
        [ServerName::Exact("ws.52itstyle.com".into())]
    );
    assert_eq!(h.servers[0].listen[0].addr.port(), 8020);
    let pp = h.servers[1].locations[0].conf.proxy_pass.as_ref().unwrap();
    assert_eq!(h.upstreams[pp.upstream].name, "wsbackend");

    // 003: include glob, static root, try_files, rewrite ... break, keepalive_timeout 0 in one
    // location only, gzip settings, implicit upstream for proxy_pass host:port.
    let c = load(d, "003-nginx.conf").config;
    let h = http(&c);
    assert_eq!(c.main.worker_processes, WorkerProcesses::Count(1));
    assert_eq!(c.events.worker_connections, 1024);
    assert!(h.conf.gzip() && h.conf.gzip_min_length() == 256);
    assert!(h
        .conf
        .types()
        .iter()
        .any(|(ext, t)| ext == "js" && t == "application/javascript"));
    let server = &h.servers[0];
    let root = &server.locations[0];
    assert_eq!(root.conf.root(), DocRoot::Root(d.join("html")));
    let tf = root.conf.try_files.as_ref().unwrap();
    assert_eq!(tf.files.len(), 3);
    assert_eq!(tf.last, TryFilesLast::Code(404));
    let api = &server.locations[1];
    assert!(matches!(
        &api.conf.script[0],
        ScriptOp::Rewrite {
            flag: RewriteFlag::Break,
            ..
        }
    ));
    assert_eq!(
        api.conf.proxy_read_timeout(),
        std::time::Duration::from_secs(300)
    );
    assert_eq!(
        api.conf.keepalive_timeout(),
        std::time::Duration::from_secs(65)
    );
    let capture = &server.locations[2];
    assert_eq!(capture.conf.keepalive_timeout(), std::time::Duration::ZERO);
    let up = &h.upstreams[capture.conf.proxy_pass.as_ref().unwrap().upstream];
    assert!(!up.explicit);
    assert_eq!(up.peers[0].addrs[0].to_string(), "127.0.0.1:9001");

    // 004: hash $remote_addr consistent, proxy_pass with a URI part, Host $host:$server_port.
    let c = load(d, "004-hash-consistent.conf").config;
    let h = http(&c);
    assert_eq!(h.upstreams[0].name, "socket.kevin.com");
    match &h.upstreams[0].balance {
        Balance::Hash { key, consistent } => {
            assert!(consistent);
            assert_eq!(key.to_string(), "${remote_addr}");
        }
        other => panic!("{other:?}"),
    }
    let loc = &h.servers[0].locations[0];
    let pp = loc.conf.proxy_pass.as_ref().unwrap();
    assert_eq!(pp.uri.as_deref(), Some("/"));
    assert_eq!(pp.host, "socket.kevin.com");
    assert_eq!(
        loc.conf.proxy_connect_timeout(),
        std::time::Duration::from_secs(4)
    );
    assert_eq!(
        loc.conf.proxy_send_timeout(),
        std::time::Duration::from_secs(12)
    );

    // 005: listen 8443 ssl with certificate paths relative to the configuration's directory.
    let c = load(d, "005-wss.conf").config;
    let s = &http(&c).servers[0];
    assert!(s.listen[0].ssl);
    assert_eq!(s.conf.ssl_certificate(), [d.join("certs/localhost.crt")]);
}
