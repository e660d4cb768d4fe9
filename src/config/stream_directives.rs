//! The stream module's directives: the rows of `directives::DIRECTIVES`'s table under the
//! stream contexts (`STREAM`, `SSRV`, `SUPS`), kept apart so each table stays readable; lookups
//! and the README checks go through `directives::all`. Handlers are in `stream.rs`.

use super::blocks;
use super::directives::{
    err, n, set_once, spec, Block, Handler, Spec, A0, A1, A2, FLAG, MORE1, MORE2, SS, SSRV, STREAM,
    SUPS,
};
use super::handlers::error_log;
use super::model::{Balance, SpliceMode};
use super::stream as st;

/// The table of stream directives.
pub static STREAM_DIRECTIVES: &[Spec] = &[
    spec!("server", STREAM, A0, Handler::Block(Block::Server)),
    spec!("upstream", STREAM, A1, Handler::Block(Block::Upstream)),
    spec!("map", STREAM, A2, Handler::Block(Block::Map)),
    spec!("listen", SSRV, MORE1, Handler::StreamServer(st::listen)),
    spec!("proxy_pass", SSRV, A1, Handler::StreamServer(st::proxy_pass)),
    spec!("return", SSRV, A1, Handler::StreamServer(st::return_)),
    spec!("proxy_connect_timeout", SS, A1, Handler::Stream(|c, d, _| st::time(&mut c.connect_timeout, d))),
    spec!("proxy_timeout", SS, A1, Handler::Stream(|c, d, _| st::time(&mut c.timeout, d))),
    spec!("proxy_next_upstream", SS, FLAG, Handler::Stream(|c, d, _| st::flag(&mut c.next_upstream, d))),
    spec!("proxy_next_upstream_tries", SS, A1, Handler::Stream(|c, d, _| st::number(&mut c.next_upstream_tries, d))),
    spec!("proxy_next_upstream_timeout", SS, A1, Handler::Stream(|c, d, _| st::time(&mut c.next_upstream_timeout, d))),
    spec!("proxy_half_close", SS, FLAG, Handler::Stream(|c, d, _| st::flag(&mut c.half_close, d))),
    spec!("proxy_protocol", SS, FLAG, Handler::Stream(|c, d, _| st::flag(&mut c.proxy_protocol, d))),
    spec!("proxy_splice", SS, A1, Handler::Stream(|c, d, _| {
        let v = match d.arg(0) {
            "on" => SpliceMode::On,
            "off" => SpliceMode::Off,
            "auto" => SpliceMode::Auto,
            other => return Err(err(d, format!("invalid value \"{other}\""))),
        };
        set_once(&mut c.splice, v, d)
    })),
    spec!("ssl_preread", SS, FLAG, Handler::Stream(|c, d, _| st::flag(&mut c.ssl_preread, d))),
    spec!("preread_buffer_size", SS, A1, Handler::Stream(|c, d, _| st::size(&mut c.preread_buffer_size, d))),
    spec!("preread_timeout", SS, A1, Handler::Stream(|c, d, _| st::time(&mut c.preread_timeout, d))),
    spec!("access_log", SS, MORE1, Handler::Stream(st::access_log)),
    spec!("log_format", STREAM, MORE2, Handler::StreamMain(st::log_format)),
    spec!("error_log", SS, MORE1, Handler::Stream(|_, d, e| error_log(d, e).map(drop))),
    spec!("server", SUPS, MORE1, Handler::Upstream(blocks::upstream_server)),
    spec!("hash", SUPS, n(1, 2), Handler::Upstream(blocks::upstream_hash)),
    spec!("least_conn", SUPS, A0, Handler::Upstream(|u, d, e| u.set_balance(Balance::LeastConn, d, e))),
    spec!("random", SUPS, n(0, 2), Handler::Upstream(blocks::upstream_random)),
    spec!("zone", SUPS, n(1, 2), Handler::NoEffect("each shard keeps its own peer state (failures, weights, max_conns); the open-connection counts least_conn and random compare are shared between shards without it")),
    spec!("proxy_bind", SS, n(1, 2), Handler::Unsupported("")),
    spec!("proxy_download_rate", SS, A1, Handler::Unsupported("")),
    spec!("proxy_upload_rate", SS, A1, Handler::Unsupported("")),
    spec!("proxy_responses", SS, A1, Handler::Unsupported("UDP is not proxied")),
    spec!("proxy_requests", SS, A1, Handler::Unsupported("UDP is not proxied")),
    spec!("allow", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("deny", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("limit_conn", SS, MORE1, Handler::Unsupported("")),
    spec!("set", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("resolver", SS, MORE1, Handler::NoEffect("upstream host names are resolved at start and reload, as nginx does without a resolver")),
    spec!("resolver_timeout", SS, A1, Handler::NoEffect("upstream host names are resolved at start and reload")),
    spec!("tcp_nodelay", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_buffer_size", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_socket_keepalive", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_protocol_timeout", SS, A1, Handler::Unsupported("a PROXY header has 30s, nginx's default")),
    spec!("proxy_ssl", SS, FLAG, Handler::Unsupported("TLS to stream backends is not implemented")),
    spec!("proxy_ssl_certificate", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_ssl_certificate_key", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_ssl_ciphers", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_ssl_name", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_ssl_protocols", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_ssl_server_name", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_ssl_session_reuse", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_ssl_trusted_certificate", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_ssl_verify", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("proxy_ssl_verify_depth", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("ssl_certificate", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("ssl_certificate_key", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("ssl_protocols", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("ssl_ciphers", SS, MORE1, Handler::Stream(st::refuse)),
    spec!("ssl_handshake_timeout", SS, A1, Handler::Unsupported("TLS is not terminated in stream")),
];
