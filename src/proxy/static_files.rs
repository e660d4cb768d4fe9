//! Static files for locations without `proxy_pass`: nginx's `try_files`, `index` and static
//! modules, in that order, then the response that sends the file.
//!
//! The handler calls [`resolve`] once a location is matched and the rewrite script has run. It is
//! sans-IO except for `stat` lookups, which go through [`Fs`] so tests can fake them. Its
//! [`Decision`] tells the handler what nginx 1.22 would do next: send a file ([`serve`]), answer
//! a status, redirect to the directory (301), or re-run location matching (an internal redirect
//! or a named location). Rules and their nginx source:
//!
//! - `root` appends the URI to the path; `alias` replaces the matched prefix (the location's
//!   length, as `ngx_http_map_uri_to_path`); in a regex location the alias is the whole path.
//! - `try_files` (`ngx_http_try_files_handler`): each candidate is rendered; one written with a
//!   trailing `/` must be a directory, any other must not be one. The first match changes `$uri`
//!   and is served from this location; otherwise the last parameter decides (`=code`, `@named`,
//!   or an internal redirect to the rendered URI).
//! - A URI ending in `/` uses `index` (`ngx_http_index_handler`): the first existing file is an
//!   internal redirect to `uri + index`; none found in an existing directory is 403; a missing
//!   directory is 404.
//! - Otherwise the static handler: a missing file is 404, a forbidden one 403, a directory a 301
//!   to `uri/` (the handler appends `?args` and makes it absolute), anything but a regular file
//!   404. The type comes from the URI's extension through `types` (case-insensitive), else
//!   `default_type`.
//!
//! Safety beyond nginx: a path that would climb above the root or alias through `..` is never
//! looked up (the request URI answers 400, a `try_files` candidate is skipped), which also
//! closes nginx's `location /x { alias /d/; }` + `/x../` traversal.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::model::{GzipStatic, LocConf, LocationMatch, TryFilesLast};
use crate::config::template::{Part, Template};
use crate::http::vars::RequestVars;
use crate::proxy::gzip::{self, BodyEncoder, GzipRequest, GzipResponse};
use crate::proxy::headers_out::Extras;
use crate::proxy::pool::PooledBuf;
use crate::proxy::respond;

/// What a `stat` says about a path (symbolic links followed, as nginx's `open`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// A directory.
    pub is_dir: bool,
    /// A regular file.
    pub is_file: bool,
    /// Size in bytes.
    pub len: u64,
    /// Modification time.
    pub mtime: SystemTime,
}

/// The filesystem lookups [`resolve_with`] makes. Errors keep their OS code (`ENOENT`,
/// `ENOTDIR`, `EACCES`, ...), which decide between 404, 403 and 500 as in nginx.
pub trait Fs {
    /// `stat(2)` of `path`.
    fn stat(&self, path: &Path) -> io::Result<Meta>;
}

/// The real filesystem through `std::fs::metadata`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl Fs for RealFs {
    fn stat(&self, path: &Path) -> io::Result<Meta> {
        std::fs::metadata(path).map(|m| meta_of(&m))
    }
}

fn meta_of(m: &std::fs::Metadata) -> Meta {
    Meta {
        is_dir: m.is_dir(),
        is_file: m.is_file(),
        len: m.len(),
        mtime: m.modified().unwrap_or(UNIX_EPOCH),
    }
}

/// A regular file to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHit {
    /// Where it is on disk.
    pub path: PathBuf,
    /// `Content-Type` (from `types` by the URI's extension, else `default_type`).
    pub content_type: String,
    /// Size when it was looked up ([`serve`] sends what the opened file says).
    pub len: u64,
    /// Modification time when it was looked up.
    pub mtime: SystemTime,
    /// With `gzip_static`: the modification time of `FILE.gz`, a regular file beside it (the
    /// plain file need not exist: nginx serves the `.gz` alone to clients that take it).
    pub gz: Option<SystemTime>,
}

