//! From source files to an AST of directives that keeps file and line.
//!
//! The parser reads the main file (and the `-g` command-line directives before it, as nginx
//! does), expands `include` in place (glob patterns resolved and sorted as glob(3) resolves them,
//! relative paths against the main file's directory), and records every file it read so that
//! `-T` can dump them. It knows nothing of what directives mean: that is `directives.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{ConfigError, Result, Span};
use super::lexer::{End, Lexer, Word};

/// How deep blocks and includes may nest before the input is refused (nginx has no limit, but
/// a proxy must not overflow its stack on a hostile or broken file).
const MAX_DEPTH: usize = 64;

/// One word of a directive: its text, whether it was quoted, and its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    /// Text after quotes and escapes are resolved.
    pub value: String,
    /// Written in quotes (so `''` is an empty argument, and the dump re-quotes it).
    pub quoted: bool,
    /// Where it was written.
    pub span: Span,
}

/// A directive: its name, arguments, optional block, and the place where it ends (where nginx
/// reports errors about it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// The name (first word).
    pub name: Arg,
    /// The remaining words.
    pub args: Vec<Arg>,
    /// `Some` for `name args { ... }`.
    pub block: Option<Vec<Directive>>,
    /// Where the directive ends (`;` or `{`).
    pub span: Span,
}

impl Directive {
    /// The directive's name.
    pub fn name(&self) -> &str {
        &self.name.value
    }

    /// The text of argument `i` (0 is the first after the name).
    pub fn arg(&self, i: usize) -> &str {
        &self.args[i].value
    }
}

/// A file the configuration was read from, for `-T`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Absolute path.
    pub path: Arc<str>,
    /// Its bytes as read.
    pub text: Vec<u8>,
}

/// The parsed configuration: top-level directives (`-g` ones first) and the files read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ast {
    /// Directives of the main context, includes expanded.
    pub directives: Vec<Directive>,
    /// Every file read, main file first, in the order they were read.
    pub files: Vec<SourceFile>,
}

/// Parses `path` (made absolute against the current directory) with the `-g` directives `params`.
pub fn parse_file(path: &Path, params: Option<&str>) -> Result<Ast> {
    let path = absolute(path);
    let conf_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut parser = Parser {
        conf_dir,
        files: Vec::new(),
    };
    let mut directives = Vec::new();
    if let Some(params) = params {
        directives = parser.parse_source(params.as_bytes(), None, 0)?;
    }
    let text = read(&path, None)?;
    let top = parser.add_file(&path, text);
    directives.extend(parser.parse_file_at(top, 0)?);
    Ok(Ast {
        directives,
        files: parser.files,
    })
}

/// Parses a configuration held in memory (for tests, benchmarks and fuzzing). `include` is
/// resolved against `conf_dir`.
pub fn parse_str(name: &str, text: &str, conf_dir: &Path) -> Result<Ast> {
    let mut parser = Parser {
        conf_dir: conf_dir.to_path_buf(),
        files: Vec::new(),
    };
    let top = parser.add_file(Path::new(name), text.as_bytes().to_vec());
    let directives = parser.parse_file_at(top, 0)?;
    Ok(Ast {
        directives,
        files: parser.files,
    })
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

fn read(path: &Path, at: Option<&Span>) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let msg = format!("open() \"{}\" failed ({})", path.display(), os_error(&e));
        match at {
            Some(span) => ConfigError::at(span, msg),
            None => ConfigError::global(msg),
        }
    })
}

/// nginx's form of an OS error: `2: No such file or directory`.
pub fn os_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    // std appends " (os error N)"; nginx writes "N: text".
    match (e.raw_os_error(), text.find(" (os error")) {
        (Some(code), Some(cut)) => format!("{code}: {}", &text[..cut]),
        _ => text,
    }
}

struct Parser {
    conf_dir: PathBuf,
    files: Vec<SourceFile>,
}

impl Parser {
    fn add_file(&mut self, path: &Path, text: Vec<u8>) -> usize {
        self.files.push(SourceFile {
            path: Arc::from(path.to_string_lossy().as_ref()),
            text,
        });
        self.files.len() - 1
    }

    fn parse_file_at(&mut self, index: usize, depth: usize) -> Result<Vec<Directive>> {
        let text = self.files[index].text.clone();
        let name = self.files[index].path.clone();
        self.parse_source(&text, Some(name), depth)
    }

    fn parse_source(
        &mut self,
        text: &[u8],
        file: Option<Arc<str>>,
        depth: usize,
    ) -> Result<Vec<Directive>> {
        let mut lexer = Lexer::new(text);
        let span = |line: u32| match &file {
            Some(f) => Span::new(f.clone(), line),
            None => Span::command_line(),
        };
        let directives = self.parse_block(&mut lexer, &span, depth, false)?;
        Ok(directives)
    }

