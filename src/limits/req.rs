//! `limit_req`: nginx's leaky bucket per key (sans-IO: the caller gives the time).
//!
//! As nginx counts it, in thousandths of a request: each request adds 1000 to the key's
//! `excess`, which drains at the zone's rate; a request that would leave more than `burst`
//! waiting is rejected; one that leaves more than `delay` is held for the time the excess above
//! `delay` takes to drain. A key's first request costs nothing. With several `limit_req` lines,
//! every zone is checked before any is charged, and the longest delay wins.
//!
//! When a table is full, a new key first frees up to two entries idle for a minute and drained,
//! then the least recently used one; if that fails too, nginx's "could not allocate node".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hashlink::LinkedHashMap;

use super::{shard_of, slab_size, SHARDS};

/// nginx's node header (rbtree node up to `color`, then `ngx_http_limit_req_node_t` up to
/// `data`) on a 64-bit build.
const NODE_HEADER: usize = 32 + 48;

/// One key's bucket.
struct Node {
    /// Thousandths of a request waiting.
    excess: i64,
    /// Milliseconds (the caller's clock) of the last charge.
    last: u64,
}

#[derive(Default)]
struct Table {
    /// Least recently used first.
    map: LinkedHashMap<Box<[u8]>, Node>,
    used: usize,
}

/// A `limit_req_zone`.
pub struct ReqZone {
    name: String,
    /// Thousandths of a request per second (`rate=10r/s` is 10,000; `r/m` divides by 60).
    rate: AtomicU64,
    budget: usize,
    tables: [Mutex<Table>; SHARDS],
}

/// One `limit_req` line applied to a request: its zone, the key's value, and its `burst` and
/// `delay` in thousandths of a request.
pub struct Limit<'a> {
    /// The zone.
    pub zone: &'a ReqZone,
    /// The key (not empty: an empty key is not limited).
    pub key: &'a [u8],
    /// `burst=` x 1000.
    pub burst: u64,
    /// `delay=` x 1000 (`nodelay`: no limit).
    pub delay: u64,
}

/// What the zones decide for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Serve it now.
    Pass,
    /// Serve it after `ms` milliseconds; `excess` (thousandths) and the zone that set the delay.
    Delay { ms: u64, excess: u64, limit: usize },
    /// Reject it: the excess over `burst`, in the `limit`-th line's zone.
    Busy { excess: u64, limit: usize },
    /// Reject it: the `limit`-th zone has no room for a new key.
    NoMemory { limit: usize },
}

impl ReqZone {
    pub(super) fn new(name: &str, size: usize, rate: u64) -> ReqZone {
        ReqZone {
            name: name.to_string(),
            rate: AtomicU64::new(rate.max(1)),
            budget: size / SHARDS,
            tables: Default::default(),
        }
    }

