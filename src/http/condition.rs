//! The conditions of the rewrite module's `if`, evaluated against a request's variables.
//!
//! Called by the script (`script.rs`) when it meets an `if`; nginx's rules: a bare variable is
//! false when empty or `0`; `=`/`!=` compare the value with the rendered text byte for byte;
//! `~` and friends run the regex on the value and, on a match, set the captures (`$1`...) and
//! named groups; `-f`, `-d`, `-e`, `-x` test the file system (following symbolic links, as
//! nginx's `stat`), a path that cannot be looked at being neither.

use std::os::unix::fs::PermissionsExt;

use super::vars::RequestVars;
use crate::config::model::{Condition, FileTest};

/// Whether `cond` holds for the request; `log` gets the `rewrite_log` notices of a regex test.
pub fn holds(cond: &Condition, vars: &mut RequestVars<'_>, log: &mut dyn FnMut(&str)) -> bool {
    match cond {
        Condition::Var(var) => {
            let v = value(var, vars);
            !v.is_empty() && v != b"0"
        }
        Condition::Equal {
            var,
            value: t,
            negate,
        } => {
            let v = value(var, vars);
            let mut want = Vec::new();
            vars.render(t, &mut want);
            (v == want) != *negate
        }
        Condition::Match { var, regex, negate } => {
            let v = value(var, vars);
            let subject = String::from_utf8_lossy(&v).into_owned();
            let matched = vars.match_regex(regex, &subject);
            if matched {
                log(&format!("\"{}\" matches \"{subject}\"", regex.source));
            } else {
                log(&format!(
                    "\"{}\" does not match \"{subject}\"",
                    regex.source
                ));
            }
            matched != *negate
        }
        Condition::File { path, test, negate } => {
            let mut p = Vec::new();
            vars.render(path, &mut p);
            file_test(&p, *test) != *negate
        }
    }
}

/// The value of `$var` (a capture for `$1`...), empty when it has none.
fn value(var: &str, vars: &mut RequestVars<'_>) -> Vec<u8> {
    if !var.is_empty() && var.bytes().all(|b| b.is_ascii_digit()) {
        let n = var.parse().unwrap_or(usize::MAX);
        return vars.capture(n).unwrap_or(b"").to_vec();
    }
    vars.get(var).map(|v| v.into_owned()).unwrap_or_default()
}

fn file_test(path: &[u8], test: FileTest) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    match test {
        FileTest::Plain => meta.is_file(),
        FileTest::Dir => meta.is_dir(),
        FileTest::Exists => meta.is_file() || meta.is_dir(),
        FileTest::Exec => meta.permissions().mode() & 0o100 != 0,
    }
}
