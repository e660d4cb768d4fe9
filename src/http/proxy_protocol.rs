//! The PROXY protocol header (v1 text, v2 binary) a `listen ... proxy_protocol` connection
//! starts with, parsed without I/O: `proxy::proxy_header` feeds the bytes read so far to
//! [`parse`] until it says the header is complete, then the connection goes on to TLS or the
//! first request head. The addresses end up in `$proxy_protocol_addr` and friends
//! (`http::vars::ConnFacts::proxy_protocol`) and, with `real_ip_header proxy_protocol`, in
//! `$remote_addr`.
//!
//! nginx 1.22's rules (`ngx_proxy_protocol.c`) kept here: a v1 line is `PROXY TCP4|TCP6 src
//! dst sport dport\r\n` of at most 107 bytes whose addresses are kept as written (only hex
//! digits, `.` and `:` allowed); `PROXY UNKNOWN...\r\n` is accepted with no addresses. A v2
//! header must say version 2; a command other than PROXY (LOCAL), a transport other than
//! STREAM or a family other than INET/INET6 is accepted and skipped with no addresses; TLVs
//! are skipped. Anything else is a broken header and the connection is closed.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The longest v1 line, CRLF included (the protocol's limit, nginx's
/// `NGX_PROXY_PROTOCOL_MAX_HEADER`).
pub const V1_MAX: usize = 107;

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a v2 header: signature, version/command, family/transport, length.
const V2_FIXED: usize = 16;

/// The addresses a PROXY header carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyAddrs {
    /// `$proxy_protocol_addr` (v1: as written).
    pub src_addr: String,
    /// `$proxy_protocol_port`.
    pub src_port: u16,
    /// `$proxy_protocol_server_addr`.
    pub dst_addr: String,
    /// `$proxy_protocol_server_port`.
    pub dst_port: u16,
}

/// What the bytes read so far hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// A correct beginning: read more.
    Incomplete,
    /// A whole header of `len` bytes; no addresses for `UNKNOWN`, LOCAL or an unsupported
    /// family.
    Done {
        len: usize,
        addrs: Option<ProxyAddrs>,
    },
}

/// Why a header is refused (the text is nginx's error-log message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broken {
    /// Not a PROXY header, or a malformed one; the bytes read.
    Header(Vec<u8>),
    /// A v2 header of another version.
    Version(u8),
    /// A v2 header longer than the buffer allows.
    TooLarge,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::Header(b) => write!(f, "broken header: \"{}\"", String::from_utf8_lossy(b)),
            Broken::Version(v) => write!(f, "unknown PROXY protocol version: {v}"),
            Broken::TooLarge => f.write_str("header is too large"),
        }
    }
}

/// Parses the start of a connection's bytes; `max`: the most bytes a header may take (the
/// client header buffer, as nginx reads the header into it).
pub fn parse(buf: &[u8], max: usize) -> Result<Status, Broken> {
    let sig = buf.len().min(V2_SIGNATURE.len());
    if !buf.is_empty() && buf[..sig] == V2_SIGNATURE[..sig] {
        return parse_v2(buf, max);
    }
    let prefix = buf.len().min(6);
    if buf[..prefix] != b"PROXY "[..prefix] {
        return Err(broken(buf));
    }
    let limit = V1_MAX.min(max);
    match buf.iter().position(|&b| b == b'\n') {
        Some(lf) if lf < limit => parse_v1(&buf[..=lf]).ok_or_else(|| broken(buf)),
        Some(_) => Err(broken(buf)),
        None if buf.len() >= limit => Err(broken(buf)),
        None => Ok(Status::Incomplete),
    }
}

fn broken(buf: &[u8]) -> Broken {
    Broken::Header(buf.to_vec())
}

