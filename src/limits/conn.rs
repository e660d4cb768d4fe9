//! `limit_conn`: how many requests of a key are being served at once, process-wide. A request
//! takes a slot ([`ConnSlot`]) for its whole life; an upgraded one keeps it until its tunnel
//! closes, as nginx keeps the request (and its count) until then. Dropping the slot gives it
//! back. A key's entry exists while it holds slots; a zone without room for a new key refuses
//! it (nginx does not evict live counts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{shard_of, slab_size, SHARDS};

/// nginx's node header (rbtree node up to `color`, then `ngx_http_limit_conn_node_t` up to
/// `data`) on a 64-bit build.
const NODE_HEADER: usize = 32 + 4;

#[derive(Default)]
struct Table {
    counts: HashMap<Box<[u8]>, u32>,
    used: usize,
}

/// A `limit_conn_zone`.
pub struct ConnZone {
    name: String,
    budget: usize,
    tables: [Mutex<Table>; SHARDS],
}

/// Why a slot was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The key holds `limit` slots already.
    Busy,
    /// No room in the zone for a new key.
    NoMemory,
}

/// One slot of a key in a zone, given back when dropped.
pub struct ConnSlot {
    zone: Arc<ConnZone>,
    key: Box<[u8]>,
}

impl ConnZone {
    pub(super) fn new(name: &str, size: usize) -> ConnZone {
        ConnZone {
            name: name.to_string(),
            budget: size / SHARDS,
            tables: Default::default(),
        }
    }

    /// The zone's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Slots the key holds now.
    pub fn count(&self, key: &[u8]) -> u32 {
        let t = self.tables[shard_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        t.counts.get(key).copied().unwrap_or(0)
    }

    /// Takes a slot for `key` if it holds fewer than `limit`.
    pub fn acquire(self: &Arc<Self>, key: &[u8], limit: u32) -> Result<ConnSlot, Refused> {
        let mut t = self.tables[shard_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match t.counts.get_mut(key) {
            Some(n) if *n >= limit => return Err(Refused::Busy),
            Some(n) => *n += 1,
            None => {
                let size = slab_size(NODE_HEADER, key.len());
                if t.used + size > self.budget {
                    return Err(Refused::NoMemory);
                }
                t.used += size;
                t.counts.insert(key.into(), 1);
            }
        }
        Ok(ConnSlot {
            zone: self.clone(),
            key: key.into(),
        })
    }

    fn release(&self, key: &[u8]) {
        let mut t = self.tables[shard_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(n) = t.counts.get_mut(key) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            t.counts.remove(key);
            t.used -= slab_size(NODE_HEADER, key.len());
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.zone.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_up_to_the_limit_and_come_back_when_dropped() {
        let z = Arc::new(ConnZone::new("addr", 1 << 20));
        let a = z.acquire(b"10.0.0.1", 2).unwrap();
        let b = z.acquire(b"10.0.0.1", 2).unwrap();
        assert_eq!(z.acquire(b"10.0.0.1", 2).err(), Some(Refused::Busy));
        assert!(z.acquire(b"10.0.0.2", 2).is_ok());
        drop(a);
        assert_eq!(z.count(b"10.0.0.1"), 1);
        let _c = z.acquire(b"10.0.0.1", 2).unwrap();
        drop(b);
        drop(_c);
        assert_eq!(z.count(b"10.0.0.1"), 0);
        let t = &z.tables[shard_of(b"10.0.0.1")];
        assert!(t.lock().unwrap().counts.is_empty());
    }

    #[test]
    fn a_full_zone_refuses_new_keys_but_counts_known_ones() {
        // One 64-byte node per table.
        let z = Arc::new(ConnZone::new("tiny", 64 * SHARDS));
        let table = shard_of(b"k0");
        let other = (1..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| shard_of(k) == table)
            .unwrap();
        let _a = z.acquire(b"k0", 10).unwrap();
        assert_eq!(z.acquire(&other, 10).err(), Some(Refused::NoMemory));
        assert!(z.acquire(b"k0", 10).is_ok());
    }
}
