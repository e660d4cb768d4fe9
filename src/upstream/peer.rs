//! Peers of one upstream: what the config says about each (`PeerSpec`) and what one shard has
//! learnt about each at run time (`PeerState`: failures, check times, open connections).
//!
//! Sits between the config model (the lead maps each resolved `server` address into a
//! `PeerSpec`) and the balancers in [`super::balancer`], which read and update the state. Every
//! shard owns its own `Peers`, so nothing here is locked; what must agree across shards (the
//! consistent-hash ring) is computed from the specs alone. The one exception is the count of open
//! connections that `least_conn` and `random two` compare: a [`SharedConns`] of atomic counters,
//! one per peer, made once per configuration and shared by every shard serving it, so a tunnel
//! opened through one shard weighs on the picks of all of them.
//!
//! The state fields and their updates mirror `ngx_http_upstream_rr_peer_t` and
//! `ngx_http_upstream_free_round_robin_peer` in nginx 1.22
//! (`src/http/ngx_http_upstream_round_robin.c`). nginx keeps times in whole seconds
//! (`ngx_time()`); we keep `Instant`s, so the fail_timeout window is exact instead of rounded to
//! the second.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Index of a peer in the list given to [`Peers::new`] (primary and backup peers alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub usize);

impl PeerId {
    /// The position of this peer in the spec list.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Where a peer listens: a TCP address, or a unix stream socket's path (`server unix:/path`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// The path of a unix stream socket (relative paths are relative to the working directory,
    /// as nginx connects them).
    Unix(Arc<Path>),
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        PeerAddr::Inet(a)
    }
}

impl std::fmt::Display for PeerAddr {
    /// As nginx prints a peer in `$upstream_addr` and its logs: `127.0.0.1:80`, `unix:/path`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Inet(a) => a.fmt(f),
            PeerAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One upstream peer as configured: one resolved address of one `server` directive.
///
/// A `server backend.local:8080;` line that resolves to two addresses gives two `PeerSpec`s with
/// the same `server` and different `addr`/`name`, as nginx does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The address argument of the `server` directive exactly as written (`"127.0.0.1:9001"`,
    /// `"backend.local:8080"`, `"127.0.0.2"` without a port). This, not the resolved address, is
    /// what `hash ... consistent` hashes: nginx 1.22 builds the ring from `peer->server`
    /// (`server[i].name`) and splits it into host and port at the last `:` followed only by
    /// digits, so `"127.0.0.2"` hashes with an empty port even though it connects to port 80.
    pub server: String,
    /// The resolved address as text, as nginx prints it in `$upstream_addr` (`"127.0.0.1:9001"`).
    pub name: String,
    /// Where to connect.
    pub addr: PeerAddr,
    /// `weight=` (nginx default 1; 0 is rejected).
    pub weight: u32,
    /// `max_fails=` (default 1; 0 disables failure accounting).
    pub max_fails: u32,
    /// `fail_timeout=` (default 10s).
    pub fail_timeout: Duration,
    /// `backup`: used only when no primary peer is available (round robin).
    pub backup: bool,
    /// `down`: never picked (but still placed on the consistent-hash ring, as nginx does).
    pub down: bool,
    /// `max_conns=` (default 0: unlimited), counted per shard, or across shards with a `zone`.
    pub max_conns: u32,
    /// The server ID `sticky` routes by (`peer->sid`): the `server`'s `route=`, else the MD5 of
    /// `name` in lowercase hex, as nginx generates it.
    pub sid: String,
}

/// Open connections on each peer of one upstream, counted by every shard that serves one
/// configuration (nginx keeps `peer->conns` in the `zone` shared by its workers).
///
/// The config model holds one per upstream group, so all shards of a generation share it; it is
/// sized by the first [`Peers::with_conns`] that uses it. A clone shares the counters. Being
/// run-time state, it never makes two configurations differ: `==` is always true.
///
/// With a `zone` in the upstream, `max_conns` is checked against these shared counts too, as
/// nginx checks its workers' shared `peer->conns`; without one, against the shard's own.
#[derive(Clone, Default)]
pub struct SharedConns(Arc<OnceLock<Arc<[AtomicU32]>>>, bool);

