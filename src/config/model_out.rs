//! The typed settings of the response-head directives (`expires`, and those that follow it in
//! `handlers_out.rs`), kept apart from `model.rs` by concept. Parsing that the engine repeats at
//! request time (an `expires` value held in a variable) lives here so both sides agree.

use super::regex::Regex;
use super::template::Template;
use super::values::parse_time;

/// What `expires` asks for (nginx's `ngx_http_expires_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiresMode {
    /// `off`: headers untouched.
    Off,
    /// `epoch`: `Expires` at 1970, `Cache-Control: no-cache`.
    Epoch,
    /// `max`: `Expires` in 2037, ten years of `max-age`.
    Max,
    /// A time from now.
    Access,
    /// `modified`: a time from the response's `Last-Modified` (from now without one).
    Modified,
    /// `@time`: the next such time of day.
    Daily,
}

/// `expires [modified] time|epoch|max|off|@time|$var`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expires {
    /// The mode; with `value`, `Access` or `Modified` until the value says otherwise.
    pub mode: ExpiresMode,
    /// Seconds (negative: in the past); for `Daily`, seconds after midnight.
    pub time: i64,
    /// A value with variables, parsed per request; an invalid one sets nothing, as nginx.
    pub value: Option<Template>,
}

/// nginx's `ngx_http_parse_expires`: `value` after `modified` when `modified`. The error is
/// nginx's message.
pub fn parse_expires(value: &str, modified: bool) -> Result<(ExpiresMode, i64), &'static str> {
    if !modified {
        match value {
            "epoch" => return Ok((ExpiresMode::Epoch, 0)),
            "max" => return Ok((ExpiresMode::Max, 0)),
            "off" => return Ok((ExpiresMode::Off, 0)),
            _ => {}
        }
    }
    let base = if modified {
        ExpiresMode::Modified
    } else {
        ExpiresMode::Access
    };
    let (mode, minus, rest) = if let Some(rest) = value.strip_prefix('@') {
        if modified {
            return Err("daily time cannot be used with \"modified\" parameter");
        }
        (ExpiresMode::Daily, false, rest)
    } else if let Some(rest) = value.strip_prefix('+') {
        (base, false, rest)
    } else if let Some(rest) = value.strip_prefix('-') {
        (base, true, rest)
    } else {
        (base, false, value)
    };
    // nginx parses in seconds here: a millisecond unit is invalid.
    let secs = parse_time(rest)
        .filter(|_| !rest.contains("ms"))
        .map(|d| d.as_secs() as i64)
        .ok_or("invalid value")?;
    if mode == ExpiresMode::Daily && secs > 24 * 60 * 60 {
        return Err("daily time value must be less than 24 hours");
    }
    Ok((mode, if minus { -secs } else { secs }))
}

/// `charset` or `source_charset`: `off` or a name (a variable's value per request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charset {
    /// `off`.
    Off,
    /// A charset name.
    Name(Template),
}

/// `charset_types` by default (nginx's `ngx_http_charset_default_types`).
pub fn default_charset_types() -> Vec<String> {
    [
        "text/html",
        "text/xml",
        "text/plain",
        "text/vnd.wap.wml",
        "application/javascript",
        "application/rss+xml",
    ]
    .map(String::from)
    .to_vec()
}

/// One `proxy_cookie_domain` or `proxy_cookie_path` rule.
#[derive(Clone, Debug, PartialEq)]
pub enum CookieRewrite {
    /// `proxy_cookie_path FROM TO`: a case-sensitive prefix of the path.
    Prefix(Template, Template),
    /// `proxy_cookie_domain FROM TO`: the whole domain, case-insensitive, a leading `.` kept.
    Domain(Template, Template),
    /// `~REGEX TO` (`~*` for a caseless path; a domain regex is always caseless): the whole
    /// value, with captures in `TO`.
    Regex(Regex, Template),
}

/// Which cookies a `proxy_cookie_flags` rule is for.
#[derive(Clone, Debug, PartialEq)]
pub enum CookieName {
    /// A name (variables allowed), case-insensitive.
    Name(Template),
    /// `~REGEX`, caseless.
    Regex(Regex),
}

/// `proxy_cookie_flags COOKIE FLAG...`: flags as written (variables allowed); unknown ones are
/// skipped at request time, as nginx.
#[derive(Clone, Debug, PartialEq)]
pub struct CookieFlags {
    /// The cookie.
    pub cookie: CookieName,
    /// The flags.
    pub flags: Vec<Template>,
}

/// `gzip_static`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GzipStatic {
    /// `off`.
    Off,
    /// `on`: `FILE.gz` to clients the gzip filter would compress for.
    On,
    /// `always`: `FILE.gz` to every client.
    Always,
}
