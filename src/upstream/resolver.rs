//! Name resolution with `resolver` at run time, as nginx's own resolver does it: A and AAAA
//! queries (as `ipv4=`/`ipv6=` allow) over UDP to the configured name server, answers kept for
//! their TTL or `valid=`, `resolver_timeout` bounding the wait.
//!
//! DNS messages are encoded and decoded with `hickory-proto` (the protocol crate, without
//! hickory-resolver's tokio runtime, which a monoio shard cannot drive); the socket is a monoio
//! UDP socket of the shard asking, so a lookup never blocks a shard and works on both io
//! drivers. Each shard keeps its own cache, as it keeps its own peer state.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::config::model::ResolverConf;

/// Why a name has no address, in the words nginx logs (`%V could not be resolved (%i: %s)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// NXDOMAIN, or an answer without addresses.
    NotFound,
    /// Any other failure code of the server, or a message that cannot be read.
    ServerFailure,
    /// No answer within `resolver_timeout`.
    TimedOut,
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LookupError::NotFound => "3: Host not found",
            LookupError::ServerFailure => "2: Server failure",
            LookupError::TimedOut => "110: Operation timed out",
        })
    }
}

/// A name asked of a list of servers.
type CacheKey = (Vec<SocketAddr>, String);

thread_local! {
    /// This shard's answers: addresses and when they expire.
    static CACHE: RefCell<HashMap<CacheKey, (Vec<IpAddr>, Instant)>> =
        RefCell::new(HashMap::new());
}

/// The addresses of `name` (not empty), from the cache or asked of the first server of `conf`.
pub async fn lookup(
    conf: &ResolverConf,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, LookupError> {
    let key = (conf.addrs.clone(), name.to_ascii_lowercase());
    let now = Instant::now();
    let cached = CACHE.with(|c| c.borrow().get(&key).cloned());
    if let Some((addrs, _)) = cached.filter(|(_, e)| *e > now) {
        return Ok(addrs);
    }
    let (addrs, ttl) = monoio::time::timeout(timeout, ask(conf, name))
        .await
        .map_err(|_| LookupError::TimedOut)??;
    let valid = conf.valid.unwrap_or(Duration::from_secs(u64::from(ttl)));
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.retain(|_, (_, e)| *e > now);
        c.insert(key, (addrs.clone(), now + valid));
    });
    Ok(addrs)
}

/// One round of queries: the addresses and the smallest TTL among them.
async fn ask(conf: &ResolverConf, name: &str) -> Result<(Vec<IpAddr>, u32), LookupError> {
    let server = *conf.addrs.first().ok_or(LookupError::ServerFailure)?;
    let fqdn = Name::from_utf8(format!("{}.", name.trim_end_matches('.')))
        .map_err(|_| LookupError::NotFound)?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = monoio::net::udp::UdpSocket::bind(bind).map_err(|_| LookupError::ServerFailure)?;
    socket
        .connect(server)
        .await
        .map_err(|_| LookupError::ServerFailure)?;
    let types: Vec<RecordType> = [(conf.ipv4, RecordType::A), (conf.ipv6, RecordType::AAAA)]
        .into_iter()
        .filter_map(|(on, t)| on.then_some(t))
        .collect();
    // Ids tell the answers apart and make a stray datagram unlikely to pass for one.
    let base = query_id();
    let mut pending = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let id = base.wrapping_add(i as u16);
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(fqdn.clone(), *t));
        let bytes = m.to_vec().map_err(|_| LookupError::ServerFailure)?;
        let (sent, _) = socket.send(bytes).await;
        sent.map_err(|_| LookupError::ServerFailure)?;
        pending.push(id);
    }
    let (mut v4, mut v6, mut ttl, mut failure) = (Vec::new(), Vec::new(), u32::MAX, None);
    while !pending.is_empty() {
        let (got, buf) = socket.recv(vec![0u8; 4096]).await;
        let Ok(n) = got else {
            return Err(LookupError::ServerFailure);
        };
        let Ok(answer) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let id = answer.metadata.id;
        if answer.metadata.message_type != MessageType::Response || !pending.contains(&id) {
            continue;
        }
        pending.retain(|p| *p != id);
        match answer.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => failure = failure.or(Some(LookupError::NotFound)),
            _ => failure = Some(LookupError::ServerFailure),
        }
        for r in &answer.answers {
            match &r.data {
                RData::A(a) => v4.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => v6.push(IpAddr::V6(a.0)),
                _ => continue,
            }
            ttl = ttl.min(r.ttl);
        }
    }
    // IPv4 first, whichever answer came first (nginx lists them so).
    let mut addrs = v4;
    addrs.append(&mut v6);
    if addrs.is_empty() {
        return Err(failure.unwrap_or(LookupError::NotFound));
    }
    Ok((addrs, ttl))
}

/// A query id that differs between lookups and shards.
fn query_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let thread = std::thread::current().id();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&(nanos, thread), &mut h);
    std::hash::Hasher::finish(&h) as u16
}
