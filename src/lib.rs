//! ringproxy: a thread-per-core io_uring reverse proxy for WebSockets, driven by nginx's
//! configuration language.
//!
//! Data flow (see `docs/architecture.md`): a shard per core accepts on its own SO_REUSEPORT
//! listener, reads the request head (sans-IO parser over a pooled buffer, [`http`]), routes it by
//! `server`/`location` with nginx's precedence ([`route`]), picks a peer with its own balancer
//! ([`upstream`], nginx's algorithms, so it picks the peer nginx would), proxies plain requests
//! or turns `Upgrade` requests into a two-way tunnel. The configuration is lexed and parsed into an AST that keeps file:line
//! ([`config`]), then built into one immutable, validated model shared by every shard. [`ws`] is
//! the sans-IO RFC 6455 frame codec, shared with the `ringproxy-load` benchmark tool.

pub mod accesslog;
pub mod cli;
pub mod config;
pub mod http;
pub mod limits;
pub mod log;
pub mod proxy;
pub mod route;
pub mod shard;
pub mod stream;
pub mod sys;
pub mod tls;
pub mod upstream;
pub mod ws;
