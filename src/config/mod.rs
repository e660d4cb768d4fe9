//! The configuration: nginx's language, read into a typed, validated model.
//!
//! `lexer` turns bytes into statements, `parser` into an AST whose every node keeps its file and
//! line (includes expanded), `directives` is the one table of what each directive means (contexts,
//! arity, handler), and `model` is the typed configuration the shards run on. Errors print as
//! nginx prints them (`error`).

pub mod error;
pub mod lexer;
pub mod parser;

pub use error::{ConfigError, ConfigWarning, Span};
pub use parser::{Arg, Ast, Directive};
