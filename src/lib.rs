//! ringproxy: a thread-per-core io_uring reverse proxy for WebSockets, driven by nginx's
//! configuration language.
//!
//! Data flow (see `DESIGN.md`): a shard per core accepts on its own SO_REUSEPORT listener, reads
//! the request head (sans-IO parser over a pooled buffer, [`http`]), routes it by
//! `server`/`location`, picks a peer ([`upstream`]), proxies plain requests or turns `Upgrade`
//! requests into a two-way tunnel. The configuration is lexed and parsed into an AST that keeps
//! file:line ([`config`]), then built into one immutable, validated model shared by every shard.
//! the request head (sans-IO parser over a pooled buffer), routes it by `server`/`location`,
//! proxies plain requests or turns `Upgrade` requests into a two-way tunnel. The configuration is
//! lexed and parsed into an AST that keeps file:line ([`config`]), then built into one immutable,
//! validated model shared by every shard. Each shard picks upstream peers with its own sans-IO
//! balancer ([`upstream`]), following nginx's algorithms so it picks the peer nginx would.

pub mod cli;
pub mod config;
pub mod http;
pub mod sys;
pub mod upstream;
