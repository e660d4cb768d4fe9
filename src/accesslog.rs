//! The access log: one line per request, in a `log_format`, to the `access_log` files of the
//! location, as nginx's `ngx_http_log_module` writes it.
//!
//! Place in the data flow: response sent (or tunnel closed) -> **access log** -> connection reuse.
//! Each shard builds its own [`AccessLogs`] from the configuration at startup:
//! every distinct path is opened once (append, create), so nothing is shared between shards on
//! the per-request path. Without `buffer=` a line is one `write(2)` on an `O_APPEND` file, so lines
//! from different shards never interleave; with `buffer=size` the shard keeps a buffer per file,
//! written out when the next line would not fit, when `flush=time` has passed since the buffer's
//! first line ([`AccessLogs::flush_due`], called from the shard's timer), on reopen and on drop.
//! Buffers only ever hold whole lines, so a buffered write does not interleave either.
//!
//! nginx 1.22 rules kept here (observed on nginx 1.22 by hand): `access_log off` anywhere in
//! the level's list disables all its logs; `if=` skips the line when the condition renders to
//! `""` or `"0"`; with `escape=default` a variable's bytes `"`, `\`, < 0x20 and >= 0x7f are written
//! as `\xHH` (uppercase hex) and a variable without a value as `-`; with `escape=json` the value
//! is JSON string content (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other controls as `\u00XX`,
//! bytes >= 0x7f unchanged) and a missing value is empty; with `escape=none` values are written
//! raw and a missing value is empty. Literal text of a format is never escaped.
//!
//! Writes are synchronous `write(2)` calls on the shard's thread (a regular file write normally
//! completes from the page cache); moving them to io_uring is possible later without changing
//! this API.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::model::{AccessLog, HttpConf, Location, LogFormat};
use crate::config::parser::os_error;
use crate::config::template::{Part, Template};
use crate::http::vars::RequestVars;

/// What a log line's variables come from: an http request's [`RequestVars`], or a stream
/// session's (`crate::stream`).
pub trait LogVars {
    /// The value of `$name`; `None` when it has none.
    fn value(&mut self, name: &str) -> Option<std::borrow::Cow<'_, [u8]>>;
    /// Capture `n` of the last regex match.
    fn group(&self, n: usize) -> Option<&[u8]>;
    /// Appends the value of `t` to `out`.
    fn render_into(&mut self, t: &Template, out: &mut Vec<u8>);
}

impl LogVars for RequestVars<'_> {
    fn value(&mut self, name: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.get(name)
    }
    fn group(&self, n: usize) -> Option<&[u8]> {
        self.capture(n)
    }
    fn render_into(&mut self, t: &Template, out: &mut Vec<u8>) {
        self.render(t, out);
    }
}

/// What can go wrong with an access log, in nginx's words.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// A file could not be opened (at startup: fatal; on reopen: the old file is kept).
    #[error("open() \"{}\" failed ({reason})", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// `13: Permission denied`.
        reason: String,
    },
    /// A write failed (the line or buffer is dropped, as nginx does).
    #[error("write() to \"{}\" failed ({reason})", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// `28: No space left on device`.
        reason: String,
    },
    /// A write was short (the rest is dropped, as nginx does).
    #[error("write() to \"{}\" was incomplete: {written} of {len}", path.display())]
    Incomplete {
        /// The file.
        path: PathBuf,
        /// Bytes written.
        written: usize,
        /// Bytes meant to be written.
        len: usize,
    },
    /// The same path with different `buffer=`/`flush=` (nginx refuses this configuration).
    #[error("access_log \"{}\" already defined with conflicting parameters", path.display())]
    Conflict {
        /// The file.
        path: PathBuf,
    },
    /// `access_log` names a format that no `log_format` defines.
    #[error("unknown log format \"{name}\"")]
    UnknownFormat {
        /// The format's name.
        name: String,
    },
}

/// How a format's variable values are escaped (`log_format ... escape=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// `escape=default`.
    Default,
    /// `escape=json`.
    Json,
    /// `escape=none`.
    None,
}

impl Escape {
    /// The mode named by `escape=` (anything unknown is `default`; the config rejects it).
    pub fn from_name(name: &str) -> Escape {
        match name {
            "json" => Escape::Json,
            "none" => Escape::None,
            _ => Escape::Default,
        }
    }
}

/// A `log_format` resolved for writing.
#[derive(Clone, Debug)]
struct Format {
    name: String,
    escape: Escape,
    template: Template,
}

/// One open access-log file of a shard.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: File,
    /// Pending whole lines (`buffer=`); capacity 0 means unbuffered.
    pending: Vec<u8>,
    capacity: usize,
    flush: Option<Duration>,
    /// When the first pending line was added (the `flush=` timer starts then).
    since: Option<Instant>,
}

