//! The upstream keep-alive cache (`keepalive N` in an `upstream` block), sans-IO: which idle
//! connection a request may reuse, which one is evicted, when one has idled too long, and whether
//! an exchange left its connection reusable. The proxy keeps one [`IdleCache`] per upstream group
//! per shard (nginx keeps one per worker) and does the socket work around it
//! (`proxy::upstream_pool`).
//!
//! nginx 1.22 (`ngx_http_upstream_keepalive_module.c`) is the model: the balancer picks the peer
//! first, then the most recently used idle connection to that peer is taken; a finished
//! connection goes to the front of the cache and, when the cache holds `keepalive` connections
//! already, the least recently used one is closed. A connection is not cached once it has carried
//! `keepalive_requests` requests or lived longer than `keepalive_time`, and an idle one is closed
//! after `keepalive_timeout`. An entry is the socket and a few counters: no buffer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::peer::PeerId;
use crate::http::request::Version;
use crate::http::response::{ResponseBody, ResponseHead};

/// The limits of one upstream group's cache (`keepalive`, `keepalive_timeout`,
/// `keepalive_requests`, `keepalive_time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most idle connections kept (`keepalive N`).
    pub max_idle: usize,
    /// Longest idle time (`keepalive_timeout`, default 60s).
    pub timeout: Duration,
    /// Most requests one connection carries (`keepalive_requests`, default 1000).
    pub requests: u32,
    /// Longest life of one connection (`keepalive_time`, default 1h).
    pub time: Duration,
}

/// A connection to one peer, in use or idle, with what the cache needs to decide its reuse.
#[derive(Debug)]
pub struct Lease<S> {
    /// The connection.
    pub stream: S,
    /// The peer it is connected to.
    pub peer: PeerId,
    /// When it was connected (for `keepalive_time`).
    pub born: Instant,
    /// Requests sent on it so far, the current one included once [`Lease::start_request`] ran.
    pub requests: u32,
    /// Whether it came from the cache (a failure before the first response byte is then retried
    /// on another connection: the peer may have closed it just as the request went out).
    pub reused: bool,
}

impl<S> Lease<S> {
    /// A freshly connected stream.
    pub fn new(stream: S, peer: PeerId, now: Instant) -> Lease<S> {
        Lease {
            stream,
            peer,
            born: now,
            requests: 0,
            reused: false,
        }
    }

    /// Counts a request sent on this connection (nginx's `c->requests++`).
    pub fn start_request(&mut self) {
        self.requests = self.requests.saturating_add(1);
    }
}

struct Idle<S> {
    lease: Lease<S>,
    since: Instant,
}

/// One upstream group's idle connections, most recently used first.
pub struct IdleCache<S> {
    limits: Limits,
    idle: VecDeque<Idle<S>>,
}

impl<S> IdleCache<S> {
    /// An empty cache with these limits.
    pub fn new(limits: Limits) -> IdleCache<S> {
        IdleCache {
            limits,
            idle: VecDeque::with_capacity(limits.max_idle),
        }
    }

    /// The limits it was made with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Idle connections held.
    pub fn len(&self) -> usize {
        self.idle.len()
    }

    /// Whether no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }

    /// Takes the most recently used idle connection to `peer`. Connections to it that idled
    /// past `keepalive_timeout`, or that `alive` says the peer closed (or sent bytes nobody
    /// asked for), are dropped on the way.
    pub fn take(
        &mut self,
        peer: PeerId,
        now: Instant,
        mut alive: impl FnMut(&S) -> bool,
    ) -> Option<Lease<S>> {
        while let Some(i) = self.idle.iter().position(|e| e.lease.peer == peer) {
            let Some(e) = self.idle.remove(i) else {
                break;
            };
            let fresh = now.saturating_duration_since(e.since) < self.limits.timeout;
            if fresh && alive(&e.lease.stream) {
                let mut lease = e.lease;
                lease.reused = true;
                return Some(lease);
            }
        }
        None
    }

    /// Caches a connection whose exchange left it reusable, unless it carried
    /// `keepalive_requests` requests or lived past `keepalive_time` (then it is dropped, i.e.
    /// closed). A full cache closes its least recently used connection to make room.
    pub fn put(&mut self, lease: Lease<S>, now: Instant) -> bool {
        if self.limits.max_idle == 0
            || lease.requests >= self.limits.requests
            || now.saturating_duration_since(lease.born) > self.limits.time
        {
            return false;
        }
        if self.idle.len() >= self.limits.max_idle {
            self.idle.pop_back();
        }
        self.idle.push_front(Idle { lease, since: now });
        true
    }

    /// When the least recently used connection reaches `keepalive_timeout`.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.idle.back().map(|e| e.since + self.limits.timeout)
    }

    /// Closes every connection idle for `keepalive_timeout` or longer; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while self
            .idle
            .back()
            .is_some_and(|e| now.saturating_duration_since(e.since) >= self.limits.timeout)
        {
            self.idle.pop_back();
            n += 1;
        }
        n
    }

    /// Closes every idle connection (graceful stop).
    pub fn clear(&mut self) {
        self.idle.clear();
    }
}

/// Whether the upstream request head lets the connection live on: HTTP/1.1 and no
/// `Connection: close` (nginx needs `proxy_http_version 1.1` and `proxy_set_header Connection
/// ""` for keep-alive; its default request says `Connection: close`).
pub fn request_keeps_alive(head: &[u8]) -> bool {
    let mut lines = head.split(|&b| b == b'\n');
    let http11 = lines
        .next()
        .is_some_and(|l| l.trim_ascii_end().ends_with(b"HTTP/1.1"));
    http11 && !lines.any(says_close)
}

