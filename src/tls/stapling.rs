//! `ssl_stapling`: the OCSP response a server staples to its certificate, shared by every
//! shard of a configuration generation.
//!
//! What is stapled follows nginx 1.22: `ssl_stapling_file`'s response as is, forever; else
//! the responder's (`ssl_stapling_responder`, or the certificate's AIA URL) once checked (see
//! [`super::ocsp::check`]). The first handshake after a configuration is loaded starts the
//! request and gets no staple; a good response is stapled until its nextUpdate and fetched
//! again an hour later (sooner when nextUpdate comes first, never within 5 minutes); a failed
//! request is logged and retried 5 minutes later, the previous response stapled meanwhile
//! while still valid. The request runs on a thread of its own, so no shard waits for the
//! responder; its host was resolved with the configuration.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use x509_ocsp::CertId;

use super::ocsp::{self, Cert};
use super::{load_certs, TlsError};
use crate::config::model::{Config, LocConf};
use crate::config::os_error;
use crate::log;

/// nginx's timeout of a request to the responder (connect, send, each read).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response read from a responder.
const MAX_RESPONSE: usize = 64 * 1024;

/// Where a certificate's staple comes from.
enum Source {
    /// `ssl_stapling_file`'s DER response.
    File(Vec<u8>),
    /// An OCSP responder.
    Responder(Box<Responder>),
}

struct Responder {
    addr: SocketAddr,
    host: String,
    uri: String,
    id: CertId,
    request: Vec<u8>,
    issuer: Cert,
    /// Who may sign the responses.
    trust: ocsp::Trust,
}

/// What stapling does for the certificate `path` (its chain `chain`): `Ok(None)` when it is
/// ignored, after pushing nginx's warning to `warnings`.
fn source(
    conf: &LocConf,
    path: &Path,
    chain: &[CertificateDer<'static>],
    warnings: &mut Vec<String>,
) -> Result<Option<Source>, TlsError> {
    let file = conf.ssl_stapling_file();
    if !file.as_os_str().is_empty() {
        let der = std::fs::read(&file).map_err(|e| {
            TlsError::Rustls(format!(
                "BIO_new_file(\"{}\") failed ({})",
                file.display(),
                os_error(&e)
            ))
        })?;
        if !ocsp::parses(&der) {
            let name = file.display();
            return Err(TlsError::Rustls(format!(
                "d2i_OCSP_RESPONSE_bio(\"{name}\") failed"
            )));
        }
        return Ok(Some(Source::File(der)));
    }
    let name = path.display();
    let ignored = |warnings: &mut Vec<String>, why: String| {
        warnings.push(format!("\"ssl_stapling\" ignored, {why}"));
        Ok(None)
    };
    let Some(leaf) = chain.first().and_then(|c| Cert::parse(c)) else {
        return ignored(
            warnings,
            format!("issuer certificate not found for certificate \"{name}\""),
        );
    };
    let parse = |certs: &[CertificateDer<'static>]| -> Vec<Cert> {
        certs.iter().filter_map(|c| Cert::parse(c)).collect()
    };
    let trusted = conf.ssl_trusted_certificate();
    let store = match trusted.as_os_str().is_empty() {
        true => Vec::new(),
        false => parse(&load_certs(&trusted)?),
    };
    let candidates: Vec<Cert> = parse(&chain[1..])
        .into_iter()
        .chain(store.iter().cloned())
        .collect();
    let Some(issuer) = ocsp::find_issuer(&leaf, &candidates) else {
        return ignored(
            warnings,
            format!("issuer certificate not found for certificate \"{name}\""),
        );
    };
    let configured = conf.ssl_stapling_responder();
    let url = match configured.is_empty() {
        false => configured,
        true => match ocsp::responder_url(&leaf) {
            Some(u) => u,
            None => {
                let why = format!("no OCSP responder URL in the certificate \"{name}\"");
                return ignored(warnings, why);
            }
        },
    };
    let Some(rest) = url
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("http://"))
        .and(url.get(7..))
    else {
        let why =
            format!("invalid URL prefix in OCSP responder \"{url}\" in the certificate \"{name}\"");
        return ignored(warnings, why);
    };
    let (hostport, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let bad = |warnings: &mut Vec<String>, err: &str| {
        let why = format!("{err} in OCSP responder \"{rest}\" in the certificate \"{name}\"");
        ignored(warnings, why)
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => match p.parse::<u16>() {
            Ok(p) if p > 0 => (h, p),
            _ => return bad(warnings, "invalid port"),
        },
        _ => (hostport, 80),
    };
    if host.is_empty() {
        return bad(warnings, "no host");
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let Some(addr) = (bare, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return bad(warnings, "host not found");
    };
    let id = ocsp::cert_id(&leaf, issuer)
        .ok_or_else(|| TlsError::Rustls("OCSP_cert_to_id() failed".into()))?;
    let request =
        ocsp::request(&id).ok_or_else(|| TlsError::Rustls("i2d_OCSP_REQUEST() failed".into()))?;
    Ok(Some(Source::Responder(Box::new(Responder {
        addr,
        host: host.to_string(),
        uri: uri.to_string(),
        id,
        request,
        issuer: issuer.clone(),
        trust: ocsp::Trust {
            chain: parse(&chain[1..]),
            store,
            verify: conf.ssl_stapling_verify(),
        },
    }))))
}

/// nginx's configuration-time warnings for a server's `ssl_stapling` (none when off), or its
/// fatal errors (an unreadable `ssl_stapling_file`, `ssl_trusted_certificate`).
pub fn warnings(conf: &LocConf) -> Result<Vec<String>, TlsError> {
    let mut warnings = Vec::new();
    if conf.ssl_stapling() {
        for path in conf.ssl_certificate() {
            source(conf, &path, &load_certs(&path)?, &mut warnings)?;
        }
    }
    Ok(warnings)
}

/// One certificate's stapling state, shared by the shards.
pub struct Staple {
    /// The certificate without a staple.
    base: Arc<CertifiedKey>,
    /// The stapled certificate and until when it may be served.
    current: RwLock<Option<(Arc<CertifiedKey>, i64)>>,
    /// When to ask the responder again (0: at the next handshake).
    refresh: AtomicI64,
    loading: AtomicBool,
    responder: Option<Box<Responder>>,
    /// The certificate's file, for the log.
    name: String,
}

impl std::fmt::Debug for Staple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staple").field("name", &self.name).finish()
    }
}

