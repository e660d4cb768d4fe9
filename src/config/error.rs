//! Configuration errors in nginx's own words and form.
//!
//! Every error that comes from a place in the configuration carries that place, so it prints as
//! nginx prints it: `[emerg] unknown directive "x" in /abs/ringproxy.conf:12`. The `ringproxy: `
//! prefix is added by the command line, as nginx adds `nginx: `.

use std::fmt;
use std::sync::Arc;

/// Where a directive or argument came from: a file and a line, or the `-g` command line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// Absolute path of the file, or `None` for directives given with `-g`.
    pub file: Option<Arc<str>>,
    /// 1-based line number (0 for the command line).
    pub line: u32,
}

impl Span {
    /// A place in a file.
    pub fn new(file: Arc<str>, line: u32) -> Span {
        Span {
            file: Some(file),
            line,
        }
    }

    /// The `-g` command line.
    pub fn command_line() -> Span {
        Span {
            file: None,
            line: 0,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}", file, self.line),
            None => f.write_str("command line"),
        }
    }
}

/// nginx's log levels, used to prefix messages (`[emerg]`, `[warn]`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Unusable configuration.
    Emerg,
    /// Accepted, but probably not what the operator meant.
    Warn,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Emerg => "emerg",
            Level::Warn => "warn",
        })
    }
}

/// A configuration error: a message in nginx's words and, usually, where it was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The message without level and location, e.g. `unknown directive "x"`.
    pub message: String,
    /// Where it was found; `None` for whole-file errors such as `no "events" section`.
    pub span: Option<Span>,
}

impl ConfigError {
    /// An error at a place in the configuration.
    pub fn at(span: &Span, message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            span: Some(span.clone()),
        }
    }

    /// An error about the configuration as a whole.
    pub fn global(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            span: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", Level::Emerg, self.message)?;
        if let Some(span) = &self.span {
            write!(f, " in {span}")?;
        }
        Ok(())
    }
}

/// A warning raised while building the model (nginx logs these and goes on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The message, e.g. `conflicting server name "a" on 0.0.0.0:80, ignored`.
    pub message: String,
    /// Where it was found.
    pub span: Option<Span>,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", Level::Warn, self.message)?;
        if let Some(span) = &self.span {
            write!(f, " in {span}")?;
        }
        Ok(())
    }
}

/// Result of a configuration step.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;