    /// The zone's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn set_rate(&self, rate: u64) {
        self.rate.store(rate.max(1), Ordering::Relaxed);
    }

    fn rate(&self) -> i64 {
        self.rate.load(Ordering::Relaxed) as i64
    }

    /// The key's excess with this request, before it is charged, and whether the key is new
    /// (`None`: no room for a new key). A new key is created drained.
    fn peek(&self, key: &[u8], now: u64) -> Option<(i64, bool)> {
        let mut t = self.tables[shard_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.map.to_back(key) {
            return Some((drained(n, now, self.rate()) + 1000, false));
        }
        let size = slab_size(NODE_HEADER, key.len());
        self.expire(&mut t, now, false);
        if t.used + size > self.budget {
            self.expire(&mut t, now, true);
            if t.used + size > self.budget {
                return None;
            }
        }
        t.used += size;
        t.map.insert(
            key.into(),
            Node {
                excess: 0,
                last: now,
            },
        );
        Some((0, true))
    }

    /// Charges the request: the key's new excess (thousandths).
    fn charge(&self, key: &[u8], now: u64, first: bool) -> i64 {
        let mut t = self.tables[shard_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let rate = self.rate();
        match t.map.get_mut(key) {
            // A key made by this request's `peek` is not charged (nginx's first request).
            Some(n) if first => n.excess,
            Some(n) => {
                let excess = (drained(n, now, rate) + 1000).max(0);
                n.last = now;
                n.excess = excess;
                excess
            }
            None => 0,
        }
    }

    /// nginx's `ngx_http_limit_req_expire`: from the least recently used end, up to two
    /// entries idle for a minute and drained; with `force`, the oldest one first whatever its
    /// state.
    fn expire(&self, t: &mut Table, now: u64, force: bool) {
        let mut n = if force { 0 } else { 1 };
        while n < 3 {
            let Some((key, node)) = t.map.front() else {
                return;
            };
            if n != 0 {
                let ms = now.abs_diff(node.last);
                if ms < 60_000 || node.excess - self.rate() * ms as i64 / 1000 > 0 {
                    return;
                }
            }
            n += 1;
            t.used -= slab_size(NODE_HEADER, key.len());
            t.map.pop_front();
        }
    }
}

/// A node's excess after draining since its last charge (nginx's clamp of a clock gone back).
fn drained(n: &Node, now: u64, rate: i64) -> i64 {
    let ms = now as i64 - n.last as i64;
    let ms = if ms < -60_000 { 1 } else { ms.max(0) };
    (n.excess - rate * ms / 1000).max(-1000)
}

/// Checks every line, then charges every zone if none rejects.
pub fn decide(limits: &[Limit<'_>], now: u64) -> Decision {
    let mut fresh = Vec::with_capacity(limits.len());
    for (i, l) in limits.iter().enumerate() {
        let Some((excess, created)) = l.zone.peek(l.key, now) else {
            return Decision::NoMemory { limit: i };
        };
        let excess = excess.max(0) as u64;
        if excess > l.burst {
            return Decision::Busy { excess, limit: i };
        }
        fresh.push(created);
    }
    let mut out = Decision::Pass;
    let mut longest = 0;
    for (i, l) in limits.iter().enumerate() {
        let excess = l.zone.charge(l.key, now, fresh[i]).max(0) as u64;
        if excess <= l.delay {
            continue;
        }
        let ms = (excess - l.delay) * 1000 / l.zone.rate() as u64;
        if ms > longest {
            longest = ms;
            out = Decision::Delay {
                ms,
                excess,
                limit: i,
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(rate_per_s: u64) -> ReqZone {
        ReqZone::new("one", 1 << 20, rate_per_s * 1000)
    }

    fn one<'a>(z: &'a ReqZone, key: &'a [u8], burst: u64, delay: u64) -> [Limit<'a>; 1] {
        [Limit {
            zone: z,
            key,
            burst: burst * 1000,
            delay,
        }]
    }

    #[test]
    fn without_burst_the_second_request_in_a_second_is_rejected() {
        let z = zone(1);
        assert_eq!(decide(&one(&z, b"a", 0, 0), 1000), Decision::Pass);
        assert_eq!(
            decide(&one(&z, b"a", 0, 0), 1100),
            Decision::Busy {
                excess: 900,
                limit: 0
            }
        );
        // Another key is not affected; a second later the bucket has drained.
        assert_eq!(decide(&one(&z, b"b", 0, 0), 1100), Decision::Pass);
        assert_eq!(decide(&one(&z, b"a", 0, 0), 2000), Decision::Pass);
    }

    #[test]
    fn burst_delays_and_nodelay_passes_at_once() {
        let z = zone(2);
        let l = one(&z, b"k", 2, 0);
        assert_eq!(decide(&l, 0), Decision::Pass);
        // 1000 waiting at 2 r/s: half a second.
        assert_eq!(
            decide(&l, 0),
            Decision::Delay {
                ms: 500,
                excess: 1000,
                limit: 0
            }
        );
        assert_eq!(
            decide(&l, 0),
            Decision::Delay {
                ms: 1000,
                excess: 2000,
                limit: 0
            }
        );
        assert!(matches!(decide(&l, 0), Decision::Busy { .. }));
        let nodelay = one(&z, b"n", 2, u64::MAX / 1000);
        for _ in 0..3 {
            assert_eq!(decide(&nodelay, 0), Decision::Pass);
        }
        assert!(matches!(decide(&nodelay, 0), Decision::Busy { .. }));
    }

    #[test]
    fn a_rejection_by_a_later_zone_charges_none() {
        let (a, b) = (zone(1), zone(1));
        let both = |ka: &'static [u8]| {
            [
                Limit {
                    zone: &a,
                    key: ka,
                    burst: 5000,
                    delay: u64::MAX,
                },
                Limit {
                    zone: &b,
                    key: b"same",
                    burst: 0,
                    delay: 0,
                },
            ]
        };
        assert_eq!(decide(&both(b"x"), 0), Decision::Pass);
        assert!(matches!(
            decide(&both(b"x"), 0),
            Decision::Busy { limit: 1, .. }
        ));
        // Zone a saw one charged request for x: the next one leaves 1000 waiting, not 2000.
        let only_a = [Limit {
            zone: &a,
            key: b"x",
            burst: 5000,
            delay: 0,
        }];
        assert_eq!(
            decide(&only_a, 0),
            Decision::Delay {
                ms: 1000,
                excess: 1000,
                limit: 0
            }
        );
    }

    #[test]
    fn a_full_zone_evicts_the_least_recently_used_key() {
        // A table holds budget / 128 keys; fill one table, then a new key evicts the oldest.
        let z = ReqZone::new("small", 128 * SHARDS * 2, 1000);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let table = shard_of(b"0");
        let mut i = 0u32;
        while keys.len() < 3 {
            let k = i.to_string().into_bytes();
            if shard_of(&k) == table {
                keys.push(k);
            }
            i += 1;
        }
        for k in &keys {
            assert!(z.peek(k, 0).is_some());
        }
        let t = z.tables[table].lock().unwrap();
        assert_eq!(t.map.len(), 2);
        assert!(!t.map.contains_key(keys[0].as_slice()));
    }
}