impl Staple {
    /// The staple state of `key` (read from `path`), or `None` when stapling is ignored.
    fn new(
        conf: &LocConf,
        path: &Path,
        key: Arc<CertifiedKey>,
    ) -> Result<Option<Staple>, TlsError> {
        let source = source(conf, path, &key.cert, &mut Vec::new())?;
        let mut staple = Staple {
            base: key.clone(),
            current: RwLock::new(None),
            refresh: AtomicI64::new(0),
            loading: AtomicBool::new(false),
            responder: None,
            name: path.display().to_string(),
        };
        match source {
            None => return Ok(None),
            Some(Source::File(der)) => staple.set(der, i64::MAX),
            Some(Source::Responder(r)) => staple.responder = Some(r),
        }
        Ok(Some(staple))
    }

    fn set(&self, der: Vec<u8>, valid: i64) {
        let mut key = (*self.base).clone();
        key.ocsp = Some(der);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some((Arc::new(key), valid));
    }

    /// The key with the staple to send (without one when none is valid); starts a request to
    /// the responder when one is due.
    pub fn key(self: &Arc<Self>) -> Arc<CertifiedKey> {
        let now = ocsp::now();
        let current = match &*self.current.read().unwrap_or_else(|e| e.into_inner()) {
            Some((k, valid)) if *valid >= now => k.clone(),
            _ => self.base.clone(),
        };
        self.update(now);
        current
    }

    /// The certificate without a staple (to match the client's signature schemes).
    pub fn base(&self) -> &CertifiedKey {
        &self.base
    }

    fn update(self: &Arc<Self>, now: i64) {
        if self.responder.is_none()
            || self.refresh.load(Ordering::Acquire) >= now
            || self.loading.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let staple = self.clone();
        let spawned = std::thread::Builder::new()
            .name("ocsp".into())
            .spawn(move || staple.fetch());
        if let Err(e) = spawned {
            log!(Alert, "cannot start the OCSP request thread ({e})");
            self.loading.store(false, Ordering::Release);
        }
    }

