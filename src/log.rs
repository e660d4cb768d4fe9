//! The error log, in nginx's line format:
//! `2026/11/21 08:26:47 [error] 4242#1: *7 connect() failed (111: Connection refused) ...`.
//!
//! Error logging is off the per-message path (it runs on failures), so one process-wide sink list
//! behind a mutex is enough; each line is written with one `write` so lines from shards never
//! interleave. `reopen` (SIGUSR1) reopens the files for log rotation.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;
#[cfg(test)]
use std::time::UNIX_EPOCH;

use crate::config::model::{ErrorLog, LogLevel, LogTarget};

enum Sink {
    Stderr,
    File(PathBuf, File),
}

struct Target {
    sink: Sink,
    level: LogLevel,
}

static TARGETS: Mutex<Vec<Target>> = Mutex::new(Vec::new());

thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Names the calling thread's shard in its log lines (`pid#shard`).
pub fn set_shard(id: usize) {
    SHARD.with(|s| s.set(id));
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Points the log at the configured `error_log`s (main level). Returns nginx's error text when a
/// file cannot be opened.
pub fn init(logs: &[ErrorLog]) -> Result<(), String> {
    let mut targets = Vec::new();
    for l in logs {
        let sink = match &l.target {
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::File(p) => Sink::File(
                p.clone(),
                open(p).map_err(|e| {
                    format!(
                        "open() \"{}\" failed ({})",
                        p.display(),
                        crate::config::os_error(&e)
                    )
                })?,
            ),
        };
        targets.push(Target {
            sink,
            level: l.level,
        });
    }
    *TARGETS.lock().unwrap_or_else(|e| e.into_inner()) = targets;
    Ok(())
}

/// Reopens every log file (SIGUSR1), keeping the old handle when reopening fails.
pub fn reopen() {
    let mut targets = TARGETS.lock().unwrap_or_else(|e| e.into_inner());
    for t in targets.iter_mut() {
        if let Sink::File(path, file) = &mut t.sink {
            if let Ok(f) = open(path) {
                *file = f;
            }
        }
    }
}

fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Notice => "notice",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::Crit => "crit",
        LogLevel::Alert => "alert",
        LogLevel::Emerg => "emerg",
    }
}

/// `YYYY/MM/DD HH:MM:SS` in UTC (nginx writes local time; servers run in UTC).
pub fn timestamp(t: SystemTime) -> String {
    let c = crate::http::time::local_time(t, 0);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Writes one line at `level` to every sink that wants it.
pub fn log(level: LogLevel, args: fmt::Arguments<'_>) {
    let targets = TARGETS.lock().unwrap_or_else(|e| e.into_inner());
    if !targets.iter().any(|t| level >= t.level) && !targets.is_empty() {
        return;
    }
    let line = format!(
        "{} [{}] {}#{}: {}\n",
        timestamp(SystemTime::now()),
        level_name(level),
        std::process::id(),
        SHARD.with(|s| s.get()),
        args
    );
    if targets.is_empty() {
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    for t in targets.iter().filter(|t| level >= t.level) {
        let _ = match &t.sink {
            Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Sink::File(_, f) => (&*f).write_all(line.as_bytes()),
        };
    }
}

/// `log!(Error, "connect() failed ...")`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::log::log($crate::config::model::LogLevel::$level, format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_timestamp_format() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_763_713_607);
        assert_eq!(timestamp(t), "2025/11/21 08:26:47");
        assert_eq!(timestamp(UNIX_EPOCH), "1970/01/01 00:00:00");
    }
}
