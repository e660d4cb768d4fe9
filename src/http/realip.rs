//! The realip module's rules without I/O: which sources are trusted (`set_real_ip_from`),
//! which header names the client (`real_ip_header`), and how the client's address is found in
//! it (`real_ip_recursive`). `proxy::req` applies them once a head is read (nginx's post-read
//! phase, with the server's settings) and again once a location is chosen (the pre-access
//! phase, with the location's, when the first found nothing); the result replaces
//! `$remote_addr` and `$remote_port` for the request (`http::vars::RequestVars::real`), while
//! `$realip_remote_addr`/`$realip_remote_port` keep the connection's.
//!
//! nginx 1.22's rules (`ngx_http_realip_module.c`, `ngx_http_get_forwarded_addr`) kept here:
//! nothing changes unless the connection's address is trusted; the value's last address
//! (after `,`/space separators) is taken, `addr:port` and `[v6]:port` included; with
//! `real_ip_recursive on` trusted addresses are skipped from the right, across every
//! `X-Forwarded-For` line from the last, and the first untrusted one wins (or the leftmost
//! one when all are trusted). An unparsable value leaves the address as far as it got.
//! IPv4-mapped IPv6 addresses are matched as IPv4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One `set_real_ip_from` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trusted {
    /// An address and the number of leading bits that must match.
    Cidr(IpAddr, u8),
    /// `unix:`: connections over a unix socket (ringproxy listens on none).
    Unix,
}

impl Trusted {
    /// Parses `addr` or `addr/bits` (no host names). The flag: low bits were set past the
    /// mask (nginx warns "low address bits of ... are meaningless" and clears them).
    pub fn parse_cidr(text: &str) -> Option<(Trusted, bool)> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) => {
                b.parse::<u8>().ok().filter(|&n| n <= max)?
            }
            Some(_) => return None,
        };
        let masked = mask(ip, bits);
        Some((Trusted::Cidr(masked, bits), masked != ip))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match *self {
            Trusted::Cidr(net, bits) => net.is_ipv4() == ip.is_ipv4() && mask(ip, bits) == net,
            Trusted::Unix => false,
        }
    }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// Whether `ip` is in one of the trusted ranges (nginx's `ngx_cidr_match`).
pub fn is_trusted(from: &[Trusted], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    from.iter().any(|t| t.contains(ip))
}

/// `real_ip_header`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RealIpHeader {
    /// `X-Real-IP` (the default): the first such header.
    XRealIp,
    /// `X-Forwarded-For`: every such header, the last first.
    XForwardedFor,
    /// `proxy_protocol`: the PROXY header's source address and port.
    ProxyProtocol,
    /// Any other header (lowercase name): the first one.
    Other(String),
}

impl RealIpHeader {
    /// As nginx: the three names are compared case-sensitively, any other is a header name.
    pub fn parse(name: &str) -> RealIpHeader {
        match name {
            "X-Real-IP" => RealIpHeader::XRealIp,
            "X-Forwarded-For" => RealIpHeader::XForwardedFor,
            "proxy_protocol" => RealIpHeader::ProxyProtocol,
            other => RealIpHeader::Other(other.to_ascii_lowercase()),
        }
    }
}

/// An address found by the realip rules; port 0 when the value had none (`$remote_port` is
/// then empty, as in nginx).
pub type Found = (IpAddr, u16);

/// The client's address from `values` (the header lines in order; one for every header but
/// `X-Forwarded-For`) for a connection from `peer`, or `None` when the address stays.
pub fn forwarded(
    peer: IpAddr,
    values: &[&[u8]],
    from: &[Trusted],
    recursive: bool,
) -> Option<Found> {
    let mut addr = (peer, 0);
    let mut found = false;
    for value in values.iter().rev() {
        match from_value(&mut addr, value, from, recursive) {
            Scan::Declined if found => return Some(addr),
            Scan::Declined => return None,
            Scan::Done => return Some(addr),
            Scan::Ok if !recursive => return Some(addr),
            Scan::Ok => found = true,
        }
    }
    found.then_some(addr)
}

enum Scan {
    /// The address was not trusted or the value gave nothing.
    Declined,
    /// Addresses were taken, then one that did not parse stopped the scan.
    Done,
    /// Addresses were taken to the value's start (or once, not recursive).
    Ok,
}

fn from_value(addr: &mut Found, value: &[u8], from: &[Trusted], recursive: bool) -> Scan {
    let mut rest = value;
    let mut found = false;
    loop {
        if !is_trusted(from, addr.0) {
            return if found { Scan::Done } else { Scan::Declined };
        }
        let end = rest
            .iter()
            .rposition(|&c| c != b' ' && c != b',')
            .map_or(0, |i| i + 1);
        let trimmed = &rest[..end];
        let start = trimmed
            .iter()
            .rposition(|&c| c == b' ' || c == b',')
            .map_or(0, |i| i + 1);
        let Some(parsed) = parse_addr_port(&trimmed[start..]) else {
            return if found { Scan::Done } else { Scan::Declined };
        };
        *addr = parsed;
        found = true;
        if !recursive || start == 0 {
            return Scan::Ok;
        }
        rest = &trimmed[..start - 1];
    }
}

