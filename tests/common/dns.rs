//! A tiny DNS server for the tests, on 127.0.0.1:0 (UDP): A queries for the names it was given
//! are answered with their current addresses and TTL, which a test may change at any time;
//! AAAA queries for them get an empty answer; other names NXDOMAIN; with `silent`, nothing is
//! answered at all. Answers are built by hand (RFC 1035 4.1); it counts the queries it got.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Zone = Arc<Mutex<HashMap<String, (Vec<Ipv4Addr>, u32)>>>;

pub struct Dns {
    pub addr: SocketAddr,
    zone: Zone,
    pub queries: Arc<AtomicUsize>,
    pub silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[allow(dead_code)]
impl Dns {
    pub fn start() -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let zone: Zone = Arc::default();
        let queries = Arc::new(AtomicUsize::new(0));
        let (silent, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (z, q, s, st) = (zone.clone(), queries.clone(), silent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !st.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                q.fetch_add(1, Ordering::SeqCst);
                if s.load(Ordering::SeqCst) {
                    continue;
                }
                if let Some(answer) = answer(&buf[..n], &z.lock().unwrap()) {
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        Dns {
            addr,
            zone,
            queries,
            silent,
            stop,
            thread: Some(thread),
        }
    }

    /// From now on `name` has these addresses, answered with this TTL.
    pub fn set(&self, name: &str, addrs: &[Ipv4Addr], ttl: u32) {
        self.zone
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), (addrs.to_vec(), ttl));
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.take().unwrap().join();
    }
}

/// The response to `query`, or `None` for what is not a one-question query.
fn answer(query: &[u8], zone: &HashMap<String, (Vec<Ipv4Addr>, u32)>) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let question = query.get(12..i + 4)?;
    let qtype = u16::from_be_bytes([query[i], query[i + 1]]);
    let found = zone.get(&labels.join("."));
    let records: Vec<Ipv4Addr> = match found {
        Some((addrs, _)) if qtype == 1 => addrs.clone(),
        _ => Vec::new(),
    };
    let ttl = found.map_or(0, |(_, t)| *t);
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    // QR, the query's RD; RA; NXDOMAIN for an unknown name.
    out.push(0x80 | (query[2] & 0x01));
    out.push(0x80 | if found.is_none() { 3 } else { 0 });
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for a in records {
        // A pointer to the question's name, type A, class IN, TTL, 4 bytes of address.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&a.octets());
    }
    Some(out)
}
