//! Weighted round robin, nginx's default balancing method (no directive in the `upstream`
//! block), and the fallback of the hash methods.
//!
//! A port of `ngx_http_upstream_get_round_robin_peer` and `ngx_http_upstream_get_peer` from nginx
//! 1.22 (`src/http/ngx_http_upstream_round_robin.c`): smooth weighted round robin (every usable
//! peer gains its `effective_weight`, the highest score wins and pays back the total), skipping
//! peers that are down, failed within fail_timeout, at max_conns or already tried by this request;
//! when no primary peer is usable the request moves to the backup peers for good.

use std::time::Instant;

use super::{book, primary_then_backup, tier_peers, Balancer, PickState, Smooth, Tier};
use crate::upstream::peer::{PeerId, PeerListError, PeerSpec, Peers};

/// Smooth weighted round robin over one shard's peers.
#[derive(Clone, Debug)]
pub struct RoundRobin {
    peers: Peers,
}

peers_only_constructors!(RoundRobin, "round-robin");

impl Balancer for RoundRobin {
    peers_field!();

    fn pick(&mut self, _key: Option<&[u8]>, now: Instant, state: &mut PickState) -> Option<PeerId> {
        pick(&mut self.peers, now, state)
    }
}

/// `ngx_http_upstream_get_round_robin_peer`: the primary tier, then (once, for the rest of the
/// request) the backup tier.
pub(crate) fn pick(peers: &mut Peers, now: Instant, state: &mut PickState) -> Option<PeerId> {
    primary_then_backup(peers, state, |peers, tier, state| {
        if tier == Tier::Primary && peers.is_single() {
            single(peers, state)
        } else {
            smooth(peers, tier, now, state)
        }
    })
}

/// The `peers->single` branch: one primary peer, no backup. nginx checks only `down` and
/// `max_conns` (a lone peer is never considered failed) and does not touch `checked`.
fn single(peers: &mut Peers, state: &mut PickState) -> Option<PeerId> {
    let id = peers.primary()[0];
    // nginx does not consult `tried` here because `tries` is 1; we do, so a caller that retries
    // anyway still never gets the same peer twice.
    if peers.spec(id).down || peers.at_max_conns(id) || state.tried.contains(id) {
        return None;
    }
    peers.count(id);
    state.tried.insert(id);
    Some(id)
}