impl LogFile {
    fn write_out(&mut self) -> Result<(), AccessLogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.since = None;
        let r = write_once(&mut self.file, &self.path, &self.pending);
        self.pending.clear();
        r
    }
}

/// One `write(2)`: nginx does not retry a short write on a regular file, it reports it.
fn write_once(file: &mut File, path: &Path, data: &[u8]) -> Result<(), AccessLogError> {
    match file.write(data) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(n) => Err(AccessLogError::Incomplete {
            path: path.to_path_buf(),
            written: n,
            len: data.len(),
        }),
        Err(e) => Err(AccessLogError::Write {
            path: path.to_path_buf(),
            reason: os_error(&e),
        }),
    }
}

fn open(path: &Path) -> Result<File, AccessLogError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        // nginx's NGX_FILE_DEFAULT_ACCESS (before the umask).
        .mode(0o644)
        .open(path)
        .map_err(|e| AccessLogError::Open {
            path: path.to_path_buf(),
            reason: os_error(&e),
        })
}

/// The access-log files of one shard. See the module doc.
#[derive(Debug)]
pub struct AccessLogs {
    files: Vec<LogFile>,
    formats: Vec<Format>,
    line: Vec<u8>,
}

impl AccessLogs {
    /// Opens every `access_log` file in effect in the `http` block (every server and every
    /// location, nested ones included, with their merged lists) and resolves the formats. As in
    /// nginx, a file named only at the `http` level and overridden everywhere (the default
    /// `logs/access.log` included) is not opened.
    pub fn from_http(http: &HttpConf) -> Result<AccessLogs, AccessLogError> {
        fn walk<'c>(locs: &'c [Location], out: &mut Vec<&'c AccessLog>) {
            for l in locs {
                out.extend(l.conf.access_log.iter().flatten());
                walk(&l.locations, out);
            }
        }
        let mut all: Vec<&AccessLog> = Vec::new();
        for s in &http.servers {
            all.extend(s.conf.access_log.iter().flatten());
            walk(&s.locations, &mut all);
        }
        AccessLogs::new(all, &http.log_formats)
    }

    /// Opens the files of `logs` (each distinct path once) and resolves their formats among
    /// `formats`. A path given twice must have the same `buffer=` and `flush=` (nginx's rule);
    /// a path given once with a buffer and once without is buffered for both, as in nginx, where
    /// the buffer belongs to the file.
    pub fn new<'c>(
        logs: impl IntoIterator<Item = &'c AccessLog>,
        formats: &[LogFormat],
    ) -> Result<AccessLogs, AccessLogError> {
        let mut out = AccessLogs {
            files: Vec::new(),
            formats: formats
                .iter()
                .map(|f| Format {
                    name: f.name.clone(),
                    escape: Escape::from_name(&f.escape),
                    template: f.format.clone(),
                })
                .collect(),
            line: Vec::new(),
        };
        for log in logs {
            let AccessLog::File {
                path,
                format,
                buffer,
                flush,
                ..
            } = log
            else {
                continue;
            };
            if !out.formats.iter().any(|f| &f.name == format) {
                return Err(AccessLogError::UnknownFormat {
                    name: format.clone(),
                });
            }
            let capacity = buffer.map_or(0, |b| usize::try_from(b).unwrap_or(usize::MAX));
            match out.files.iter_mut().find(|f| &f.path == path) {
                Some(f) if buffer.is_some() => {
                    if f.capacity != 0 && (f.capacity != capacity || f.flush != *flush) {
                        return Err(AccessLogError::Conflict { path: path.clone() });
                    }
                    f.capacity = capacity;
                    f.flush = *flush;
                }
                Some(_) => {}
                None => out.files.push(LogFile {
                    path: path.clone(),
                    file: open(path)?,
                    pending: Vec::with_capacity(capacity.min(1 << 20)),
                    capacity,
                    flush: if buffer.is_some() { *flush } else { None },
                    since: None,
                }),
            }
        }
        Ok(out)
    }

    /// The paths opened, in order of first appearance.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// Writes the request's line to each of `logs` (the location's merged `access_log` list).
    /// The response facts must already be in `vars` (see [`RequestVars::response`]). Every log is
    /// attempted; the first error is returned for the caller to put in the error log.
    pub fn log<V: LogVars>(
        &mut self,
        logs: &[AccessLog],
        vars: &mut V,
    ) -> Result<(), AccessLogError> {
        if logs.iter().any(|l| matches!(l, AccessLog::Off)) {
            return Ok(());
        }
        let mut first_err = None;
        for log in logs {
            let AccessLog::File {
                path,
                format,
                condition,
                ..
            } = log
            else {
                continue;
            };
            if let Some(cond) = condition {
                self.line.clear();
                vars.render_into(cond, &mut self.line);
                if self.line.is_empty() || self.line == b"0" {
                    continue;
                }
            }
            let Some(fmt) = self.formats.iter().find(|f| &f.name == format) else {
                first_err.get_or_insert(AccessLogError::UnknownFormat {
                    name: format.clone(),
                });
                continue;
            };
            self.line.clear();
            render_line(&fmt.template, fmt.escape, vars, &mut self.line);
            self.line.push(b'\n');
            let file = match self.files.iter().position(|f| &f.path == path) {
                Some(i) => &mut self.files[i],
                None => {
                    // Not seen at startup (a configuration built elsewhere): open it now.
                    match open(path) {
                        Ok(file) => {
                            self.files.push(LogFile {
                                path: path.clone(),
                                file,
                                pending: Vec::new(),
                                capacity: 0,
                                flush: None,
                                since: None,
                            });
                            self.files.last_mut().expect("just pushed")
                        }
                        Err(e) => {
                            first_err.get_or_insert(e);
                            continue;
                        }
                    }
                }
            };
            if let Err(e) = append(file, &self.line) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// When the earliest `flush=` timer expires, if any buffer is waiting for one: the shard
    /// arms its timer for this instant and then calls [`Self::flush_due`].
    pub fn next_flush(&self) -> Option<Instant> {
        self.files
            .iter()
            .filter_map(|f| Some(f.since? + f.flush?))
            .min()
    }

    /// Writes out every buffer whose `flush=` time has passed at `now`.
    pub fn flush_due(&mut self, now: Instant) -> Result<(), AccessLogError> {
        let mut first_err = None;
        for f in &mut self.files {
            let due = matches!((f.since, f.flush), (Some(s), Some(d)) if s + d <= now);
            if due {
                if let Err(e) = f.write_out() {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes out every buffer (shutdown; also done on drop).
    pub fn flush_all(&mut self) -> Result<(), AccessLogError> {
        let mut first_err = None;
        for f in &mut self.files {
            if let Err(e) = f.write_out() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// SIGUSR1 (log rotation): writes out the buffers to the old files, then reopens every path.
    /// A path that cannot be reopened keeps its old file (as nginx does); the errors are returned
    /// for the error log.
    pub fn reopen(&mut self) -> Vec<AccessLogError> {
        let mut errors = Vec::new();
        for f in &mut self.files {
            if let Err(e) = f.write_out() {
                errors.push(e);
            }
            match open(&f.path) {
                Ok(file) => f.file = file,
                Err(e) => errors.push(e),
            }
        }
        errors
    }
}

impl Drop for AccessLogs {
    fn drop(&mut self) {
        // Nowhere to report at this point; shutdown paths call `flush_all` first to see errors.
        let _ = self.flush_all();
    }
}

/// Adds `line` to `file`: straight to the file when unbuffered, else through its buffer (nginx's
/// `ngx_http_log_handler`: write the buffer out when the line does not fit, write a line larger
/// than the whole buffer directly).
fn append(file: &mut LogFile, line: &[u8]) -> Result<(), AccessLogError> {
    if file.capacity == 0 {
        return write_once(&mut file.file, &file.path, line);
    }
    let mut r = Ok(());
    if line.len() > file.capacity - file.pending.len() {
        r = file.write_out();
    }
    if line.len() <= file.capacity - file.pending.len() {
        if file.pending.is_empty() {
            file.since = Some(Instant::now());
        }
        file.pending.extend_from_slice(line);
        return r;
    }
    r.and(write_once(&mut file.file, &file.path, line))
}

/// Renders `t` with `escape` applied to variable values only.
pub fn render_line<V: LogVars>(t: &Template, escape: Escape, vars: &mut V, out: &mut Vec<u8>) {
    for p in &t.parts {
        match p {
            Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
            Part::Var(name) => {
                let v = vars.value(name);
                write_value(v.as_deref(), escape, out);
            }
            Part::Capture(n) => {
                let v = vars.group(usize::from(*n));
                write_value(v, escape, out);
            }
        }
    }
}

/// Writes one variable value (`None`: the variable has no value) as nginx's log module does.
pub fn write_value(v: Option<&[u8]>, escape: Escape, out: &mut Vec<u8>) {
    match (v, escape) {
        (None, Escape::Default) => out.push(b'-'),
        (None, _) => {}
        (Some(v), Escape::Default) => escape_default(v, out),
        (Some(v), Escape::Json) => escape_json(v, out),
        (Some(v), Escape::None) => out.extend_from_slice(v),
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `escape=default`: `"`, `\`, bytes < 0x20 and >= 0x7f as `\xHH`.
pub fn escape_default(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.push(b);
        }
    }
}

/// `escape=json`: JSON string content, as nginx's `ngx_escape_json`.
pub fn escape_json(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
#[path = "accesslog_tests.rs"]
mod tests;
