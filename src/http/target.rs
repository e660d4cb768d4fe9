//! Request-target and Host validation, as nginx does it.
//!
//! Place in the data flow: the request parser ([`super::request`]) hands the raw target and the
//! Host header here; what comes back (path, query, host name) is what routing matches `server`
//! and `location` against. Everything borrows the client's buffer.
//!
//! nginx's rules, kept here: the target is origin-form (`/path?query`) or absolute-form
//! (`scheme://host[:port]/path`, the host then overrides the Host header); asterisk-form and
//! authority-form are rejected. A path whose `..` segments (also `%2e%2e`, and `%2f` as a slash)
//! climb above the root, or that decodes to NUL, is rejected as nginx's URI normaliser does. A
//! host name must not contain `..`, `/`, NUL, controls or spaces; a trailing dot is dropped.

use super::hex_digit as hex;

/// A request target split the way routing needs it. All slices borrow the request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The target exactly as sent (what `$request_uri` holds, and what nginx forwards upstream
    /// when `proxy_pass` has no URI part).
    pub raw: &'a str,
    /// The path, starting with `/` (for absolute-form without a path, `/`).
    pub path: &'a str,
    /// What follows the first `?`, without it (`$args`).
    pub query: Option<&'a str>,
    /// For absolute-form targets: the host (without port and trailing dot).
    pub host: Option<&'a str>,
}

/// Why a target was refused (nginx: "client sent invalid request", 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Neither `/...` nor `scheme://host...`.
    #[error("request target is neither origin-form nor absolute-form")]
    Form,
    /// Absolute-form with a malformed host or port.
    #[error("invalid host in absolute-form request target")]
    Host,
    /// `..` climbs above the root, or `%00` / a bad `%` escape.
    #[error("request path climbs above the root or has an invalid escape")]
    Path,
}

/// Splits and validates a request target.
pub fn parse_target(raw: &str) -> Result<Target<'_>, TargetError> {
    let bytes = raw.as_bytes();
    let (host, rest) = match bytes.first() {
        Some(b'/') => (None, raw),
        Some(c) if c.is_ascii_alphabetic() => {
            let (host, rest) = split_absolute(raw)?;
            (Some(host), rest)
        }
        _ => return Err(TargetError::Form),
    };
    let (path, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    check_path(path.as_bytes())?;
    Ok(Target {
        raw,
        path,
        query,
        host,
    })
}

/// `scheme://host[:port]` followed by `/...`, `?...` or nothing.
fn split_absolute(raw: &str) -> Result<(&str, &str), TargetError> {
    let b = raw.as_bytes();
    let scheme_end = b
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.'))
        .ok_or(TargetError::Form)?;
    if !b[scheme_end..].starts_with(b"://") {
        return Err(TargetError::Form);
    }
    let auth_start = scheme_end + 3;
    let auth_end = b[auth_start..]
        .iter()
        .position(|&c| c == b'/' || c == b'?')
        .map_or(b.len(), |p| auth_start + p);
    let auth = &raw[auth_start..auth_end];
    let ab = auth.as_bytes();
    let host_end = if ab.first() == Some(&b'[') {
        let close = ab
            .iter()
            .position(|&c| c == b']')
            .ok_or(TargetError::Host)?;
        let lit = &ab[1..close];
        if lit.is_empty()
            || !lit
                .iter()
                .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err(TargetError::Host);
        }
        close + 1
    } else {
        let end = ab.iter().position(|&c| c == b':').unwrap_or(ab.len());
        if !ab[..end]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        {
            return Err(TargetError::Host);
        }
        end
    };
    match &ab[host_end..] {
        [] => {}
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => {}
        _ => return Err(TargetError::Host),
    }
    let host = validate_host(&auth[..host_end]).ok_or(TargetError::Host)?;
    Ok((host, &raw[auth_end..]))
}

/// nginx's `ngx_http_validate_host`: returns the host name without port and trailing dot, or
/// `None` when nginx answers "client sent invalid host header" (400). The case is left as sent:
/// server_name matching compares case-insensitively.
pub fn validate_host(host: &str) -> Option<&str> {
    #[derive(PartialEq)]
    enum St {
        Usual,
        Literal,
        Rest,
    }
    let b = host.as_bytes();
    let mut state = St::Usual;
    let mut host_len = b.len();
    let mut dot_pos: Option<usize> = None;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'.' => {
                if i > 0 && dot_pos == Some(i - 1) {
                    return None;
                }
                dot_pos = Some(i);
            }
            b':' if state == St::Usual => {
                host_len = i;
                state = St::Rest;
            }
            b'[' if i == 0 => state = St::Literal,
            b']' if state == St::Literal => {
                host_len = i + 1;
                state = St::Rest;
            }
            b'/' | b'\\' | 0 => return None,
            c if c <= 0x20 || c == 0x7f => return None,
            _ => {}
        }
    }
    if host_len > 0 && dot_pos == Some(host_len - 1) {
        host_len -= 1;
    }
    if host_len == 0 {
        return None;
    }
    Some(&host[..host_len])
}

/// Walks the path segment by segment as nginx's normaliser would (after percent-decoding) and
/// fails when `..` would leave the root, or on `%00` / a truncated escape.
fn check_path(path: &[u8]) -> Result<(), TargetError> {
    let mut depth: usize = 0;
    // Decoded bytes of the current segment, only as much as needed to recognise `.` and `..`.
    let mut seg_len = 0usize;
    let mut dots = 0usize;
    let mut i = 0;
    let end_segment = |seg_len: usize, dots: usize, depth: &mut usize| -> bool {
        if seg_len == 2 && dots == 2 {
            if *depth == 0 {
                return false;
            }
            *depth -= 1;
        } else if seg_len > 0 && !(seg_len == 1 && dots == 1) {
            *depth += 1;
        }
        true
    };
    while i <= path.len() {
        let c = if i == path.len() {
            b'/'
        } else if path[i] == b'%' {
            let hi = path.get(i + 1).copied().and_then(hex);
            let lo = path.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    i += 2;
                    match h * 16 + l {
                        0 => return Err(TargetError::Path),
                        d => d,
                    }
                }
                _ => return Err(TargetError::Path),
            }
        } else {
            path[i]
        };
        i += 1;
        if c == b'/' {
            if !end_segment(seg_len, dots, &mut depth) {
                return Err(TargetError::Path);
            }
            seg_len = 0;
            dots = 0;
        } else {
            seg_len += 1;
            if c == b'.' {
                dots += 1;
            }
        }
    }
    Ok(())
}
