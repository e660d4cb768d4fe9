//! Upstreams: the peers of each `upstream` block and how one is chosen for a request.
//!
//! In the data flow this sits under `proxy/`: the handler evaluates the `hash` key, asks its
//! shard's [`balancer::Balancer`] for a [`peer::PeerId`] (for `ip_hash` keyed by the client
//! address), connects to that peer's address, and reports the outcome back; [`keepalive`]
//! decides which finished connections are kept for reuse. Everything here is sans-IO and owned
//! by one shard, except the atomic open-connection counts ([`peer::SharedConns`]) every shard's
//! balancer for one upstream shares; the config model is mapped into [`peer::PeerSpec`]s by the
//! proxy layer, not read from here.

pub mod balancer;
pub mod keepalive;
pub mod peer;
pub mod resolver;

pub use balancer::{Balancer, Method, Outcome, PickState};
pub use peer::{PeerId, PeerListError, PeerSpec, PeerState, Peers, TriedSet};