impl FileHit {
    /// `add_header` and gzip for sending this file with `status`; with `gzip_static`, whether
    /// `FILE.gz` goes instead (nginx's `ngx_http_gzip_static_handler`, which runs before the
    /// static module: GET and HEAD only; `on` asks `ngx_http_gzip_ok` and, when the `.gz`
    /// exists, sets `Vary` under `gzip_vary` whichever file goes).
    pub fn extras(&self, conf: &LocConf, vars: &mut RequestVars, status: u16) -> Extras {
        let head = vars.head();
        let static_gz = match (self.gz, conf.gzip_static()) {
            (Some(mtime), mode) if matches!(head.method, "GET" | "HEAD") => match mode {
                GzipStatic::Off => None,
                GzipStatic::On => Some((
                    mtime,
                    gzip::request_ok(conf, &GzipRequest::from_head(head)),
                    conf.gzip_vary(),
                )),
                GzipStatic::Always => Some((mtime, true, false)),
            },
            _ => None,
        };
        let send_gz = static_gz.is_some_and(|(_, ok, _)| ok);
        let resp = GzipResponse {
            status,
            content_type: self.content_type.as_bytes(),
            encoded: send_gz,
            length: Some(self.len),
            last_modified: Some(match static_gz {
                Some((mtime, true, _)) => mtime,
                _ => self.mtime,
            }),
        };
        let mut x = Extras::for_response(conf, vars, &resp, None);
        if let Some((_, ok, vary)) = static_gz {
            x.gzip.vary |= vary;
            if ok {
                let mut p = self.path.clone().into_os_string();
                p.push(".gz");
                x.precompressed = Some(PathBuf::from(p));
            }
        }
        x
    }
}

/// What to do with a request to a location without `proxy_pass`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send this file with 200 (or 304).
    File(FileHit),
    /// A directory asked for without its slash: 301 with `Location:` this URI (the handler adds
    /// `?args` and, with `absolute_redirect on`, scheme and host).
    RedirectDir(String),
    /// Re-run location matching with this URI (an index file found, or `try_files`'s last
    /// parameter). A `?` in it starts new arguments, as nginx splits them; otherwise the request's
    /// arguments are kept.
    InternalRedirect(String),
    /// Go to the named location (`@name`, with its `@`).
    Named(String),
    /// Answer this status (404, 403, 500, 400, or `try_files =code`).
    Status(u16),
    /// Answer this status and write nginx's error-log line for it (a 404's only with
    /// `log_not_found on`).
    Failed(u16, String),
}

/// [`resolve_with`] on the real filesystem.
pub fn resolve(
    conf: &LocConf,
    matcher: &LocationMatch,
    uri: &str,
    render: &mut dyn FnMut(&Template) -> Vec<u8>,
) -> Decision {
    resolve_with(&RealFs, conf, matcher, uri, render)
}

/// Decides what nginx 1.22 does with `uri` (decoded and normalised by the router) in the
/// location `matcher` with settings `conf`. `render` evaluates a template for this request
/// (`$uri` as the request's current URI).
pub fn resolve_with(
    fs: &dyn Fs,
    conf: &LocConf,
    matcher: &LocationMatch,
    uri: &str,
    render: &mut dyn FnMut(&Template) -> Vec<u8>,
) -> Decision {
    if !uri.starts_with('/') || uri.contains('\0') || uri.split('/').any(|s| s == "..") {
        return Decision::Status(400);
    }
    let (base, alias) = conf.root().rendered(render);
    let mapper = Mapper::new(base, alias, matcher);
    if let Err(code) = mapper.map(uri, false) {
        return Decision::Status(code);
    }
    if let Some(tf) = &conf.try_files {
        for t in &tf.files {
            let test_dir = matches!(t.parts.last(), Some(Part::Literal(s)) if s.ends_with('/'));
            let mut name = lossy(render(t));
            if test_dir {
                name.pop();
            }
            if let Some((new_uri, add_uri)) = mapper.try_candidate(fs, t, uri, &name, test_dir) {
                return content(fs, &mapper, conf, &new_uri, add_uri, render);
            }
        }
        return match &tf.last {
            TryFilesLast::Code(code) => Decision::Status(*code),
            TryFilesLast::Named(name) => Decision::Named(name.clone()),
            TryFilesLast::Uri(t) => {
                let mut to = lossy(render(t));
                if t.as_literal().is_none() {
                    // nginx strips the alias prefix from rendered values, the last one included.
                    if let Some(prefix) = mapper.prefix_len().and_then(|n| uri.get(..n)) {
                        if to.starts_with(prefix) {
                            to.drain(..prefix.len());
                        }
                    }
                }
                if to.starts_with('@') {
                    Decision::Named(to)
                } else {
                    Decision::InternalRedirect(to)
                }
            }
        };
    }
    content(fs, &mapper, conf, uri, false, render)
}