/// `addr`, `addr:port` or `[v6]:port` (nginx's `ngx_parse_addr_port`; the port 1 to 65535).
pub fn parse_addr_port(text: &[u8]) -> Option<Found> {
    let text = std::str::from_utf8(text).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, 0));
    }
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (h, p) = v6.split_once("]:")?;
        (h, p)
    } else {
        text.split_once(':')?
    };
    if port.is_empty() || !port.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let port = port.parse::<u16>().ok().filter(|&p| p > 0)?;
    Some((host.parse().ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(list: &[&str]) -> Vec<Trusted> {
        list.iter()
            .map(|s| Trusted::parse_cidr(s).unwrap().0)
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fwd(values: &[&str], recursive: bool) -> Option<String> {
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let from = from(&["127.0.0.1/32", "10.0.1.0/24"]);
        forwarded(ip("127.0.0.1"), &values, &from, recursive).map(|(a, p)| format!("{a}/{p}"))
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let (t, low) = Trusted::parse_cidr("10.0.1.7/24").unwrap();
        assert!(low);
        assert_eq!(t, Trusted::Cidr(ip("10.0.1.0"), 24));
        assert!(!Trusted::parse_cidr("10.0.1.0/24").unwrap().1);
        assert!(Trusted::parse_cidr("10.0.1.0/33").is_none());
        assert!(Trusted::parse_cidr("10.0.1.0/").is_none());
        assert!(Trusted::parse_cidr("example").is_none());
        let f = from(&["10.0.1.0/24", "2001:db8::/32", "0.0.0.0/0"]);
        assert!(is_trusted(&f[..1], ip("10.0.1.200")));
        assert!(!is_trusted(&f[..1], ip("10.0.2.1")));
        assert!(is_trusted(&f[..1], ip("::ffff:10.0.1.9")), "v4-mapped");
        assert!(is_trusted(&f[1..2], ip("2001:db8:ffff::1")));
        assert!(!is_trusted(&f[1..2], ip("2001:db9::1")));
        assert!(is_trusted(&f[2..], ip("192.0.2.1")));
        assert!(!is_trusted(&[Trusted::Unix], ip("127.0.0.1")));
    }

    #[test]
    fn last_address_without_recursion() {
        assert_eq!(fwd(&["10.0.0.1, 192.0.2.1"], false).unwrap(), "192.0.2.1/0");
        assert_eq!(
            fwd(&["192.0.2.1, 10.0.1.1, 127.0.0.1"], false).unwrap(),
            "127.0.0.1/0"
        );
        assert_eq!(
            fwd(&["192.0.2.1", "127.0.0.1, 10.0.1.1"], false).unwrap(),
            "10.0.1.1/0"
        );
        assert_eq!(fwd(&["192.0.2.1 ,, "], false).unwrap(), "192.0.2.1/0");
    }

    #[test]
    fn recursion_skips_trusted_addresses() {
        assert_eq!(
            fwd(&["10.0.1.1, 192.0.2.1, 127.0.0.1"], true).unwrap(),
            "192.0.2.1/0"
        );
        assert_eq!(
            fwd(&["10.0.1.1", "192.0.2.1", "127.0.0.1"], true).unwrap(),
            "192.0.2.1/0"
        );
        assert_eq!(fwd(&["10.0.1.1, 127.0.0.1"], true).unwrap(), "10.0.1.1/0");
        assert_eq!(fwd(&["garbage, 127.0.0.1"], true).unwrap(), "127.0.0.1/0");
    }

    #[test]
    fn ports_and_refusals() {
        assert_eq!(fwd(&["192.0.2.1:123"], false).unwrap(), "192.0.2.1/123");
        assert_eq!(fwd(&["[2001:db8::1]:80"], false).unwrap(), "2001:db8::1/80");
        assert_eq!(fwd(&["2001:db8::1"], false).unwrap(), "2001:db8::1/0");
        assert_eq!(fwd(&["192.0.2.1:0"], false), None);
        assert_eq!(fwd(&["[2001:db8::1]"], false), None);
        assert_eq!(fwd(&["garbage"], false), None);
        assert_eq!(fwd(&[], false), None);
        let untrusted = from(&["10.0.0.0/8"]);
        let v: &[&[u8]] = &[b"192.0.2.1"];
        assert_eq!(forwarded(ip("127.0.0.1"), v, &untrusted, true), None);
    }

    #[test]
    fn header_names() {
        assert_eq!(RealIpHeader::parse("X-Real-IP"), RealIpHeader::XRealIp);
        assert_eq!(
            RealIpHeader::parse("X-Forwarded-For"),
            RealIpHeader::XForwardedFor
        );
        assert_eq!(
            RealIpHeader::parse("x-forwarded-for"),
            RealIpHeader::Other("x-forwarded-for".into())
        );
        assert_eq!(
            RealIpHeader::parse("proxy_protocol"),
            RealIpHeader::ProxyProtocol
        );
    }
}
