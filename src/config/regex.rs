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
//!
//! A PCRE2 call costs about 100 ns even when it fails at the first byte, and a URI that falls
//! through a server's regex locations pays one per location. Most such patterns start with an
//! anchored literal (`^/app/`): a subject without that prefix is answered "no match" without
//! the call ([`anchored_prefix`]; exact, not a heuristic).

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
    /// Bytes every match starts the subject with (see [`anchored_prefix`]).
    prefix: Option<Box<[u8]>>,
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
            prefix: anchored_prefix(source).map(Vec::into_boxed_slice),
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
        self.may_match(subject) && self.inner.is_match(subject).unwrap_or(false)
    }

    /// False when `subject` lacks the pattern's anchored literal prefix.
    fn may_match(&self, subject: &[u8]) -> bool {
        let Some(p) = &self.prefix else {
            return true;
        };
        match subject.get(..p.len()) {
            Some(head) if self.caseless => head.eq_ignore_ascii_case(p),
            Some(head) => head == &**p,
            None => false,
        }
    }

    /// Runs the regex on `subject`: the offsets of the match, or `None`.
    pub fn exec(&self, subject: &[u8]) -> Option<Match> {
        if !self.may_match(subject) {
            return None;
        }
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

/// The literal bytes every match of `source` starts the subject with: what follows a leading
/// `^` up to the first metacharacter, escaped punctuation read as itself, a literal that a
/// quantifier follows left out. `None` for a pattern with an alternation anywhere (`^/a|b`
/// matches `b` anywhere) or without such a prefix. Caseless patterns compare it ASCII-caselessly,
/// as PCRE2 does without UTF mode.
fn anchored_prefix(source: &str) -> Option<Vec<u8>> {
    let rest = source.strip_prefix('^')?.as_bytes();
    if source.contains('|') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let (byte, next) = match rest[i] {
            b'\\' => match rest.get(i + 1) {
                Some(&c) if c.is_ascii_punctuation() => (c, i + 2),
                _ => break,
            },
            // Metacharacters, and what extended mode (`(?x)`) would read differently.
            b'.' | b'[' | b']' | b'(' | b')' | b'*' | b'+' | b'?' | b'{' | b'}' | b'^' | b'$'
            | b'#' | b' ' | b'\t' | b'\n' | b'\r' => break,
            c => (c, i + 1),
        };
        if matches!(rest.get(next), Some(b'*' | b'+' | b'?' | b'{')) {
            break;
        }
        out.push(byte);
        i = next;
    }
    (!out.is_empty()).then_some(out)
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
    fn the_anchored_prefix_is_exactly_what_a_match_must_start_with() {
        let p = |s: &str| anchored_prefix(s).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(p("^/app/(.*)$").as_deref(), Some("/app/"));
        assert_eq!(p(r"^/re\.php").as_deref(), Some("/re.php"));
        assert_eq!(p("^/ab?c").as_deref(), Some("/a"), "b is optional");
        assert_eq!(p("^/a{2}").as_deref(), Some("/"));
        assert_eq!(p("^/a|/b"), None, "an alternation");
        assert_eq!(p("/app/"), None, "not anchored");
        assert_eq!(p(r"^\Q/a\E"), None);
        assert_eq!(p("^(?i)/a"), None);
        // The filter never changes an answer: the same subjects through PCRE2 alone.
        let cases = [
            ("^/app/", false),
            ("^/APP/x", true),
            (r"^/re\.php$", false),
            ("^/ab?c", false),
            ("^/a|b", false),
            (r"^/caf\xc3", true),
        ];
        let subjects: [&[u8]; 9] = [
            b"/app/x",
            b"/APP/x",
            b"/app",
            b"/re.php",
            b"/rexphp",
            b"/ac",
            b"/abc",
            b"xb",
            b"/caf\xc3\xa9",
        ];
        for (source, caseless) in cases {
            let re = Regex::new(source, caseless).unwrap();
            for s in subjects {
                assert_eq!(
                    re.is_match(s),
                    re.inner.is_match(s).unwrap(),
                    "{source} on {:?}",
                    String::from_utf8_lossy(s)
                );
                assert_eq!(re.exec(s).is_some(), re.is_match(s));
            }
        }
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
