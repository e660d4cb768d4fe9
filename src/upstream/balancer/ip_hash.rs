//! `ip_hash`: a client keeps going to the same peer, keyed by its network (/24 for IPv4).
//!
//! A port of nginx 1.22's `ngx_http_upstream_get_ip_hash_peer`
//! (`src/http/modules/ngx_http_upstream_ip_hash_module.c`): the hash starts at 89 and takes
//! `hash = (hash * 113 + byte) % 6271` over the first three bytes of an IPv4 address (so a /24
//! shares a peer) or all sixteen of an IPv6 one; `hash % total weight` is walked over the primary
//! peers' weights, down ones included. A tried or unusable peer means hashing the same bytes
//! again from where the last round stopped; after 20 misses, or with a single peer, the request
//! goes to round robin. A retry of the same request continues from the hash of its last pick.
//!
//! The caller passes the client address's octets as the key (see [`Balancer::pick`]).

use std::time::Instant;

use super::hash::{missed, MAX_HASH_TRIES};
use super::{book, round_robin, weighted_primary, Balancer, PickState};
use crate::upstream::peer::{PeerId, PeerListError, PeerSpec, Peers};

/// Where every client's hash starts (`iphp->hash = 89`).
const SEED: u32 = 89;

/// What a client that is neither IPv4 nor IPv6 hashes (`ngx_http_upstream_ip_hash_pseudo_addr`).
const PSEUDO_ADDR: [u8; 3] = [0; 3];

/// `ip_hash` over one shard's peers.
#[derive(Clone, Debug)]
pub struct IpHash {
    peers: Peers,
}

peers_only_constructors!(IpHash, "ip_hash");

/// The bytes nginx hashes for a client whose address octets are `key`.
fn hashed_bytes(key: Option<&[u8]>) -> &[u8] {
    match key {
        Some(k) if k.len() == 4 => &k[..3],
        Some(k) if k.len() == 16 => k,
        _ => &PSEUDO_ADDR,
    }
}

impl Balancer for IpHash {
    peers_field!();

    fn pick(&mut self, key: Option<&[u8]>, now: Instant, state: &mut PickState) -> Option<PeerId> {
        let peers = &mut self.peers;
        if state.hash_tries > MAX_HASH_TRIES || peers.is_single() {
            return round_robin::pick(peers, now, state);
        }
        if !state.hash_started {
            state.hash = SEED;
            state.hash_started = true;
        }
        let bytes = hashed_bytes(key);
        let mut hash = state.hash;
        let id = loop {
            for &b in bytes {
                hash = (hash * 113 + u32::from(b)) % 6271;
            }
            let id = weighted_primary(peers, u64::from(hash));
            if !state.tried.contains(id) && peers.usable(id, now) {
                break id;
            }
            if missed(state) {
                return round_robin::pick(peers, now, state);
            }
        };
        // Only a successful pick moves the request's hash on (`iphp->hash = hash`).
        state.hash = hash;
        Some(book(peers, state, id, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::balancer::test_spec as spec;
    use crate::upstream::balancer::Outcome;

    fn three() -> Vec<PeerSpec> {
        vec![spec(1, 1), spec(2, 2), spec(3, 1)]
    }

    fn first_pick(b: &mut IpHash, ip: &[u8]) -> usize {
        let id = b
            .pick(Some(ip), Instant::now(), &mut PickState::new())
            .unwrap();
        b.release(id);
        id.index()
    }

    #[test]
    fn hash_by_hand_for_one_address() {
        // 89 -> (89*113+10)%6271 = 3796 -> (3796*113+0)%6271 = 2520 -> (2520*113+1)%6271 =
        // 2566; 2566 % total weight 4 = 2, past the first peer's weight 1 into the second's 2.
        let mut b = IpHash::new(three()).unwrap();
        assert_eq!(first_pick(&mut b, &[10, 0, 1, 77]), 1);
    }

    #[test]
    fn ipv4_uses_the_first_three_octets_ipv6_all_sixteen() {
        let mut b = IpHash::new(three()).unwrap();
        let base = first_pick(&mut b, &[10, 0, 1, 1]);
        for last in 0..=255u8 {
            assert_eq!(first_pick(&mut b, &[10, 0, 1, last]), base);
        }
        let spread: std::collections::BTreeSet<usize> = (0..=255u8)
            .map(|c| first_pick(&mut b, &[10, 0, c, 1]))
            .collect();
        assert_eq!(spread.len(), 3, "{spread:?}");
        let v6 = |last: u8| {
            let mut a = [0u8; 16];
            a[0] = 0x20;
            a[1] = 0x01;
            a[15] = last;
            a
        };
        let spread6: std::collections::BTreeSet<usize> =
            (0..=255u8).map(|l| first_pick(&mut b, &v6(l))).collect();
        assert_eq!(spread6.len(), 3, "{spread6:?}");
    }

    #[test]
    fn a_failed_peer_moves_the_client_and_it_comes_back() {
        let t0 = Instant::now();
        let mut b = IpHash::new(three()).unwrap();
        let ip = [192, 168, 7, 3];
        let first = PeerId(first_pick(&mut b, &ip));
        b.report(first, Outcome::Failure, t0);
        let moved = b.pick(Some(&ip), t0, &mut PickState::new()).unwrap();
        assert_ne!(moved, first);
        b.release(moved);
        let later = t0 + std::time::Duration::from_secs(11);
        assert_eq!(b.pick(Some(&ip), later, &mut PickState::new()), Some(first));
    }

    #[test]
    fn retries_never_repeat_and_end_in_round_robin() {
        let t0 = Instant::now();
        let mut b = IpHash::new(three()).unwrap();
        let mut st = PickState::new();
        let mut seen = vec![];
        while let Some(id) = b.pick(Some(&[1, 2, 3, 4]), t0, &mut st) {
            b.report(id, Outcome::Failure, t0);
            b.release(id);
            seen.push(id.index());
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
    }

    #[test]
    fn no_address_hashes_the_pseudo_address() {
        let mut b = IpHash::new(three()).unwrap();
        let none = b.pick(None, Instant::now(), &mut PickState::new());
        let zero = b.pick(Some(&[0, 0, 0, 9]), Instant::now(), &mut PickState::new());
        assert_eq!(none, zero);
    }
}
