//! The upstream request heads `proxy::request` builds equal, byte for byte, what a real nginx 1.22
//! sent for the same client requests through the seed configurations
//! (`tests/data/nginx_upstream_requests/`, made by `scripts/gen-nginx-upstream-requests.sh`).
//!
//! Routing here is the minimum the seeds need (server by port, longest prefix location, a URI
//! normaliser); the router proper is `src/route.rs`. Documented differences (see
//! `src/proxy/request.rs`) are removed from nginx's output before comparing, and each must
//! actually occur in it, so the list cannot go stale silently.

mod common;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::time::SystemTime;

use ringproxy::config::{self, model::*, LoadOptions};
use ringproxy::http::body::ChunkedDecoder;
use ringproxy::http::request::{parse_request, Body, HeadLimits, Parsed};
use ringproxy::http::script::{self, Level, Outcome};
use ringproxy::http::vars::{ConnFacts, RequestVars};
use ringproxy::proxy::request::{build_request, UpstreamBody};

const DATA: &str = "tests/data/nginx_upstream_requests";

/// Header lines nginx sends that ringproxy drops on purpose, with the reason.
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "Proxy-Authorization: Basic eDp5",
        "hop-by-hop (RFC 9110 7.6.1): credentials for the proxy, not the backend",
    ),
    (
        "X-Drop-Me: 1",
        "nominated by the client's `Connection: keep-alive, X-Drop-Me`",
    ),
];

fn seed_file(case: &str) -> &'static str {
    match &case[..3] {
        "000" => "000-websocket-location.conf",
        "001" => "001-chat-map.conf",
        "002" => "002-cluster.conf",
        "003" => "003-nginx.conf",
        "004" => "004-hash-consistent.conf",
        other => panic!("no seed for case {other}"),
    }
}

fn ports() -> Vec<(String, String)> {
    std::fs::read_to_string(Path::new(DATA).join("ports"))
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('=').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect()
}

fn load_seed(name: &str, ports: &[(String, String)]) -> Config {
    let dir = common::copy_tree(&common::seed_dir());
    let port = |k: &str| &ports.iter().find(|(a, _)| a == k).unwrap().1;
    let mut files = vec![dir.path().join(name)];
    files.extend(
        std::fs::read_dir(dir.path().join("conf.d"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let text = text
            .replace("127.0.0.1:9001", &format!("127.0.0.1:{}", port("9001")))
            .replace("127.0.0.1:9002", &format!("127.0.0.1:{}", port("9001")))
            .replace("listen 8080", &format!("listen {}", port("8080")))
            .replace("listen 8020", &format!("listen {}", port("8020")));
        std::fs::write(&f, text).unwrap();
    }
    config::load(&LoadOptions {
        file: dir.path().join(name),
        prefix: dir.path().to_path_buf(),
        params: None,
    })
    .unwrap()
    .config
}

/// Percent-decodes, merges slashes and resolves dot segments (what nginx's `$uri` holds).
fn normalise(path: &str) -> String {
    let b = path.as_bytes();
    let mut dec = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = u8::from_str_radix(&path[i + 1..i + 3], 16).unwrap();
            dec.push(h);
            i += 3;
        } else {
            dec.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(dec).unwrap();
    let mut segs: Vec<&str> = Vec::new();
    for seg in s.split('/').skip(1) {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = format!("/{}", segs.join("/"));
    if (s.ends_with('/') || s.ends_with("/.") || s.ends_with("/..")) && out != "/" {
        out.push('/');
    }
    out
}

fn find_location<'c>(server: &'c ServerConf, uri: &str) -> &'c Location {
    server
        .locations
        .iter()
        .filter(|l| matches!(&l.matcher, LocationMatch::Prefix { path, .. } if uri.starts_with(path.as_str())))
        .max_by_key(|l| match &l.matcher {
            LocationMatch::Prefix { path, .. } => path.len(),
            _ => 0,
        })
        .expect("a location matches")
}

fn chunked_len(body: &[u8]) -> u64 {
    let mut d = ChunkedDecoder::new();
    let mut rest = body;
    let mut n = 0;
    while !d.is_done() {
        let r = d.decode(rest).unwrap();
        n += r.data.len() as u64;
        rest = &rest[r.consumed..];
    }
    n
}

fn build(case: &str, client: &[u8], conf: &Config) -> Vec<u8> {
    let http = conf.http.as_ref().unwrap();
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let Parsed::Complete(head, head_len) =
        parse_request(client, &mut storage, &HeadLimits::default()).unwrap()
    else {
        panic!("{case}: partial request");
    };
    let host = head.header("host").unwrap();
    let port: u16 = std::str::from_utf8(host)
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let server = http
        .servers
        .iter()
        .find(|s| s.listen.iter().any(|l| l.addr.port() == port))
        .unwrap();
    let server_name = match server.names.first() {
        Some(ServerName::Exact(n)) => n.as_str(),
        _ => "",
    };
    let conn = ConnFacts {
        remote: "127.0.0.1:50000".parse::<SocketAddr>().unwrap(),
        local: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: None,
        server_name,
        connection: 1,
        requests: 1,
        hostname: "localhost",
        pid: 1,
        underscores_in_headers: false,
        proxy_protocol: None,
    };
    let uri = normalise(head.target.path);
    let mut vars = RequestVars::new(&head, &conn, &http.maps, Cow::Owned(uri), SystemTime::now());
    assert_eq!(
        script::run(&server.conf.script, Level::Server, &mut vars),
        Outcome::Continue
    );
    let mut loc = find_location(server, vars.uri());
    for _ in 0..script::MAX_URI_CHANGES {
        match script::run(&loc.conf.script, Level::Location, &mut vars) {
            Outcome::Last(uri) => {
                loc = find_location(server, &uri);
                vars.set_location_valid(true);
            }
            Outcome::Continue | Outcome::Break => break,
            Outcome::Return(r) => panic!("{case}: unexpected return {r:?}"),
        }
    }
    let body = match head.body {
        Body::None => UpstreamBody::None,
        Body::Length(n) => UpstreamBody::Length(n),
        // nginx buffers the chunked body (proxy_request_buffering on) and sends its length.
        Body::Chunked => UpstreamBody::Length(chunked_len(&client[head_len..])),
    };
    let pass = loc.conf.proxy_pass.as_ref().unwrap();
    let mut out = Vec::new();
    build_request(&mut vars, &loc.conf, pass, &loc.matcher, body, &mut out).unwrap();
    out
}

#[test]
fn upstream_requests_match_nginx() {
    let ports = ports();
    let mut cases: Vec<String> = std::fs::read_dir(DATA)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "client").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "test data missing: {cases:?}");
    let mut used = vec![false; DIFFERENCES.len()];
    for case in &cases {
        let conf = load_seed(seed_file(case), &ports);
        let client = std::fs::read(Path::new(DATA).join(format!("{case}.client"))).unwrap();
        let nginx = std::fs::read(Path::new(DATA).join(format!("{case}.nginx"))).unwrap();
        let nginx = String::from_utf8(nginx).unwrap();
        let mut expected = String::new();
        for line in nginx.split_inclusive("\r\n") {
            match DIFFERENCES
                .iter()
                .position(|(l, _)| line == format!("{l}\r\n"))
            {
                Some(i) => used[i] = true,
                None => expected.push_str(line),
            }
        }
        let ours = String::from_utf8(build(case, &client, &conf)).unwrap();
        assert_eq!(ours, expected, "{case}");
    }
    for (i, (line, why)) in DIFFERENCES.iter().enumerate() {
        assert!(
            used[i],
            "documented difference {line:?} ({why}) never occurs"
        );
    }
}
