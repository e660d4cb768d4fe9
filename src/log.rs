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
use std::time::{SystemTime, UNIX_EPOCH};

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
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's public-domain algorithm,
/// hand-written to avoid a date crate for one log prefix.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_413), (2025, 11, 21));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_763_713_607);
        assert_eq!(timestamp(t), "2025/11/21 08:26:47");
    }
}
