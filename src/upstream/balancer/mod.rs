//! Peer selection: which peer of an upstream gets the next attempt of a request.
//!
//! In the data flow, the proxy handler asks its shard's balancer for a peer (`pick`), connects,
//! then tells the balancer how it went (`report`) and hands the connection slot back when the
//! upstream connection closes (`release`); on a retryable error it calls `pick` again with the
//! same [`PickState`], up to [`Balancer::tries`] times. Balancers are sans-IO and single-shard:
//! time comes in as an argument, state is plain fields.
//!
//! Each method follows nginx 1.22's source so ringproxy picks the peer nginx would:
//! [`RoundRobin`] (`ngx_http_upstream_round_robin.c`), [`Hash`] and [`ConsistentHash`]
//! (`ngx_http_upstream_hash_module.c`), [`IpHash`] (`ngx_http_upstream_ip_hash_module.c`),
//! [`LeastConn`] (`ngx_http_upstream_least_conn_module.c`) and [`Random`]
//! (`ngx_http_upstream_random_module.c`). The last two compare connection counts that every
//! shard shares ([`crate::upstream::peer::SharedConns`]); everything else is the shard's own.
//! [`Sticky`] wraps any of them for `sticky` (session affinity), as nginx's sticky module wraps
//! whichever balancer the upstream has.

/// The `peers`/`peers_mut` pair of a [`Balancer`] impl whose peers sit in a field `peers`.
macro_rules! peers_field {
    () => {
        fn peers(&self) -> &Peers {
            &self.peers
        }

        fn peers_mut(&mut self) -> &mut Peers {
            &mut self.peers
        }
    };
}

/// `new` and `from_peers` of a balancer that holds nothing but its peers.
macro_rules! peers_only_constructors {
    ($ty:ident, $name:literal) => {
        impl $ty {
            #[doc = concat!("A ", $name, " balancer over `specs` (config order).")]
            pub fn new(specs: Vec<PeerSpec>) -> Result<Self, PeerListError> {
                Ok(Self::from_peers(Peers::new(specs)?))
            }

            #[doc = concat!("A ", $name, " balancer over `peers`.")]
            pub fn from_peers(peers: Peers) -> Self {
                $ty { peers }
            }
        }
    };
}

pub mod hash;
pub mod ip_hash;
pub mod least_conn;
pub mod random;
pub mod round_robin;
pub mod sticky;

use std::time::Instant;

pub use hash::{ChashPoint, ChashRing, ConsistentHash, Hash};
pub use ip_hash::IpHash;
pub use least_conn::LeastConn;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use sticky::Sticky;

use super::peer::{PeerId, PeerListError, PeerSpec, Peers, SharedConns, TriedSet};

/// How an attempt on a peer ended, for max_fails/fail_timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The peer answered (nginx: not `NGX_PEER_FAILED`).
    Success,
    /// The attempt failed in a way `proxy_next_upstream` counts (connect error, timeout, ...).
    Failure,
}

/// Which tier of peers a request is being served from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tier {
    /// The non-backup peers.
    #[default]
    Primary,
    /// The backup peers, once no primary peer was available for this request.
    Backup,
}

/// Per-request selection state (nginx's per-request peer data): the peers already tried, the
/// tier, and how far a hash balancer has walked. Create one per request, pass it to every
/// `pick` of that request.
#[derive(Clone, Debug, Default)]
pub struct PickState {
    pub(crate) tried: TriedSet,
    pub(crate) tier: Tier,
    /// Hash progress: `hp->hash` (accumulated hash for `hash`, ring position for `consistent`).
    pub(crate) hash: u32,
    /// `hp->rehash`: how many times the `hash` key was rehashed.
    pub(crate) rehash: u32,
    /// `hp->tries`: failed hash probes; past 20 the hash balancers fall back to round robin.
    pub(crate) hash_tries: u32,
    /// Whether the consistent-hash ring position was looked up for this request.
    pub(crate) hash_started: bool,
    /// The server ID the request asks for (`pc->hint`: a `sticky` cookie or route), empty
    /// for none; only [`Sticky`] reads it.
    pub(crate) hint: Vec<u8>,
}