/// One v1 line, LF included.
fn parse_v1(line: &[u8]) -> Option<Status> {
    let len = line.len();
    let body = line.strip_suffix(b"\r\n")?;
    let rest = body.strip_prefix(b"PROXY ")?;
    if rest.len() < 2 {
        return None;
    }
    if rest.starts_with(b"UNKNOWN") {
        return Some(Status::Done { len, addrs: None });
    }
    let rest = rest
        .strip_prefix(b"TCP4 ")
        .or_else(|| rest.strip_prefix(b"TCP6 "))?;
    let mut fields = rest.splitn(4, |&b| b == b' ');
    let (src, dst) = (fields.next()?, fields.next()?);
    let (sport, dport) = (fields.next()?, fields.next()?);
    let addr_ok = |a: &[u8]| {
        a.iter()
            .all(|&c| c == b':' || c == b'.' || c.is_ascii_hexdigit())
    };
    if !addr_ok(src) || !addr_ok(dst) {
        return None;
    }
    Some(Status::Done {
        len,
        addrs: Some(ProxyAddrs {
            src_addr: String::from_utf8_lossy(src).into_owned(),
            src_port: port(sport)?,
            dst_addr: String::from_utf8_lossy(dst).into_owned(),
            dst_port: port(dport)?,
        }),
    })
}

