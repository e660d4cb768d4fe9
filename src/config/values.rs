//! Parsers for nginx's argument syntaxes: sizes (`8k`, `1m`), times (`75s`, `1h30m`, `300`),
//! flags, `listen` addresses and parameters, and `server_name` forms.
//!
//! They take the argument text and return a value or nginx's error text (without location: the
//! caller knows the directive and adds it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// nginx's `ngx_parse_size`: a number with an optional `k`/`K` or `m`/`M` (and `g`/`G` for
/// offsets) suffix.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1024),
        b'm' | b'M' => (&s[..s.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// nginx's `ngx_parse_time`: a sequence of number+unit (`ms`, `s`, `m`, `h`, `d`, `w`, `M`,
/// `y`); a bare number is seconds. Units must go from larger to smaller, each at most once.
pub fn parse_time(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let bytes = s.as_bytes();
    let mut total_ms: u64 = 0;
    let mut i = 0;
    let mut last_rank = usize::MAX;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: u64 = s[start..i].parse().ok()?;
        // Units with their rank (larger first) and milliseconds.
        let (rank, ms) = if i == bytes.len() {
            (0, 1000)
        } else if s[i..].starts_with("ms") {
            i += 2;
            (1, 1)
        } else {
            let unit = bytes[i];
            i += 1;
            match unit {
                b'y' => (8, 365 * 24 * 3600 * 1000),
                b'M' => (7, 30 * 24 * 3600 * 1000),
                b'w' => (6, 7 * 24 * 3600 * 1000),
                b'd' => (5, 24 * 3600 * 1000),
                b'h' => (4, 3600 * 1000),
                b'm' => (3, 60 * 1000),
                b's' => (2, 1000),
                _ => return None,
            }
        };
        if rank >= last_rank && rank != 0 {
            return None;
        }
        if rank == 0 && last_rank != usize::MAX {
            // A bare number after units ("1h30") is seconds in nginx only when it ends the value.
            if last_rank <= 2 {
                return None;
            }
        }
        last_rank = rank;
        total_ms = total_ms.checked_add(n.checked_mul(ms)?)?;
    }
    Some(Duration::from_millis(total_ms))
}

/// An `on`/`off` flag, as nginx checks it (case-insensitive).
pub fn parse_flag(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("on") {
        Some(true)
    } else if s.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

/// A positive integer as `ngx_atoi` reads it (digits only).
pub fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An address as written in `listen`, `proxy_pass` or an upstream `server`: host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host text as written (`127.0.0.1`, `::1` without brackets, `*`, or a name).
    pub host: String,
    /// Port, if written.
    pub port: Option<u16>,
}

/// Splits `host:port`, `[v6]:port`, `host`, or (when `port_only_ok`) a bare `port`. Returns the
/// nginx error text on failure.
pub fn parse_host_port(s: &str, port_only_ok: bool) -> Result<HostPort, String> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or("invalid host")?;
        let host = &rest[..end];
        host.parse::<Ipv6Addr>()
            .map_err(|_| "invalid IPv6 address")?;
        let after = &rest[end + 1..];
        let port = if after.is_empty() {
            None
        } else {
            let p = after.strip_prefix(':').ok_or("invalid host")?;
            Some(parse_port(p).ok_or("invalid port")?)
        };
        return Ok(HostPort {
            host: host.to_string(),
            port,
        });
    }
    if port_only_ok && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(HostPort {
            host: "*".into(),
            port: Some(parse_port(s).ok_or("invalid port")?),
        });
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            if host.is_empty() {
                return Err("no host".into());
            }
            Ok(HostPort {
                host: host.to_string(),
                port: Some(parse_port(port).ok_or("invalid port")?),
            })
        }
        None => {
            if s.is_empty() {
                return Err("no host".into());
            }
            Ok(HostPort {
                host: s.to_string(),
                port: None,
            })
        }
    }
}

fn parse_port(s: &str) -> Option<u16> {
    let n = parse_number(s)?;
    if n == 0 || n > 65535 {
        return None;
    }
    Some(n as u16)
}

/// The peer of `unix:PATH` (the text after `unix:`), with nginx's errors for an empty path and
/// one too long for `sun_path` (room for its terminating NUL included).
pub fn unix_peer(path: &str) -> Result<crate::upstream::peer::PeerAddr, &'static str> {
    if path.is_empty() {
        return Err("no path in the unix domain socket");
    }
    // sizeof(sockaddr_un.sun_path) on Linux.
    if path.len() + 1 > 108 {
        return Err("too long path in the unix domain socket");
    }
    let path: std::sync::Arc<std::path::Path> = std::path::Path::new(path).into();
    Ok(crate::upstream::peer::PeerAddr::Unix(path))
}

/// Resolves a host and port as nginx does at configuration time (`*` is the wildcard address).
pub fn resolve(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    if host == "*" {
        return Some(vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        )]);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    if addrs.is_empty() {
        None
    } else {
        Some(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8k"), Some(8192));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1x"), None);
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999999999999k"), None);
    }

    #[test]
    fn times() {
        let s = Duration::from_secs;
        assert_eq!(parse_time("75s"), Some(s(75)));
        assert_eq!(parse_time("300"), Some(s(300)));
        assert_eq!(parse_time("1h30m"), Some(s(5400)));
        assert_eq!(parse_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_time("1d"), Some(s(86400)));
        assert_eq!(parse_time("30m1h"), None);
        assert_eq!(parse_time("1x"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_time("s"), None);
    }

    #[test]
    fn host_ports() {
        let hp = |h: &str, p: Option<u16>| HostPort {
            host: h.into(),
            port: p,
        };
        assert_eq!(parse_host_port("8080", true), Ok(hp("*", Some(8080))));
        assert_eq!(
            parse_host_port("127.0.0.1:8080", true),
            Ok(hp("127.0.0.1", Some(8080)))
        );
        assert_eq!(
            parse_host_port("[::1]:8080", true),
            Ok(hp("::1", Some(8080)))
        );
        assert_eq!(parse_host_port("*:80", true), Ok(hp("*", Some(80))));
        assert_eq!(parse_host_port("backend", false), Ok(hp("backend", None)));
        assert!(parse_host_port("a:99999", true).is_err());
        assert!(parse_host_port("[zz]:1", true).is_err());
    }
}
