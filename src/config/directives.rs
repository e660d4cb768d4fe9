//! The one table of directives: name, contexts, arity and what each does.
//!
//! Every nginx directive ringproxy accepts is here, and so is every common nginx directive it
//! refuses (with `is not supported by ringproxy`), so a user gets a reason rather than nginx's
//! `unknown directive`. Directives accepted with no effect carry the reason, which the README's
//! compatibility table repeats. The walker (`build.rs`) checks context, block and arity in
//! nginx's order and calls the handler.

use super::blocks;
use super::build::{Env, MainBuild, UpstreamBuild};
use super::error::Result;
use super::handlers::{
    self, cipher_string, conf_command, doc_root, ecdh_curves, error_log, error_page, next_upstream,
    proxy_redirect, ssl_session_cache, tls_versions, try_files, worker_cpu_affinity,
    worker_processes,
};
use super::handlers_out;
use super::model::*;
use super::parser::Directive;
use super::stream::{ServerBuild, StreamConf, StreamLevel};
use super::values::{parse_flag, parse_number, parse_size, parse_time};
use super::ConfigError;

/// Context bits (nginx's NGX_MAIN_CONF, NGX_EVENT_CONF, NGX_HTTP_*_CONF).
pub type Ctx = u16;
/// Top level.
pub const MAIN: Ctx = 1;
/// `events { }`.
pub const EVENTS: Ctx = 2;
/// `http { }`.
pub const HTTP: Ctx = 4;
/// `server { }` in `http`.
pub const SERVER: Ctx = 8;
/// `location { }`.
pub const LOC: Ctx = 16;
/// `upstream { }`.
pub const UPS: Ctx = 32;
/// `if { }` in a server: rewrite directives only.
pub const SIF: Ctx = 64;
/// `if { }` in a location.
pub const LIF: Ctx = 128;
/// `limit_except { }`.
pub const LMT: Ctx = 256;
/// `stream { }`.
pub const STREAM: Ctx = 512;
/// `server { }` in `stream`.
pub const SSRV: Ctx = 1024;
/// `upstream { }` in `stream`.
pub const SUPS: Ctx = 2048;
pub(super) const SS: Ctx = STREAM | SSRV;
const HSL: Ctx = HTTP | SERVER | LOC;
const HS: Ctx = HTTP | SERVER;
const SL: Ctx = SERVER | LOC;

/// How many arguments a directive takes (after its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Between `min` and `max` inclusive.
    Range(u8, u8),
    /// At least this many.
    AtLeast(u8),
    /// Exactly one, `on` or `off`.
    Flag,
}

/// Which block a block directive opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// `events`.
    Events,
    /// `http`.
    Http,
    /// `server` in `http`.
    Server,
    /// `location`.
    Location,
    /// `upstream`.
    Upstream,
    /// `map`.
    Map,
    /// `types`.
    Types,
    /// `if` (rewrite module).
    If,
    /// `limit_except`.
    LimitExcept,
    /// `stream`.
    Stream,
}

