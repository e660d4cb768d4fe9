//! nginx's configuration tokenizer, sans-IO over a byte slice.
//!
//! Hand-written because no maintained crate implements nginx's grammar with positions. It follows
//! `ngx_conf_read_token` (nginx 1.22) rule for rule: words separated by whitespace, `;` ends a
//! statement, `{` opens a block, `}` closes one, `#` starts a comment only where a word could
//! start, `"..."` and `'...'` quote, a backslash escapes (`\"`, `\'`, `\\`, `\t`, `\r`, `\n`; any
//! other pair is kept as written), and `${name}` keeps its braces inside a word. It returns one
//! statement at a time (its words and what ended it), which is exactly what nginx's parser sees,
//! so the error messages and their line numbers match nginx's.

/// A word of a statement: its text after escapes, whether it was quoted, and its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The text with escapes resolved and quotes removed.
    pub text: String,
    /// Whether it was written in single or double quotes (`''` is an empty word).
    pub quoted: bool,
    /// 1-based line where the word starts.
    pub line: u32,
}

/// What ended a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `;`: a simple directive.
    Semicolon,
    /// `{`: a block directive; its body follows.
    BlockStart,
    /// `}`: the end of the enclosing block (the statement has no words).
    BlockEnd,
    /// End of input (the statement has no words).
    Eof,
}

/// A lexing error, in nginx's words, with the line where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    /// e.g. `unexpected "}"` or `unexpected end of file, expecting ";" or "}"`.
    pub message: String,
    /// 1-based line.
    pub line: u32,
}

/// A statement: the words before the terminator, the terminator, and the terminator's line
/// (nginx reports directive errors at the line where the directive ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Directive name and arguments, in order.
    pub words: Vec<Word>,
    /// What ended the statement.
    pub end: End,
    /// Line of the terminator.
    pub line: u32,
}

/// Tokenizer over one file's (or one `-g` string's) bytes.
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
}