impl SharedConns {
    /// Counters not yet shared with anyone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters for an upstream with a `zone`: `max_conns` limits the sum over all shards.
    pub fn zoned() -> Self {
        SharedConns(Arc::default(), true)
    }

    /// The counters for `n` peers, made on first use.
    fn counters(&self, n: usize) -> Arc<[AtomicU32]> {
        let c = self
            .0
            .get_or_init(|| (0..n).map(|_| AtomicU32::new(0)).collect());
        if c.len() == n {
            c.clone()
        } else {
            // Only a caller mixing up upstreams gets here; counting alone beats misattributing.
            (0..n).map(|_| AtomicU32::new(0)).collect()
        }
    }

    /// The current counts, in peer order (empty before first use).
    pub fn snapshot(&self) -> Vec<u32> {
        self.0
            .get()
            .map(|c| c.iter().map(|a| a.load(Ordering::Relaxed)).collect())
            .unwrap_or_default()
    }
}

impl PartialEq for SharedConns {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SharedConns {}

impl std::fmt::Debug for SharedConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedConns")
            .field(&self.snapshot())
            .finish()
    }
}

/// nginx's `max_fails=` default.
pub const DEFAULT_MAX_FAILS: u32 = 1;
/// nginx's `fail_timeout=` default.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);

impl PeerSpec {
    /// A peer with nginx's defaults: weight 1, max_fails 1, fail_timeout 10s, not backup, not
    /// down, no max_conns. `name` is `addr` printed as nginx prints it.
    pub fn new(server: impl Into<String>, addr: impl Into<PeerAddr>) -> Self {
        let addr = addr.into();
        let name = addr.to_string();
        PeerSpec {
            server: server.into(),
            sid: generated_sid(&name),
            name,
            addr,
            weight: 1,
            max_fails: DEFAULT_MAX_FAILS,
            fail_timeout: DEFAULT_FAIL_TIMEOUT,
            backup: false,
            down: false,
            max_conns: 0,
        }
    }
}

/// nginx's generated server ID (`ngx_http_upstream_rr_peer_init_sid`): the MD5 of the printed
/// address, in lowercase hex.
pub fn generated_sid(name: &str) -> String {
    use md5::Digest;
    let digest = md5::Md5::digest(name.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What one shard knows about one peer at run time (`ngx_http_upstream_rr_peer_t`'s mutable part).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerState {
    /// Failures counted since the peer last succeeded after a check.
    pub fails: u32,
    /// When the peer last failed (`accessed`); `None` is nginx's 0, "long ago".
    pub accessed: Option<Instant>,
    /// Start of the current fail_timeout window (`checked`): set on failure and when the peer is
    /// picked more than fail_timeout after the previous check.
    pub checked: Option<Instant>,
    /// Connections this shard picked and has not released yet (for `max_conns`, per shard).
    pub conns: u32,
    /// Smooth weighted round robin: the running score.
    pub current_weight: i64,
    /// Smooth weighted round robin: the weight in use, lowered on failure, raised back by one
    /// per pick until it reaches `weight`.
    pub effective_weight: i64,
}

/// Which peers one request has already been sent to (`rrp->tried`), so a retry never picks the
/// same peer twice. Up to 64 peers fit without allocating.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriedSet {
    first: u64,
    rest: Vec<u64>,
}

impl TriedSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `peer` was tried.
    pub fn contains(&self, peer: PeerId) -> bool {
        let i = peer.0;
        if i < 64 {
            self.first & (1 << i) != 0
        } else {
            self.rest
                .get(i / 64 - 1)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
        }
    }

    /// Marks `peer` as tried.
    pub fn insert(&mut self, peer: PeerId) {
        let i = peer.0;
        if i < 64 {
            self.first |= 1 << i;
        } else {
            let w = i / 64 - 1;
            if self.rest.len() <= w {
                self.rest.resize(w + 1, 0);
            }
            self.rest[w] |= 1 << (i % 64);
        }
    }

    /// Forgets `peer`.
    pub fn remove(&mut self, peer: PeerId) {
        let i = peer.0;
        if i < 64 {
            self.first &= !(1 << i);
        } else if let Some(w) = self.rest.get_mut(i / 64 - 1) {
            *w &= !(1 << (i % 64));
        }
    }

    /// Forgets every peer (for reusing the set for another request).
    pub fn clear(&mut self) {
        self.first = 0;
        self.rest.iter_mut().for_each(|w| *w = 0);
    }

    /// Number of peers tried.
    pub fn len(&self) -> usize {
        self.first.count_ones() as usize
            + self
                .rest
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>()
    }

    /// Whether no peer was tried.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a peer list cannot make an upstream (nginx refuses the same configurations).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerListError {
    /// Every peer is `backup` (or the list is empty): nginx's "no servers in upstream".
    #[error("no servers in upstream: at least one server must not be \"backup\"")]
    NoServers,
    /// `weight=0`: nginx's "invalid parameter".
    #[error("invalid parameter \"weight=0\" for server \"{server}\": weight must be at least 1")]
    ZeroWeight {
        /// The `server` as written.
        server: String,
    },
}