/// `ngx_http_upstream_get_peer` over one tier, plus the `conns++` of its caller.
fn smooth(peers: &mut Peers, tier: Tier, now: Instant, state: &mut PickState) -> Option<PeerId> {
    let mut smooth = Smooth::default();
    for i in 0..tier_peers(peers, tier).len() {
        let id = tier_peers(peers, tier)[i];
        if !state.tried.contains(id) && peers.usable(id, now) {
            smooth.offer(peers, id);
        }
    }
    let best = smooth.finish(peers)?;
    Some(book(peers, state, best, now))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::balancer::test_spec as spec;
    use crate::upstream::balancer::Outcome;

    /// One request per pick, each released with success: the sequence nginx serves.
    fn sequence(rr: &mut RoundRobin, n: usize, now: Instant) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let mut st = PickState::new();
                let id = rr.pick(None, now, &mut st).expect("a peer");
                rr.report(id, Outcome::Success, now);
                rr.release(id);
                id.index()
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_sequence_5_1_1() {
        let mut rr = RoundRobin::new(vec![spec(1, 5), spec(2, 1), spec(3, 1)]).unwrap();
        // nginx's documented smooth sequence: a a b a c a a, then it repeats.
        let want = [0, 0, 1, 0, 2, 0, 0];
        let got = sequence(&mut rr, 14, Instant::now());
        assert_eq!(&got[..7], &want);
        assert_eq!(&got[7..], &want);
    }

    #[test]
    fn equal_weights_rotate_in_config_order() {
        let mut rr = RoundRobin::new(vec![spec(1, 1), spec(2, 1), spec(3, 1)]).unwrap();
        assert_eq!(sequence(&mut rr, 6, Instant::now()), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn down_peers_are_skipped_and_do_not_count() {
        let mut rr = RoundRobin::new(vec![
            spec(1, 1),
            PeerSpec {
                down: true,
                ..spec(2, 5)
            },
            spec(3, 1),
        ])
        .unwrap();
        assert_eq!(rr.tries(), 2);
        assert_eq!(sequence(&mut rr, 4, Instant::now()), [0, 2, 0, 2]);
    }

    #[test]
    fn backup_only_when_no_primary_is_usable() {
        let t0 = Instant::now();
        let mut rr = RoundRobin::new(vec![
            spec(1, 1),
            PeerSpec {
                backup: true,
                ..spec(2, 1)
            },
            spec(3, 1),
            PeerSpec {
                backup: true,
                ..spec(4, 1)
            },
        ])
        .unwrap();
        assert_eq!(rr.tries(), 4);
        // Primaries alive: backups never picked.
        assert_eq!(sequence(&mut rr, 4, t0), [0, 2, 0, 2]);
        // One request whose attempts all fail walks both primaries, then the backups.
        let mut st = PickState::new();
        let mut order = vec![];
        while let Some(id) = rr.pick(None, t0, &mut st) {
            // The primaries fail; the backups answer, only the tried set moves on from them.
            let outcome = match st.tier() {
                Tier::Primary => Outcome::Failure,
                Tier::Backup => Outcome::Success,
            };
            rr.report(id, outcome, t0);
            rr.release(id);
            order.push(id.index());
        }
        assert_eq!(order, [0, 2, 1, 3]);
        assert_eq!(st.tier(), Tier::Backup);
        // Both primaries are now failed (max_fails=1) within fail_timeout: backups serve.
        let later = t0 + Duration::from_secs(1);
        let mut got = sequence(&mut rr, 2, later);
        got.sort_unstable();
        assert_eq!(got, [1, 3]);
        // After fail_timeout the primaries are tried again, and a success revives them.
        let after = t0 + Duration::from_secs(11);
        let got = sequence(&mut rr, 4, after);
        assert!(got.contains(&0) && got.contains(&2), "{got:?}");
        assert!(got.iter().all(|&i| i == 0 || i == 2), "{got:?}");
        assert_eq!(rr.peers().state(PeerId(0)).fails, 0);
    }

    #[test]
    fn max_fails_within_fail_timeout_then_recovery() {
        let t0 = Instant::now();
        let mut rr = RoundRobin::new(vec![
            PeerSpec {
                max_fails: 2,
                fail_timeout: Duration::from_secs(30),
                ..spec(1, 1)
            },
            spec(2, 1),
        ])
        .unwrap();
        let a = PeerId(0);
        // First failure: still usable (fails 1 < max_fails 2).
        let mut st = PickState::new();
        assert_eq!(rr.pick(None, t0, &mut st), Some(a));
        rr.report(a, Outcome::Failure, t0);
        rr.release(a);
        assert_eq!(rr.peers().state(a).fails, 1);
        assert_eq!(sequence(&mut rr, 2, t0)[..], [1, 0]);
        // Second failure within the window: skipped until fail_timeout passes.
        let t1 = t0 + Duration::from_secs(5);
        rr.report(a, Outcome::Failure, t1);
        assert_eq!(
            sequence(&mut rr, 4, t1 + Duration::from_secs(30)),
            [1, 1, 1, 1]
        );
        // Past the window the peer is tried again; the success after that check clears the count.
        let t2 = t1 + Duration::from_secs(31);
        let got = sequence(&mut rr, 4, t2);
        assert!(got.contains(&0), "{got:?}");
        assert_eq!(rr.peers().state(a).fails, 0);
    }

    #[test]
    fn failure_lowers_effective_weight_then_it_recovers() {
        let t0 = Instant::now();
        let mut rr = RoundRobin::new(vec![
            PeerSpec {
                max_fails: 2,
                ..spec(1, 4)
            },
            spec(2, 1),
        ])
        .unwrap();
        let a = PeerId(0);
        rr.report(a, Outcome::Failure, t0);
        // weight 4 - 4 / max_fails 2 = 2; each pick over it gives one back.
        assert_eq!(rr.peers().state(a).effective_weight, 2);
        sequence(&mut rr, 1, t0);
        assert_eq!(rr.peers().state(a).effective_weight, 3);
        sequence(&mut rr, 5, t0);
        assert_eq!(rr.peers().state(a).effective_weight, 4);
    }

    #[test]
    fn tried_set_never_repeats_a_peer_in_one_request() {
        let t0 = Instant::now();
        let mut rr = RoundRobin::new(vec![spec(1, 10), spec(2, 1), spec(3, 1)]).unwrap();
        let mut st = PickState::new();
        let mut seen = vec![];
        while let Some(id) = rr.pick(None, t0, &mut st) {
            // Not reported as failures: only the tried set keeps them out.
            rr.release(id);
            seen.push(id.index());
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(st.tried().len(), 3);
    }

    #[test]
    fn max_conns_caps_open_connections_per_peer() {
        let t0 = Instant::now();
        let mut rr = RoundRobin::new(vec![
            PeerSpec {
                max_conns: 2,
                ..spec(1, 10)
            },
            spec(2, 1),
        ])
        .unwrap();
        let a = PeerId(0);
        let picks: Vec<_> = (0..4)
            .map(|_| rr.pick(None, t0, &mut PickState::new()).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == a).count(), 2);
        assert_eq!(rr.peers().state(a).conns, 2);
        rr.release(a);
        assert_eq!(rr.pick(None, t0, &mut PickState::new()), Some(a));
    }

    #[test]
    fn single_peer_is_never_marked_failed() {
        let t0 = Instant::now();
        let mut rr = RoundRobin::new(vec![spec(1, 1)]).unwrap();
        for _ in 0..3 {
            let id = rr.pick(None, t0, &mut PickState::new()).unwrap();
            rr.report(id, Outcome::Failure, t0);
            rr.release(id);
        }
        assert_eq!(rr.peers().state(PeerId(0)).fails, 0);
        let mut st = PickState::new();
        assert_eq!(rr.pick(None, t0, &mut st), Some(PeerId(0)));
        assert_eq!(rr.pick(None, t0, &mut st), None, "tried");
        let mut down = RoundRobin::new(vec![PeerSpec {
            down: true,
            ..spec(1, 1)
        }])
        .unwrap();
        assert_eq!(down.pick(None, t0, &mut PickState::new()), None);
        assert_eq!(down.tries(), 0);
    }

    #[test]
    fn all_down_or_failed_gives_none() {
        let t0 = Instant::now();
        let mut rr = RoundRobin::new(vec![spec(1, 1), spec(2, 1)]).unwrap();
        rr.report(PeerId(0), Outcome::Failure, t0);
        rr.report(PeerId(1), Outcome::Failure, t0);
        assert_eq!(rr.pick(None, t0, &mut PickState::new()), None);
    }
}