impl<'a> Lexer<'a> {
    /// Starts at the beginning of `src`, line 1.
    pub fn new(src: &'a [u8]) -> Lexer<'a> {
        Lexer {
            src,
            pos: 0,
            line: 1,
        }
    }

    /// Current line (where the lexer stands).
    pub fn line(&self) -> u32 {
        self.line
    }

    fn err(&self, message: impl Into<String>) -> LexError {
        LexError {
            message: message.into(),
            line: self.line,
        }
    }

    /// Reads the next statement.
    pub fn next_statement(&mut self) -> Result<Statement, LexError> {
        let mut words: Vec<Word> = Vec::new();
        loop {
            // Between words: skip blanks, handle terminators and comments.
            let Some(&ch) = self.src.get(self.pos) else {
                if !words.is_empty() {
                    return Err(self.err("unexpected end of file, expecting \";\" or \"}\""));
                }
                return Ok(Statement {
                    words,
                    end: End::Eof,
                    line: self.line,
                });
            };
            match ch {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b';' | b'{' => {
                    self.pos += 1;
                    if words.is_empty() {
                        return Err(self.err(format!("unexpected \"{}\"", ch as char)));
                    }
                    let end = if ch == b'{' {
                        End::BlockStart
                    } else {
                        End::Semicolon
                    };
                    return Ok(Statement {
                        words,
                        end,
                        line: self.line,
                    });
                }
                b'}' => {
                    self.pos += 1;
                    if !words.is_empty() {
                        return Err(self.err("unexpected \"}\""));
                    }
                    return Ok(Statement {
                        words,
                        end: End::BlockEnd,
                        line: self.line,
                    });
                }
                b'#' => {
                    while let Some(&c) = self.src.get(self.pos) {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                b'"' | b'\'' => {
                    let word = self.quoted_word(ch)?;
                    words.push(word);
                    // nginx requires a separator right after a closing quote.
                    match self.src.get(self.pos) {
                        None => {}
                        Some(b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{') => {}
                        // `)` is allowed so that `if ($a = "b")` parses.
                        Some(b')') => {}
                        Some(&c) => {
                            return Err(self.err(format!("unexpected \"{}\"", c as char)));
                        }
                    }
                }
                _ => {
                    let word = self.bare_word();
                    words.push(word);
                }
            }
        }
    }

    fn quoted_word(&mut self, quote: u8) -> Result<Word, LexError> {
        let line = self.line;
        self.pos += 1;
        let start = self.pos;
        loop {
            let Some(&c) = self.src.get(self.pos) else {
                return Err(self.err("unexpected end of file, expecting \";\" or \"}\""));
            };
            match c {
                b'\\' => {
                    if self.src.get(self.pos + 1) == Some(&b'\n') {
                        self.line += 1;
                    }
                    self.pos += 2;
                }
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ if c == quote => {
                    let text = unescape(&self.src[start..self.pos]);
                    self.pos += 1;
                    return Ok(Word {
                        text,
                        quoted: true,
                        line,
                    });
                }
                _ => self.pos += 1,
            }
        }
    }

    fn bare_word(&mut self) -> Word {
        let line = self.line;
        let start = self.pos;
        let mut variable = false;
        while let Some(&c) = self.src.get(self.pos) {
            match c {
                b'{' if variable => {
                    variable = false;
                    self.pos += 1;
                    continue;
                }
                b'\\' => {
                    // The escaped byte never ends the word.
                    if self.src.get(self.pos + 1) == Some(&b'\n') {
                        self.line += 1;
                    }
                    self.pos = (self.pos + 2).min(self.src.len());
                    variable = false;
                    continue;
                }
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' => break,
                _ => {}
            }
            variable = c == b'$';
            self.pos += 1;
        }
        Word {
            text: unescape(&self.src[start..self.pos]),
            quoted: false,
            line,
        }
    }
}

/// Resolves nginx's escapes: `\"`, `\'`, `\\` lose the backslash; `\t`, `\r`, `\n` become the
/// control characters; any other backslash pair is kept as written (so `\d` reaches a regex).
fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            match raw[i + 1] {
                b'"' | b'\'' | b'\\' => {
                    out.push(raw[i + 1]);
                    i += 2;
                    continue;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                    continue;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                    continue;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<(Vec<String>, End)> {
        let mut lx = Lexer::new(src.as_bytes());
        let mut out = Vec::new();
        loop {
            let st = lx.next_statement().unwrap();
            let end = st.end;
            out.push((st.words.into_iter().map(|w| w.text).collect(), end));
            if end == End::Eof {
                return out;
            }
        }
    }

    #[test]
    fn simple_and_blocks() {
        let got = words("a b;\nhttp { c 'd e'; }\n");
        assert_eq!(got[0], (vec!["a".into(), "b".into()], End::Semicolon));
        assert_eq!(got[1], (vec!["http".into()], End::BlockStart));
        assert_eq!(got[2], (vec!["c".into(), "d e".into()], End::Semicolon));
        assert_eq!(got[3], (vec![], End::BlockEnd));
        assert_eq!(got[4], (vec![], End::Eof));
    }

    #[test]
    fn comments_only_at_word_start() {
        let got = words("a b#c; # comment ;\n d;");
        assert_eq!(got[0].0, vec!["a", "b#c"]);
        assert_eq!(got[1].0, vec!["d"]);
    }

    #[test]
    fn variables_keep_braces_and_escapes_resolve() {
        let got = words(r#"set ${a}b "x\"y\n" 'it\'s' \d;"#);
        assert_eq!(got[0].0, vec!["set", "${a}b", "x\"y\n", "it's", "\\d"]);
    }

    #[test]
    fn empty_quoted_word() {
        let mut lx = Lexer::new(b"'' close;");
        let st = lx.next_statement().unwrap();
        assert_eq!(st.words[0].text, "");
        assert!(st.words[0].quoted);
    }

    #[test]
    fn errors_in_nginx_words() {
        let e = Lexer::new(b"a \"b\"c;").next_statement().unwrap_err();
        assert_eq!(e.message, "unexpected \"c\"");
        let e = Lexer::new(b"\n;").next_statement().unwrap_err();
        assert_eq!((e.message.as_str(), e.line), ("unexpected \";\"", 2));
        let e = Lexer::new(b"a b }").next_statement().unwrap_err();
        assert_eq!(e.message, "unexpected \"}\"");
        let e = Lexer::new(b"a b").next_statement().unwrap_err();
        assert_eq!(
            e.message,
            "unexpected end of file, expecting \";\" or \"}\""
        );
        let e = Lexer::new(b"a 'b").next_statement().unwrap_err();
        assert_eq!(
            e.message,
            "unexpected end of file, expecting \";\" or \"}\""
        );
    }

    #[test]
    fn statement_line_is_the_terminator_line() {
        let mut lx = Lexer::new(b"proxy_set_header\n  Host\n  $host;");
        let st = lx.next_statement().unwrap();
        assert_eq!(st.line, 3);
        assert_eq!(st.words[0].line, 1);
    }

    #[test]
    fn trailing_backslash_does_not_panic() {
        let _ = Lexer::new(b"a \\").next_statement();
        let _ = Lexer::new(b"'\\").next_statement();
    }
}
