//! Replays peer choices recorded from a real nginx against `ringproxy::upstream::balancer`.
//!
//! The tables in `tests/data/nginx_balancer/` were produced by `scripts/gen-nginx-hash-table.sh`
//! (run as root: `apt-get install -y nginx && scripts/gen-nginx-hash-table.sh 300`) with nginx
//! 1.22.1 from Debian 12 (`nginx version: nginx/1.22.1`, x86_64): one nginx with
//! `worker_processes 1` proxies `/<table>/?k=key<i>` to an `upstream <table>` whose backends
//! answer their own address. Each file lists the upstream's `server` lines, then one
//! `<key> <address that answered>` line per request (`<n> <address>` for round robin, one
//! request after the other). Our balancer must pick the same peer for every line.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ringproxy::upstream::balancer::{build, Method, Outcome, PickState};
use ringproxy::upstream::PeerSpec;

struct Table {
    specs: Vec<PeerSpec>,
    picks: Vec<(String, String)>,
}

/// `server 127.0.0.1:19001 weight=2 down` → a spec whose `server` is the text as written and
/// whose `name`/`addr` is what nginx resolves it to (`localhost` is 127.0.0.1 there; no port
/// means 80).
fn parse_server(line: &str) -> PeerSpec {
    let mut words = line.split_whitespace();
    let server = words.next().expect("server address");
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().expect("port")),
        None => (server, 80),
    };
    let ip = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("address");
    let mut spec = PeerSpec::new(server, addr);
    for w in words {
        match w.split_once('=') {
            Some(("weight", n)) => spec.weight = n.parse().expect("weight"),
            None if w == "down" => spec.down = true,
            None if w == "backup" => spec.backup = true,
            _ => panic!("unknown server parameter {w}"),
        }
    }
    spec
}

fn load(name: &str) -> Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/nginx_balancer")
        .join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut table = Table {
        specs: vec![],
        picks: vec![],
    };
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some(rest) = line.strip_prefix("server ") {
            table.specs.push(parse_server(rest));
        } else {
            let (key, addr) = line.split_once(' ').expect("<key> <address>");
            table.picks.push((key.to_owned(), addr.to_owned()));
        }
    }
    assert!(!table.specs.is_empty() && table.picks.len() >= 20, "{name}");
    table
}

/// Our picks for every key of `table`, one request each, answered successfully.
fn replay(method: &Method, specs: Vec<PeerSpec>, keys: &[&str]) -> Vec<String> {
    let mut b = build(method, specs).expect("valid peers");
    let now = Instant::now();
    keys.iter()
        .map(|k| {
            let mut st = PickState::new();
            let key = (method != &Method::RoundRobin).then_some(k.as_bytes());
            let id = b.pick(key, now, &mut st).expect("a peer");
            b.report(id, Outcome::Success, now + Duration::from_millis(1));
            b.release(id);
            b.peers().spec(id).name.clone()
        })
        .collect()
}

fn assert_matches_nginx(name: &str, method: Method) -> Table {
    let table = load(name);
    let keys: Vec<&str> = table.picks.iter().map(|(k, _)| k.as_str()).collect();
    let ours = replay(&method, table.specs.clone(), &keys);
    let mut wrong = vec![];
    for ((key, nginx), ours) in table.picks.iter().zip(&ours) {
        if nginx != ours {
            wrong.push(format!("{key}: nginx {nginx}, ours {ours}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{name}: {} of {} picks differ from nginx 1.22:\n{}",
        wrong.len(),
        table.picks.len(),
        wrong.join("\n")
    );
    table
}

/// How many picks change when the ring is built from the resolved address text instead.
fn differing_with_resolved_names(name: &str, table: &Table) -> usize {
    let resolved = table
        .specs
        .iter()
        .map(|s| PeerSpec {
            server: s.name.clone(),
            ..s.clone()
        })
        .collect();
    let keys: Vec<&str> = table.picks.iter().map(|(k, _)| k.as_str()).collect();
    let ours = replay(&Method::ConsistentHash, resolved, &keys);
    let n = table
        .picks
        .iter()
        .zip(&ours)
        .filter(|((_, nginx), ours)| nginx != *ours)
        .count();
    eprintln!("{name}: {n} picks differ when hashing the resolved address");
    n
}

#[test]
fn consistent_hash_with_ports_and_weights_matches_nginx() {
    assert_matches_nginx("chash_ports", Method::ConsistentHash);
}

#[test]
fn consistent_hash_without_port_hashes_an_empty_port() {
    // `server 127.0.0.2;` connects to :80 but nginx hashes "127.0.0.2" "\0" "": hashing the
    // resolved "127.0.0.2:80" instead would move keys.
    let table = assert_matches_nginx("chash_noport", Method::ConsistentHash);
    assert!(differing_with_resolved_names("chash_noport", &table) > 0);
}

#[test]
fn consistent_hash_hashes_the_server_text_not_the_resolved_address() {
    // `server localhost:19011;`: nginx hashes "localhost" "\0" "19011", not "127.0.0.1:19011".
    let table = assert_matches_nginx("chash_hostname", Method::ConsistentHash);
    assert!(differing_with_resolved_names("chash_hostname", &table) > 0);
}

#[test]
fn consistent_hash_skips_a_down_peer_along_the_ring() {
    let table = assert_matches_nginx("chash_down", Method::ConsistentHash);
    assert!(table.picks.iter().all(|(_, a)| a != "127.0.0.1:19002"));
}

#[test]
fn hash_matches_nginx() {
    assert_matches_nginx("hash", Method::Hash);
}

#[test]
fn hash_rehashes_past_a_down_peer_like_nginx() {
    let table = assert_matches_nginx("hash_down", Method::Hash);
    assert!(table.picks.iter().all(|(_, a)| a != "127.0.0.1:19002"));
}

#[test]
fn round_robin_5_1_1_is_the_smooth_sequence() {
    let table = assert_matches_nginx("rr_5_1_1", Method::RoundRobin);
    let first: Vec<&str> = table.picks[..7].iter().map(|(_, a)| a.as_str()).collect();
    let (a, b, c) = ("127.0.0.1:19001", "127.0.0.1:19002", "127.0.0.1:19003");
    assert_eq!(first, [a, a, b, a, c, a, a]);
}

#[test]
fn round_robin_1_2_1_3_matches_nginx() {
    assert_matches_nginx("rr_1_2_1_3", Method::RoundRobin);
}
