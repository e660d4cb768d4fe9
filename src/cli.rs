//! nginx's command line: `-c -p -e -g -t -T -q -v -V -s -h`, parsed as nginx parses it (flags may
//! be grouped, `-tq`; a value may be attached, `-cfile`, or follow, `-c file`), so scripts
//! written for nginx keep working. `main.rs` acts on the result.

use std::path::PathBuf;

/// Signals `-s` can send to a running ringproxy (nginx's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `stop`: SIGTERM, stop at once.
    Stop,
    /// `quit`: SIGQUIT, graceful stop.
    Quit,
    /// `reopen`: SIGUSR1, reopen log files.
    Reopen,
    /// `reload`: SIGHUP, re-read the configuration.
    Reload,
}

impl Signal {
    /// The signal number sent.
    pub fn number(self) -> i32 {
        match self {
            Signal::Stop => libc::SIGTERM,
            Signal::Quit => libc::SIGQUIT,
            Signal::Reopen => libc::SIGUSR1,
            Signal::Reload => libc::SIGHUP,
        }
    }
}

/// What the command line asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `-h`/`-?`.
    pub help: bool,
    /// `-v`.
    pub version: bool,
    /// `-V`.
    pub version_full: bool,
    /// `-t`.
    pub test: bool,
    /// `-T` (implies `-t`).
    pub dump: bool,
    /// `-q`.
    pub quiet: bool,
    /// `-s signal`.
    pub signal: Option<Signal>,
    /// `-p prefix`.
    pub prefix: Option<PathBuf>,
    /// `-c file`.
    pub conf: Option<PathBuf>,
    /// `-e file|stderr`.
    pub error_log: Option<String>,
    /// `-g directives`.
    pub params: Option<String>,
}

/// Default configuration file, relative to the prefix.
pub const DEFAULT_CONF: &str = "config/ringproxy.conf";

impl Options {
    /// The prefix: `-p` (made absolute) or the current directory.
    pub fn prefix(&self) -> PathBuf {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        match &self.prefix {
            Some(p) => cwd.join(p),
            None => cwd,
        }
    }

    /// The configuration file: `-c` (relative to the prefix, as nginx) or the default.
    pub fn conf_file(&self) -> PathBuf {
        let prefix = self.prefix();
        match &self.conf {
            Some(c) => prefix.join(c),
            None => prefix.join(DEFAULT_CONF),
        }
    }
}

/// A command-line error, worded as nginx words it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// `invalid option: "x"`.
    #[error("invalid option: \"{0}\"")]
    InvalidOption(String),
    /// `option "-c" requires file name`.
    #[error("option \"-{0}\" requires {1}")]
    MissingValue(char, &'static str),
    /// `invalid option: "-s foo"`.
    #[error("invalid option: \"-s {0}\"")]
    InvalidSignal(String),
}

/// Parses arguments (without the program name).
pub fn parse<I, S>(args: I) -> Result<Options, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut o = Options::default();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        let Some(flags) = arg.strip_prefix('-') else {
            return Err(CliError::InvalidOption(arg));
        };
        if flags.is_empty() {
            return Err(CliError::InvalidOption(arg));
        }

        for (i, c) in flags.char_indices() {
            match c {
                '?' | 'h' => o.help = true,
                'v' => o.version = true,
                'V' => {
                    o.version = true;
                    o.version_full = true;
                }
                't' => o.test = true,
                'T' => {
                    o.test = true;
                    o.dump = true;
                }
                'q' => o.quiet = true,
                'p' | 'c' | 'e' | 'g' | 's' => {
                    let attached = &flags[i + c.len_utf8()..];
                    let value = if attached.is_empty() {
                        let what = match c {
                            'p' => "prefix",
                            'c' => "file name",
                            'e' => "file name",
                            'g' => "parameter",
                            _ => "parameter",
                        };
                        args.next().ok_or(CliError::MissingValue(c, what))?
                    } else {
                        attached.to_string()
                    };
                    match c {
                        'p' => o.prefix = Some(PathBuf::from(value)),
                        'c' => o.conf = Some(PathBuf::from(value)),
                        'e' => o.error_log = Some(value),
                        'g' => o.params = Some(value),
                        _ => {
                            o.signal = Some(match value.as_str() {
                                "stop" => Signal::Stop,
                                "quit" => Signal::Quit,
                                "reopen" => Signal::Reopen,
                                "reload" => Signal::Reload,
                                _ => return Err(CliError::InvalidSignal(value)),
                            })
                        }
                    }
                    break;
                }
                _ => return Err(CliError::InvalidOption(arg.clone())),
            }
        }
    }
    Ok(o)
}

/// `-h` text, in nginx's layout.
pub fn usage() -> String {
    format!(
        "ringproxy version: ringproxy/{v}\n\
Usage: ringproxy [-?hvVtTq] [-s signal] [-p prefix]\n\
                 [-e filename] [-c filename] [-g directives]\n\
\n\
Options:\n\
  -?,-h         : this help\n\
  -v            : show version and exit\n\
  -V            : show version and configure options then exit\n\
  -t            : test configuration and exit\n\
  -T            : test configuration, dump it and exit\n\
  -q            : suppress non-error messages during configuration testing\n\
  -s signal     : send signal to a master process: stop, quit, reopen, reload\n\
  -p prefix     : set prefix path (default: current directory)\n\
  -e filename   : set error log file (default: logs/error.log)\n\
  -c filename   : set configuration file (default: {DEFAULT_CONF})\n\
  -g directives : set global directives out of configuration file\n",
        v = env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_attached_and_separate_values() {
        let o = parse(["-tq", "-cconf/a.conf", "-p", "/srv", "-g", "daemon off;"]).unwrap();
        assert!(o.test && o.quiet && !o.dump);
        assert_eq!(o.conf, Some(PathBuf::from("conf/a.conf")));
        assert_eq!(o.prefix, Some(PathBuf::from("/srv")));
        assert_eq!(o.params.as_deref(), Some("daemon off;"));
        assert_eq!(o.conf_file(), PathBuf::from("/srv/conf/a.conf"));
    }

    #[test]
    fn signals_and_errors() {
        assert_eq!(
            parse(["-s", "reload"]).unwrap().signal,
            Some(Signal::Reload)
        );
        assert_eq!(parse(["-squit"]).unwrap().signal, Some(Signal::Quit));
        assert_eq!(
            parse(["-s", "kill"]).unwrap_err().to_string(),
            "invalid option: \"-s kill\""
        );
        assert_eq!(
            parse(["-x"]).unwrap_err().to_string(),
            "invalid option: \"-x\""
        );
        assert_eq!(
            parse(["foo"]).unwrap_err().to_string(),
            "invalid option: \"foo\""
        );
        assert_eq!(
            parse(["-c"]).unwrap_err().to_string(),
            "option \"-c\" requires file name"
        );
        let o = parse(["-T"]).unwrap();
        assert!(o.test && o.dump);
    }

    #[test]
    fn absolute_conf_ignores_prefix() {
        let o = parse(["-p", "/srv", "-c", "/etc/r.conf"]).unwrap();
        assert_eq!(o.conf_file(), PathBuf::from("/etc/r.conf"));
    }
}