    fn fetch(&self) {
        let Some(r) = &self.responder else { return };
        let result = request(r).and_then(|der| {
            let valid = ocsp::check(&der, &r.id, &r.issuer, &r.trust, ocsp::now())?;
            Ok((der, valid))
        });
        let now = ocsp::now();
        let refresh = match result {
            Ok((der, valid)) => {
                self.set(der, valid);
                valid.saturating_sub(300).min(now + 3600).max(now + 300)
            }
            Err(e) => {
                log!(
                    Error,
                    "{e} while requesting certificate status, responder: {}, peer: {}, certificate: \"{}\"",
                    r.host,
                    r.addr,
                    self.name
                );
                now + 300
            }
        };
        self.refresh.store(refresh, Ordering::Release);
        self.loading.store(false, Ordering::Release);
    }
}

/// Asks the responder (nginx's request: GET, the request in base64 in the path, HTTP/1.0);
/// the body of a 200 answer.
fn request(r: &Responder) -> Result<Vec<u8>, String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&r.request);
    let escaped: String = b64
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    let slash = if r.uri.ends_with('/') { "" } else { "/" };
    let head = format!(
        "GET {}{slash}{escaped} HTTP/1.0\r\nHost: {}\r\n\r\n",
        r.uri, r.host
    );
    let os = |what: &str, e: std::io::Error| format!("{what} failed ({})", os_error(&e));
    let mut s = TcpStream::connect_timeout(&r.addr, TIMEOUT).map_err(|e| os("connect()", e))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| os("setsockopt()", e))?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| os("setsockopt()", e))?;
    s.write_all(head.as_bytes()).map_err(|e| os("send()", e))?;
    let mut answer = Vec::new();
    s.take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut answer)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                "OCSP responder timed out".to_string()
            }
            _ => os("recv()", e),
        })?;
    if answer.len() > MAX_RESPONSE {
        return Err("OCSP responder sent too large response".into());
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let body = match resp.parse(&answer) {
        Ok(httparse::Status::Complete(n)) => &answer[n..],
        _ => return Err("OCSP responder sent invalid response".into()),
    };
    if resp.code != Some(200) {
        return Err(format!(
            "OCSP responder sent HTTP status {}",
            resp.code.unwrap_or(0)
        ));
    }
    let content_type = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"));
    if content_type.is_some_and(|h| !h.value.eq_ignore_ascii_case(b"application/ocsp-response")) {
        return Err("OCSP response with invalid content type".into());
    }
    Ok(body.to_vec())
}

/// The staples of each configuration generation, made by the first shard (or the main
/// thread's check) that builds its TLS state and shared with the others. The `Weak` keeps
/// the configuration's address from being reused while its entry exists.
type Generation = (Weak<Config>, Vec<((usize, usize), Option<Arc<Staple>>)>);
static GENERATIONS: Mutex<Vec<Generation>> = Mutex::new(Vec::new());

/// The staple state of certificate `cert` of server `server` of `config` (its key as this
/// shard loaded it, used when the state is new), or `None` when stapling is off or ignored.
pub fn shared(
    config: &Arc<Config>,
    server: usize,
    cert: usize,
    conf: &LocConf,
    key: &Arc<CertifiedKey>,
) -> Result<Option<Arc<Staple>>, TlsError> {
    if !conf.ssl_stapling() {
        return Ok(None);
    }
    let path = &conf.ssl_certificate()[cert];
    let mut all = GENERATIONS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|(w, _)| w.strong_count() > 0);
    let at = match all
        .iter()
        .position(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(config)))
    {
        Some(i) => i,
        None => {
            all.push((Arc::downgrade(config), Vec::new()));
            all.len() - 1
        }
    };
    let staples = &mut all[at].1;
    if let Some((_, s)) = staples.iter().find(|(k, _)| *k == (server, cert)) {
        return Ok(s.clone());
    }
    let s = Staple::new(conf, path, key.clone())?.map(Arc::new);
    staples.push(((server, cert), s.clone()));
    Ok(s)
}
