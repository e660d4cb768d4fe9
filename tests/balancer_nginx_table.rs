//! Replays peer choices recorded from a real nginx against `ringproxy::upstream::balancer`.
//!
//! The tables in `tests/data/nginx_balancer/` were produced by `scripts/gen-nginx-hash-table.sh`
//! (run as root: `apt-get install -y nginx && scripts/gen-nginx-hash-table.sh 300`) with nginx
//! 1.22.1 from Debian 12 (`nginx version: nginx/1.22.1`, x86_64): one nginx with
//! `worker_processes 1` proxies `/<table>/?k=key<i>` to an `upstream <table>` whose backends
//! answer their own address; nothing listens on 127.0.0.1:19005, so nginx retries the
//! `*_dead` tables' requests on the next peer (`proxy_next_upstream error`) and marks it failed.
//! Each file lists the upstream's `server` lines, then one
//! `<key> <address that answered> <$upstream_addr: every address tried, comma-separated>` line
//! per request (`<n>` for round robin, one request after the other; for `ip_hash` the key is
//! the client address, given to nginx in `X-Real-IP` through the realip module, and to our
//! balancer as its octets). Our balancer must try the same peers in the same order for every
//! line.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use ringproxy::upstream::balancer::{build, Method, Outcome, PickState};
use ringproxy::upstream::PeerSpec;

/// The backend address with no listener: every attempt on it fails.
const DEAD: &str = "127.0.0.1:19005";

struct Table {
    specs: Vec<PeerSpec>,
    /// (key, every address tried in order: the last one answered).
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
            Some(("max_fails", n)) => spec.max_fails = n.parse().expect("max_fails"),
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
            let mut cols = line.split(' ');
            let (Some(key), Some(answered), Some(tried), None) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                panic!("{name}: want <key> <address> <tried,...>: {line}");
            };
            assert!(tried.ends_with(answered), "{name}: {line}");
            table.picks.push((key.to_owned(), tried.to_owned()));
        }
    }
    assert!(!table.specs.is_empty() && table.picks.len() >= 20, "{name}");
    table
}

/// Our attempts for every key, one request each: attempts on [`DEAD`] fail and are retried
/// as nginx's proxy_next_upstream does, the first live peer answers. The whole run fits in one
/// second, as nginx's did, so fail_timeout never expires.
fn replay(method: &Method, specs: Vec<PeerSpec>, keys: &[&str]) -> Vec<String> {
    let mut b = build(method, specs).expect("valid peers");
    let now = Instant::now();
    keys.iter()
        .map(|k| {
            let mut st = PickState::new();
            let octets = match k.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => a.octets().to_vec(),
                Ok(IpAddr::V6(a)) => a.octets().to_vec(),
                Err(_) => vec![],
            };
            let key = match method {
                Method::RoundRobin => None,
                Method::IpHash => Some(&octets[..]),
                _ => Some(k.as_bytes()),
            };
            let mut tried = vec![];
            for _ in 0..b.tries() {
                let Some(id) = b.pick(key, now, &mut st) else {
                    break;
                };
                let name = b.peers().spec(id).name.clone();
                let dead = name == DEAD;
                tried.push(name);
                let outcome = if dead {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                b.report(id, outcome, now + Duration::from_millis(1));
                b.release(id);
                if !dead {
                    break;
                }
            }
            tried.join(",")
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
    assert!(table
        .picks
        .iter()
        .all(|(_, t)| !t.contains("127.0.0.1:19002")));
}

#[test]
fn hash_matches_nginx() {
    assert_matches_nginx("hash", Method::Hash);
}

#[test]
fn hash_rehashes_past_a_down_peer_like_nginx() {
    let table = assert_matches_nginx("hash_down", Method::Hash);
    assert!(table
        .picks
        .iter()
        .all(|(_, t)| !t.contains("127.0.0.1:19002")));
}

#[test]
fn consistent_hash_retries_a_refused_peer_like_nginx() {
    let table = assert_matches_nginx("chash_dead", Method::ConsistentHash);
    assert!(table.picks.iter().any(|(_, t)| t.starts_with(DEAD)));
}

#[test]
fn hash_retries_a_refused_peer_like_nginx() {
    let table = assert_matches_nginx("hash_dead", Method::Hash);
    assert!(table.picks.iter().any(|(_, t)| t.starts_with(DEAD)));
}

#[test]
fn round_robin_retries_a_refused_peer_and_lowers_its_weight_like_nginx() {
    // weight=3 max_fails=3: each failure costs one unit of effective weight; the third
    // disables the peer for fail_timeout.
    let table = assert_matches_nginx("rr_dead", Method::RoundRobin);
    let retried = table
        .picks
        .iter()
        .filter(|(_, t)| t.starts_with(DEAD))
        .count();
    assert_eq!(retried, 3);
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

/// The answering peer of each recorded client, by address.
fn answered(table: &Table) -> std::collections::HashMap<&str, &str> {
    table
        .picks
        .iter()
        .map(|(k, t)| (k.as_str(), t.rsplit(',').next().unwrap()))
        .collect()
}

#[test]
fn ip_hash_matches_nginx_for_ipv4_and_ipv6_clients() {
    let table = assert_matches_nginx("iphash", Method::IpHash);
    assert!(
        table.picks.iter().any(|(k, _)| k.contains(':')),
        "IPv6 clients"
    );
    // One /24: every host goes where its network goes; all four peers serve some network.
    let by_client = answered(&table);
    let net: Vec<&str> = (1..=20)
        .map(|i| by_client[format!("192.168.1.{i}").as_str()])
        .collect();
    assert!(net.iter().all(|a| *a == net[0]), "{net:?}");
    let peers: std::collections::BTreeSet<&str> = by_client.values().copied().collect();
    assert_eq!(peers.len(), 4, "{peers:?}");
}

#[test]
fn ip_hash_rehashes_past_a_down_peer_like_nginx() {
    let table = assert_matches_nginx("iphash_down", Method::IpHash);
    assert!(table
        .picks
        .iter()
        .all(|(_, t)| !t.contains("127.0.0.1:19002")));
}

#[test]
fn ip_hash_retries_a_refused_peer_like_nginx() {
    let table = assert_matches_nginx("iphash_dead", Method::IpHash);
    assert!(table.picks.iter().any(|(_, t)| t.starts_with(DEAD)));
}
