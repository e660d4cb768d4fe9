//! nginx's `expires` (`ngx_http_set_expires` in the headers filter): the `Expires` and
//! `Cache-Control` values for one response.
//!
//! Place in the data flow: [`super::headers_out::Extras::for_response`] calls [`values`] for a
//! status `add_header` applies to; the head writers put the pair before the `add_header` lines,
//! and a proxied response's own `Expires`/`Cache-Control` are replaced where they stand (the
//! first `Cache-Control` keeps its place, later ones go), as nginx edits its header list.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::model::{Expires, ExpiresMode};
use crate::config::model_out::parse_expires;
use crate::http::vars::RequestVars;

/// `Expires` and `Cache-Control` for a response whose `Last-Modified` is `last_modified`, or
/// `None` when `expires` sets nothing (off, or a variable's value that is off or invalid).
pub fn values(
    e: &Expires,
    vars: &mut RequestVars,
    last_modified: Option<SystemTime>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let (mut mode, mut time) = (e.mode, e.time);
    if let Some(t) = &e.value {
        let mut raw = Vec::new();
        vars.render(t, &mut raw);
        let raw = String::from_utf8_lossy(&raw);
        (mode, time) = parse_expires(&raw, e.mode == ExpiresMode::Modified).ok()?;
    }
    let cc = |s: &str| s.as_bytes().to_vec();
    match mode {
        ExpiresMode::Off => return None,
        ExpiresMode::Epoch => return Some((cc("Thu, 01 Jan 1970 00:00:01 GMT"), cc("no-cache"))),
        ExpiresMode::Max => {
            return Some((cc("Thu, 31 Dec 2037 23:55:55 GMT"), cc("max-age=315360000")))
        }
        _ => {}
    }
    let now_t = vars.now();
    if time == 0 && mode != ExpiresMode::Daily {
        return Some((http_date(secs(now_t)), cc("max-age=0")));
    }
    let now = secs(now_t);
    let (at, max_age) = match (mode, last_modified) {
        (ExpiresMode::Daily, _) => {
            let at = next_time(now, time, i64::from(vars.utc_offset));
            (at, at - now)
        }
        (ExpiresMode::Modified, Some(lm)) => {
            let at = secs(lm) + time;
            (at, at - now)
        }
        _ => (now + time, time),
    };
    // nginx tests the configured time, which is 0 for a value held in a variable.
    let value = if e.time < 0 || max_age < 0 {
        cc("no-cache")
    } else {
        format!("max-age={max_age}").into_bytes()
    };
    Some((http_date(at), value))
}

fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn http_date(s: i64) -> Vec<u8> {
    let t = if s >= 0 {
        UNIX_EPOCH + Duration::from_secs(s as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
    };
    let mut out = Vec::new();
    crate::http::time::local_time(t, 0).write_http_date(&mut out);
    out
}

/// nginx's `ngx_next_time`: the next `when` seconds after local midnight (`offset` from UTC),
/// today if still ahead, else tomorrow.
fn next_time(now: i64, when: i64, offset: i64) -> i64 {
    let local_midnight = (now + offset).div_euclid(86400) * 86400;
    let today = local_midnight + when - offset;
    if today - now > 0 {
        today
    } else {
        today + 86400
    }
}

#[cfg(test)]
mod tests {
    use super::next_time;

    #[test]
    fn daily_time_is_today_when_ahead_else_tomorrow() {
        let noon = 86400 * 10 + 12 * 3600;
        assert_eq!(next_time(noon, 15 * 3600, 0), noon + 3 * 3600);
        assert_eq!(next_time(noon, 9 * 3600, 0), noon + 21 * 3600);
        assert_eq!(next_time(noon, 12 * 3600, 0), noon + 86400);
        // At UTC+2 it is 14:00 local: 15:00 local is in one hour.
        assert_eq!(next_time(noon, 15 * 3600, 7200), noon + 3600);
    }
}