/// What a directive does.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Opens a block.
    Block(Block),
    /// Sets something in the main context.
    Main(fn(&mut MainBuild, &Directive, &mut Env) -> Result<()>),
    /// Sets something in `events`.
    Events(fn(&mut EventsConf, &Directive, &mut Env) -> Result<()>),
    /// Sets something at the http, server or location level.
    Level(fn(&mut LocConf, &Directive, &mut Env) -> Result<()>),
    /// Sets something of the server itself (`listen`, `server_name`).
    Server(fn(&mut ServerConf, &Directive, &mut Env) -> Result<()>),
    /// Sets something of the `http` block itself (`log_format`).
    Http(fn(&mut HttpConf, &Directive, &mut Env) -> Result<()>),
    /// Sets something of an `upstream` block.
    Upstream(fn(&mut UpstreamBuild, &Directive, &mut Env) -> Result<()>),
    /// Sets something at the `stream` or stream `server` level.
    Stream(fn(&mut StreamLevel, &Directive, &mut Env) -> Result<()>),
    /// Sets something of the `stream` block itself (`log_format`).
    StreamMain(fn(&mut StreamConf, &Directive, &mut Env) -> Result<()>),
    /// Sets something of a stream `server` itself (`listen`, `proxy_pass`).
    StreamServer(fn(&mut ServerBuild, &Directive, &mut Env) -> Result<()>),
    /// Accepted and checked for arity, with no effect in ringproxy; the reason is documented.
    NoEffect(&'static str),
    /// Refused with `"x" directive is not supported by ringproxy` and the hint.
    Unsupported(&'static str),
    /// Accepted with no effect like [`Handler::NoEffect`] once the check passes: nginx's errors
    /// for values it refuses, and ringproxy's refusal of values it cannot honour.
    NoEffectChecked(&'static str, fn(&Directive) -> Result<()>),
}

/// One row of the table.
#[derive(Clone, Copy)]
pub struct Spec {
    /// Directive name.
    pub name: &'static str,
    /// Where it may appear.
    pub ctx: Ctx,
    /// Arguments.
    pub arity: Arity,
    /// What it does.
    pub handler: Handler,
}

impl Spec {
    /// Whether the directive opens a block.
    pub fn is_block(&self) -> bool {
        matches!(self.handler, Handler::Block(_))
    }
}

pub(super) const fn n(min: u8, max: u8) -> Arity {
    Arity::Range(min, max)
}
pub(super) const A0: Arity = Arity::Range(0, 0);
pub(super) const A1: Arity = Arity::Range(1, 1);
pub(super) const A2: Arity = Arity::Range(2, 2);
pub(super) const FLAG: Arity = Arity::Flag;
pub(super) const MORE1: Arity = Arity::AtLeast(1);
pub(super) const MORE2: Arity = Arity::AtLeast(2);

macro_rules! spec {
    ($name:literal, $ctx:expr, $arity:expr, $handler:expr) => {
        Spec {
            name: $name,
            ctx: $ctx,
            arity: $arity,
            handler: $handler,
        }
    };
}
pub(super) use spec;

/// Why `http2` and `listen ... http2` change nothing yet (the README's table says the same).
pub const HTTP2_NOT_YET: &str =
    "HTTP/2 is not implemented yet: TLS offers only http/1.1 in ALPN, so clients use HTTP/1.1";

/// Flags accepted without effect that warn when on: a user relying on them must know.
pub const WARN_WHEN_ON: &[&str] = &["http2"];

/// Why the cache's per-request switches change nothing.
const NOTHING_CACHED: &str =
    "ringproxy has no cache, so nothing is cached or bypassed (as in nginx without proxy_cache)";

macro_rules! level {
    ($name:literal, $ctx:expr, flag, $field:ident) => {
        spec!(
            $name,
            $ctx,
            FLAG,
            Handler::Level(|c, d, _| set_once(&mut c.$field, flag(d)?, d))
        )
    };
    ($name:literal, $ctx:expr, time, $field:ident) => {
        spec!(
            $name,
            $ctx,
            A1,
            Handler::Level(|c, d, _| set_once(&mut c.$field, time(d, 0)?, d))
        )
    };
    ($name:literal, $ctx:expr, size, $field:ident) => {
        spec!(
            $name,
            $ctx,
            A1,
            Handler::Level(|c, d, _| set_once(&mut c.$field, size(d, 0)?, d))
        )
    };
    ($name:literal, $ctx:expr, num, $field:ident) => {
        spec!(
            $name,
            $ctx,
            A1,
            Handler::Level(|c, d, _| set_once(&mut c.$field, num(d, 0)?, d))
        )
    };
    ($name:literal, $ctx:expr, string, $field:ident) => {
        spec!(
            $name,
            $ctx,
            A1,
            Handler::Level(|c, d, _| set_once(&mut c.$field, d.arg(0).to_string(), d))
        )
    };
    ($name:literal, $ctx:expr, conf_path, $field:ident) => {
        spec!(
            $name,
            $ctx,
            A1,
            Handler::Level(|c, d, e| set_once(&mut c.$field, e.conf_path(d.arg(0)), d))
        )
    };
}

const NO_DISK: &str = "ringproxy streams bodies and never writes them to disk";
const NO_HASH: &str = "ringproxy sizes its lookup tables itself";
const NO_CACHE: &str = "ringproxy has no cache";
/// `proxy_cache off` is what ringproxy does anyway; a zone is refused (see `handlers_out::proxy_cache`).
const CACHE_OFF: &str = "only `off` is accepted, ringproxy has no cache";
/// `proxy_store off` is what ringproxy does anyway; `on` or a path is refused.
const STORE_OFF: &str = "only `off` is accepted, ringproxy never writes responses to disk";
const NO_OVERRIDE: &str =
    "only `off`: overriding an upstream's charset recodes, and ringproxy has no charset_map";
const NO_AIO: &str =
    "static files are read on the shard's own io_uring; there is no thread pool to hand reads to";
const STREAMED: &str = "ringproxy streams responses through one pooled buffer per direction";

/// Directives read into the typed model with nginx's syntax, defaults and inheritance that the
/// engine does not act on yet; the README's compatibility table marks them "parsed and
/// validated; no effect yet". Every other directive with a handler is in effect.
pub const NOT_IN_EFFECT_YET: &[&str] = &["stub_status"];

/// The table. Names may repeat with different contexts (`server`, `keepalive_timeout`).
pub static DIRECTIVES: &[Spec] = &[
    // Main context.
    spec!("events", MAIN, A0, Handler::Block(Block::Events)),
    spec!("http", MAIN, A0, Handler::Block(Block::Http)),
    spec!("daemon", MAIN, FLAG, Handler::Main(|m, d, _| set_once(&mut m.daemon, flag(d)?, d))),
    spec!("pid", MAIN, A1, Handler::Main(|m, d, e| set_once(&mut m.pid, e.prefix_path(d.arg(0)), d))),
    spec!("worker_processes", MAIN, A1, Handler::Main(worker_processes)),
    spec!("worker_rlimit_nofile", MAIN, A1, Handler::Main(|m, d, _| set_once(&mut m.worker_rlimit_nofile, num(d, 0)?, d))),
    spec!("worker_shutdown_timeout", MAIN, A1, Handler::Main(|m, d, _| set_once(&mut m.worker_shutdown_timeout, time(d, 0)?, d))),
    spec!("worker_shutdown_spread", MAIN, A1, Handler::Main(|m, d, _| set_once(&mut m.worker_shutdown_spread, time(d, 0)?, d))),
    spec!("worker_cpu_affinity", MAIN, MORE1, Handler::Main(worker_cpu_affinity)),
    spec!("user", MAIN, n(1, 2), Handler::Main(|m, d, e| {
        if m.user.is_some() {
            return Err(err(d, "\"user\" directive is duplicate"));
        }
        if !e.opts.is_root {
            e.warn(Some(&d.span), "the \"user\" directive makes sense only if the master process runs with super-user privileges, ignored".into());
            return Ok(());
        }
        m.user = Some(handlers::run_as(d)?);
        Ok(())
    })),
    spec!("error_log", MAIN, MORE1, Handler::Main(|m, d, e| {
        m.error_log.push(error_log(d, e)?);
        Ok(())
    })),
    spec!("master_process", MAIN, FLAG, Handler::NoEffect("ringproxy is one process with a thread per core")),
    spec!("env", MAIN, A1, Handler::NoEffect("ringproxy starts no worker processes, so there is no environment to filter")),
    spec!("lock_file", MAIN, A1, Handler::NoEffect("no accept mutex: each shard has its own SO_REUSEPORT socket")),
    spec!("pcre_jit", MAIN, FLAG, Handler::NoEffect("regular expressions are always JIT-compiled (PCRE2), as nginx with pcre_jit on")),
    spec!("timer_resolution", MAIN, A1, Handler::NoEffect("timers come from the io_uring/epoll runtime")),
    spec!("worker_priority", MAIN, A1, Handler::Unsupported("")),
    spec!("worker_rlimit_core", MAIN, A1, Handler::Unsupported("")),
    spec!("working_directory", MAIN, A1, Handler::Unsupported("")),
    spec!("load_module", MAIN, A1, Handler::Unsupported("dynamic modules do not exist in ringproxy")),
    spec!("thread_pool", MAIN, n(1, 3), Handler::Unsupported("")),
    spec!("ssl_engine", MAIN, A1, Handler::Unsupported("TLS is rustls, not OpenSSL")),
    spec!("stream", MAIN, A0, Handler::Block(Block::Stream)),
    spec!("mail", MAIN, A0, Handler::Unsupported("only the http module exists")),
    // events.
    spec!("worker_connections", EVENTS, A1, Handler::Events(|ev, d, _| {
        ev.worker_connections = num(d, 0)?;
        Ok(())
    })),
    spec!("multi_accept", EVENTS, FLAG, Handler::NoEffect("each shard's driver decides: the epoll driver takes every pending connection per readiness event (as nginx with multi_accept on), io_uring completes one accept per submission (as off)")),
    spec!("use", EVENTS, A1, Handler::Events(|ev, d, _| {
        ev.method = Some(match d.arg(0) {
            "epoll" => EventMethod::Epoll,
            "io_uring" => EventMethod::IoUring,
            other => return Err(err(d, format!("invalid event type \"{other}\""))),
        });
        Ok(())
    })),
    spec!("accept_mutex", EVENTS, FLAG, Handler::NoEffect("no accept mutex: each shard has its own SO_REUSEPORT socket")),
    spec!("accept_mutex_delay", EVENTS, A1, Handler::NoEffect("no accept mutex: each shard has its own SO_REUSEPORT socket")),
    spec!("debug_connection", EVENTS, A1, Handler::Unsupported("")),
    spec!("worker_aio_requests", EVENTS, A1, Handler::Unsupported("")),
    // http core.
    spec!("server", HTTP, A0, Handler::Block(Block::Server)),
    spec!("location", SL, n(1, 2), Handler::Block(Block::Location)),
    spec!("upstream", HTTP, A1, Handler::Block(Block::Upstream)),
    spec!("map", HTTP, A2, Handler::Block(Block::Map)),
    spec!("types", HSL, A0, Handler::Block(Block::Types)),
    spec!("listen", SERVER, MORE1, Handler::Server(handlers::listen)),
    spec!("server_name", SERVER, MORE1, Handler::Server(handlers::server_name)),
    spec!("root", HSL | LIF, A1, Handler::Level(doc_root)),
    spec!("alias", LOC, A1, Handler::Level(doc_root)),
    spec!("index", HSL, MORE1, Handler::Level(|c, d, e| {
        let list = d.args.iter().map(|a| e.template(&a.value, d)).collect::<Result<Vec<_>>>()?;
        set_once(&mut c.index, list, d)
    })),
    spec!("try_files", SL, MORE2, Handler::Level(try_files)),
    level!("default_type", HSL, string, default_type),
    spec!("keepalive_timeout", HSL, n(1, 2), Handler::Level(|c, d, _| {
        set_once(&mut c.keepalive_timeout, time(d, 0)?, d)?;
        if d.args.len() == 2 {
            c.keepalive_header_timeout = Some(time(d, 1)?);
        }
        Ok(())
    })),
    level!("keepalive_requests", HSL, num, keepalive_requests),
    level!("keepalive_time", HSL, time, keepalive_time),
    level!("client_header_timeout", HS, time, client_header_timeout),
    level!("client_header_buffer_size", HS, size, client_header_buffer_size),
    spec!("large_client_header_buffers", HS, A2, Handler::Level(|c, d, _| {
        let count = num(d, 0)?;
        let size = size(d, 1)?;
        if count == 0 || size == 0 {
            return Err(invalid_value(d));
        }
        set_once(&mut c.large_client_header_buffers, (count, size), d)
    })),
    level!("client_max_body_size", HSL, size, client_max_body_size),
    level!("client_body_timeout", HSL, time, client_body_timeout),
    spec!("client_body_buffer_size", HSL, A1, Handler::NoEffect("request bodies are streamed to the backend as they arrive (nginx's proxy_request_buffering off), never held whole in memory or written to disk")),
    level!("send_timeout", HSL, time, send_timeout),
    level!("tcp_nodelay", HSL, flag, tcp_nodelay),
    spec!("server_tokens", HSL, A1, Handler::Level(|c, d, _| {
        let v = match d.arg(0) {
            "on" | "build" => true,
            "off" => false,
            other => return Err(err(d, format!("invalid value \"{other}\""))),
        };
        set_once(&mut c.server_tokens, v, d)
    })),
    level!("merge_slashes", HS, flag, merge_slashes),
    level!("underscores_in_headers", HS, flag, underscores_in_headers),
    level!("ignore_invalid_headers", HS, flag, ignore_invalid_headers),
    level!("chunked_transfer_encoding", HSL, flag, chunked_transfer_encoding),
    level!("etag", HSL, flag, etag),
    level!("log_not_found", HSL, flag, log_not_found),
    level!("absolute_redirect", HSL, flag, absolute_redirect),
    level!("port_in_redirect", HSL, flag, port_in_redirect),
    level!("server_name_in_redirect", HSL, flag, server_name_in_redirect),
    spec!("error_page", HSL | LIF, MORE2, Handler::Level(error_page)),
    spec!("internal", LOC, A0, Handler::Level(|c, _, _| {
        c.internal = true;
        Ok(())
    })),
    spec!("error_log", HSL, MORE1, Handler::Level(|c, d, e| {
        let log = error_log(d, e)?;
        c.error_log.get_or_insert_with(Vec::new).push(log);
        Ok(())
    })),
    spec!("sendfile", HSL | LIF, FLAG, Handler::NoEffect("static files are read into the shard's buffers; sendfile(2) is not used")),
    spec!("tcp_nopush", HSL, FLAG, Handler::NoEffect("responses are written whole; TCP_CORK is not used")),
    spec!("sendfile_max_chunk", HSL, A1, Handler::NoEffect("sendfile(2) is not used")),
    spec!("output_buffers", HSL, A2, Handler::NoEffect(STREAMED)),
    spec!("postpone_output", HSL, A1, Handler::NoEffect(STREAMED)),
    spec!("client_body_temp_path", HSL, n(1, 4), Handler::NoEffect(NO_DISK)),
    spec!("lingering_close", HSL, A1, Handler::NoEffect("ringproxy shuts down its write side and closes; it does not linger")),
    spec!("lingering_time", HSL, A1, Handler::NoEffect("ringproxy does not linger on close")),
    spec!("lingering_timeout", HSL, A1, Handler::NoEffect("ringproxy does not linger on close")),
    spec!("reset_timedout_connection", HSL, FLAG, Handler::NoEffect("timed-out connections are closed at once")),
    spec!("resolver", HSL, MORE1, Handler::Level(handlers_out::resolver)),
    level!("resolver_timeout", HSL, time, resolver_timeout),
    spec!("open_file_cache", HSL, n(1, 2), Handler::NoEffect("files are opened per request")),
    spec!("open_file_cache_valid", HSL, A1, Handler::NoEffect("files are opened per request")),
    spec!("open_file_cache_min_uses", HSL, A1, Handler::NoEffect("files are opened per request")),
    spec!("open_file_cache_errors", HSL, FLAG, Handler::NoEffect("files are opened per request")),
    spec!("types_hash_max_size", HSL, A1, Handler::NoEffect(NO_HASH)),
    spec!("types_hash_bucket_size", HSL, A1, Handler::NoEffect(NO_HASH)),
    spec!("variables_hash_max_size", HTTP, A1, Handler::NoEffect(NO_HASH)),
    spec!("variables_hash_bucket_size", HTTP, A1, Handler::NoEffect(NO_HASH)),
    spec!("server_names_hash_max_size", HTTP, A1, Handler::NoEffect(NO_HASH)),
    spec!("server_names_hash_bucket_size", HTTP, A1, Handler::NoEffect(NO_HASH)),
    spec!("map_hash_max_size", HTTP, A1, Handler::NoEffect(NO_HASH)),
    spec!("map_hash_bucket_size", HTTP, A1, Handler::NoEffect(NO_HASH)),
    spec!("proxy_headers_hash_max_size", HSL, A1, Handler::NoEffect(NO_HASH)),
    spec!("proxy_headers_hash_bucket_size", HSL, A1, Handler::NoEffect(NO_HASH)),
    spec!("connection_pool_size", HS, A1, Handler::NoEffect("connection memory comes from the shard's pools")),
    spec!("request_pool_size", HS, A1, Handler::NoEffect("request memory comes from the shard's pools")),
    spec!("keepalive_disable", HSL, n(1, 2), Handler::Unsupported("")),
    spec!("limit_except", LOC, MORE1, Handler::Block(Block::LimitExcept)),
    spec!("if", SL, MORE1, Handler::Block(Block::If)),
    spec!("limit_rate", HSL | LIF, A1, Handler::Unsupported("")),
    spec!("limit_rate_after", HSL | LIF, A1, Handler::Unsupported("")),
    spec!("aio", HSL, A1, Handler::NoEffectChecked(NO_AIO, handlers_out::aio)),
    spec!("directio", HSL, A1, Handler::Unsupported("")),
    spec!("max_ranges", HSL, A1, Handler::Unsupported("")),
    spec!("if_modified_since", HSL, A1, Handler::Unsupported("")),
    spec!("recursive_error_pages", HSL, FLAG, Handler::Unsupported("")),
    spec!("client_body_in_file_only", HSL, A1, Handler::Unsupported("")),
    spec!("client_body_in_single_buffer", HSL, FLAG, Handler::Unsupported("")),
    spec!("disable_symlinks", HSL, n(1, 2), Handler::Unsupported("")),
    spec!("satisfy", HSL, A1, Handler::Level(|c, d, _| {
        let s = match d.arg(0) {
            "all" => Satisfy::All,
            "any" => Satisfy::Any,
            v => return Err(err(d, format!("invalid value \"{v}\" in \"satisfy\" directive, it must be \"all\" or \"any\""))),
        };
        set_once(&mut c.satisfy, s, d)
    })),
    spec!("auth_basic", HSL | LMT, A1, Handler::Level(|c, d, e| {
        let realm = e.template(d.arg(0), d)?;
        set_once(&mut c.auth_basic, realm, d)
    })),
    spec!("auth_basic_user_file", HSL | LMT, A1, Handler::Level(|c, d, e| {
        let file = AuthUserFile { path: e.template(d.arg(0), d)?, conf_dir: e.conf_path("") };
        set_once(&mut c.auth_basic_user_file, file, d)
    })),
    level!("auth_delay", HSL, time, auth_delay),
    spec!("auth_request", HSL, A1, Handler::Level(|c, d, _| {
        let uri = if d.arg(0) == "off" { String::new() } else { d.arg(0).to_string() };
        set_once(&mut c.auth_request, uri, d)
    })),
    spec!("auth_request_set", HSL, A2, Handler::Level(|c, d, e| {
        let Some(name) = d.arg(0).strip_prefix('$') else {
            return Err(err(d, format!("invalid variable name \"{}\"", d.arg(0))));
        };
        let value = e.template(d.arg(1), d)?;
        e.vars.define(name);
        c.auth_request_set.get_or_insert_with(Vec::new).push((name.to_ascii_lowercase(), value));
        Ok(())
    })),
    spec!("allow", HSL | LMT, A1, Handler::Level(super::conditional::access_rule)),
    spec!("deny", HSL | LMT, A1, Handler::Level(super::conditional::access_rule)),
    // limit_req and limit_conn modules.
    spec!("limit_req_zone", HTTP, n(3, 3), Handler::Http(super::limits::req_zone)),
    spec!("limit_req", HSL, n(1, 3), Handler::Level(super::limits::limit_req)),
    spec!("limit_req_status", HSL, A1, Handler::Level(|c, d, _| set_once(&mut c.limit_req_status, super::limits::status(d)?, d))),
    spec!("limit_req_log_level", HSL, A1, Handler::Level(|c, d, _| set_once(&mut c.limit_req_log_level, super::limits::log_level(d)?, d))),
    level!("limit_req_dry_run", HSL, flag, limit_req_dry_run),
    spec!("limit_conn_zone", HTTP, A2, Handler::Http(super::limits::conn_zone)),
    spec!("limit_conn", HSL, A2, Handler::Level(super::limits::limit_conn)),
    spec!("limit_conn_status", HSL, A1, Handler::Level(|c, d, _| set_once(&mut c.limit_conn_status, super::limits::status(d)?, d))),
    spec!("limit_conn_log_level", HSL, A1, Handler::Level(|c, d, _| set_once(&mut c.limit_conn_log_level, super::limits::log_level(d)?, d))),
    level!("limit_conn_dry_run", HSL, flag, limit_conn_dry_run),
    spec!("expires", HSL | LIF, n(1, 2), Handler::Level(handlers_out::expires)),
    spec!("add_trailer", HSL | LIF, n(2, 3), Handler::Unsupported("")),
    spec!("charset", HSL, A1, Handler::Level(|c, d, e| set_once(&mut c.charset, handlers_out::charset(d, e)?, d))),
    spec!("source_charset", HSL, A1, Handler::Level(|c, d, e| set_once(&mut c.source_charset, handlers_out::charset(d, e)?, d))),
    spec!("charset_types", HSL, MORE1, Handler::Level(handlers_out::charset_types)),
    spec!("override_charset", HSL, FLAG, Handler::NoEffectChecked(NO_OVERRIDE, handlers_out::override_charset)),
    spec!("charset_map", HTTP, A2, Handler::Unsupported("ringproxy adds \"; charset=\" but does not recode")),
    spec!("ssi", HSL | LIF, FLAG, Handler::Unsupported("")),
    spec!("ssi_types", HSL, MORE1, Handler::Unsupported("")),
    spec!("ssi_silent_errors", HSL, FLAG, Handler::Unsupported("")),
    spec!("ssi_last_modified", HSL, FLAG, Handler::Unsupported("")),
    spec!("ssi_min_file_chunk", HSL, A1, Handler::Unsupported("")),
    spec!("ssi_value_length", HSL, A1, Handler::Unsupported("")),
    spec!("sub_filter", HSL, A2, Handler::Unsupported("")),
    spec!("sub_filter_once", HSL, FLAG, Handler::Unsupported("")),
    spec!("sub_filter_types", HSL, MORE1, Handler::Unsupported("")),
    spec!("sub_filter_last_modified", HSL, FLAG, Handler::Unsupported("")),
    spec!("autoindex", HSL, FLAG, Handler::Unsupported("")),
    // realip module.
    spec!("set_real_ip_from", HSL, A1, Handler::Level(handlers::set_real_ip_from)),
    spec!("real_ip_header", HSL, A1, Handler::Level(|c, d, _| {
        set_once(&mut c.real_ip_header, crate::http::realip::RealIpHeader::parse(d.arg(0)), d)
    })),
    level!("real_ip_recursive", HSL, flag, real_ip_recursive),
    spec!("gzip_static", HSL, A1, Handler::Level(|c, d, _| {
        let v = match d.arg(0) {
            "off" => GzipStatic::Off,
            "on" => GzipStatic::On,
            "always" => GzipStatic::Always,
            other => return Err(err(d, format!("invalid value \"{other}\""))),
        };
        set_once(&mut c.gzip_static, v, d)
    })),
    spec!("http2", HS, FLAG, Handler::NoEffect(HTTP2_NOT_YET)),
    // nginx 1.22's HTTP/2 tuning, in configurations written for it.
    spec!("http2_body_preread_size", HS, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_chunk_size", HSL, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_idle_timeout", HS, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_max_concurrent_pushes", HS, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_max_concurrent_streams", HS, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_max_field_size", HS, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_max_header_size", HS, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_max_requests", HS, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_push", HSL, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_push_preload", HSL, FLAG, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_recv_buffer_size", HTTP, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("http2_recv_timeout", HS, A1, Handler::NoEffect(HTTP2_NOT_YET)),
    spec!("fastcgi_pass", LOC | LIF, A1, Handler::Unsupported("only proxy_pass is implemented")),
    spec!("uwsgi_pass", LOC | LIF, A1, Handler::Unsupported("only proxy_pass is implemented")),
    spec!("grpc_pass", LOC | LIF, n(0, 1), Handler::Unsupported("only proxy_pass is implemented")),
    spec!("scgi_pass", LOC | LIF, A1, Handler::Unsupported("only proxy_pass is implemented")),
    spec!("memcached_pass", LOC | LIF, A1, Handler::Unsupported("only proxy_pass is implemented")),
    // rewrite module.
    spec!("rewrite", SL | SIF | LIF, n(2, 3), Handler::Level(handlers::rewrite)),
    spec!("return", SL | SIF | LIF, n(1, 2), Handler::Level(handlers::return_)),
    spec!("set", SL | SIF | LIF, A2, Handler::Level(handlers::set)),
    spec!("break", SL | SIF | LIF, A0, Handler::Level(|c, _, _| {
        c.script.push(ScriptOp::Break);
        Ok(())
    })),
    level!("rewrite_log", HSL | SIF | LIF, flag, rewrite_log),
    spec!("uninitialized_variable_warn", HSL | SIF | LIF, FLAG, Handler::NoEffect("ringproxy refuses undefined variables at load time")),
    // proxy module.
    spec!("proxy_pass", LOC | LIF | LMT, A1, Handler::Level(handlers::proxy_pass)),
    spec!("proxy_http_version", HSL, A1, Handler::Level(|c, d, _| {
        let v = match d.arg(0) {
            "1.0" => HttpVersion::Http10,
            "1.1" => HttpVersion::Http11,
            other => return Err(err(d, format!("invalid value \"{other}\""))),
        };
        set_once(&mut c.proxy_http_version, v, d)
    })),
    spec!("proxy_set_header", HSL, A2, Handler::Level(|c, d, e| {
        let value = e.template(d.arg(1), d)?;
        c.proxy_set_header.get_or_insert_with(Vec::new).push((d.arg(0).to_string(), value));
        Ok(())
    })),
    spec!("proxy_hide_header", HSL, A1, Handler::Level(|c, d, _| {
        c.proxy_hide_header.get_or_insert_with(Vec::new).push(d.arg(0).to_ascii_lowercase());
        Ok(())
    })),
    spec!("proxy_pass_header", HSL, A1, Handler::Level(|c, d, _| {
        c.proxy_pass_header.get_or_insert_with(Vec::new).push(d.arg(0).to_ascii_lowercase());
        Ok(())
    })),
    level!("proxy_connect_timeout", HSL, time, proxy_connect_timeout),
    level!("proxy_read_timeout", HSL, time, proxy_read_timeout),
    level!("proxy_send_timeout", HSL, time, proxy_send_timeout),
    level!("proxy_buffer_size", HSL, size, proxy_buffer_size),
    spec!("proxy_next_upstream", HSL, MORE1, Handler::Level(next_upstream)),
    level!("proxy_next_upstream_tries", HSL, num, proxy_next_upstream_tries),
    level!("proxy_next_upstream_timeout", HSL, time, proxy_next_upstream_timeout),
    level!("proxy_intercept_errors", HSL, flag, proxy_intercept_errors),
    level!("proxy_ignore_client_abort", HSL, flag, proxy_ignore_client_abort),
    level!("proxy_pass_request_headers", HSL, flag, proxy_pass_request_headers),
    level!("proxy_pass_request_body", HSL, flag, proxy_pass_request_body),
    level!("proxy_socket_keepalive", HSL, flag, proxy_socket_keepalive),
    spec!("proxy_redirect", HSL, n(1, 2), Handler::Level(proxy_redirect)),
    spec!("proxy_splice", HSL, A1, Handler::Level(|c, d, _| {
        let v = match d.arg(0) {
            "on" => SpliceMode::On,
            "off" => SpliceMode::Off,
            "auto" => SpliceMode::Auto,
            other => return Err(err(d, format!("invalid value \"{other}\""))),
        };
        set_once(&mut c.proxy_splice, v, d)
    })),
    spec!("proxy_allow_upgrade", HSL, MORE1, Handler::Level(|c, d, _| {
        let list = d.args.iter().map(|a| a.value.to_ascii_lowercase()).collect();
        set_once(&mut c.proxy_allow_upgrade, list, d)
    })),
    level!("proxy_ssl_server_name", HSL, flag, proxy_ssl_server_name),
    spec!("proxy_ssl_name", HSL, A1, Handler::Level(|c, d, e| {
        let t = e.template(d.arg(0), d)?;
        set_once(&mut c.proxy_ssl_name, t, d)
    })),
    level!("proxy_ssl_verify", HSL, flag, proxy_ssl_verify),
    level!("proxy_ssl_verify_depth", HSL, num, proxy_ssl_verify_depth),
    level!("proxy_ssl_trusted_certificate", HSL, conf_path, proxy_ssl_trusted_certificate),
    level!("proxy_ssl_certificate", HSL, conf_path, proxy_ssl_certificate),
    level!("proxy_ssl_certificate_key", HSL, conf_path, proxy_ssl_certificate_key),
    level!("proxy_ssl_session_reuse", HSL, flag, proxy_ssl_session_reuse),
    spec!("proxy_ssl_ciphers", HSL, A1, Handler::Level(|c, d, e| {
        let v = cipher_string(d, e);
        set_once(&mut c.proxy_ssl_ciphers, v, d)
    })),
    spec!("proxy_ssl_protocols", HSL, MORE1, Handler::Level(|c, d, e| {
        let v = tls_versions(d, e)?;
        set_once(&mut c.proxy_ssl_protocols, v, d)
    })),
    spec!("proxy_buffering", HSL, FLAG, Handler::NoEffect(STREAMED)),
    spec!("proxy_request_buffering", HSL, FLAG, Handler::NoEffect("request bodies are streamed to the backend as they arrive")),
    spec!("proxy_buffers", HSL, A2, Handler::NoEffect(STREAMED)),
    spec!("proxy_busy_buffers_size", HSL, A1, Handler::NoEffect(STREAMED)),
    spec!("proxy_temp_path", HSL, n(1, 4), Handler::NoEffect(NO_DISK)),
    spec!("proxy_max_temp_file_size", HSL, A1, Handler::NoEffect(NO_DISK)),
    spec!("proxy_temp_file_write_size", HSL, A1, Handler::NoEffect(NO_DISK)),
    spec!("proxy_ignore_headers", HSL, MORE1, Handler::NoEffect("ringproxy does not act on X-Accel-* or caching headers")),
    spec!("proxy_cache", HSL, A1, Handler::NoEffectChecked(CACHE_OFF, handlers_out::proxy_cache)),
    spec!("proxy_cache_path", HTTP, MORE2, Handler::Unsupported(NO_CACHE)),
    spec!("proxy_cache_key", HSL, A1, Handler::Unsupported(NO_CACHE)),
    spec!("proxy_cache_valid", HSL, MORE1, Handler::Unsupported(NO_CACHE)),
    spec!("proxy_cache_bypass", HSL, MORE1, Handler::NoEffect(NOTHING_CACHED)),
    spec!("proxy_no_cache", HSL, MORE1, Handler::NoEffect(NOTHING_CACHED)),
    spec!("proxy_cache_use_stale", HSL, MORE1, Handler::Unsupported(NO_CACHE)),
    spec!("proxy_cache_methods", HSL, MORE1, Handler::Unsupported(NO_CACHE)),
    spec!("proxy_cache_min_uses", HSL, A1, Handler::Unsupported(NO_CACHE)),
    spec!("proxy_cache_lock", HSL, FLAG, Handler::Unsupported(NO_CACHE)),
    spec!("proxy_cache_revalidate", HSL, FLAG, Handler::Unsupported(NO_CACHE)),
    spec!("proxy_store", HSL, A1, Handler::NoEffectChecked(STORE_OFF, handlers_out::proxy_store)),
    spec!("proxy_cookie_domain", HSL, n(1, 2), Handler::Level(handlers_out::proxy_cookie_domain)),
    spec!("proxy_cookie_path", HSL, n(1, 2), Handler::Level(handlers_out::proxy_cookie_path)),
    spec!("proxy_cookie_flags", HSL, n(1, 4), Handler::Level(handlers_out::proxy_cookie_flags)),
    spec!("proxy_bind", HSL, n(1, 2), Handler::Unsupported("")),
    spec!("proxy_set_body", HSL, A1, Handler::Unsupported("")),
    spec!("proxy_method", HSL, A1, Handler::Unsupported("")),
    spec!("proxy_limit_rate", HSL, A1, Handler::Unsupported("")),
    spec!("proxy_force_ranges", HSL, FLAG, Handler::Unsupported("")),
    spec!("proxy_send_lowat", HSL, A1, Handler::Unsupported("")),
    spec!("proxy_ssl_crl", HSL, A1, Handler::Unsupported("")),
    spec!("proxy_ssl_password_file", HSL, A1, Handler::Level(|c, d, e| {
        let v = crate::tls::keys::read_password_file(&e.conf_path(d.arg(0)))
            .map_err(|m| err(d, m))?;
        set_once(&mut c.proxy_ssl_password_file, v, d)
    })),
    spec!("proxy_ssl_conf_command", HSL, A2, Handler::Level(|c, d, e| {
        let v = conf_command(d, e, crate::tls::conf_command::Role::Client)?;
        c.proxy_ssl_conf_command.get_or_insert_with(Vec::new).push(v);
        Ok(())
    })),
    // upstream module.
    spec!("server", UPS, MORE1, Handler::Upstream(blocks::upstream_server)),
    spec!("hash", UPS, n(1, 2), Handler::Upstream(blocks::upstream_hash)),
    spec!("ip_hash", UPS, A0, Handler::Upstream(|u, d, e| u.set_balance(Balance::IpHash, d, e))),
    spec!("least_conn", UPS, A0, Handler::Upstream(|u, d, e| u.set_balance(Balance::LeastConn, d, e))),
    spec!("random", UPS, n(0, 2), Handler::Upstream(blocks::upstream_random)),
    spec!("keepalive", UPS, A1, Handler::Upstream(|u, d, _| {
        let v = num(d, 0)?;
        if v == 0 {
            return Err(err(d, format!("invalid value \"{}\" in \"keepalive\" directive", d.arg(0))));
        }
        set_once(&mut u.keepalive, v, d)
    })),
    spec!("keepalive_timeout", UPS, A1, Handler::Upstream(|u, d, _| set_once(&mut u.keepalive_timeout, time(d, 0)?, d))),
    spec!("keepalive_requests", UPS, A1, Handler::Upstream(|u, d, _| set_once(&mut u.keepalive_requests, num(d, 0)?, d))),
    spec!("keepalive_time", UPS, A1, Handler::Upstream(|u, d, _| set_once(&mut u.keepalive_time, time(d, 0)?, d))),
    spec!("zone", UPS, n(1, 2), Handler::Upstream(blocks::upstream_zone)),
    spec!("sticky", UPS, MORE2, Handler::Upstream(super::sticky::directive)),
    spec!("queue", UPS, n(1, 2), Handler::Unsupported("")),
    spec!("ntlm", UPS, A0, Handler::Unsupported("")),
    // log module.
    spec!("access_log", HSL | LIF | LMT, MORE1, Handler::Level(handlers::access_log)),
    spec!("log_format", HTTP, MORE2, Handler::Http(handlers::log_format)),
    spec!("open_log_file_cache", HSL, n(1, 4), Handler::NoEffect("log files are opened once per shard and reopened on USR1")),
    // headers module.
    spec!("add_header", HSL | LIF, n(2, 3), Handler::Level(|c, d, e| {
        let always = match d.args.get(2).map(|a| a.value.as_str()) {
            None => false,
            Some("always") => true,
            Some(other) => return Err(err(d, format!("invalid parameter \"{other}\""))),
        };
        let value = e.template(d.arg(1), d)?;
        let h = AddHeader { name: d.arg(0).to_string(), value, always };
        c.add_header.get_or_insert_with(Vec::new).push(h);
        Ok(())
    })),
    // gzip module.
    level!("gzip", HSL | LIF, flag, gzip),
    spec!("gzip_comp_level", HSL, A1, Handler::Level(|c, d, _| {
        let v = num(d, 0)?;
        if !(1..=9).contains(&v) {
            return Err(err(d, "the value must be in 1..9 range"));
        }
        set_once(&mut c.gzip_comp_level, v, d)
    })),
    level!("gzip_min_length", HSL, size, gzip_min_length),
    spec!("gzip_http_version", HSL, A1, Handler::Level(|c, d, _| {
        let v = match d.arg(0) {
            "1.0" => HttpVersion::Http10,
            "1.1" => HttpVersion::Http11,
            other => return Err(err(d, format!("invalid value \"{other}\""))),
        };
        set_once(&mut c.gzip_http_version, v, d)
    })),
    spec!("gzip_proxied", HSL, MORE1, Handler::Level(|c, d, _| {
        const OK: &[&str] = &["off", "expired", "no-cache", "no-store", "private", "no_last_modified", "no_etag", "auth", "any"];
        let mut list = Vec::new();
        for a in &d.args {
            if !OK.contains(&a.value.as_str()) {
                return Err(err(d, format!("invalid value \"{}\"", a.value)));
            }
            list.push(a.value.clone());
        }
        set_once(&mut c.gzip_proxied, list, d)
    })),
    spec!("gzip_types", HSL, MORE1, Handler::Level(|c, d, _| {
        let mut list: Vec<String> = d.args.iter().map(|a| a.value.to_ascii_lowercase()).collect();
        if !list.iter().any(|t| t == "text/html") {
            list.push("text/html".into());
        }
        set_once(&mut c.gzip_types, list, d)
    })),
    level!("gzip_vary", HSL, flag, gzip_vary),
    spec!("gzip_disable", HSL, MORE1, Handler::Level(|c, d, _| {
        let mut list = Vec::new();
        for a in &d.args {
            list.push(match a.value.as_str() {
                "msie6" => UaMatch::Msie6,
                "degradation" => UaMatch::Degradation,
                re => UaMatch::Regex(Regex::new(re, true).map_err(|e| err(d, e))?),
            });
        }
        set_once(&mut c.gzip_disable, list, d)
    })),
    spec!("gzip_buffers", HSL, A2, Handler::NoEffect("compression output goes through the shard's buffer pool")),
    spec!("gzip_window", HSL, A1, Handler::Unsupported("")),
    spec!("gzip_hash", HSL, A1, Handler::Unsupported("")),
    // stub_status module.
    spec!("stub_status", SL, n(0, 1), Handler::Level(|c, _, _| {
        c.stub_status = true;
        Ok(())
    })),
    // ssl module.
    spec!("ssl_certificate", HS, A1, Handler::Level(|c, d, e| {
        c.ssl_certificate.get_or_insert_with(Vec::new).push(e.conf_path(d.arg(0)));
        Ok(())
    })),
    spec!("ssl_certificate_key", HS, A1, Handler::Level(|c, d, e| {
        c.ssl_certificate_key.get_or_insert_with(Vec::new).push(e.conf_path(d.arg(0)));
        Ok(())
    })),
    spec!("ssl_protocols", HS, MORE1, Handler::Level(|c, d, e| {
        let v = tls_versions(d, e)?;
        set_once(&mut c.ssl_protocols, v, d)
    })),
    spec!("ssl_ciphers", HS, A1, Handler::Level(|c, d, e| {
        let v = cipher_string(d, e);
        set_once(&mut c.ssl_ciphers, v, d)
    })),
    level!("ssl_prefer_server_ciphers", HS, flag, ssl_prefer_server_ciphers),
    level!("ssl_session_timeout", HS, time, ssl_session_timeout),
    level!("ssl_session_tickets", HS, flag, ssl_session_tickets),
    spec!("ssl_session_cache", HS, n(1, 2), Handler::Level(ssl_session_cache)),
    level!("ssl_reject_handshake", HS, flag, ssl_reject_handshake),
    spec!("ssl_verify_client", HS, A1, Handler::Level(|c, d, _| {
        let v = d.arg(0);
        if !["on", "off", "optional", "optional_no_ca"].contains(&v) {
            return Err(err(d, format!("invalid value \"{v}\"")));
        }
        set_once(&mut c.ssl_verify_client, v.to_string(), d)
    })),
    level!("ssl_client_certificate", HS, conf_path, ssl_client_certificate),
    level!("ssl_verify_depth", HS, num, ssl_verify_depth),
    spec!("ssl_ecdh_curve", HS, A1, Handler::Level(|c, d, e| {
        let v = ecdh_curves(d, e)?;
        set_once(&mut c.ssl_ecdh_curve, v, d)
    })),
    spec!("ssl_dhparam", HS, A1, Handler::NoEffect("rustls has no finite-field Diffie-Hellman; key exchange is ECDHE")),
    level!("ssl_buffer_size", HS, size, ssl_buffer_size),
    spec!("ssl", HS, FLAG, Handler::Level(|c, d, e| {
        e.warn(Some(&d.span), "the \"ssl\" directive is deprecated, use the \"listen ... ssl\" directive instead".into());
        set_once(&mut c.ssl, flag(d)?, d)
    })),
    spec!("ssl_password_file", HS, A1, Handler::Level(|c, d, e| {
        let v = crate::tls::keys::read_password_file(&e.conf_path(d.arg(0)))
            .map_err(|m| err(d, m))?;
        set_once(&mut c.ssl_password_file, v, d)
    })),
    spec!("ssl_session_ticket_key", HS, A1, Handler::Unsupported("")),
    level!("ssl_trusted_certificate", HS, conf_path, ssl_trusted_certificate),
    level!("ssl_crl", HS, conf_path, ssl_crl),
    level!("ssl_stapling", HS, flag, ssl_stapling),
    level!("ssl_stapling_verify", HS, flag, ssl_stapling_verify),
    level!("ssl_stapling_file", HS, conf_path, ssl_stapling_file),
    level!("ssl_stapling_responder", HS, string, ssl_stapling_responder),
    spec!("ssl_early_data", HS, FLAG, Handler::NoEffect("TLSv1.3 early data (0-RTT) is never accepted: requests come after the handshake, so none can be replayed, and $ssl_early_data is always empty")),
    spec!("ssl_conf_command", HS, A2, Handler::Level(|c, d, e| {
        let v = conf_command(d, e, crate::tls::conf_command::Role::Server)?;
        c.ssl_conf_command.get_or_insert_with(Vec::new).push(v);
        Ok(())
    })),
];

/// Every directive: the main table, then the stream module's (`stream_directives.rs`).
pub fn all() -> impl Iterator<Item = &'static Spec> {
    DIRECTIVES
        .iter()
        .chain(super::stream_directives::STREAM_DIRECTIVES)
}

/// Looks a directive up for a context: `Ok(spec)`, or `Err(true)` when the name exists in
/// another context ("not allowed here"), `Err(false)` when nobody knows it.
pub fn lookup(name: &str, ctx: Ctx) -> std::result::Result<&'static Spec, bool> {
    let mut known = false;
    for spec in all() {
        if spec.name == name {
            if spec.ctx & ctx != 0 {
                return Ok(spec);
            }
            known = true;
        }
    }
    Err(known)
}

// ---- helpers shared by handlers ----

/// An error at the directive.
pub(crate) fn err(d: &Directive, msg: impl Into<String>) -> ConfigError {
    ConfigError::at(&d.span, msg)
}

pub(crate) fn invalid_value(d: &Directive) -> ConfigError {
    err(d, format!("\"{}\" directive invalid value", d.name()))
}

pub(crate) fn invalid_number(d: &Directive) -> ConfigError {
    err(d, format!("\"{}\" directive invalid number", d.name()))
}

/// Sets a value once per level (`"x" directive is duplicate` otherwise).
pub(crate) fn set_once<T>(slot: &mut Option<T>, value: T, d: &Directive) -> Result<()> {
    if slot.is_some() {
        return Err(err(d, format!("\"{}\" directive is duplicate", d.name())));
    }
    *slot = Some(value);
    Ok(())
}

pub(crate) fn flag(d: &Directive) -> Result<bool> {
    parse_flag(d.arg(0)).ok_or_else(|| {
        err(
            d,
            format!(
                "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                d.arg(0),
                d.name()
            ),
        )
    })
}

pub(crate) fn time(d: &Directive, i: usize) -> Result<std::time::Duration> {
    parse_time(d.arg(i)).ok_or_else(|| invalid_value(d))
}

pub(crate) fn size(d: &Directive, i: usize) -> Result<u64> {
    parse_size(d.arg(i)).ok_or_else(|| invalid_value(d))
}

pub(crate) fn num<T: TryFrom<u64>>(d: &Directive, i: usize) -> Result<T> {
    parse_number(d.arg(i))
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| invalid_number(d))
}