/// The peers of one upstream with one shard's run-time state: the input every balancer shares.
#[derive(Clone, Debug)]
pub struct Peers {
    specs: Vec<PeerSpec>,
    states: Vec<PeerState>,
    primary: Vec<PeerId>,
    backup: Vec<PeerId>,
    primary_weight: u64,
    single: bool,
    tries: usize,
    /// Open connections per peer across all shards (see [`SharedConns`]).
    active: Arc<[AtomicU32]>,
    /// The upstream has a `zone`: `max_conns` counts `active`, not this shard's picks.
    zone: bool,
}

impl Peers {
    /// Builds the peer list in config order; primary and backup peers keep their relative order,
    /// which decides ties in round robin as in nginx. Its open-connection counts are its own.
    pub fn new(specs: Vec<PeerSpec>) -> Result<Self, PeerListError> {
        Self::with_conns(specs, &SharedConns::new())
    }

    /// As [`Peers::new`], counting open connections in `conns`, which other shards' `Peers` for
    /// the same upstream share.
    pub fn with_conns(specs: Vec<PeerSpec>, conns: &SharedConns) -> Result<Self, PeerListError> {
        if let Some(s) = specs.iter().find(|s| s.weight == 0) {
            return Err(PeerListError::ZeroWeight {
                server: s.server.clone(),
            });
        }
        let (backup, primary): (Vec<PeerId>, Vec<PeerId>) = (0..specs.len())
            .map(PeerId)
            .partition(|id| specs[id.0].backup);
        if primary.is_empty() {
            return Err(PeerListError::NoServers);
        }
        let primary_weight = primary.iter().map(|id| u64::from(specs[id.0].weight)).sum();
        // ngx_http_upstream_tries(): the non-down peers of both tiers.
        let tries = specs.iter().filter(|s| !s.down).count();
        let states = specs
            .iter()
            .map(|s| PeerState {
                fails: 0,
                accessed: None,
                checked: None,
                conns: 0,
                current_weight: 0,
                effective_weight: i64::from(s.weight),
            })
            .collect();
        Ok(Peers {
            active: conns.counters(specs.len()),
            zone: conns.1,
            single: primary.len() == 1 && backup.is_empty(),
            specs,
            states,
            primary,
            backup,
            primary_weight,
            tries,
        })
    }

    /// All peers, indexed by [`PeerId`].
    pub fn specs(&self) -> &[PeerSpec] {
        &self.specs
    }

    /// The configuration of one peer.
    pub fn spec(&self, id: PeerId) -> &PeerSpec {
        &self.specs[id.0]
    }

