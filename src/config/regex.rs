//! Regular expressions as nginx has them: PCRE2, the library nginx 1.22 links, so named
//! captures (`(?<name>...)`, `(?P<name>...)`, `(?'name'...)`), `\Q...\E`, look-around,
//! back-references, possessive quantifiers and the rest mean what they mean in nginx.
//!
//! Compiled as `ngx_regex_compile` does: no `PCRE2_UTF` (nginx passes none, so `.` and `\d`
//! match bytes and a capture may end inside a multi-byte character), `~*` as `PCRE2_CASELESS`,
//! JIT on (nginx's `pcre_jit on`; a pattern the JIT refuses is interpreted, as nginx does).
//! A bad pattern is refused with nginx's text (`pcre2_compile() failed: ... in "..." at "..."`).
//!
//! This module is the only one that sees the `pcre2` crate: the rest of the proxy uses
//! [`Regex`] and the offsets of a [`Match`]. A search without groups takes its match data from
//! the crate's per-thread pool (no allocation once warm); a search for groups allocates one
//! match block, as the capture slots of the previous engine did.

use std::fmt;

use pcre2::bytes::{CaptureLocations, RegexBuilder};

/// A compiled regular expression that remembers its source (for dumps, logs and equality).
#[derive(Clone)]
pub struct Regex {
    /// As written, without the `~`/`~*`.
    pub source: String,
    /// `~*` (and every `server_name` regex, which nginx compiles caselessly).
    pub caseless: bool,
    inner: pcre2::bytes::Regex,
    /// Groups counting the whole match (`$0`).
    groups: usize,
    /// Named groups with their numbers, in pattern order.
    names: Vec<(usize, String)>,
}

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.source == other.source && self.caseless == other.caseless
    }
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Regex")
            .field("source", &self.source)
            .field("caseless", &self.caseless)
            .finish()
    }
}

/// The offsets of one match: `$0` and, when the regex has groups, each group.
#[derive(Debug)]
pub struct Match {
    whole: (usize, usize),
    groups: Option<CaptureLocations>,
}

impl Match {
    /// Byte range of `$i` (0 is the whole match); `None` for a group that did not take part
    /// or does not exist.
    pub fn get(&self, i: usize) -> Option<(usize, usize)> {
        match (&self.groups, i) {
            (_, 0) => Some(self.whole),
            (Some(g), i) => g.get(i),
            (None, _) => None,
        }
    }
}

impl Regex {
    /// Compiles `source`; the error is nginx's message for the pattern.
    pub fn new(source: &str, caseless: bool) -> Result<Regex, String> {
        let inner = RegexBuilder::new()
            .caseless(caseless)
            .utf(false)
            .jit_if_available(true)
            .build(source)
            .map_err(|e| compile_error(source, &e))?;
        let names = inner
            .capture_names()
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n.clone())))
            .collect();
        Ok(Regex {
            source: source.to_string(),
            caseless,
            groups: inner.captures_len(),
            inner,
            names,
        })
    }

    /// The same pattern compiled caselessly (`server_name` regexes).
    pub fn to_caseless(&self) -> Regex {
        if self.caseless {
            return self.clone();
        }
        // It compiled once; the caseless flag cannot make a valid pattern invalid.
        Regex::new(&self.source, true).unwrap_or_else(|_| self.clone())
    }

    /// Whether `subject` matches. A matching error (PCRE2's match or JIT stack limits) counts
    /// as no match.
    pub fn is_match(&self, subject: &[u8]) -> bool {
        self.inner.is_match(subject).unwrap_or(false)
    }

    /// Runs the regex on `subject`: the offsets of the match, or `None`.
    pub fn exec(&self, subject: &[u8]) -> Option<Match> {
        if self.groups <= 1 {
            let m = self.inner.find(subject).ok()??;
            return Some(Match {
                whole: (m.start(), m.end()),
                groups: None,
            });
        }
        let mut locs = self.inner.capture_locations();
        let m = self.inner.captures_read(&mut locs, subject).ok()??;
        Some(Match {
            whole: (m.start(), m.end()),
            groups: Some(locs),
        })
    }

    /// Number of groups, counting the whole match.
    pub fn captures_len(&self) -> usize {
        self.groups
    }

    /// The named groups with their numbers, in pattern order.
    pub fn names(&self) -> impl Iterator<Item = (usize, &str)> {
        self.names.iter().map(|(i, n)| (*i, n.as_str()))
    }

    /// The number of the group called `name`.
    pub fn group_of(&self, name: &str) -> Option<usize> {
        self.names().find(|(_, n)| *n == name).map(|(i, _)| i)
    }
}

/// nginx's text for a pattern PCRE2 refuses: the rest of the pattern from the error's offset
/// follows unless the offset is the end.
fn compile_error(source: &str, e: &pcre2::Error) -> String {
    let text = e.to_string();
    // The crate prefixes PCRE2's own message ("PCRE2: error compiling pattern at offset N: ").
    let message = match e.offset() {
        Some(off) => {
            text.strip_prefix(&format!("PCRE2: error compiling pattern at offset {off}: "))
        }
        None => text.strip_prefix("PCRE2: error compiling pattern: "),
    }
    .unwrap_or(&text);
    match e.offset() {
        Some(off) if off < source.len() => {
            let rest = String::from_utf8_lossy(&source.as_bytes()[off..]);
            format!("pcre2_compile() failed: {message} in \"{source}\" at \"{rest}\"")
        }
        _ => format!("pcre2_compile() failed: {message} in \"{source}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_nginx_prints_them() {
        // nginx 1.22.1 with libpcre2 10.42 prints these for `location ~ ...`.
        assert_eq!(
            Regex::new("(abc", false).unwrap_err(),
            "pcre2_compile() failed: missing closing parenthesis in \"(abc\""
        );
        assert_eq!(
            Regex::new("a**b", false).unwrap_err(),
            "pcre2_compile() failed: quantifier does not follow a repeatable item in \"a**b\" at \"*b\""
        );
    }

    #[test]
    fn the_bundled_pcre2_has_its_jit() {
        // A build without it would interpret every pattern: correct, but not what nginx runs.
        assert!(pcre2::is_jit_available());
    }

    #[test]
    fn no_utf_mode_so_dot_is_one_byte() {
        let re = Regex::new("^/(.)x$", false).unwrap();
        assert!(re.exec("/éx".as_bytes()).is_none());
        let re = Regex::new("^/(..)x$", false).unwrap();
        assert_eq!(re.exec("/éx".as_bytes()).unwrap().get(1), Some((1, 3)));
    }

    #[test]
    fn groups_names_and_unset_groups() {
        let re = Regex::new(r"^/(?<a>\d+)(?:/(x))?(?P<b>/y)?$", false).unwrap();
        assert_eq!(re.captures_len(), 4);
        assert_eq!(re.names().collect::<Vec<_>>(), [(1, "a"), (3, "b")]);
        let m = re.exec(b"/12").unwrap();
        assert_eq!(
            (m.get(0), m.get(1), m.get(2), m.get(3)),
            (Some((0, 3)), Some((1, 3)), None, None)
        );
        assert_eq!(m.get(9), None);
        assert_eq!(re.group_of("b"), Some(3));
    }
}
