//! URI normalisation: the request path as nginx's `ngx_http_parse_complex_uri` turns it into
//! `$uri`, the string location matching runs on.
//!
//! Place in the data flow: the request head parser hands over the raw path (no query); this
//! returns the normalised `$uri`, while the raw target stays `$request_uri`. Rules, checked
//! against nginx 1.22 (`tests/data/nginx_routes.txt`): every `%XX` is decoded (a decoded `/`
//! separates segments and a decoded `.` forms dot segments, a decoded `?`, `#` or `%` is a literal
//! byte); a raw `#` ends the path; with `merge_slashes on` (the default) runs of slashes collapse;
//! `.` segments vanish and `..` removes the segment before it (an empty one too when slashes
//! are not merged); a `..` above the root, `%00` and a malformed escape are 400.
//!
//! The common case, an already clean path, is returned borrowed: nothing is allocated.

use crate::http::hex_digit as hex;
use std::borrow::Cow;

/// Why a path cannot be normalised (nginx answers 400 "client sent invalid request").
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// The path does not start with `/`.
    #[error("request path does not start with \"/\"")]
    NotAbsolute,
    /// A `..` segment climbs above the root.
    #[error("request path climbs above the root with \"..\"")]
    AboveRoot,
    /// `%00`, or a `%` not followed by two hexadecimal digits.
    #[error("request path has an invalid percent escape")]
    BadEscape,
}

/// Normalises `path` (the request path without its query) into `$uri`. Borrows when the path
/// is already clean (no escape, no `#`, no dot segment, no slash run when `merge_slashes`).
pub fn normalize(path: &str, merge_slashes: bool) -> Result<Cow<'_, str>, UriError> {
    if is_clean(path, merge_slashes) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    normalize_slow(path, merge_slashes, &mut out)?;
    Ok(Cow::Owned(out))
}

/// Like [`normalize`], writing into a buffer the caller reuses across requests; returns the
/// normalised `$uri`, borrowed from `path` when it was clean, from `buf` otherwise.
pub fn normalize_into<'a>(
    path: &'a str,
    merge_slashes: bool,
    buf: &'a mut String,
) -> Result<&'a str, UriError> {
    if is_clean(path, merge_slashes) {
        return Ok(path);
    }
    normalize_slow(path, merge_slashes, buf)?;
    Ok(buf.as_str())
}

/// Whether nginx would leave the path unchanged (one pass over the bytes).
fn is_clean(path: &str, merge_slashes: bool) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    // Length of the current segment, and how many of its bytes are dots.
    let (mut len, mut dots) = (0usize, 0usize);
    for &c in &b[1..] {
        match c {
            b'%' | b'#' => return false,
            b'/' => {
                if (len == 0 && merge_slashes) || (len == dots && (len == 1 || len == 2)) {
                    return false;
                }
                (len, dots) = (0, 0);
            }
            b'.' => (len, dots) = (len + 1, dots + 1),
            _ => len += 1,
        }
    }
    !(len == dots && (len == 1 || len == 2))
}

/// Ends the segment that starts at `start` in `out` (which ends with `/` before it).
fn end_segment(
    out: &mut Vec<u8>,
    start: usize,
    at_slash: bool,
    merge: bool,
) -> Result<(), UriError> {
    match &out[start..] {
        b"." => out.truncate(start),
        b".." => {
            out.truncate(start);
            if out.len() <= 1 {
                return Err(UriError::AboveRoot);
            }
            out.pop();
            let prev = out.iter().rposition(|&c| c == b'/').unwrap_or(0);
            out.truncate(prev + 1);
        }
        b"" => {
            if at_slash && !merge {
                out.push(b'/');
            }
        }
        _ => {
            if at_slash {
                out.push(b'/');
            }
        }
    }
    Ok(())
}

fn normalize_slow(path: &str, merge: bool, buf: &mut String) -> Result<(), UriError> {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(UriError::NotAbsolute);
    }
    let mut out = std::mem::take(buf).into_bytes();
    out.clear();
    out.push(b'/');
    let mut start = 1;
    let mut i = 1;
    let result = loop {
        if i >= b.len() || b[i] == b'#' {
            break end_segment(&mut out, start, false, merge);
        }
        let c = if b[i] == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex);
            let lo = b.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(h), Some(l)) if h | l != 0 => {
                    i += 3;
                    let d = h << 4 | l;
                    if d != b'/' {
                        out.push(d);
                        continue;
                    }
                    d
                }
                _ => break Err(UriError::BadEscape),
            }
        } else {
            i += 1;
            b[i - 1]
        };
        if c == b'/' {
            if let Err(e) = end_segment(&mut out, start, true, merge) {
                break Err(e);
            }
            start = out.len();
        } else {
            out.push(c);
        }
    };
    *buf = into_string(out);
    result
}