/// Whether a response head leaves the connection reusable once its body is read: HTTP/1.1, no
/// `Connection: close`, framed by length or chunks (or bodiless), and not a 101 (nginx's
/// `u->keepalive`).
pub fn response_keeps_alive(head: &ResponseHead<'_, '_>) -> bool {
    head.version == Version::Http11
        && !matches!(
            head.body,
            ResponseBody::UntilClose | ResponseBody::SwitchingProtocols
        )
        && !head
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("connection") && has_close_token(h.value))
}

fn says_close(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    line[..colon].eq_ignore_ascii_case(b"connection") && has_close_token(&line[colon + 1..])
}

fn has_close_token(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_idle: usize) -> Limits {
        Limits {
            max_idle,
            timeout: Duration::from_secs(60),
            requests: 1000,
            time: Duration::from_secs(3600),
        }
    }

    fn lease(id: u32, peer: usize, now: Instant) -> Lease<u32> {
        let mut l = Lease::new(id, PeerId(peer), now);
        l.start_request();
        l
    }

    #[test]
    fn takes_the_most_recent_connection_to_the_picked_peer() {
        let now = Instant::now();
        let mut c = IdleCache::new(limits(4));
        assert!(c.put(lease(1, 0, now), now));
        assert!(c.put(lease(2, 1, now), now));
        assert!(c.put(lease(3, 0, now), now));
        let got = c.take(PeerId(0), now, |_| true).unwrap();
        assert_eq!((got.stream, got.reused), (3, true));
        assert_eq!(c.take(PeerId(0), now, |_| true).unwrap().stream, 1);
        assert!(c.take(PeerId(0), now, |_| true).is_none());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used() {
        let now = Instant::now();
        let mut c = IdleCache::new(limits(2));
        for id in 1..=3 {
            assert!(c.put(lease(id, 0, now), now));
        }
        assert_eq!(c.len(), 2);
        assert_eq!(c.take(PeerId(0), now, |_| true).unwrap().stream, 3);
        assert_eq!(c.take(PeerId(0), now, |_| true).unwrap().stream, 2);
    }

    #[test]
    fn dead_and_timed_out_connections_are_dropped_on_take() {
        let now = Instant::now();
        let mut c = IdleCache::new(limits(4));
        c.put(lease(1, 0, now), now);
        c.put(lease(2, 0, now), now);
        // 2 is the most recent but dead: 1 is used instead, 2 is gone.
        assert_eq!(c.take(PeerId(0), now, |s| *s != 2).unwrap().stream, 1);
        assert!(c.is_empty());
        c.put(lease(3, 0, now), now);
        let later = now + Duration::from_secs(60);
        assert!(c.take(PeerId(0), later, |_| true).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn request_and_time_limits_refuse_caching() {
        let now = Instant::now();
        let mut c = IdleCache::new(Limits {
            requests: 2,
            time: Duration::from_secs(10),
            ..limits(4)
        });
        let mut l = lease(1, 0, now);
        assert!(c.put(l, now));
        l = c.take(PeerId(0), now, |_| true).unwrap();
        l.start_request();
        assert!(
            !c.put(l, now),
            "the second request reached keepalive_requests 2"
        );
        let old = lease(2, 0, now);
        assert!(!c.put(old, now + Duration::from_secs(11)));
        assert!(!IdleCache::new(limits(0)).put(lease(3, 0, now), now));
    }

    #[test]
    fn expiry_closes_the_oldest_first() {
        let now = Instant::now();
        let mut c = IdleCache::new(limits(4));
        c.put(lease(1, 0, now), now);
        c.put(
            lease(2, 0, now + Duration::from_secs(30)),
            now + Duration::from_secs(30),
        );
        assert_eq!(c.next_expiry(), Some(now + Duration::from_secs(60)));
        assert_eq!(c.expire(now + Duration::from_secs(59)), 0);
        assert_eq!(c.expire(now + Duration::from_secs(60)), 1);
        assert_eq!(c.next_expiry(), Some(now + Duration::from_secs(90)));
        assert_eq!(c.expire(now + Duration::from_secs(90)), 1);
        assert_eq!(c.next_expiry(), None);
    }

    #[test]
    fn request_heads_that_allow_reuse() {
        let ok = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n";
        assert!(request_keeps_alive(ok));
        assert!(!request_keeps_alive(b"GET / HTTP/1.0\r\nHost: b\r\n\r\n"));
        assert!(!request_keeps_alive(
            b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
        ));
        assert!(!request_keeps_alive(
            b"GET / HTTP/1.1\r\nHost: b\r\nconnection: Upgrade, Close\r\n\r\n"
        ));
        assert!(request_keeps_alive(
            b"GET / HTTP/1.1\r\nHost: b\r\nX-Note: Connection: close\r\n\r\n"
        ));
    }

    #[test]
    fn response_heads_that_allow_reuse() {
        use crate::http::request::Parsed;
        use crate::http::response::parse_response;
        let check = |raw: &[u8]| {
            let mut h = [httparse::EMPTY_HEADER; 16];
            match parse_response(raw, &mut h, 4096, false).unwrap() {
                Parsed::Complete(head, _) => response_keeps_alive(&head),
                Parsed::Partial => panic!("partial"),
            }
        };
        assert!(check(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"));
        assert!(check(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(check(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert!(!check(b"HTTP/1.1 200 OK\r\n\r\n"), "read until close");
        assert!(!check(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"));
        assert!(!check(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        ));
        assert!(!check(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        ));
    }
}
