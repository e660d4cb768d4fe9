//! `sticky`: session affinity on top of any balancing method.
//!
//! nginx's sticky module (`ngx_http_upstream_sticky_module.c`, open source since 1.29) wraps the
//! upstream's balancer: a request that names a server ID (the `sticky cookie`'s value, or the
//! first non-empty `sticky route` variable) is given the peer with that ID when the peer can
//! take it; otherwise, and on every retry after that peer failed, the wrapped balancer picks as
//! if the request named nothing. A peer's ID is its `route=` or the MD5 of its address
//! ([`crate::upstream::peer::PeerSpec::sid`]). The `Set-Cookie` that binds the client to the
//! pick is the proxy's business (`proxy::sticky`).
//!
//! nginx looks the ID up among the peers of the tier the request is in (`rrp->peers`: the
//! primary peers, or the backup ones once it fell over to them), and takes the peer only if it
//! is not tried, not down, not failed within fail_timeout and under max_conns
//! (`ngx_http_upstream_get_rr_peer_by_sid`). Its round robin also moves the smooth weights when
//! the sticky peer is taken, to keep the shares of unbound requests fair; here the wrapped
//! balancer's state is left as it was, so bound requests do not shift unbound ones.

use std::time::Instant;

use super::{book, tier_peers, Balancer, PickState};
use crate::upstream::peer::{PeerId, Peers};

/// A balancer that honours a request's server ID before asking the balancer it wraps.
pub struct Sticky {
    inner: Box<dyn Balancer>,
}

impl Sticky {
    /// `inner` with session affinity.
    pub fn new(inner: Box<dyn Balancer>) -> Self {
        Sticky { inner }
    }

    /// The peer of the request's tier whose ID is `hint`, if it can take the request now.
    fn bound(&self, hint: &[u8], state: &PickState, now: Instant) -> Option<PeerId> {
        let peers = self.inner.peers();
        tier_peers(peers, state.tier).iter().copied().find(|&id| {
            peers.spec(id).sid.as_bytes() == hint
                && !state.tried.contains(id)
                && peers.usable(id, now)
        })
    }
}

impl Balancer for Sticky {
    fn peers(&self) -> &Peers {
        self.inner.peers()
    }

    fn peers_mut(&mut self) -> &mut Peers {
        self.inner.peers_mut()
    }

    fn pick(&mut self, key: Option<&[u8]>, now: Instant, state: &mut PickState) -> Option<PeerId> {
        if !state.hint.is_empty() {
            if let Some(id) = self.bound(&state.hint, state, now) {
                return Some(book(self.inner.peers_mut(), state, id, now));
            }
        }
        self.inner.pick(key, now, state)
    }

    fn report(&mut self, peer: PeerId, outcome: super::Outcome, now: Instant) {
        self.inner.report(peer, outcome, now);
    }

    fn release(&mut self, peer: PeerId) {
        self.inner.release(peer);
    }

    fn tries(&self) -> usize {
        self.inner.tries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::balancer::{test_spec, Outcome, RoundRobin};
    use crate::upstream::peer::PeerSpec;

    fn sticky(specs: Vec<PeerSpec>) -> Sticky {
        Sticky::new(Box::new(RoundRobin::new(specs).unwrap()))
    }

    fn sid(b: &Sticky, id: usize) -> Vec<u8> {
        b.peers().spec(PeerId(id)).sid.clone().into_bytes()
    }

    #[test]
    fn a_bound_request_gets_its_peer_every_time() {
        let mut b = sticky(vec![test_spec(1, 1), test_spec(2, 1), test_spec(3, 1)]);
        let now = Instant::now();
        let hint = sid(&b, 2);
        for _ in 0..6 {
            let mut st = PickState::with_hint(hint.clone());
            assert_eq!(b.pick(None, now, &mut st), Some(PeerId(2)));
            b.release(PeerId(2));
        }
    }

    #[test]
    fn without_a_known_id_the_wrapped_balancer_picks() {
        let mut b = sticky(vec![test_spec(1, 1), test_spec(2, 1)]);
        let now = Instant::now();
        let mut picks = Vec::new();
        for hint in [Vec::new(), b"0123".to_vec(), Vec::new(), b"nope".to_vec()] {
            let mut st = PickState::with_hint(hint);
            let id = b.pick(None, now, &mut st).unwrap();
            b.release(id);
            picks.push(id.0);
        }
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn a_failed_down_or_full_peer_is_not_forced() {
        let full = PeerSpec {
            max_conns: 1,
            ..test_spec(3, 1)
        };
        let down = PeerSpec {
            down: true,
            ..test_spec(2, 1)
        };
        let mut b = sticky(vec![test_spec(1, 1), down, full]);
        let now = Instant::now();
        // Down: never.
        let mut st = PickState::with_hint(sid(&b, 1));
        assert_ne!(b.pick(None, now, &mut st), Some(PeerId(1)));
        // At max_conns: another peer.
        let mut st = PickState::with_hint(sid(&b, 2));
        assert_eq!(b.pick(None, now, &mut st), Some(PeerId(2)));
        let mut st2 = PickState::with_hint(sid(&b, 2));
        assert_eq!(b.pick(None, now, &mut st2), Some(PeerId(0)));
        b.release(PeerId(2));
        // Failed (max_fails 1): another peer until fail_timeout is over; and the retry of a
        // request whose bound peer failed goes elsewhere.
        let mut st = PickState::with_hint(sid(&b, 2));
        assert_eq!(b.pick(None, now, &mut st), Some(PeerId(2)));
        b.report(PeerId(2), Outcome::Failure, now);
        b.release(PeerId(2));
        assert_eq!(b.pick(None, now, &mut st), Some(PeerId(0)));
        let mut st = PickState::with_hint(sid(&b, 2));
        assert_eq!(b.pick(None, now, &mut st), Some(PeerId(0)));
    }

    #[test]
    fn generated_ids_are_the_md5_of_the_address() {
        let b = sticky(vec![test_spec(8081, 1), test_spec(8082, 1)]);
        // printf '127.0.0.1:8081' | md5sum
        assert_eq!(
            b.peers().spec(PeerId(0)).sid,
            "df2b80dc43705d28db9be6f29fe58da3"
        );
    }
}
