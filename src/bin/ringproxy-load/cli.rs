//! Command-line contract of `ringproxy-load` (scripts/bench.sh depends on these exact flags).
//!
//! Parsed by hand with `lexopt` so every subcommand accepts only the flags that mean something
//! for it: a misspelt or misplaced flag is an error, not a silently ignored default.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Why the command line was refused; each message names the flag and what it expects.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("invalid {what} {value:?}: expected {expected}")]
    Invalid {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error(transparent)]
    Args(#[from] lexopt::Error),
}

type Result<T, E = CliError> = std::result::Result<T, E>;

fn invalid(what: &'static str, value: &str, expected: &'static str) -> CliError {
    CliError::Invalid {
        what,
        value: value.to_string(),
        expected,
    }
}

fn usage(msg: String) -> CliError {
    CliError::Usage(msg)
}

pub const USAGE: &str = "\
usage:
  ringproxy-load echo --listen ADDR [--push-rate HZ] [--threads N] [--tls-cert PEM --tls-key PEM]
  ringproxy-load rtt --url URL [--connections N] [--size S] [--duration D] [--warmup D]
  ringproxy-load handshake --url URL [--connections N] [--duration D]
  ringproxy-load hold --url URL [--connections N] [--idle D] [--open-rate R]
  ringproxy-load push --url URL [--connections N] [--duration D]
  ringproxy-load tunnels --url URL [--connections N] [--duration D] [--interval D] [--open-rate R]
      (N tunnels each sending a numbered message every D and checking its echo; counts drops,
      lost messages and the server's Close codes and times; `tunnels: established N` on stderr
      once every tunnel has tried to open)
  ringproxy-load bulk --url URL [--size S] [--connections N] [--duration D]
  ringproxy-load cert --name NAME [--name NAME2 ...] --out DIR [--type ecdsa|rsa]
      (self-signed certificate DIR/cert.pem and key DIR/key.pem; ecdsa is P-256, rsa 2048 bits)
  ringproxy-load report --input results.jsonl --out-dir DIR   (scripts/bench.sh's tables and chart)
client options: --json (one JSON object on stdout), --threads N (default 1)
wss:// URLs: --ca PEM (certificates to trust) or --insecure (no verification), --sni NAME
  (server name sent and verified; default: the URL's host), --tls-version 1.2|1.3,
  --resume (allow session resumption; by default every handshake is a full one)
URL: ws://HOST:PORT/path or wss://HOST:PORT/path   D: 10, 10s, 500ms, 2m   S: 64, 64k, 1m
env RINGPROXY_DRIVER=epoll forces the epoll driver (default: io_uring, epoll if unavailable);
  echo prints `listening on ADDR` then `driver io_uring|epoll`, clients report it (`driver`)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Rtt,
    Handshake,
    Hold,
    Push,
    Bulk,
    Tunnels,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rtt => "rtt",
            Self::Handshake => "handshake",
            Self::Hold => "hold",
            Self::Push => "push",
            Self::Bulk => "bulk",
            Self::Tunnels => "tunnels",
        }
    }
}

/// Where clients connect: the resolved address plus what goes in the request line and `Host`.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// `wss://`: TLS over the TCP connection.
    pub tls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V12,
    V13,
}

/// Client TLS flags (only meaningful with a `wss://` URL).
#[derive(Debug, Clone, Default)]
pub struct TlsArgs {
    pub ca: Option<PathBuf>,
    pub sni: Option<String>,
    pub insecure: bool,
    pub version: Option<TlsVersion>,
    pub resume: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ecdsa,
    Rsa,
}

#[derive(Debug, Clone)]
pub struct CertArgs {
    pub names: Vec<String>,
    pub out: PathBuf,
    pub key_type: KeyType,
}

#[derive(Debug, Clone)]
pub struct ClientArgs {
    pub scenario: Scenario,
    pub target: Target,
    pub json: bool,
    pub threads: usize,
    pub connections: usize,
    pub size: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub idle: Duration,
    /// Handshakes per second while opening `hold` connections; `None` is as fast as allowed.
    pub open_rate: Option<f64>,
    /// `tunnels`: time between one tunnel's messages.
    pub interval: Duration,
    pub tls: TlsArgs,
}