/// The content phase after `try_files`: the index module for `/`, else the static module.
fn content(
    fs: &dyn Fs,
    mapper: &Mapper,
    conf: &LocConf,
    uri: &str,
    add_uri_to_alias: bool,
    render: &mut dyn FnMut(&Template) -> Vec<u8>,
) -> Decision {
    let dir = match mapper.map(uri, add_uri_to_alias) {
        Ok(p) => p,
        Err(code) => return Decision::Status(code),
    };
    if uri.ends_with('/') {
        return index(fs, conf, uri, dir, render);
    }
    let gz = if conf.gzip_static() == GzipStatic::Off {
        None
    } else {
        let mut p = dir.clone().into_os_string();
        p.push(".gz");
        fs.stat(Path::new(&p))
            .ok()
            .filter(|m| m.is_file)
            .map(|m| m.mtime)
    };
    match fs.stat(&dir) {
        // The `.gz` alone: it goes to clients that take it; the others get the 404 that
        // opening the plain file gives.
        Err(e) if gz.is_some() && e.kind() == io::ErrorKind::NotFound => Decision::File(FileHit {
            path: dir,
            content_type: content_type(conf, uri),
            len: 0,
            mtime: UNIX_EPOCH,
            gz,
        }),
        Err(e) => Decision::Failed(
            status_for(&e),
            format!(
                "open() \"{}\" failed ({})",
                dir.display(),
                crate::config::os_error(&e)
            ),
        ),
        Ok(m) if m.is_dir => Decision::RedirectDir(format!("{uri}/")),
        Ok(m) if !m.is_file => Decision::Status(404),
        Ok(m) => Decision::File(FileHit {
            path: dir,
            content_type: content_type(conf, uri),
            len: m.len,
            mtime: m.mtime,
            gz,
        }),
    }
}

fn index(
    fs: &dyn Fs,
    conf: &LocConf,
    uri: &str,
    dir: PathBuf,
    render: &mut dyn FnMut(&Template) -> Vec<u8>,
) -> Decision {
    let mut dir_tested = false;
    for t in conf.index() {
        let name = lossy(render(&t));
        if name.starts_with('/') {
            return Decision::InternalRedirect(name);
        }
        let path = concat(&dir, &name);
        if climbs(&dir, &path) {
            return Decision::Status(404);
        }
        let err = match fs.stat(&path) {
            Ok(_) => return Decision::InternalRedirect(format!("{uri}{name}")),
            Err(e) => e,
        };
        let code = err.raw_os_error();
        if matches!(
            code,
            Some(libc::ENOTDIR | libc::ENAMETOOLONG | libc::EACCES)
        ) {
            return Decision::Status(if code == Some(libc::EACCES) { 403 } else { 404 });
        }
        if !dir_tested {
            match fs.stat(&dir) {
                Ok(m) if m.is_dir => {}
                Ok(_) => return Decision::Status(500),
                Err(e) => {
                    let code = match e.raw_os_error() {
                        Some(libc::ENOENT) => 404,
                        Some(libc::EACCES) => 403,
                        _ => 500,
                    };
                    let what = match code {
                        404 => "is not found",
                        403 => "is forbidden",
                        _ => "stat() failed",
                    };
                    let line = format!(
                        "\"{}\" {what} ({})",
                        path.display(),
                        crate::config::os_error(&e)
                    );
                    return Decision::Failed(code, line);
                }
            }
            dir_tested = true;
        }
        if code != Some(libc::ENOENT) {
            return Decision::Status(500);
        }
    }
    // No index file: nginx's content phase refuses to list the directory.
    if dir_tested || fs.stat(&dir).map(|m| m.is_dir).unwrap_or(false) {
        let line = format!("directory index of \"{}\" is forbidden", dir.display());
        Decision::Failed(403, line)
    } else {
        Decision::Status(404)
    }
}

/// nginx's static handler: which status an `open` failure gives.
fn status_for(e: &io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => 404,
        Some(libc::EACCES) => 403,
        _ if e.kind() == io::ErrorKind::NotFound => 404,
        _ if e.kind() == io::ErrorKind::PermissionDenied => 403,
        _ => 500,
    }
}

/// How URIs become paths in one location.
struct Mapper {
    base: PathBuf,
    alias: Alias,
}

enum Alias {
    /// `root`.
    None,
    /// `alias` in a prefix, exact or named location: this many URI bytes are replaced.
    Prefix(usize),
    /// `alias` in a regex location: the alias is the whole path.
    Whole,
}

