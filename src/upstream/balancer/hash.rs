//! `hash KEY` and `hash KEY consistent`: the same key goes to the same peer.
//!
//! A port of nginx 1.22's `src/http/modules/ngx_http_upstream_hash_module.c`; the proxy handler
//! evaluates the key (a variable expression) and passes its bytes to [`Balancer::pick`].
//!
//! * [`Hash`] (`ngx_http_upstream_get_hash_peer`, compatible with Cache::Memcached): the point
//!   is `((crc32([REHASH] KEY) >> 16) & 0x7fff)` accumulated over rehashes, taken modulo the
//!   primary peers' total weight and walked over their weights. An unusable or tried peer means
//!   rehash with the decimal attempt number prefixed to the key; after 20 misses, round robin.
//! * [`ConsistentHash`] (`ngx_http_upstream_init_chash` / `get_chash_peer`, ketama compatible
//!   with Cache::Memcached::Fast): every primary peer puts `160 * weight` points on a ring,
//!   `crc32(HOST "\0" PORT PREV_HASH)` with `PREV_HASH` the previous point's hash as 4
//!   little-endian bytes (starting at 0) and HOST/PORT split from the `server` text as written.
//!   Points are sorted and deduplicated; a key goes to the first point at or after
//!   `crc32(KEY)`, wrapping around; an unusable or tried peer moves to the next point; after 20
//!   moves, round robin. Peers sharing a `server` text (one name, several addresses) share
//!   points and are chosen among by smooth weighted round robin.
//!
//! nginx's `ngx_crc32_short`/`ngx_crc32_long`/`ngx_crc32_update` are the standard reflected
//! CRC-32/IEEE (polynomial 0xedb88320, init and final xor 0xffffffff), which is what `crc32fast`
//! computes; a test checks the standard check value. The ring placement is written by hand here
//! because no crate reproduces nginx's byte layout; `tests/balancer_nginx_table.rs` checks it
//! against picks recorded from a real nginx.

use std::time::Instant;

use crc32fast::Hasher;

use super::{book, round_robin, weighted_primary, Balancer, PickState, Smooth};
use crate::upstream::peer::{PeerId, PeerListError, PeerSpec, Peers};

/// Misses after which the hash methods (and ip_hash, random) give the request to round robin
/// (`hp->tries > 20`).
pub(crate) const MAX_HASH_TRIES: u32 = 20;

/// Ring points per unit of weight (`peers->total_weight * 160`).
const POINTS_PER_WEIGHT: u32 = 160;

/// `hash KEY`: nginx's non-consistent hash over the primary peers' weights.
#[derive(Clone, Debug)]
pub struct Hash {
    peers: Peers,
}

peers_only_constructors!(Hash, "hash");

/// Counts one more miss of a request's hash (or random draw); `true` once there were more than
/// [`MAX_HASH_TRIES`], when the request goes to round robin.
pub(crate) fn missed(state: &mut PickState) -> bool {
    state.hash_tries += 1;
    state.hash_tries > MAX_HASH_TRIES
}

/// nginx's rule for both hash methods: an empty or missing key, a single peer, or too many
/// tries falls back to round robin.
fn usable_key<'k>(key: Option<&'k [u8]>, peers: &Peers, state: &PickState) -> Option<&'k [u8]> {
    key.filter(|k| !k.is_empty() && !peers.is_single() && state.hash_tries <= MAX_HASH_TRIES)
}

impl Balancer for Hash {
    peers_field!();

    fn pick(&mut self, key: Option<&[u8]>, now: Instant, state: &mut PickState) -> Option<PeerId> {
        let peers = &mut self.peers;
        let Some(key) = usable_key(key, peers, state) else {
            return round_robin::pick(peers, now, state);
        };
        let id = loop {
            state.hash = state.hash.wrapping_add(rehash_point(state.rehash, key));
            state.rehash += 1;
            let id = weighted_primary(peers, u64::from(state.hash));
            if !state.tried.contains(id) && peers.usable(id, now) {
                break id;
            }
            if missed(state) {
                return round_robin::pick(peers, now, state);
            }
        };
        Some(book(peers, state, id, now))
    }
}

/// `(crc32([REHASH] KEY) >> 16) & 0x7fff`, REHASH in decimal and omitted when 0.
fn rehash_point(rehash: u32, key: &[u8]) -> u32 {
    let mut h = Hasher::new();
    if rehash > 0 {
        let mut buf = [0u8; 10];
        h.update(decimal(rehash, &mut buf));
    }
    h.update(key);
    (h.finalize() >> 16) & 0x7fff
}