#[derive(Debug, Clone)]
pub struct EchoArgs {
    pub listen: String,
    pub push_rate: f64,
    pub threads: usize,
    /// Certificate chain and key (PEM): serve TLS only.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug)]
pub enum Command {
    Echo(EchoArgs),
    Client(ClientArgs),
    Cert(CertArgs),
    Help,
}

pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    const EXPECTED: &str = "a duration such as 10, 10s, 500ms, 2m";
    let v: f64 = num.parse().map_err(|_| invalid("duration", s, EXPECTED))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(invalid("duration", s, EXPECTED)),
    };
    if !(0.0..=1e9).contains(&secs) {
        return Err(invalid("duration", s, EXPECTED));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse_size(s: &str) -> Result<usize> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix('k') {
        (n, 1024)
    } else if let Some(n) = lower.strip_suffix('m') {
        (n, 1024 * 1024)
    } else {
        (lower.as_str(), 1)
    };
    const EXPECTED: &str = "a byte count such as 64, 64k, 1m";
    let n: usize = num.parse().map_err(|_| invalid("size", s, EXPECTED))?;
    n.checked_mul(mult)
        .ok_or_else(|| invalid("size", s, EXPECTED))
}

pub fn parse_url(url: &str) -> Result<Target> {
    let bad = |reason: String| CliError::Url {
        url: url.to_string(),
        reason,
    };
    let (rest, tls, default_port) = if let Some(r) = url.strip_prefix("ws://") {
        (r, false, 80)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (r, true, 443)
    } else {
        return Err(bad("must start with ws:// or wss://".into()));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad("no host".into()));
    }
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
    }) {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve {authority:?}: {e}")))?
        .next()
        .ok_or_else(|| bad(format!("{authority:?} resolved to no address")))?;
    Ok(Target {
        url: url.to_string(),
        addr,
        host: authority.to_string(),
        path: path.to_string(),
        tls,
    })
}

fn count(what: &'static str, v: &str) -> Result<usize> {
    match v.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(what, v, "a whole number of at least 1")),
    }
}

