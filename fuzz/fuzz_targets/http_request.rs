//! Arbitrary bytes as a client request head and as an upstream response head: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::http::request::{parse_request, HeadLimits};
use ringproxy::http::response::parse_response;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let _ = parse_request(data, &mut headers, &HeadLimits::default());
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let _ = parse_response(data, &mut headers, 4096, false);
});
