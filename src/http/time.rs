//! Wall-clock formatting for variables and headers: `$time_local`, `$time_iso8601`, `$msec`
//! and the HTTP `Date`, without a time-zone database (the engine passes the UTC offset).
//!
//! Place in the data flow: used by [`super::vars`] (access-log variables) and the proxy's
//! response head (`Date`).

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A broken-down civil time with its UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    /// Year.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day 1..=31.
    pub day: u32,
    /// Hour.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
    /// Day of the week, 0 = Sunday.
    pub weekday: u32,
    /// Offset from UTC in seconds.
    pub offset: i32,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// `t` as civil time at `offset` seconds from UTC (Howard Hinnant's `civil_from_days`).
pub fn local_time(t: SystemTime, offset: i32) -> CivilTime {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    } + i64::from(offset);
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    CivilTime {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem / 60 % 60) as u32,
        second: (rem % 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
        offset,
    }
}

impl CivilTime {
    fn offset_parts(&self) -> (char, i32, i32) {
        let sign = if self.offset < 0 { '-' } else { '+' };
        let o = self.offset.abs() / 60;
        (sign, o / 60, o % 60)
    }

    /// `10/Oct/2000:13:55:36 +0000` (`$time_local`).
    pub fn write_clf(&self, out: &mut Vec<u8>) {
        let (s, h, m) = self.offset_parts();
        let _ = write!(
            out,
            "{:02}/{}/{}:{:02}:{:02}:{:02} {s}{h:02}{m:02}",
            self.day,
            MONTHS[(self.month - 1) as usize % 12],
            self.year,
            self.hour,
            self.minute,
            self.second
        );
    }

    /// `2000-10-10T13:55:36+00:00` (`$time_iso8601`).
    pub fn write_iso8601(&self, out: &mut Vec<u8>) {
        let (s, h, m) = self.offset_parts();
        let _ = write!(
            out,
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}{s}{h:02}:{m:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
    }

    /// `Tue, 10 Oct 2000 13:55:36 GMT` (the `Date` header; call on UTC time).
    pub fn write_http_date(&self, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            DAYS[self.weekday as usize % 7],
            self.day,
            MONTHS[(self.month - 1) as usize % 12],
            self.year,
            self.hour,
            self.minute,
            self.second
        );
    }

    /// The date as nginx writes it in cookies (`ngx_http_cookie_time`): dashes, and a two-digit
    /// year up to 2037 (the form old browsers parse), four digits after.
    pub fn write_cookie_date(&self, out: &mut Vec<u8>) {
        let year = if self.year > 2037 {
            self.year
        } else {
            self.year % 100
        };
        let _ = write!(
            out,
            "{}, {:02}-{}-{:02} {:02}:{:02}:{:02} GMT",
            DAYS[self.weekday as usize % 7],
            self.day,
            MONTHS[(self.month - 1) as usize % 12],
            year,
            self.hour,
            self.minute,
            self.second
        );
    }
}

/// Seconds with millisecond precision, as nginx prints `$request_time` and upstream times.
pub fn format_msec(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}