pub fn parse_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Command> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let sub = match p.next()? {
        Some(Value(v)) => v.string()?,
        Some(Long("help")) | Some(Short('h')) | None => return Ok(Command::Help),
        Some(other) => {
            return Err(usage(format!(
                "expected a subcommand first, got {}",
                other.unexpected()
            )))
        }
    };
    if sub == "cert" {
        return parse_cert(p);
    }
    let scenario = match sub.as_str() {
        "echo" => None,
        "rtt" => Some(Scenario::Rtt),
        "handshake" => Some(Scenario::Handshake),
        "hold" => Some(Scenario::Hold),
        "push" => Some(Scenario::Push),
        "bulk" => Some(Scenario::Bulk),
        "tunnels" => Some(Scenario::Tunnels),
        "help" => return Ok(Command::Help),
        other => return Err(usage(format!("unknown subcommand {other:?}"))),
    };
    let allowed: &[&str] = match scenario {
        None => &["listen", "push-rate", "threads", "tls-cert", "tls-key"],
        Some(Scenario::Rtt) => &[
            "url",
            "json",
            "threads",
            "connections",
            "size",
            "duration",
            "warmup",
        ],
        Some(Scenario::Handshake) | Some(Scenario::Push) => {
            &["url", "json", "threads", "connections", "duration"]
        }
        Some(Scenario::Hold) => &["url", "json", "threads", "connections", "idle", "open-rate"],
        Some(Scenario::Bulk) => &["url", "json", "threads", "connections", "size", "duration"],
        Some(Scenario::Tunnels) => &[
            "url",
            "json",
            "threads",
            "connections",
            "duration",
            "interval",
            "open-rate",
        ],
    };

    let mut listen = None;
    let mut push_rate = 0.0;
    let mut threads = 1;
    let mut url = None;
    let mut json = false;
    let mut connections = None;
    let mut size = None;
    let mut duration = Duration::from_secs(10);
    let mut warmup = Duration::ZERO;
    let mut idle = Duration::from_secs(10);
    let mut open_rate = None;
    let mut interval = Duration::from_secs(1);
    let mut tls = TlsArgs::default();
    let (mut tls_cert, mut tls_key) = (None, None);
    const TLS_FLAGS: [&str; 5] = ["ca", "sni", "insecure", "tls-version", "resume"];

    while let Some(arg) = p.next()? {
        let name = match &arg {
            Long(n) => n.to_string(),
            Short('h') => return Ok(Command::Help),
            _ => return Err(usage(format!("unexpected argument {}", arg.unexpected()))),
        };
        if name == "help" {
            return Ok(Command::Help);
        }
        let client_tls = scenario.is_some() && TLS_FLAGS.contains(&name.as_str());
        if !allowed.contains(&name.as_str()) && !client_tls {
            return Err(usage(format!("--{name} is not an option of `{sub}`")));
        }
        match name.as_str() {
            "json" => json = true,
            "insecure" => tls.insecure = true,
            "resume" => tls.resume = true,
            _ => {}
        }
        if matches!(name.as_str(), "json" | "insecure" | "resume") {
            continue;
        }
        let v = p.value()?.string()?;
        match name.as_str() {
            "listen" => listen = Some(v),
            "push-rate" => {
                push_rate = v
                    .parse()
                    .map_err(|_| invalid("--push-rate", &v, "messages per second, 0 to 1000000"))?;
                if !(0.0..=1e6).contains(&push_rate) {
                    return Err(invalid(
                        "--push-rate",
                        &v,
                        "messages per second, 0 to 1000000",
                    ));
                }
            }
            "threads" => threads = count("--threads", &v)?,
            "url" => url = Some(v),
            "connections" => connections = Some(count("--connections", &v)?),
            "size" => size = Some(parse_size(&v)?),
            "duration" => duration = parse_duration(&v)?,
            "warmup" => warmup = parse_duration(&v)?,
            "idle" => idle = parse_duration(&v)?,
            "interval" => {
                interval = parse_duration(&v)?;
                if interval.is_zero() {
                    return Err(invalid("--interval", &v, "a duration above 0"));
                }
            }
            "ca" => tls.ca = Some(v.into()),
            "sni" => tls.sni = Some(v),
            "tls-version" => {
                tls.version = Some(match v.as_str() {
                    "1.2" => TlsVersion::V12,
                    "1.3" => TlsVersion::V13,
                    _ => return Err(invalid("--tls-version", &v, "1.2 or 1.3")),
                })
            }
            "tls-cert" => tls_cert = Some(PathBuf::from(v)),
            "tls-key" => tls_key = Some(PathBuf::from(v)),
            "open-rate" => {
                let r: f64 = v
                    .parse()
                    .map_err(|_| invalid("--open-rate", &v, "handshakes per second, above 0"))?;
                if !(r > 0.0 && r.is_finite()) {
                    return Err(invalid("--open-rate", &v, "handshakes per second, above 0"));
                }
                open_rate = Some(r);
            }
            _ => unreachable!("flag list and match arms agree"),
        }
    }

    let Some(scenario) = scenario else {
        let listen =
            listen.ok_or_else(|| usage("echo needs --listen ADDR (e.g. 127.0.0.1:0)".into()))?;
        let tls = match (tls_cert, tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(usage("--tls-cert and --tls-key go together".into())),
        };
        return Ok(Command::Echo(EchoArgs {
            listen,
            push_rate,
            threads,
            tls,
        }));
    };
    let url = url.ok_or_else(|| usage("missing --url ws://HOST:PORT/path".into()))?;
    let (default_conns, default_size) = match scenario {
        Scenario::Rtt => (50, 64),
        Scenario::Handshake => (50, 16),
        Scenario::Hold => (1000, 16),
        Scenario::Push => (100, 0),
        Scenario::Bulk => (4, 65536),
        Scenario::Tunnels => (1000, 16),
    };
    let target = parse_url(&url)?;
    let tls_given = tls.ca.is_some() || tls.sni.is_some() || tls.insecure;
    if !target.tls && (tls_given || tls.version.is_some() || tls.resume) {
        return Err(usage(
            "--ca, --sni, --insecure, --tls-version and --resume need a wss:// URL".into(),
        ));
    }
    if target.tls && tls.ca.is_none() && !tls.insecure {
        return Err(usage(
            "a wss:// URL needs --ca FILE (PEM certificates to trust) or --insecure".into(),
        ));
    }
    Ok(Command::Client(ClientArgs {
        scenario,
        target,
        json,
        threads,
        connections: connections.unwrap_or(default_conns),
        size: size.unwrap_or(default_size),
        duration,
        warmup,
        idle,
        open_rate,
        interval,
        tls,
    }))
}

