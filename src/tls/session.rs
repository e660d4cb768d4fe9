//! Session resumption with nginx's limits: `ssl_session_cache` (a per-shard memory cache of
//! sessions) and `ssl_session_tickets` (rustls' rotating ticket keys, per shard), both honouring
//! `ssl_session_timeout`. rustls keeps neither a cache entry's nor a ticket's age, so each
//! stored value and each ticket's plaintext carries the second it was made, and a value older
//! than the timeout is not resumed.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn stamp(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&now_secs().to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn unstamp(mut value: Vec<u8>, timeout: Duration) -> Option<Vec<u8>> {
    let made = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    if now_secs().saturating_sub(made) > timeout.as_secs() {
        return None;
    }
    value.drain(..8);
    Some(value)
}

/// A memory session cache whose entries expire after `ssl_session_timeout`.
pub struct Cache {
    inner: Arc<ServerSessionMemoryCache>,
    timeout: Duration,
}

impl Cache {
    /// A cache of at most `entries` sessions.
    pub fn new(entries: usize, timeout: Duration) -> Arc<Cache> {
        Arc::new(Cache {
            inner: ServerSessionMemoryCache::new(entries.max(1)),
            timeout,
        })
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl StoresServerSessions for Cache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(key, stamp(&value))
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        unstamp(self.inner.get(key)?, self.timeout)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        unstamp(self.inner.take(key)?, self.timeout)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// rustls' ticketer, with tickets that expire after `ssl_session_timeout`.
pub struct Tickets {
    inner: Arc<dyn ProducesTickets>,
    timeout: Duration,
}

impl Tickets {
    /// A new ticketer (its own keys: resumption by ticket works within one shard).
    pub fn new(timeout: Duration) -> Result<Arc<Tickets>, rustls::Error> {
        Ok(Arc::new(Tickets {
            inner: rustls::crypto::aws_lc_rs::Ticketer::new()?,
            timeout,
        }))
    }
}

impl fmt::Debug for Tickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tickets")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.timeout.as_secs().min(u32::MAX as u64) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(&stamp(plain))
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        unstamp(self.inner.decrypt(cipher)?, self.timeout)
    }
}

/// Sessions `ssl_session_cache` allows to store (`None`: no cache). nginx's sizes are bytes
/// of shared memory, about 4000 sessions a megabyte; `builtin` counts sessions (20480 by
/// default). Several values (`builtin:1000 shared:SSL:1m`) add up, each shard holding that
/// many.
pub fn cache_entries(values: &[String]) -> Option<usize> {
    let mut total = 0usize;
    for v in values {
        match v.as_str() {
            "off" | "none" => {}
            "builtin" => total += 20480,
            v => {
                if let Some(n) = v.strip_prefix("builtin:") {
                    total += n.parse::<usize>().unwrap_or(20480);
                } else if let Some(rest) = v.strip_prefix("shared:") {
                    let size = rest.rsplit(':').next().unwrap_or("");
                    total += crate::config::values::parse_size(size)
                        .map_or(4000, |b| (b as usize).saturating_mul(4000) / (1024 * 1024));
                }
            }
        }
    }
    (total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_value_is_not_resumed() {
        let v = stamp(b"session");
        assert_eq!(
            unstamp(v.clone(), Duration::from_secs(300)).unwrap(),
            b"session"
        );
        let mut old = v;
        old[..8].copy_from_slice(&(now_secs() - 301).to_be_bytes());
        assert!(unstamp(old, Duration::from_secs(300)).is_none());
    }

    #[test]
    fn cache_sizes_follow_nginx() {
        assert_eq!(cache_entries(&["none".into()]), None);
        assert_eq!(cache_entries(&["off".into()]), None);
        assert_eq!(cache_entries(&["builtin".into()]), Some(20480));
        assert_eq!(cache_entries(&["shared:SSL:10m".into()]), Some(40000));
        assert_eq!(
            cache_entries(&["builtin:100".into(), "shared:SSL:1m".into()]),
            Some(4100)
        );
    }
}
