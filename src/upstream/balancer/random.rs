//! `random` and `random two [least_conn]`: a peer drawn at random in proportion to its weight.
//!
//! A port of nginx 1.22's `ngx_http_upstream_get_random_peer` and `..._get_random2_peer`
//! (`src/http/modules/ngx_http_upstream_random_module.c`). A draw is `x = random % total weight`
//! located in the primary peers' cumulative weight ranges (down peers keep their range). `random`
//! redraws while the peer is tried or unusable; `random two` draws until it has two different
//! usable, untried peers and takes the one with fewer connections for its weight (the first one
//! on a tie; `least_conn` is its only, default, method). Every redraw counts, and after 20 or
//! with a single peer the request goes to round robin.
//!
//! `random two` compares the connection counts every shard shares ([`Peers::active`]). The
//! generator is a per-shard splitmix64, seeded from the clock and a process-wide counter so
//! shards do not draw in step; nothing here needs unpredictability.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::hash::{missed, MAX_HASH_TRIES};
use super::{book, round_robin, Balancer, PickState};
use crate::upstream::peer::{PeerId, PeerListError, PeerSpec, Peers};

/// `random [two]` over one shard's peers.
#[derive(Clone, Debug)]
pub struct Random {
    peers: Peers,
    two: bool,
    /// For each primary peer (in order), where its range starts (`ranges[i].range`).
    starts: Vec<u64>,
    rng: SplitMix64,
}

impl Random {
    /// A `random` (`two`: `random two`) balancer over `specs` (config order).
    pub fn new(specs: Vec<PeerSpec>, two: bool) -> Result<Self, PeerListError> {
        Ok(Self::from_peers(Peers::new(specs)?, two))
    }

    /// A `random` (`two`: `random two`) balancer over `peers`.
    pub fn from_peers(peers: Peers, two: bool) -> Self {
        Self::with_seed(peers, two, seed())
    }

    /// As [`Random::from_peers`] with a fixed seed (reproducible draws, for tests).
    pub fn with_seed(peers: Peers, two: bool, seed: u64) -> Self {
        let mut total = 0;
        let starts = peers
            .primary()
            .iter()
            .map(|&id| {
                let start = total;
                total += u64::from(peers.spec(id).weight);
                start
            })
            .collect();
        Random {
            peers,
            two,
            starts,
            rng: SplitMix64(seed),
        }
    }

    /// `ngx_http_upstream_peek_random_peer`: the primary peer whose range holds a fresh draw.
    fn peek(&mut self) -> PeerId {
        let x = self.rng.next() % self.peers.primary_weight();
        let i = self.starts.partition_point(|&s| s <= x) - 1;
        self.peers.primary()[i]
    }

    /// `get_random_peer`'s loop: the first usable, untried peer drawn.
    fn one(&mut self, now: Instant, state: &mut PickState) -> Option<PeerId> {
        loop {
            let id = self.peek();
            if !state.tried.contains(id) && self.peers.usable(id, now) {
                return Some(id);
            }
            if missed(state) {
                return None;
            }
        }
    }

    /// `get_random2_peer`'s loop: of two different usable, untried peers drawn, the one with
    /// fewer connections per weight (the first on a tie).
    fn two(&mut self, now: Instant, state: &mut PickState) -> Option<PeerId> {
        let mut prev: Option<PeerId> = None;
        loop {
            let id = self.peek();
            if prev != Some(id) && !state.tried.contains(id) && self.peers.usable(id, now) {
                let Some(p) = prev else {
                    prev = Some(id);
                    // nginx counts the first draw as a try too (it falls through to `next`).
                    if missed(state) {
                        return None;
                    }
                    continue;
                };
                let load = |x: PeerId| u64::from(self.peers.active(x));
                let weight = |x: PeerId| u64::from(self.peers.spec(x).weight);
                let fewer = if load(id) * weight(p) > load(p) * weight(id) {
                    p
                } else {
                    id
                };
                return Some(fewer);
            }
            if missed(state) {
                return None;
            }
        }
    }
}

impl Balancer for Random {
    peers_field!();

    fn pick(&mut self, _key: Option<&[u8]>, now: Instant, state: &mut PickState) -> Option<PeerId> {
        if state.hash_tries > MAX_HASH_TRIES || self.peers.is_single() {
            return round_robin::pick(&mut self.peers, now, state);
        }
        let drawn = if self.two {
            self.two(now, state)
        } else {
            self.one(now, state)
        };
        let Some(id) = drawn else {
            return round_robin::pick(&mut self.peers, now, state);
        };
        Some(book(&mut self.peers, state, id, now))
    }
}

/// A seed that differs between shards and runs.
fn seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    clock ^ NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
}

/// splitmix64 (Steele, Lea and Flood, 2014): small, fast, evenly spread.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::balancer::test_spec as spec;
    use crate::upstream::balancer::Outcome;

    fn counts(b: &mut Random, n: usize) -> Vec<usize> {
        let mut c = vec![0; b.peers().len()];
        for _ in 0..n {
            let id = b.pick(None, Instant::now(), &mut PickState::new()).unwrap();
            b.release(id);
            c[id.index()] += 1;
        }
        c
    }

    #[test]
    fn ranges_follow_weights_and_draws_land_in_them() {
        let peers = Peers::new(vec![spec(1, 1), spec(2, 3), spec(3, 2)]).unwrap();
        let mut b = Random::with_seed(peers, false, 7);
        assert_eq!(b.starts, [0, 1, 4]);
        let c = counts(&mut b, 6000);
        // Expect 1000 / 3000 / 2000; a fair generator stays well within 15%.
        for (got, want) in c.iter().zip([1000, 3000, 2000]) {
            assert!(got.abs_diff(want) < want * 15 / 100, "{c:?}");
        }
    }

    #[test]
    fn down_peers_are_redrawn() {
        let peers = Peers::new(vec![
            spec(1, 1),
            PeerSpec {
                down: true,
                ..spec(2, 5)
            },
            spec(3, 1),
        ])
        .unwrap();
        let mut b = Random::with_seed(peers, false, 1);
        let c = counts(&mut b, 500);
        assert_eq!(c[1], 0);
        assert!(c[0] > 150 && c[2] > 150, "{c:?}");
    }

    #[test]
    fn two_takes_the_less_loaded_of_two() {
        let peers = Peers::new(vec![spec(1, 1), spec(2, 1), spec(3, 1)]).unwrap();
        let mut b = Random::with_seed(peers, true, 3);
        // Load peer 0 with ten open connections: two draws never both land on it (they must
        // differ), so it is never chosen while the others stay empty.
        for _ in 0..10 {
            b.peers_mut().count(PeerId(0));
        }
        let c = counts(&mut b, 300);
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > 50 && c[2] > 50, "{c:?}");
    }

    #[test]
    fn retries_never_repeat_and_fall_back_to_round_robin() {
        let t0 = Instant::now();
        for two in [false, true] {
            let peers = Peers::new(vec![spec(1, 1), spec(2, 1), spec(3, 1)]).unwrap();
            let mut b = Random::with_seed(peers, two, 11);
            let mut st = PickState::new();
            let mut seen = vec![];
            while let Some(id) = b.pick(None, t0, &mut st) {
                b.report(id, Outcome::Failure, t0);
                b.release(id);
                seen.push(id.index());
            }
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2], "two: {two}");
        }
    }
}