    /// The run-time state of one peer.
    pub fn state(&self, id: PeerId) -> &PeerState {
        &self.states[id.0]
    }

    pub(crate) fn state_mut(&mut self, id: PeerId) -> &mut PeerState {
        &mut self.states[id.0]
    }

    /// Number of peers (primary and backup).
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Always false: [`Peers::new`] refuses an empty list.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The primary (non-backup) peers in config order.
    pub fn primary(&self) -> &[PeerId] {
        &self.primary
    }

    /// The backup peers in config order.
    pub fn backup(&self) -> &[PeerId] {
        &self.backup
    }

    /// Sum of the primary peers' weights, down ones included (`peers->total_weight`).
    pub fn primary_weight(&self) -> u64 {
        self.primary_weight
    }

    /// One primary peer and no backup (`peers->single`): nginx then never marks it failed.
    pub fn is_single(&self) -> bool {
        self.single
    }

    /// How many peers one request may try (`ngx_http_upstream_tries`): the peers not `down`.
    pub fn tries(&self) -> usize {
        self.tries
    }

    /// Whether `id` may take a request now: not down, not failed within fail_timeout, under
    /// max_conns (the checks of `ngx_http_upstream_get_peer`, in its order).
    pub(crate) fn usable(&self, id: PeerId, now: Instant) -> bool {
        let spec = &self.specs[id.0];
        let state = &self.states[id.0];
        if spec.down {
            return false;
        }
        if spec.max_fails != 0
            && state.fails >= spec.max_fails
            && state
                .checked
                .is_some_and(|c| now.saturating_duration_since(c) <= spec.fail_timeout)
        {
            return false;
        }
        !self.at_max_conns(id)
    }

    /// Whether `id` has `max_conns` connections open: this shard's, or with a `zone` every
    /// shard's. Two shards may both see the last free slot and take it (nginx's zone lock has
    /// no counterpart here): the limit can be passed by one connection per other shard at once.
    pub(crate) fn at_max_conns(&self, id: PeerId) -> bool {
        let max = self.specs[id.0].max_conns;
        let open = if self.zone {
            self.active(id)
        } else {
            self.states[id.0].conns
        };
        max != 0 && open >= max
    }

    /// Connections open on `id` across every shard sharing this list's [`SharedConns`]
    /// (`peer->conns` as `least_conn` and `random two` compare it).
    pub fn active(&self, id: PeerId) -> u32 {
        self.active[id.0].load(Ordering::Relaxed)
    }

    /// Counts one more connection on `id`, here and across shards.
    pub(crate) fn count(&mut self, id: PeerId) {
        self.states[id.0].conns += 1;
        self.active[id.0].fetch_add(1, Ordering::Relaxed);
    }

    /// Books a pick: one more connection, and a new fail_timeout window if the last one is over.
    pub(crate) fn take(&mut self, id: PeerId, now: Instant) {
        self.count(id);
        let fail_timeout = self.specs[id.0].fail_timeout;
        let state = &mut self.states[id.0];
        if state
            .checked
            .is_none_or(|c| now.saturating_duration_since(c) > fail_timeout)
        {
            state.checked = Some(now);
        }
    }

    /// Feeds a request's outcome into max_fails/fail_timeout, as
    /// `ngx_http_upstream_free_round_robin_peer` does (minus the connection count: see
    /// [`Peers::release`]).
    ///
    /// A failure counts, starts a window and lowers `effective_weight` by `weight / max_fails`;
    /// a success clears the count only if the peer was picked (re-checked) after its last
    /// failure. A single peer is never marked failed.
    pub fn report(&mut self, id: PeerId, success: bool, now: Instant) {
        if self.single {
            return;
        }
        let spec = &self.specs[id.0];
        let state = &mut self.states[id.0];
        if success {
            if state.accessed < state.checked {
                state.fails = 0;
            }
            return;
        }
        state.fails += 1;
        state.accessed = Some(now);
        state.checked = Some(now);
        if let Some(step) = spec.weight.checked_div(spec.max_fails) {
            state.effective_weight -= i64::from(step);
        }
        state.effective_weight = state.effective_weight.max(0);
    }