/// Decoded bytes that are not UTF-8 stay percent-encoded (`$uri` is a `str` here; nginx keeps
/// raw bytes). Valid bytes are taken as they are.
fn into_string(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let bytes = e.into_bytes();
            let mut s = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                s.push_str(chunk.valid());
                for b in chunk.invalid() {
                    s.push_str(&format!("%{b:02X}"));
                }
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, UriError> {
        normalize(p, true).map(Cow::into_owned)
    }

    fn off(p: &str) -> Result<String, UriError> {
        normalize(p, false).map(Cow::into_owned)
    }

    /// Every line was answered by nginx 1.22.1 with `return 200 "$uri"` (merge_slashes on, off).
    #[test]
    fn matches_nginx() {
        let table: &[(&str, Option<&str>, Option<&str>)] = &[
            ("/a//b", Some("/a/b"), Some("/a//b")),
            ("/a/./b", Some("/a/b"), Some("/a/b")),
            ("/a/../b", Some("/b"), Some("/b")),
            ("/..", None, None),
            ("/a/..", Some("/"), Some("/")),
            ("/a/.", Some("/a/"), Some("/a/")),
            ("/%2e%2e/x", None, None),
            ("/a/%2e%2e/b", Some("/b"), Some("/b")),
            ("/a%2Fb", Some("/a/b"), Some("/a/b")),
            ("/a%2F..%2Fb", Some("/b"), Some("/b")),
            ("/a%3Fb", Some("/a?b"), Some("/a?b")),
            ("/a%23b", Some("/a#b"), Some("/a#b")),
            ("/a%25b", Some("/a%b"), Some("/a%b")),
            ("/a%zzb", None, None),
            ("/a%2", None, None),
            ("/a%00b", None, None),
            ("/a/...", Some("/a/..."), Some("/a/...")),
            ("/a/..b", Some("/a/..b"), Some("/a/..b")),
            ("/.a", Some("/.a"), Some("/.a")),
            ("//..", None, Some("/")),
            ("/a//../b", Some("/b"), Some("/a/b")),
            ("/a/b/../../..", None, None),
            ("/a%20b", Some("/a b"), Some("/a b")),
            ("/A/B", Some("/A/B"), Some("/A/B")),
            ("/a/b/%2E%2E", Some("/a/"), Some("/a/")),
            ("/a+b", Some("/a+b"), Some("/a+b")),
            ("/a/.%2e/b", Some("/b"), Some("/b")),
            ("/a%2f%2fb", Some("/a/b"), Some("/a//b")),
            ("/a/./", Some("/a/"), Some("/a/")),
            ("/./", Some("/"), Some("/")),
            ("/a/b//", Some("/a/b/"), Some("/a/b//")),
            ("/a#frag", Some("/a"), Some("/a")),
        ];
        for (path, on, no) in table {
            assert_eq!(n(path).ok().as_deref(), *on, "merge on: {path}");
            assert_eq!(off(path).ok().as_deref(), *no, "merge off: {path}");
        }
    }

    #[test]
    fn clean_paths_borrow() {
        for p in ["/", "/a/b", "/a/b/", "/a.b/c..d/.e", "/ws/chat?x"] {
            assert!(matches!(normalize(p, true), Ok(Cow::Borrowed(_))), "{p}");
        }
        assert!(matches!(normalize("/a//b", false), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a//b", true), Ok(Cow::Owned(_))));
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(n("a/b"), Err(UriError::NotAbsolute));
        assert_eq!(n(""), Err(UriError::NotAbsolute));
        assert_eq!(n("/a/../.."), Err(UriError::AboveRoot));
        assert_eq!(n("/%0"), Err(UriError::BadEscape));
        assert_eq!(n("/%00"), Err(UriError::BadEscape));
    }

    #[test]
    fn non_utf8_bytes_stay_encoded() {
        assert_eq!(n("/caf%C3%A9").unwrap(), "/café");
        assert_eq!(n("/x%FF%2e").unwrap(), "/x%FF.");
    }

    /// The fast path agrees with the full normaliser on every short path over a small alphabet.
    #[test]
    fn clean_check_agrees_with_normaliser() {
        let alphabet = [b'/', b'.', b'a', b'%', b'2', b'e', b'f', b'#'];
        let mut paths = vec![b"/".to_vec()];
        for _ in 0..6 {
            let mut next = Vec::new();
            for p in &paths {
                for &c in &alphabet {
                    let mut q = p.clone();
                    q.push(c);
                    next.push(q);
                }
            }
            for p in &paths {
                let p = std::str::from_utf8(p).unwrap();
                for merge in [true, false] {
                    let mut slow = String::new();
                    let full = normalize_slow(p, merge, &mut slow).map(|()| slow);
                    if is_clean(p, merge) {
                        assert_eq!(full.as_deref(), Ok(p), "{p} merge={merge}");
                    }
                }
            }
            paths = next;
        }
    }

    #[test]
    fn buffer_is_reused() {
        let mut buf = String::new();
        assert_eq!(normalize_into("/a//b", true, &mut buf).unwrap(), "/a/b");
        assert_eq!(normalize_into("/c/../d", true, &mut buf).unwrap(), "/d");
        assert_eq!(normalize_into("/clean", true, &mut buf).unwrap(), "/clean");
        assert!(normalize_into("/..", true, &mut buf).is_err());
    }
}