/// A decimal port, 0 to 65535 (nginx's `ngx_atoi`: digits only, none empty).
fn port(text: &[u8]) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn parse_v2(buf: &[u8], max: usize) -> Result<Status, Broken> {
    if buf.len() < V2_FIXED {
        return Ok(Status::Incomplete);
    }
    let version = buf[12] >> 4;
    if version != 2 {
        return Err(Broken::Version(version));
    }
    let len = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > max {
        return Err(Broken::TooLarge);
    }
    if buf.len() < len {
        return Ok(Status::Incomplete);
    }
    let (command, family, transport) = (buf[12] & 0x0f, buf[13] >> 4, buf[13] & 0x0f);
    let none = Ok(Status::Done { len, addrs: None });
    if command != 1 || transport != 1 {
        return none;
    }
    let body = &buf[V2_FIXED..len];
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let addrs = match family {
        1 if body.len() >= 12 => {
            let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string();
            ProxyAddrs {
                src_addr: ip(&body[0..4]),
                dst_addr: ip(&body[4..8]),
                src_port: be16(&body[8..10]),
                dst_port: be16(&body[10..12]),
            }
        }
        2 if body.len() >= 36 => {
            let ip = |b: &[u8]| {
                let octets: [u8; 16] = b.try_into().expect("16 bytes");
                Ipv6Addr::from(octets).to_string()
            };
            ProxyAddrs {
                src_addr: ip(&body[0..16]),
                dst_addr: ip(&body[16..32]),
                src_port: be16(&body[32..34]),
                dst_port: be16(&body[34..36]),
            }
        }
        1 | 2 => return Err(broken(&buf[..len])),
        _ => return none,
    };
    Ok(Status::Done {
        len,
        addrs: Some(addrs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(s: Result<Status, Broken>) -> (usize, Option<ProxyAddrs>) {
        match s {
            Ok(Status::Done { len, addrs }) => (len, addrs),
            other => panic!("not done: {other:?}"),
        }
    }

    fn addrs(src: &str, sp: u16, dst: &str, dp: u16) -> Option<ProxyAddrs> {
        Some(ProxyAddrs {
            src_addr: src.into(),
            src_port: sp,
            dst_addr: dst.into(),
            dst_port: dp,
        })
    }

    #[test]
    fn v1_tcp4_and_tcp6_keep_what_follows() {
        let h = b"PROXY TCP4 192.0.2.1 192.0.2.2 123 5678\r\nGET / HTTP/1.0\r\n";
        let (len, a) = done(parse(h, 1024));
        assert_eq!(&h[len..], b"GET / HTTP/1.0\r\n");
        assert_eq!(a, addrs("192.0.2.1", 123, "192.0.2.2", 5678));
        let h = b"PROXY TCP6 2001:Db8::1 2001:Db8::2 123 5678\r\n";
        assert_eq!(
            done(parse(h, 1024)),
            (h.len(), addrs("2001:Db8::1", 123, "2001:Db8::2", 5678))
        );
    }

    #[test]
    fn v1_unknown_has_no_addresses() {
        for h in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN 1 2 3 4 5 6\r\n"] {
            assert_eq!(done(parse(h, 1024)), (h.len(), None));
        }
    }

    #[test]
    fn v1_incomplete_until_the_line_ends() {
        let h = b"PROXY TCP4 192.0.2.1 192.0.2.2 123 5678\r\n";
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut], 1024), Ok(Status::Incomplete), "{cut}");
        }
    }

    #[test]
    fn v1_malformed_is_broken() {
        for h in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 65536\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 -2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n",
            b"PROXY TCP4 1.2.3.x 1.2.3.5 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n",
            b"PROXY \r\n",
            b"proxy TCP4 1.2.3.4 1.2.3.5 1 2\r\n",
        ] {
            assert!(
                matches!(parse(h, 1024), Err(Broken::Header(_))),
                "{}",
                String::from_utf8_lossy(h)
            );
        }
        let e = parse(b"GET /", 1024).unwrap_err();
        assert_eq!(e.to_string(), "broken header: \"GET /\"");
    }

    #[test]
    fn v1_longer_than_107_bytes_is_broken() {
        let mut h = b"PROXY UNKNOWN ".to_vec();
        h.resize(V1_MAX - 2, b'1');
        h.extend_from_slice(b"\r\n");
        assert_eq!(done(parse(&h, 1024)), (V1_MAX, None));
        h.insert(20, b'1');
        assert!(parse(&h, 1024).is_err());
        assert!(parse(&h[..V1_MAX], 1024).is_err(), "no LF in 107 bytes");
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v2_inet_with_tlvs() {
        let mut body = vec![192, 0, 2, 1, 192, 0, 2, 2, 0, 123, 0x16, 0x2e];
        body.extend_from_slice(&[0x02, 0x00, 0x03, b'a', b'b', b'c']);
        let mut h = v2(1, 0x11, &body);
        h.extend_from_slice(b"GET");
        let (len, a) = done(parse(&h, 1024));
        assert_eq!(&h[len..], b"GET");
        assert_eq!(a, addrs("192.0.2.1", 123, "192.0.2.2", 5678));
    }

    #[test]
    fn v2_inet6() {
        let mut body = vec![0x20, 0x01, 0x0d, 0xb8];
        body.extend_from_slice(&[0; 11]);
        body.push(1);
        body.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        body.extend_from_slice(&[0; 11]);
        body.push(2);
        body.extend_from_slice(&[0, 123, 0x16, 0x2e]);
        let h = v2(1, 0x21, &body);
        assert_eq!(
            done(parse(&h, 1024)),
            (h.len(), addrs("2001:db8::1", 123, "2001:db8::2", 5678))
        );
    }

    #[test]
    fn v2_local_unspec_and_udp_are_skipped() {
        let inet = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
        for h in [v2(0, 0x11, &inet), v2(1, 0x00, b"xx"), v2(1, 0x12, &inet)] {
            assert_eq!(done(parse(&h, 1024)), (h.len(), None));
        }
    }

    #[test]
    fn v2_truncated_is_incomplete_and_short_addresses_broken() {
        let h = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut], 1024), Ok(Status::Incomplete), "{cut}");
        }
        let h = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(matches!(parse(&h, 1024), Err(Broken::Header(_))));
    }

    #[test]
    fn v2_oversized_and_other_versions_are_refused() {
        let h = v2(1, 0x11, &[0; 200]);
        assert_eq!(parse(&h, 108), Err(Broken::TooLarge));
        assert_eq!(Broken::TooLarge.to_string(), "header is too large");
        let mut h = v2(1, 0x11, &[0; 12]);
        h[12] = 0x11;
        assert_eq!(parse(&h, 1024), Err(Broken::Version(1)));
    }
}