    fn parse_block(
        &mut self,
        lexer: &mut Lexer<'_>,
        span: &dyn Fn(u32) -> Span,
        depth: usize,
        inside: bool,
    ) -> Result<Vec<Directive>> {
        let mut out = Vec::new();
        loop {
            let st = lexer
                .next_statement()
                .map_err(|e| ConfigError::at(&span(e.line), e.message))?;
            let at = span(st.line);
            match st.end {
                End::Eof => {
                    if inside {
                        return Err(ConfigError::at(
                            &at,
                            "unexpected end of file, expecting \"}\"",
                        ));
                    }
                    return Ok(out);
                }
                End::BlockEnd => {
                    if !inside {
                        return Err(ConfigError::at(&at, "unexpected \"}\""));
                    }
                    return Ok(out);
                }
                End::Semicolon | End::BlockStart => {}
            }
            let mut words = st.words.into_iter();
            let name = words.next().expect("lexer returns words before ; or {");
            let args: Vec<Arg> = words.map(|w| to_arg(w, span)).collect();
            let name = to_arg(name, span);
            if name.value == "include" && !name.quoted {
                if st.end == End::BlockStart {
                    return Err(ConfigError::at(
                        &at,
                        "directive \"include\" is not terminated by \";\"",
                    ));
                }
                if args.len() != 1 {
                    return Err(ConfigError::at(
                        &at,
                        "invalid number of arguments in \"include\" directive",
                    ));
                }
                if depth >= MAX_DEPTH {
                    return Err(ConfigError::at(&at, "include nesting is too deep"));
                }
                out.extend(self.include(&args[0].value, &at, depth + 1)?);
                continue;
            }
            let block = if st.end == End::BlockStart {
                if depth >= MAX_DEPTH {
                    return Err(ConfigError::at(&at, "blocks nest too deep"));
                }
                Some(self.parse_block(lexer, span, depth + 1, true)?)
            } else {
                None
            };
            out.push(Directive {
                name,
                args,
                block,
                span: at,
            });
        }
    }

    fn include(&mut self, pattern: &str, at: &Span, depth: usize) -> Result<Vec<Directive>> {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            self.conf_dir.join(pattern)
        };
        let full_str = full.to_string_lossy().into_owned();
        let paths: Vec<PathBuf> = if full_str.contains(['*', '?', '[']) {
            let options = glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: true,
            };
            let entries = glob::glob_with(&full_str, options).map_err(|e| {
                ConfigError::at(at, format!("glob() \"{full_str}\" failed ({})", e.msg))
            })?;
            let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).collect();
            paths.retain(|p| !p.is_dir());
            paths.sort();
            paths
        } else {
            vec![full]
        };
        let mut out = Vec::new();
        for path in paths {
            let text = read(&path, Some(at))?;
            let index = self.add_file(&path, text);
            out.extend(self.parse_file_at(index, depth)?);
        }
        Ok(out)
    }
}

fn to_arg(w: Word, span: &dyn Fn(u32) -> Span) -> Arg {
    Arg {
        value: w.text,
        quoted: w.quoted,
        span: span(w.line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_spans() {
        let ast = parse_str(
            "/x/a.conf",
            "events {}\nhttp {\n  server {\n listen 80;\n }\n}\n",
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(ast.directives.len(), 2);
        let http = &ast.directives[1];
        assert_eq!(http.name(), "http");
        let server = &http.block.as_ref().unwrap()[0];
        let listen = &server.block.as_ref().unwrap()[0];
        assert_eq!(listen.arg(0), "80");
        assert_eq!(listen.span.to_string(), "/x/a.conf:4");
    }

    #[test]
    fn unbalanced_blocks() {
        let e = parse_str("/a.conf", "http {\n", Path::new("/")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "[emerg] unexpected end of file, expecting \"}\" in /a.conf:2"
        );
        let e = parse_str("/a.conf", "}\n", Path::new("/")).unwrap_err();
        assert_eq!(e.to_string(), "[emerg] unexpected \"}\" in /a.conf:1");
    }

    #[test]
    fn include_glob_sorted_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b.conf"), "b;\n").unwrap();
        std::fs::write(dir.path().join("d/a.conf"), "a;\n").unwrap();
        std::fs::write(dir.path().join("d/.hidden.conf"), "h;\n").unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(&main, "include d/*.conf;\ninclude none/*.conf;\nc;\n").unwrap();
        let ast = parse_file(&main, Some("g;")).unwrap();
        let names: Vec<&str> = ast.directives.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["g", "a", "b", "c"]);
        assert_eq!(ast.files.len(), 3);
        assert_eq!(ast.directives[0].span.to_string(), "command line");
        assert!(ast.directives[1].span.to_string().ends_with("d/a.conf:1"));

        std::fs::write(&main, "\ninclude nothere.conf;\n").unwrap();
        let e = parse_file(&main, None).unwrap_err().to_string();
        let want = format!(
            "[emerg] open() \"{}\" failed (2: No such file or directory) in {}:2",
            dir.path().join("nothere.conf").display(),
            main.display()
        );
        assert_eq!(e, want);
    }

    #[test]
    fn self_include_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(&main, "include main.conf;\n").unwrap();
        let e = parse_file(&main, None).unwrap_err();
        assert!(e.message.contains("too deep"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = "a {".repeat(10_000);
        assert!(parse_str("/a.conf", &src, Path::new("/")).is_err());
    }
}