/// `n` in decimal without allocating (`ngx_sprintf("%ui")`).
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// One point of the consistent-hash ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChashPoint {
    /// Position on the ring.
    pub hash: u32,
    /// Index into [`ChashRing::servers`] of the `server` text that placed it.
    pub server: u32,
}

/// The consistent-hash ring: a pure function of the primary peers' `server` texts and weights,
/// so every shard (and every node with the same config) builds the same one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChashRing {
    points: Vec<ChashPoint>,
    servers: Vec<String>,
    /// For each entry of `servers`, the primary peers with that text, in config order: the ones
    /// nginx's scan over all peers would match (it compares `server` strings), found directly.
    server_peers: Vec<Vec<PeerId>>,
}

impl ChashRing {
    /// Places `160 * weight` points per primary peer, down peers included, exactly as
    /// `ngx_http_upstream_init_chash` does, then sorts and drops repeated positions keeping the
    /// first. (nginx sorts with libc `qsort`; glibc's is a stable merge sort for arrays this
    /// size, so on a 32-bit collision both keep the earlier peer's point.)
    pub fn new(peers: &Peers) -> Self {
        let mut servers: Vec<String> = Vec::new();
        let mut server_peers: Vec<Vec<PeerId>> = Vec::new();
        let mut points = Vec::with_capacity(
            usize::try_from(peers.primary_weight() * u64::from(POINTS_PER_WEIGHT)).unwrap_or(0),
        );
        for &id in peers.primary() {
            let spec = peers.spec(id);
            let server = match servers.iter().position(|s| *s == spec.server) {
                Some(i) => i,
                None => {
                    servers.push(spec.server.clone());
                    server_peers.push(Vec::new());
                    servers.len() - 1
                }
            } as u32;
            server_peers[server as usize].push(id);
            let base = server_base_hash(&spec.server);
            let mut prev = 0u32;
            for _ in 0..spec.weight.saturating_mul(POINTS_PER_WEIGHT) {
                let mut h = base.clone();
                // The C code copies the u32 through a union on little-endian hosts and writes
                // the bytes low first on big-endian ones: little-endian bytes either way.
                h.update(&prev.to_le_bytes());
                let hash = h.finalize();
                points.push(ChashPoint { hash, server });
                prev = hash;
            }
        }
        points.sort_by_key(|p| p.hash);
        points.dedup_by_key(|p| p.hash);
        ChashRing {
            points,
            servers,
            server_peers,
        }
    }

    /// The points, sorted by position, no two at the same position.
    pub fn points(&self) -> &[ChashPoint] {
        &self.points
    }

    /// The distinct `server` texts, in order of first appearance.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Index of the first point at or after `hash` (`ngx_http_upstream_find_chash_point`); equal
    /// to the number of points when `hash` is past the last one (the caller wraps around).
    pub fn find(&self, hash: u32) -> usize {
        self.points.partition_point(|p| p.hash < hash)
    }
}

/// The CRC state after `HOST "\0" PORT` for one `server` text; each point continues it with the
/// previous point's hash.
///
/// HOST and PORT come from the text as written: `unix:PATH` is all host; otherwise the port is
/// the run of digits after the last `:` that ends the text (`"127.0.0.1:9001"` →
/// `"127.0.0.1"`, `"9001"`; `"[::1]:80"` → `"[::1]"`, `"80"`), and without one the whole text is
/// the host and the port is empty (`"127.0.0.2"`, even though nginx connects to port 80).
pub fn server_base_hash(server: &str) -> Hasher {
    let (host, port) = split_host_port(server.as_bytes());
    let mut h = Hasher::new();
    h.update(host);
    h.update(&[0]);
    h.update(port);
    h
}

fn split_host_port(server: &[u8]) -> (&[u8], &[u8]) {
    if server.len() >= 5 && server[..5].eq_ignore_ascii_case(b"unix:") {
        return (&server[5..], &[]);
    }
    for (j, &c) in server.iter().rev().enumerate() {
        if c == b':' {
            let colon = server.len() - j - 1;
            return (&server[..colon], &server[colon + 1..]);
        }
        if !c.is_ascii_digit() {
            break;
        }
    }
    (server, &[])
}

