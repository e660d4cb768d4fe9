//! Unit tests of the HTTP layer, one file per module, through the public API.

mod body;
mod headers;
mod no_panic;
mod request;
mod response;
mod script;
mod vars;

use crate::config::model::Config;

/// Builds a configuration from text (upstream addresses must be literal IPs).
pub(crate) fn conf(text: &str) -> Config {
    let dir = std::env::temp_dir();
    crate::config::load_str("test.conf", text, &dir).expect("builds")
}

/// Parses `req` and hands the head to `f`.
pub(crate) fn with_head<R>(
    req: &[u8],
    f: impl FnOnce(&crate::http::request::RequestHead<'_, '_>, usize) -> R,
) -> R {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    match crate::http::request::parse_request(req, &mut storage, &KEEP_ALL_NAMES) {
        Ok(crate::http::request::Parsed::Complete(head, n)) => f(&head, n),
        other => panic!("not a complete request: {other:?}"),
    }
}

/// Connection facts of a plain-HTTP client 192.0.2.1:5555 on 127.0.0.1:8080.
pub(crate) fn conn() -> crate::http::vars::ConnFacts<'static> {
    crate::http::vars::ConnFacts {
        remote: "192.0.2.1:5555".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        tls: None,
        server_name: "srv.local",
        connection: 7,
        requests: 3,
        hostname: "box",
        pid: 42,
        underscores_in_headers: false,
        proxy_protocol: None,
    }
}

/// Head limits that keep every header (`ignore_invalid_headers off`), so the variable rules
/// for underscored names are tested on their own.
const KEEP_ALL_NAMES: crate::http::request::HeadLimits = crate::http::request::HeadLimits {
    client_header_buffer_size: 1024,
    large_buffers_count: 4,
    large_buffer_size: 8192,
    ignore_invalid_headers: false,
    underscores_in_headers: false,
};
