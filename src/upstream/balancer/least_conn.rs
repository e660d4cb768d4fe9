//! `least_conn`: the peer with the fewest open connections for its weight.
//!
//! A port of nginx 1.22's `ngx_http_upstream_get_least_conn_peer`
//! (`src/http/modules/ngx_http_upstream_least_conn_module.c`): among the usable, untried peers of
//! the tier, the lowest `conns / weight` wins (compared as `conns_a * weight_b < conns_b *
//! weight_a`); several at that ratio are settled by smooth weighted round robin among them,
//! starting from the first. No usable primary peer moves the request to the backup peers; a
//! single peer is plain round robin.
//!
//! `conns` is the count every shard shares ([`Peers::active`]): a request or tunnel counts from
//! its pick until its slot is released, whichever shard it went through. `max_conns` stays a
//! per-shard limit, as for the other methods.

use std::time::Instant;

use super::{
    book, primary_then_backup, round_robin, tier_peers, Balancer, PickState, Smooth, Tier,
};
use crate::upstream::peer::{PeerId, PeerListError, PeerSpec, Peers};

/// `least_conn` over one shard's peers, with connection counts shared across shards.
#[derive(Clone, Debug)]
pub struct LeastConn {
    peers: Peers,
}

peers_only_constructors!(LeastConn, "least_conn");

impl Balancer for LeastConn {
    peers_field!();

    fn pick(&mut self, _key: Option<&[u8]>, now: Instant, state: &mut PickState) -> Option<PeerId> {
        let peers = &mut self.peers;
        if peers.is_single() {
            return round_robin::pick(peers, now, state);
        }
        primary_then_backup(peers, state, |peers, tier, state| {
            least(peers, tier, now, state)
        })
    }
}

/// One pass of `ngx_http_upstream_get_least_conn_peer` over one tier.
fn least(peers: &mut Peers, tier: Tier, now: Instant, state: &mut PickState) -> Option<PeerId> {
    let n = tier_peers(peers, tier).len();
    let candidate = |peers: &Peers, id: PeerId| !state.tried.contains(id) && peers.usable(id, now);
    // (position in the tier, id, conns, weight) of the best so far; the counts are read once
    // each, since other shards move them while we look.
    let mut best: Option<(usize, PeerId, u64, u64)> = None;
    let mut many = false;
    for i in 0..n {
        let id = tier_peers(peers, tier)[i];
        if !candidate(peers, id) {
            continue;
        }
        let conns = u64::from(peers.active(id));
        let weight = u64::from(peers.spec(id).weight);
        match best {
            Some((_, _, bc, bw)) if conns * bw > bc * weight => {}
            Some((_, _, bc, bw)) if conns * bw == bc * weight => many = true,
            _ => {
                best = Some((i, id, conns, weight));
                many = false;
            }
        }
    }
    let (start, mut chosen, bc, bw) = best?;
    if many {
        // nginx settles the tie by round robin among the peers at the best ratio, starting with
        // the best peer itself (whatever its count reads now).
        let mut smooth = Smooth::default();
        for i in start..n {
            let id = tier_peers(peers, tier)[i];
            let same_ratio = id == chosen
                || u64::from(peers.active(id)) * bw == bc * u64::from(peers.spec(id).weight);
            if same_ratio && candidate(peers, id) {
                smooth.offer(peers, id);
            }
        }
        chosen = smooth.finish(peers).unwrap_or(chosen);
    }
    Some(book(peers, state, chosen, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::balancer::test_spec as spec;
    use crate::upstream::balancer::{build_with, Method, Outcome};
    use crate::upstream::peer::SharedConns;

    fn pick(b: &mut LeastConn) -> usize {
        b.pick(None, Instant::now(), &mut PickState::new())
            .unwrap()
            .index()
    }

    #[test]
    fn equal_counts_go_round_robin() {
        let mut b = LeastConn::new(vec![spec(1, 1), spec(2, 1), spec(3, 1)]).unwrap();
        let got: Vec<usize> = (0..6)
            .map(|_| {
                let i = pick(&mut b);
                b.release(PeerId(i));
                i
            })
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn open_connections_steer_new_ones() {
        let mut b = LeastConn::new(vec![spec(1, 1), spec(2, 1), spec(3, 1)]).unwrap();
        // Held open: each goes to the emptiest peer, so they spread evenly.
        let held: Vec<usize> = (0..6).map(|_| pick(&mut b)).collect();
        assert_eq!(held.iter().filter(|&&i| i == 0).count(), 2);
        // Peer 1 ends its two: the next two go there.
        b.release(PeerId(1));
        b.release(PeerId(1));
        assert_eq!(pick(&mut b), 1);
        assert_eq!(pick(&mut b), 1);
    }

    #[test]
    fn weight_divides_the_count() {
        let mut b = LeastConn::new(vec![spec(1, 3), spec(2, 1)]).unwrap();
        let got: Vec<usize> = (0..8).map(|_| pick(&mut b)).collect();
        assert_eq!(got.iter().filter(|&&i| i == 0).count(), 6, "{got:?}");
    }

    #[test]
    fn counts_are_shared_between_shards() {
        let conns = SharedConns::new();
        let specs = vec![spec(1, 1), spec(2, 1)];
        let mut a = build_with(&Method::LeastConn, specs.clone(), &conns).unwrap();
        let mut b = build_with(&Method::LeastConn, specs, &conns).unwrap();
        let t0 = Instant::now();
        // Shard a holds two connections on peer 0 (its round robin starts there)...
        let first = a.pick(None, t0, &mut PickState::new()).unwrap();
        assert_eq!(first, PeerId(0));
        a.release(PeerId(1)); // not booked by a: no effect on the shared count
        assert_eq!(conns.snapshot(), [1, 0]);
        // ...so shard b, which booked nothing itself, sends its next ones to peer 1.
        assert_eq!(b.pick(None, t0, &mut PickState::new()), Some(PeerId(1)));
        assert_eq!(conns.snapshot(), [1, 1]);
        b.release(PeerId(1));
        a.release(PeerId(0));
        assert_eq!(conns.snapshot(), [0, 0]);
    }

    #[test]
    fn failed_and_tried_peers_are_skipped_then_backup() {
        let t0 = Instant::now();
        let mut b = LeastConn::new(vec![
            spec(1, 1),
            PeerSpec {
                backup: true,
                ..spec(2, 1)
            },
            spec(3, 1),
        ])
        .unwrap();
        let mut st = PickState::new();
        let mut order = vec![];
        while let Some(id) = b.pick(None, t0, &mut st) {
            let outcome = match st.tier() {
                Tier::Primary => Outcome::Failure,
                Tier::Backup => Outcome::Success,
            };
            b.report(id, outcome, t0);
            b.release(id);
            order.push(id.index());
        }
        assert_eq!(order, [0, 2, 1]);
        assert_eq!(st.tier(), Tier::Backup);
        // Both primaries failed within fail_timeout: the backup serves.
        assert_eq!(pick(&mut b), 1);
    }
}