    /// Returns the connection a pick booked (`peer->conns--`), here and across shards.
    pub fn release(&mut self, id: PeerId) {
        let state = &mut self.states[id.0];
        if state.conns == 0 {
            // Nothing this shard booked: the shared count is not ours to lower.
            return;
        }
        state.conns -= 1;
        let _ = self.active[id.0]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(port: u16) -> PeerSpec {
        PeerSpec::new(
            format!("127.0.0.1:{port}"),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    #[test]
    fn defaults_are_nginx_defaults() {
        let s = spec(9001);
        assert_eq!(s.name, "127.0.0.1:9001");
        assert_eq!((s.weight, s.max_fails, s.max_conns), (1, 1, 0));
        assert_eq!(s.fail_timeout, Duration::from_secs(10));
        assert!(!s.backup && !s.down);
    }

    #[test]
    fn tried_set_small_and_large() {
        let mut t = TriedSet::new();
        assert!(t.is_empty());
        for i in [0, 5, 63, 64, 130] {
            assert!(!t.contains(PeerId(i)));
            t.insert(PeerId(i));
            assert!(t.contains(PeerId(i)));
        }
        assert!(!t.contains(PeerId(1)) && !t.contains(PeerId(129)) && !t.contains(PeerId(500)));
        assert_eq!(t.len(), 5);
        t.clear();
        assert!(t.is_empty() && !t.contains(PeerId(130)));
    }

    #[test]
    fn rejects_what_nginx_rejects() {
        let backup_only = vec![PeerSpec {
            backup: true,
            ..spec(1)
        }];
        assert_eq!(
            Peers::new(backup_only).unwrap_err(),
            PeerListError::NoServers
        );
        assert_eq!(Peers::new(vec![]).unwrap_err(), PeerListError::NoServers);
        let zero = vec![PeerSpec {
            weight: 0,
            ..spec(1)
        }];
        assert!(matches!(
            Peers::new(zero).unwrap_err(),
            PeerListError::ZeroWeight { .. }
        ));
    }

    #[test]
    fn tiers_tries_and_single() {
        let p = Peers::new(vec![
            spec(1),
            PeerSpec {
                backup: true,
                ..spec(2)
            },
            PeerSpec {
                down: true,
                weight: 3,
                ..spec(3)
            },
        ])
        .unwrap();
        assert_eq!(p.primary(), &[PeerId(0), PeerId(2)]);
        assert_eq!(p.backup(), &[PeerId(1)]);
        assert_eq!(p.primary_weight(), 4);
        assert_eq!(p.tries(), 2);
        assert!(!p.is_single());
        assert!(Peers::new(vec![spec(1)]).unwrap().is_single());
    }

    #[test]
    fn failure_lowers_effective_weight_and_success_after_check_clears() {
        let t0 = Instant::now();
        let mut p = Peers::new(vec![
            PeerSpec {
                weight: 10,
                max_fails: 3,
                ..spec(1)
            },
            spec(2),
        ])
        .unwrap();
        let a = PeerId(0);
        p.take(a, t0);
        p.report(a, false, t0);
        assert_eq!(p.state(a).fails, 1);
        assert_eq!(p.state(a).effective_weight, 7);
        // A success right after the failure does not clear it (accessed == checked) ...
        p.report(a, true, t0 + Duration::from_secs(1));
        assert_eq!(p.state(a).fails, 1);
        // ... one after a pick that opened a new window does.
        p.take(a, t0 + Duration::from_secs(11));
        p.report(a, true, t0 + Duration::from_secs(11));
        assert_eq!(p.state(a).fails, 0);
        p.release(a);
        p.release(a);
        assert_eq!(p.state(a).conns, 0);
        for _ in 0..5 {
            p.report(a, false, t0);
        }
        assert_eq!(p.state(a).effective_weight, 0);
    }
}