/// `hash KEY consistent`: ketama over the primary peers.
#[derive(Clone, Debug)]
pub struct ConsistentHash {
    peers: Peers,
    ring: ChashRing,
}

impl ConsistentHash {
    /// A consistent-hash balancer over `specs` (config order).
    pub fn new(specs: Vec<PeerSpec>) -> Result<Self, PeerListError> {
        Ok(Self::from_peers(Peers::new(specs)?))
    }

    /// A consistent-hash balancer over `peers`.
    pub fn from_peers(peers: Peers) -> Self {
        let ring = ChashRing::new(&peers);
        ConsistentHash { peers, ring }
    }

    /// The ring this balancer looks keys up on.
    pub fn ring(&self) -> &ChashRing {
        &self.ring
    }
}

impl Balancer for ConsistentHash {
    peers_field!();

    fn pick(&mut self, key: Option<&[u8]>, now: Instant, state: &mut PickState) -> Option<PeerId> {
        let peers = &mut self.peers;
        let Some(key) = usable_key(key, peers, state) else {
            return round_robin::pick(peers, now, state);
        };
        if !state.hash_started {
            // ngx_http_upstream_init_chash_peer: once per request, ngx_crc32_long(key).
            state.hash = self.ring.find(crc32fast::hash(key)) as u32;
            state.hash_started = true;
        }
        let points = self.ring.points();
        loop {
            let server = points[state.hash as usize % points.len()].server;
            let mut smooth = Smooth::default();
            for &id in &self.ring.server_peers[server as usize] {
                if !state.tried.contains(id) && peers.usable(id, now) {
                    smooth.offer(peers, id);
                }
            }
            if let Some(best) = smooth.finish(peers) {
                return Some(book(peers, state, best, now));
            }
            state.hash = state.hash.wrapping_add(1);
            if missed(state) {
                return round_robin::pick(peers, now, state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::upstream::balancer::Outcome;

    fn spec(server: &str, port: u16, weight: u32) -> PeerSpec {
        PeerSpec {
            weight,
            ..PeerSpec::new(server, SocketAddr::from(([127, 0, 0, 1], port)))
        }
    }

    fn four() -> Vec<PeerSpec> {
        (1..=4)
            .map(|i| spec(&format!("127.0.0.1:1900{i}"), 19000 + i, i as u32))
            .collect()
    }

    #[test]
    fn crc32fast_is_nginx_crc32() {
        // CRC-32/IEEE check value; nginx's tables start 0x00000000, 0x77073096 (long) and
        // 0x00000000, 0x1db71064 (short), both the reflected 0xedb88320 polynomial.
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
        let mut h = Hasher::new();
        h.update(b"1234");
        h.update(b"56789");
        assert_eq!(h.finalize(), 0xcbf4_3926);
    }

    #[test]
    fn host_port_split_follows_init_chash() {
        let s = |x: &'static str| split_host_port(x.as_bytes());
        assert_eq!(s("127.0.0.1:9001"), (&b"127.0.0.1"[..], &b"9001"[..]));
        assert_eq!(s("127.0.0.2"), (&b"127.0.0.2"[..], &b""[..]));
        assert_eq!(s("backend.local:80"), (&b"backend.local"[..], &b"80"[..]));
        assert_eq!(s("[::1]:80"), (&b"[::1]"[..], &b"80"[..]));
        assert_eq!(s("UNIX:/tmp/s:1"), (&b"/tmp/s:1"[..], &b""[..]));
        assert_eq!(s("host:"), (&b"host"[..], &b""[..]));
        assert_eq!(s("a:b1"), (&b"a:b1"[..], &b""[..]));
    }

    #[test]
    fn decimal_matches_sprintf() {
        let mut b = [0; 10];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(7, &mut b), b"7");
        assert_eq!(decimal(20, &mut b), b"20");
        assert_eq!(decimal(u32::MAX, &mut b), b"4294967295");
    }

    #[test]
    fn ring_has_160_points_per_weight_sorted_and_shared_by_same_server() {
        let peers = Peers::new(four()).unwrap();
        let ring = ChashRing::new(&peers);
        assert_eq!(ring.points().len(), 160 * 10);
        assert!(ring.points().windows(2).all(|w| w[0].hash < w[1].hash));
        // Two addresses of one `server` line place identical points: deduplicated.
        let two = Peers::new(vec![spec("b.local:80", 1, 1), spec("b.local:80", 2, 1)]).unwrap();
        let ring = ChashRing::new(&two);
        assert_eq!(ring.points().len(), 160);
        assert_eq!(ring.servers(), ["b.local:80"]);
    }

    #[test]
    fn addresses_of_one_server_share_its_keys_by_round_robin() {
        let t0 = Instant::now();
        let specs = vec![
            spec("b.local:80", 1, 1),
            spec("b.local:80", 2, 1),
            spec("c.local:80", 3, 1),
        ];
        let mut ch = ConsistentHash::new(specs).unwrap();
        let key = (0u32..)
            .map(|i| format!("k{i}"))
            .find(|k| {
                let ring = ch.ring();
                let i = ring.find(crc32fast::hash(k.as_bytes())) % ring.points().len();
                ring.servers()[ring.points()[i].server as usize] == "b.local:80"
            })
            .unwrap();
        let picks: Vec<usize> = (0..4)
            .map(|_| {
                let id = ch
                    .pick(Some(key.as_bytes()), t0, &mut PickState::new())
                    .unwrap();
                ch.release(id);
                id.index()
            })
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn ring_lookup_wraps_around() {
        let peers = Peers::new(four()).unwrap();
        let mut ch = ConsistentHash::new(four()).unwrap();
        let ring = ChashRing::new(&peers);
        let last = ring.points().last().unwrap().hash;
        assert_eq!(ring.find(0), 0);
        assert_eq!(ring.find(last), ring.points().len() - 1);
        assert_eq!(ring.find(last.wrapping_add(1)), ring.points().len());
        // A key past the last point lands on the first point's peer.
        let first = ring.points()[0].server as usize;
        let key = (0u32..)
            .map(|i| format!("k{i}"))
            .find(|k| crc32fast::hash(k.as_bytes()) > last)
            .unwrap();
        let got = ch.pick(Some(key.as_bytes()), Instant::now(), &mut PickState::new());
        assert_eq!(got, Some(PeerId(first)));
    }

    #[test]
    fn consistent_retry_moves_along_the_ring_without_repeats() {
        let t0 = Instant::now();
        let mut ch = ConsistentHash::new(four()).unwrap();
        let mut st = PickState::new();
        let mut seen = vec![];
        while let Some(id) = ch.pick(Some(b"some-key"), t0, &mut st) {
            ch.release(id);
            seen.push(id.index());
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3]);
    }

    #[test]
    fn hash_retry_never_repeats_and_falls_back_to_round_robin() {
        let t0 = Instant::now();
        let mut h = Hash::new(four()).unwrap();
        let mut st = PickState::new();
        let mut seen = vec![];
        while let Some(id) = h.pick(Some(b"k"), t0, &mut st) {
            h.report(id, Outcome::Failure, t0);
            h.release(id);
            seen.push(id.index());
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3]);
    }

    #[test]
    fn empty_or_missing_key_is_round_robin() {
        let t0 = Instant::now();
        let mut h = Hash::new(four()).unwrap();
        let mut rr = round_robin::RoundRobin::new(four()).unwrap();
        for _ in 0..10 {
            let a = h.pick(Some(b""), t0, &mut PickState::new());
            let b = rr.pick(None, t0, &mut PickState::new());
            assert_eq!(a, b);
        }
        let mut ch = ConsistentHash::new(four()).unwrap();
        let mut rr = round_robin::RoundRobin::new(four()).unwrap();
        for _ in 0..10 {
            let a = ch.pick(None, t0, &mut PickState::new());
            let b = rr.pick(None, t0, &mut PickState::new());
            assert_eq!(a, b);
        }
    }

    #[test]
    fn same_key_same_peer_until_it_fails() {
        let t0 = Instant::now();
        let mut ch = ConsistentHash::new(four()).unwrap();
        let first = ch
            .pick(Some(b"user-42"), t0, &mut PickState::new())
            .unwrap();
        for _ in 0..5 {
            let id = ch
                .pick(Some(b"user-42"), t0, &mut PickState::new())
                .unwrap();
            assert_eq!(id, first);
            ch.release(id);
        }
        ch.report(first, Outcome::Failure, t0);
        let moved = ch
            .pick(Some(b"user-42"), t0, &mut PickState::new())
            .unwrap();
        assert_ne!(moved, first);
        // Back after fail_timeout.
        let later = t0 + std::time::Duration::from_secs(11);
        let back = ch.pick(Some(b"user-42"), later, &mut PickState::new());
        assert_eq!(back, Some(first));
    }
}