impl Mapper {
    fn new(base: PathBuf, alias: bool, matcher: &LocationMatch) -> Mapper {
        let alias = match matcher {
            _ if !alias => Alias::None,
            LocationMatch::Prefix { path, .. } | LocationMatch::Exact(path) => {
                Alias::Prefix(path.len())
            }
            LocationMatch::Named(name) => Alias::Prefix(name.len()),
            LocationMatch::Regex(_) => Alias::Whole,
        };
        Mapper { base, alias }
    }

    fn prefix_len(&self) -> Option<usize> {
        match self.alias {
            Alias::Prefix(n) => Some(n),
            _ => None,
        }
    }

    /// `ngx_http_map_uri_to_path`. An alias whose prefix the URI no longer has (the URI was
    /// rewritten) is nginx's 500; a path climbing out of the base is refused (400).
    fn map(&self, uri: &str, add_uri_to_alias: bool) -> Result<PathBuf, u16> {
        let rest = match self.alias {
            Alias::None => uri,
            Alias::Prefix(n) => uri.get(n..).ok_or(500u16)?,
            Alias::Whole if add_uri_to_alias => uri,
            Alias::Whole => "",
        };
        let path = concat(&self.base, rest);
        if climbs(&self.base, &path) {
            return Err(400);
        }
        Ok(path)
    }

    /// One `try_files` candidate (`name` rendered, a test-dir slash removed). On a match returns
    /// the new `$uri` and nginx's `add_uri_to_alias`.
    fn try_candidate(
        &self,
        fs: &dyn Fs,
        t: &Template,
        uri: &str,
        name: &str,
        test_dir: bool,
    ) -> Option<(String, bool)> {
        let mut rel = name;
        let prefix = self.prefix_len().and_then(|n| uri.get(..n));
        if let Some(prefix) = prefix {
            // Only rendered values lose the location prefix (a literal is taken as written).
            if t.as_literal().is_none() && name.starts_with(prefix) {
                rel = &name[prefix.len()..];
            }
        }
        let path = concat(&self.base, rel);
        if climbs(&self.base, &path) || name.contains('\0') {
            return None;
        }
        let meta = fs.stat(&path).ok()?;
        if meta.is_dir != test_dir {
            return None;
        }
        Some(match self.alias {
            Alias::None => (rel.to_string(), false),
            Alias::Prefix(_) => (format!("{}{rel}", prefix?), false),
            Alias::Whole if test_dir => (uri.to_string(), false),
            Alias::Whole => (rel.to_string(), true),
        })
    }
}

/// `base` and `rest` joined as bytes, as nginx does (no separator added or removed).
fn concat(base: &Path, rest: &str) -> PathBuf {
    let mut s = OsString::from(base.as_os_str());
    s.push(rest);
    PathBuf::from(s)
}

