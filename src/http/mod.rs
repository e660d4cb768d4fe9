//! The sans-IO HTTP/1.1 layer: pure functions over bytes, no sockets, no panics on input.
//!
//! Data flow: client bytes -> request head ([`request`], [`target`]) -> route -> upstream
//! request ([`headers`] decides what is forwarded) -> response head ([`response`]) -> body relay
//! ([`body`]). Errors carry the status nginx answers with; [`status`] has the reason phrases and
//! error pages.

pub mod basic_auth;
pub mod body;
pub mod condition;
pub mod headers;
pub mod proxy_protocol;
pub mod realip;
pub mod request;
pub mod response;
pub mod script;
pub mod status;
pub mod target;
pub mod time;
pub mod vars;

#[cfg(test)]
pub(crate) mod tests;

/// The value of one hex digit (chunk sizes, percent-escapes), or `None`.
pub fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