impl PickState {
    /// State for a new request.
    pub fn new() -> Self {
        Self::default()
    }

    /// State for a new request that asks for the peer whose server ID is `hint` (see
    /// [`Sticky`]); an empty hint asks for none.
    pub fn with_hint(hint: Vec<u8>) -> Self {
        PickState {
            hint,
            ..Self::default()
        }
    }

    /// Lets `peer` be picked again by this request: its cached connection went stale, which
    /// is not the peer's failure (nginx gives the try back).
    pub fn untry(&mut self, peer: PeerId) {
        self.tried.remove(peer);
    }

    /// The peers this request was already given.
    pub fn tried(&self) -> &TriedSet {
        &self.tried
    }

    /// The tier the last pick came from.
    pub fn tier(&self) -> Tier {
        self.tier
    }
}

/// A load-balancing method over one shard's [`Peers`].
pub trait Balancer {
    /// The peers and their run-time state.
    fn peers(&self) -> &Peers;

    /// The peers and their run-time state, for [`Balancer::report`] and [`Balancer::release`].
    fn peers_mut(&mut self) -> &mut Peers;

    /// Picks a peer for the next attempt of the request whose state is `state`, or `None` when
    /// no peer can take it (nginx's `NGX_BUSY`: 502). Records the peer in `state` so later
    /// attempts skip it, and counts a connection on it until [`Balancer::release`].
    ///
    /// `key` is the evaluated `hash` key, or for `ip_hash` the client address's octets (4 for
    /// IPv4, 16 for IPv6); pass the same key for every attempt of one request. Balancers
    /// without a key ignore it; hash balancers fall back to round robin without one, ip_hash
    /// hashes nginx's pseudo address (three zero bytes, as for a UNIX-socket client).
    fn pick(&mut self, key: Option<&[u8]>, now: Instant, state: &mut PickState) -> Option<PeerId>;

    /// Feeds the outcome of an attempt on `peer` into max_fails/fail_timeout.
    fn report(&mut self, peer: PeerId, outcome: Outcome, now: Instant) {
        self.peers_mut()
            .report(peer, outcome == Outcome::Success, now);
    }

    /// Gives back the connection slot a [`Balancer::pick`] took (max_conns accounting).
    fn release(&mut self, peer: PeerId) {
        self.peers_mut().release(peer);
    }

    /// How many attempts one request may make (`ngx_http_upstream_tries`): the peers that are
    /// not `down`. `proxy_next_upstream_tries` may lower it further.
    fn tries(&self) -> usize {
        self.peers().tries()
    }
}

/// The balancing methods implemented so far, as named in the `upstream` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// No balancing directive: weighted round robin.
    RoundRobin,
    /// `hash KEY`.
    Hash,
    /// `hash KEY consistent`.
    ConsistentHash,
    /// `ip_hash`.
    IpHash,
    /// `least_conn`.
    LeastConn,
    /// `random`.
    Random,
    /// `random two [least_conn]`.
    RandomTwo,
}

/// Builds the balancer for `method` over `specs` (config order), counting connections on its
/// own.
pub fn build(method: &Method, specs: Vec<PeerSpec>) -> Result<Box<dyn Balancer>, PeerListError> {
    build_with(method, specs, &SharedConns::new())
}