/// Whether `path` has more `..` components than `base`, i.e. may leave it.
fn climbs(base: &Path, path: &Path) -> bool {
    let ups = |p: &Path| {
        p.components()
            .filter(|c| matches!(c, Component::ParentDir))
            .count()
    };
    ups(path) > ups(base)
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The URI's extension as `ngx_http_set_exten` finds it: after the last `.` of the last segment,
/// unless that dot starts the segment.
pub fn extension(uri: &str) -> Option<&str> {
    let b = uri.as_bytes();
    let mut i = b.len().checked_sub(1)?;
    while i > 1 {
        if b[i] == b'.' && b[i - 1] != b'/' {
            return Some(&uri[i + 1..]);
        }
        if b[i] == b'/' {
            return None;
        }
        i -= 1;
    }
    None
}

/// `Content-Type` for `uri`: `types` by extension (case-insensitive), else `default_type`.
pub fn content_type(conf: &LocConf, uri: &str) -> String {
    extension(uri)
        .and_then(|ext| {
            conf.types()
                .into_iter()
                .find(|(e, _)| e.eq_ignore_ascii_case(ext))
                .map(|(_, mime)| mime)
        })
        .unwrap_or_else(|| conf.default_type())
}

/// nginx's `ETag`: `"<mtime seconds hex>-<size hex>"`.
pub fn etag(mtime: SystemTime, len: u64) -> String {
    format!("\"{:x}-{len:x}\"", unix_secs(mtime))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The request's conditional headers (absent ones as `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Conditional<'a> {
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a str>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a str>,
}

/// nginx's not-modified filter: when either header is present, every present one must say
/// "not modified" (`If-Modified-Since` exactly the file's time, `If-None-Match` listing its
/// ETag, weakly compared, or `*`).
pub fn not_modified(cond: &Conditional, mtime: SystemTime, etag: Option<&str>) -> bool {
    if cond.if_modified_since.is_none() && cond.if_none_match.is_none() {
        return false;
    }
    if let Some(ims) = cond.if_modified_since {
        match httpdate::parse_http_date(ims.trim()) {
            Ok(t) if unix_secs(t) == unix_secs(mtime) => {}
            _ => return false,
        }
    }
    if let Some(inm) = cond.if_none_match {
        let Some(etag) = etag else { return false };
        let strong = etag.trim_start_matches("W/");
        let hit = inm
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == strong);
        if !hit {
            return false;
        }
    }
    true
}

/// The response head for `file` (already opened: `meta` is its `fstat`), in nginx's header
/// order. Returns the head and whether a body follows (not for 304).
pub fn response_head(
    content_type: &str,
    meta: &Meta,
    cond: &Conditional,
    keep_alive: bool,
    conf: &LocConf,
) -> (Vec<u8>, bool) {
    let plain = Shaping {
        status: 200,
        extras: &Extras::default(),
        chunked: true,
        head_request: false,
    };
    let (head, body, _) = response_head_with(content_type, meta, cond, keep_alive, conf, &plain);
    (head, body)
}

/// How the response-path filters shape a static response.
#[derive(Clone, Copy, Debug)]
pub struct Shaping<'a> {
    /// The status to send (200, or what an `error_page` `=code` says).
    pub status: u16,
    /// `add_header` lines and the gzip verdict (made for `status`).
    pub extras: &'a Extras,
    /// The client takes a chunked body (HTTP/1.1, `chunked_transfer_encoding on`).
    pub chunked: bool,
    /// HEAD: the head only (still saying gzip when the body would be, as nginx).
    pub head_request: bool,
}