/// `cert --name NAME... --out DIR [--type ecdsa|rsa]`.
fn parse_cert(mut p: lexopt::Parser) -> Result<Command> {
    use lexopt::prelude::*;
    let mut names = Vec::new();
    let mut out = None;
    let mut key_type = KeyType::Ecdsa;
    while let Some(arg) = p.next()? {
        match arg {
            Long("name") => names.push(p.value()?.string()?),
            Long("out") => out = Some(PathBuf::from(p.value()?)),
            Long("type") => {
                let v = p.value()?.string()?;
                key_type = match v.as_str() {
                    "ecdsa" => KeyType::Ecdsa,
                    "rsa" => KeyType::Rsa,
                    _ => return Err(invalid("--type", &v, "ecdsa or rsa")),
                };
            }
            Long("help") | Short('h') => return Ok(Command::Help),
            other => {
                return Err(usage(format!(
                    "{} is not an option of `cert`",
                    other.unexpected()
                )))
            }
        }
    }
    if names.is_empty() {
        return Err(usage(
            "cert needs --name NAME (DNS name or IP address)".into(),
        ));
    }
    let out = out.ok_or_else(|| usage("cert needs --out DIR".into()))?;
    Ok(Command::Cert(CertArgs {
        names,
        out,
        key_type,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:9000").unwrap();
        assert_eq!((t.path.as_str(), t.host.as_str()), ("/", "127.0.0.1:9000"));
        assert_eq!(t.addr.port(), 9000);
        let t = parse_url("ws://127.0.0.1:9000/push?x=1").unwrap();
        assert_eq!(t.path, "/push?x=1");
        assert!(parse_url("http://127.0.0.1/").is_err());
        let t = parse_url("wss://127.0.0.1/").unwrap();
        assert_eq!((t.tls, t.addr.port()), (true, 443));
        assert!(!parse_url("ws://127.0.0.1/").unwrap().tls);
    }

    fn args(s: &str) -> Vec<std::ffi::OsString> {
        s.split(' ').map(Into::into).collect()
    }

    #[test]
    fn flags_are_checked_per_subcommand() {
        assert!(parse_args(args("rtt --url ws://127.0.0.1:1/ --idle 5")).is_err());
        assert!(parse_args(args("echo --listen 127.0.0.1:0 --url x")).is_err());
        let Command::Client(c) = parse_args(args(
            "rtt --url ws://127.0.0.1:1/ --json --size 1k --duration 500ms",
        ))
        .unwrap() else {
            panic!("not a client command")
        };
        assert_eq!((c.size, c.json, c.connections), (1024, true, 50));
        assert_eq!(c.duration, Duration::from_millis(500));
        let Command::Client(c) = parse_args(args(
            "tunnels --url ws://127.0.0.1:1/ --connections 7 --interval 250ms --open-rate 100",
        ))
        .unwrap() else {
            panic!("not a client command")
        };
        assert_eq!(c.scenario, Scenario::Tunnels);
        assert_eq!((c.connections, c.interval), (7, Duration::from_millis(250)));
        assert!(parse_args(args("tunnels --url ws://127.0.0.1:1/ --interval 0")).is_err());
        assert!(parse_args(args("tunnels --url ws://127.0.0.1:1/ --idle 1s")).is_err());
    }

    #[test]
    fn tls_flags_need_wss_and_trust() {
        assert!(parse_args(args("rtt --url ws://127.0.0.1:1/ --insecure")).is_err());
        assert!(parse_args(args("rtt --url wss://127.0.0.1:1/")).is_err());
        assert!(parse_args(args(
            "rtt --url wss://127.0.0.1:1/ --insecure --tls-version 1.1"
        ))
        .is_err());
        let Command::Client(c) = parse_args(args(
            "handshake --url wss://127.0.0.1:1/ --ca c.pem --sni x.test --tls-version 1.2 --resume",
        ))
        .unwrap() else {
            panic!("not a client command")
        };
        assert_eq!(c.tls.version, Some(TlsVersion::V12));
        assert_eq!((c.tls.sni.as_deref(), c.tls.resume), (Some("x.test"), true));
        assert!(parse_args(args("echo --listen 127.0.0.1:0 --tls-cert c.pem")).is_err());
        assert!(parse_args(args("cert --out d")).is_err());
        let Command::Cert(c) = parse_args(args(
            "cert --name localhost --name 127.0.0.1 --out d --type rsa",
        ))
        .unwrap() else {
            panic!("not cert")
        };
        assert_eq!((c.names.len(), c.key_type), (2, KeyType::Rsa));
    }
}