/// Builds the balancer for `method` over `specs` (config order), counting open connections in
/// `conns`, which the other shards' balancers for the same upstream share.
pub fn build_with(
    method: &Method,
    specs: Vec<PeerSpec>,
    conns: &SharedConns,
) -> Result<Box<dyn Balancer>, PeerListError> {
    let peers = Peers::with_conns(specs, conns)?;
    Ok(match method {
        Method::RoundRobin => Box::new(RoundRobin::from_peers(peers)),
        Method::Hash => Box::new(Hash::from_peers(peers)),
        Method::ConsistentHash => Box::new(ConsistentHash::from_peers(peers)),
        Method::IpHash => Box::new(IpHash::from_peers(peers)),
        Method::LeastConn => Box::new(LeastConn::from_peers(peers)),
        Method::Random => Box::new(Random::from_peers(peers, false)),
        Method::RandomTwo => Box::new(Random::from_peers(peers, true)),
    })
}

/// The peers of `tier`, in config order.
fn tier_peers(peers: &Peers, tier: Tier) -> &[PeerId] {
    match tier {
        Tier::Primary => peers.primary(),
        Tier::Backup => peers.backup(),
    }
}

/// nginx's tier rule: the primary peers; when none is found and there are backup peers, the
/// request moves to the backup tier for the rest of its attempts. `pick_in` picks in one tier.
fn primary_then_backup(
    peers: &mut Peers,
    state: &mut PickState,
    mut pick_in: impl FnMut(&mut Peers, Tier, &mut PickState) -> Option<PeerId>,
) -> Option<PeerId> {
    if state.tier == Tier::Primary {
        let found = pick_in(peers, Tier::Primary, state);
        if found.is_some() || peers.backup().is_empty() {
            return found;
        }
        // nginx clears the tried bitmap here because it indexes peers per tier; our ids are
        // global and a request never returns to the primary tier, so there is nothing to clear.
        state.tier = Tier::Backup;
    }
    pick_in(peers, Tier::Backup, state)
}

/// Books `id` as this request's pick: a connection counted on it, and never offered again to
/// the same request.
fn book(peers: &mut Peers, state: &mut PickState, id: PeerId, now: Instant) -> PeerId {
    peers.take(id, now);
    state.tried.insert(id);
    id
}

/// The primary peer whose share of the primary weights holds `point` (modulo the total): the
/// walk of `ngx_http_upstream_get_hash_peer` and `ngx_http_upstream_get_ip_hash_peer`, where
/// down peers keep their share.
fn weighted_primary(peers: &Peers, point: u64) -> PeerId {
    let mut w = point % peers.primary_weight();
    for &id in peers.primary() {
        let weight = u64::from(peers.spec(id).weight);
        if w < weight {
            return id;
        }
        w -= weight;
    }
    unreachable!("the point is below the total primary weight")
}

/// One selection of nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`) among the
/// peers [`Smooth::offer`]ed to it: each gains its effective weight, the highest current weight
/// wins (the first on a tie) and pays back the total.
#[derive(Default)]
struct Smooth {
    best: Option<(PeerId, i64)>,
    total: i64,
}

impl Smooth {
    /// Counts `id` in: raises its current weight, and lets its effective weight recover by one
    /// towards its configured weight after failures lowered it.
    fn offer(&mut self, peers: &mut Peers, id: PeerId) {
        let weight = i64::from(peers.spec(id).weight);
        let st = peers.state_mut(id);
        st.current_weight += st.effective_weight;
        self.total += st.effective_weight;
        if st.effective_weight < weight {
            st.effective_weight += 1;
        }
        if self.best.is_none_or(|(_, w)| st.current_weight > w) {
            self.best = Some((id, st.current_weight));
        }
    }

    /// The winner, its current weight lowered by the total; `None` when nothing was offered.
    fn finish(self, peers: &mut Peers) -> Option<PeerId> {
        let (best, _) = self.best?;
        peers.state_mut(best).current_weight -= self.total;
        Some(best)
    }
}

/// A peer at 127.0.0.1:`port` with `weight`, for the balancers' unit tests.
#[cfg(test)]
fn test_spec(port: u16, weight: u32) -> PeerSpec {
    PeerSpec {
        weight,
        ..PeerSpec::new(
            format!("127.0.0.1:{port}"),
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }
}