/// [`response_head`] with `add_header`, gzip and an `error_page` status: nginx sends
/// `Last-Modified` only with 200, 206 and 304, `Accept-Ranges` only with an uncompressed 200,
/// answers conditionals only for 200, and makes the `ETag` weak when compressing. Returns the
/// head, whether a body follows, and whether the connection stays open (a compressed body to a
/// client that does not take chunked ends with the connection).
pub fn response_head_with(
    content_type: &str,
    meta: &Meta,
    cond: &Conditional,
    keep_alive: bool,
    conf: &LocConf,
    shape: &Shaping,
) -> (Vec<u8>, bool, bool) {
    let tag = conf.etag().then(|| etag(meta.mtime, meta.len));
    let last_modified = httpdate::fmt_http_date(meta.mtime);
    let mut out = Vec::with_capacity(320);
    let x = shape.extras;
    if shape.status == 200 && not_modified(cond, meta.mtime, tag.as_deref()) {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        respond::status_line(&mut out, 304, conf.server_tokens());
        push_header(&mut out, "Last-Modified", &last_modified);
        push_header(&mut out, "Connection", connection);
        if let Some(tag) = &tag {
            push_header(&mut out, "ETag", tag);
        }
        for (n, v) in x.header_lines() {
            push_header(&mut out, n, &String::from_utf8_lossy(v));
        }
        out.extend_from_slice(b"\r\n");
        return (out, false, keep_alive);
    }
    let compress = x.compressing();
    let chunked = compress && shape.chunked && !shape.head_request;
    let keep = keep_alive && (!compress || chunked || shape.head_request);
    respond::status_line(&mut out, shape.status, conf.server_tokens());
    push_header(
        &mut out,
        "Content-Type",
        &String::from_utf8_lossy(&x.content_type(content_type.as_bytes())),
    );
    if !compress {
        push_header(&mut out, "Content-Length", &meta.len.to_string());
    }
    if matches!(shape.status, 200 | 206 | 304) {
        push_header(&mut out, "Last-Modified", &last_modified);
    }
    if chunked {
        push_header(&mut out, "Transfer-Encoding", "chunked");
    }
    push_header(
        &mut out,
        "Connection",
        if keep { "keep-alive" } else { "close" },
    );
    if let Some((n, v)) = x.vary() {
        push_header(&mut out, n, &String::from_utf8_lossy(v));
    }
    let tag = match tag {
        Some(t) if compress => crate::proxy::gzip::weak_etag(t.as_bytes())
            .map(|w| String::from_utf8_lossy(&w).into_owned()),
        t => t,
    };
    if let Some(tag) = &tag {
        push_header(&mut out, "ETag", tag);
    }
    // gzip_static's header is in nginx's list before the header filters add theirs.
    if x.precompressed.is_some() {
        push_header(&mut out, "Content-Encoding", "gzip");
    }
    for (n, v) in x.tail() {
        push_header(&mut out, n, &String::from_utf8_lossy(v));
    }
    if shape.status == 200 && !compress && x.precompressed.is_none() {
        push_header(&mut out, "Accept-Ranges", "bytes");
    }
    out.extend_from_slice(b"\r\n");
    (out, true, keep)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The file could not be opened or read before anything was sent (it went away, or is not
    /// readable): the connection is intact, answer [`ServeError::status`].
    #[error("open() \"{path}\" failed ({source})")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing to the client failed or the file changed under us mid-body: close the
    /// connection.
    #[error("sending \"{path}\" to the client failed: {source}")]
    Send {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl ServeError {
    /// The status to answer for an [`ServeError::Open`] (404, 403 or 500, as nginx).
    pub fn status(&self) -> u16 {
        match self {
            ServeError::Open { source, .. } => status_for(source),
            ServeError::Send { .. } => 500,
        }
    }
}

/// How a sent file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The connection stays open.
    pub keep_alive: bool,
    /// Body bytes written (compressed and framed, when gzip applies).
    pub body_bytes: u64,
    /// Bytes in and out of gzip, when compressed (`$gzip_ratio`).
    pub gzip: Option<(u64, u64)>,
}

/// Sends `file` on `stream`: the head (200, or 304 per `cond`; shaped by `shape`) and, unless
/// HEAD or 304, the body read through a pooled buffer (compressed when `shape` says so). Size
/// and times come from the opened file, so a file replaced since [`resolve`] is sent
/// consistently. The file is read with blocking reads on the shard: meant for the small files
/// a WebSocket proxy serves (no `sendfile`).
pub async fn serve(
    stream: &super::conn::Stream,
    file: &FileHit,
    cond: &Conditional<'_>,
    keep_alive: bool,
    conf: &LocConf,
    shape: &Shaping<'_>,
) -> Result<Served, ServeError> {
    let open_err = |source| ServeError::Open {
        path: file.path.clone(),
        source,
    };
    let send_err = |source| ServeError::Send {
        path: file.path.clone(),
        source,
    };
    let path = shape.extras.precompressed.as_ref().unwrap_or(&file.path);
    let mut f = std::fs::File::open(path).map_err(open_err)?;
    let meta = meta_of(&f.metadata().map_err(open_err)?);
    if !meta.is_file {
        return Err(open_err(io::Error::from_raw_os_error(libc::ENOENT)));
    }
    let timeout: Duration = conf.send_timeout();
    let (head, body, keep_alive) =
        response_head_with(&file.content_type, &meta, cond, keep_alive, conf, shape);
    super::io::write_all(stream, &head, timeout)
        .await
        .map_err(send_err)?;
    let mut served = Served {
        keep_alive,
        body_bytes: 0,
        gzip: None,
    };
    if !body || shape.head_request {
        return Ok(served);
    }
    let mut gz = shape.extras.encoder(shape.chunked);
    let sent = std::cell::Cell::new(0);
    let mut left = meta.len;
    let mut buf = PooledBuf::take();
    while left > 0 {
        let want = buf
            .bytes()
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match f.read(&mut buf.bytes()[..want]) {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while sent");
                return Err(send_err(e));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(send_err(e)),
        };
        left -= n as u64;
        match gz.as_mut() {
            Some(enc) => {
                let data = &buf.bytes()[..n];
                super::gzip_relay::send(stream, enc, data, left == 0, timeout, &sent)
                    .await
                    .map_err(send_err)?;
            }
            None => {
                super::io::write_all(stream, &buf.bytes()[..n], timeout)
                    .await
                    .map_err(send_err)?;
                sent.set(sent.get() + n as u64);
            }
        }
    }
    if let (Some(enc), 0) = (gz.as_mut(), meta.len) {
        super::gzip_relay::send(stream, enc, &[], true, timeout, &sent)
            .await
            .map_err(send_err)?;
    }
    served.body_bytes = sent.get();
    served.gzip = gz.as_ref().map(BodyEncoder::counts);
    Ok(served)
}

#[cfg(test)]
#[path = "static_files_tests.rs"]
mod tests;
