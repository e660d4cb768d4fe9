//! nginx's `limit_req` and `limit_conn` zones: tables shared by every shard, as nginx's shared
//! memory zones are shared by every worker (`limit_conn perip 10` means 10 per address for the
//! whole process).
//!
//! Each zone is split into [`SHARDS`] tables by the key's hash, each behind its own mutex, so two
//! shards contend only when their keys fall in the same table. A zone is touched once per request
//! (and once more when a `limit_conn` slot is given back), never per tunnel message. Its size
//! bounds its memory as nginx's does: every entry is charged what nginx's slab allocator would
//! charge for its node (the key's length plus the node header, rounded up to a power of two).
//!
//! Zones live in a process-wide registry by name, so a reload that keeps a zone's name and size
//! keeps its state (nginx reuses the shared memory zone), and the tunnels of the old
//! configuration give their `limit_conn` slots back to the same counts.
//!
//! Place in the data flow: a request's location is chosen -> [`crate::proxy::limits`] (nginx's
//! pre-access phase: `limit_req`, then `limit_conn`) -> access rules -> the handler.

pub mod conn;
pub mod req;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, OnceLock, Weak};

pub use conn::{ConnSlot, ConnZone};
pub use req::ReqZone;

/// Tables per zone.
pub const SHARDS: usize = 16;

/// The table of a key.
fn shard_of(key: &[u8]) -> usize {
    let hasher = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default();
    (hasher.hash_one(key) as usize) % SHARDS
}

/// What nginx's slab allocator charges for a node of `header + key` bytes: the next power of
/// two, at least 8.
fn slab_size(header: usize, key: usize) -> usize {
    (header + key).next_power_of_two().max(8)
}

/// The kind of a zone, which nginx calls its tag: a name serves one kind only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `limit_req_zone`.
    Req,
    /// `limit_conn_zone`.
    Conn,
}

/// Why a zone cannot be made (configuration time, on a reload).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZoneError {
    /// nginx's check when a reload changes a zone's key.
    #[error("{kind} \"{name}\" uses the \"{key}\" key while previously it used the \"{old}\" key")]
    KeyChanged {
        /// `limit_req` or `limit_conn`.
        kind: &'static str,
        /// The zone.
        name: String,
        /// The new key.
        key: String,
        /// The key in use.
        old: String,
    },
}

struct Entry {
    size: usize,
    key: String,
    req: Weak<ReqZone>,
    conn: Weak<ConnZone>,
}

fn registry() -> &'static Mutex<HashMap<(Kind, String), Entry>> {
    static R: OnceLock<Mutex<HashMap<(Kind, String), Entry>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Checks that a zone kept by name across a reload keeps its key (nginx's rule).
fn check_key(kind: Kind, name: &str, key: &str, e: &Entry) -> Result<(), ZoneError> {
    if e.key == key {
        return Ok(());
    }
    Err(ZoneError::KeyChanged {
        kind: match kind {
            Kind::Req => "limit_req",
            Kind::Conn => "limit_conn",
        },
        name: name.to_string(),
        key: key.to_string(),
        old: e.key.clone(),
    })
}

/// The `limit_req_zone` of this name and size: the running one (its state kept, the rate
/// updated) or a new one.
pub fn req_zone(name: &str, size: usize, key: &str, rate: u64) -> Result<Arc<ReqZone>, ZoneError> {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = r.get(&(Kind::Req, name.to_string())) {
        if let Some(z) = e.req.upgrade().filter(|_| e.size == size) {
            check_key(Kind::Req, name, key, e)?;
            z.set_rate(rate);
            return Ok(z);
        }
    }
    let z = Arc::new(ReqZone::new(name, size, rate));
    r.insert(
        (Kind::Req, name.to_string()),
        Entry {
            size,
            key: key.to_string(),
            req: Arc::downgrade(&z),
            conn: Weak::new(),
        },
    );
    Ok(z)
}

/// The `limit_conn_zone` of this name and size: the running one (its counts kept) or a new one.
pub fn conn_zone(name: &str, size: usize, key: &str) -> Result<Arc<ConnZone>, ZoneError> {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = r.get(&(Kind::Conn, name.to_string())) {
        if let Some(z) = e.conn.upgrade().filter(|_| e.size == size) {
            check_key(Kind::Conn, name, key, e)?;
            return Ok(z);
        }
    }
    let z = Arc::new(ConnZone::new(name, size));
    r.insert(
        (Kind::Conn, name.to_string()),
        Entry {
            size,
            key: key.to_string(),
            req: Weak::new(),
            conn: Arc::downgrade(&z),
        },
    );
    Ok(z)
}

/// Milliseconds on a monotonic clock since the first call (the zones' time).
pub fn now_ms() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}
