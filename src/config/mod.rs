//! The configuration: nginx's language, read into a typed, validated model.
//!
//! `lexer` turns bytes into statements, `parser` into an AST whose every node keeps its file and
//! line (includes expanded), `directives` is the one table of what each directive means (contexts,
//! arity, handler), and `model` is the typed configuration the shards run on. Errors print as
//! nginx prints them (`error`).

pub mod error;
pub mod lexer;
pub mod limits;
pub mod parser;

pub use error::{ConfigError, ConfigWarning, Span};
pub use parser::{os_error, Arg, Ast, Directive};
pub mod blocks;
pub mod build;
pub mod conditional;
pub mod directives;
pub mod dump;
pub mod handlers;
pub mod handlers_out;
pub mod model;
pub mod model_out;
pub mod regex;
pub mod sticky;
pub mod stream;
pub mod stream_directives;
pub mod template;
pub mod values;

pub use model::Config;

use std::path::{Path, PathBuf};

/// How to find and read a configuration (what `-c`, `-p` and `-g` say).
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The main file (`-c`), relative paths against the current directory.
    pub file: PathBuf,
    /// The prefix (`-p`): relative paths in the configuration resolve against it.
    pub prefix: PathBuf,
    /// Directives given with `-g`.
    pub params: Option<String>,
}

/// A loaded configuration: the AST (for `-T`), the model, and nginx's warnings.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Parsed files and directives.
    pub ast: Ast,
    /// The validated model.
    pub config: Config,
    /// Warnings to log (`[warn] ...`).
    pub warnings: Vec<ConfigWarning>,
}

/// Reads, parses and validates a configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let ast = parser::parse_file(&opts.file, opts.params.as_deref())?;
    let main = Path::new(&*ast.files[0].path);
    let conf_dir = main.parent().map(Path::to_path_buf).unwrap_or_default();
    let build_opts = build::BuildOptions {
        prefix: opts.prefix.clone(),
        conf_dir,
        is_root: is_root(),
    };
    let (config, warnings) = build::build(&ast, &build_opts)?;
    Ok(Loaded {
        ast,
        config,
        warnings,
    })
}

/// Parses and builds a configuration held in memory, with `dir` as both prefix and
/// configuration directory (for tests, benchmarks and fuzzing; `include` resolves against `dir`).
pub fn load_str(name: &str, text: &str, dir: &Path) -> Result<Config, ConfigError> {
    let ast = parser::parse_str(name, text, dir)?;
    let opts = build::BuildOptions {
        prefix: dir.to_path_buf(),
        conf_dir: dir.to_path_buf(),
        is_root: false,
    };
    Ok(build::build(&ast, &opts)?.0)
}

fn is_root() -> bool {
    // The effective uid decides nginx's default port (80 as root, 8000 otherwise).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
