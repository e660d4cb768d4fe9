//! The configuration of nginx's limit_req and limit_conn modules: zones (`limit_req_zone`,
//! `limit_conn_zone`, in `http`), the lines that apply them (`limit_req`, `limit_conn`, inherited
//! as a list by a level that has none) and their `_status`, `_log_level` and `_dry_run`
//! settings, with nginx's parameters and error messages. The zones themselves are made here
//! through [`crate::limits`]'s registry, so a reload keeps a zone that keeps its name and size.

use std::sync::Arc;

use super::build::Env;
use super::directives::err;
use super::error::Result;
use super::handlers::parse_level;
use super::model::{HttpConf, LocConf, LogLevel};
use super::parser::Directive;
use super::template::Template;
use super::values::{parse_number, parse_size};
use crate::limits::{ConnZone, ReqZone};

/// A zone of either kind with its key.
#[derive(Clone)]
pub struct LimitZone {
    /// `zone=NAME:...`.
    pub name: String,
    /// The key (`$binary_remote_addr`).
    pub key: Template,
    /// The shared state.
    pub state: ZoneState,
}

/// The state of a zone.
#[derive(Clone)]
pub enum ZoneState {
    /// `limit_req_zone`.
    Req(Arc<ReqZone>),
    /// `limit_conn_zone`.
    Conn(Arc<ConnZone>),
}

impl std::fmt::Debug for LimitZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.state {
            ZoneState::Req(_) => "limit_req_zone",
            ZoneState::Conn(_) => "limit_conn_zone",
        };
        write!(f, "{kind} {} zone={}", self.key, self.name)
    }
}

impl PartialEq for LimitZone {
    fn eq(&self, o: &LimitZone) -> bool {
        let same = match (&self.state, &o.state) {
            (ZoneState::Req(a), ZoneState::Req(b)) => Arc::ptr_eq(a, b),
            (ZoneState::Conn(a), ZoneState::Conn(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same && self.name == o.name && self.key == o.key
    }
}

/// One `limit_req` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitReq {
    /// The zone's name.
    pub zone: String,
    /// `burst=` in thousandths of a request.
    pub burst: u64,
    /// `delay=` in thousandths (`nodelay`: unbounded).
    pub delay: u64,
}

/// One `limit_conn` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitConn {
    /// The zone's name.
    pub zone: String,
    /// How many at once.
    pub conn: u32,
}

/// nginx's smallest zone: eight pages.
const MIN_ZONE: u64 = 8 * 4096;

/// `zone=NAME:SIZE` of a `*_zone` directive.
fn zone_param(d: &Directive, v: &str) -> Result<(String, u64)> {
    let bad = || err(d, format!("invalid zone size \"zone={v}\""));
    let (name, size) = v.split_once(':').ok_or_else(bad)?;
    let size = parse_size(size).ok_or_else(bad)?;
    if size < MIN_ZONE {
        return Err(err(d, format!("zone \"zone={v}\" is too small")));
    }
    Ok((name.to_string(), size))
}

/// A zone name already taken, by either module (nginx's shared memory zones are one namespace).
fn check_new_name(h: &HttpConf, d: &Directive, name: &str, req: bool) -> Result<()> {
    match h.limit_zones.iter().find(|z| z.name == name) {
        Some(z) if matches!(z.state, ZoneState::Req(_)) == req => Err(err(
            d,
            format!(
                "{} \"{name}\" is already bound to key \"{}\"",
                d.name(),
                z.key
            ),
        )),
        Some(_) => Err(err(
            d,
            format!("the shared memory zone \"{name}\" is already declared for a different use"),
        )),
        None => Ok(()),
    }
}

/// `limit_req_zone key zone=name:size rate=N r/s|r/m`.
pub(crate) fn req_zone(h: &mut HttpConf, d: &Directive, e: &mut Env) -> Result<()> {
    let key = e.template(d.arg(0), d)?;
    let (mut zone, mut rate) = (None, 1000u64);
    for a in &d.args[1..] {
        let v = a.value.as_str();
        if let Some(z) = v.strip_prefix("zone=") {
            zone = Some(zone_param(d, z)?);
        } else if let Some(r) = v.strip_prefix("rate=") {
            let (n, scale) = match (r.strip_suffix("r/s"), r.strip_suffix("r/m")) {
                (Some(n), _) => (n, 1),
                (_, Some(n)) => (n, 60),
                _ => (r, 1),
            };
            rate = parse_number(n)
                .filter(|n| *n > 0)
                .ok_or_else(|| err(d, format!("invalid rate \"{v}\"")))?
                * 1000
                / scale;
        } else {
            return Err(err(d, format!("invalid parameter \"{v}\"")));
        }
    }
    let (name, size) =
        zone.ok_or_else(|| err(d, "\"limit_req_zone\" must have \"zone\" parameter"))?;
    check_new_name(h, d, &name, true)?;
    let state = crate::limits::req_zone(&name, size as usize, &key.to_string(), rate)
        .map_err(|x| err(d, x.to_string()))?;
    h.limit_zones.push(LimitZone {
        name,
        key,
        state: ZoneState::Req(state),
    });
    Ok(())
}

/// `limit_conn_zone key zone=name:size`.
pub(crate) fn conn_zone(h: &mut HttpConf, d: &Directive, e: &mut Env) -> Result<()> {
    let key = e.template(d.arg(0), d)?;
    let v = d.arg(1);
    let z = v
        .strip_prefix("zone=")
        .ok_or_else(|| err(d, format!("invalid parameter \"{v}\"")))?;
    let (name, size) = zone_param(d, z)?;
    check_new_name(h, d, &name, false)?;
    let state = crate::limits::conn_zone(&name, size as usize, &key.to_string())
        .map_err(|x| err(d, x.to_string()))?;
    h.limit_zones.push(LimitZone {
        name,
        key,
        state: ZoneState::Conn(state),
    });
    Ok(())
}

/// `limit_req zone=name [burst=N] [nodelay | delay=N]`.
pub(crate) fn limit_req(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let (mut zone, mut burst, mut delay) = (None, 0u64, 0u64);
    for a in &d.args {
        let v = a.value.as_str();
        let positive = |n: &str, what: &str| {
            parse_number(n)
                .filter(|n| *n > 0)
                .ok_or_else(|| err(d, format!("invalid {what} value \"{v}\"")))
        };
        if let Some(z) = v.strip_prefix("zone=") {
            zone = Some(z.to_string());
        } else if let Some(n) = v.strip_prefix("burst=") {
            burst = positive(n, "burst")?;
        } else if let Some(n) = v.strip_prefix("delay=") {
            delay = positive(n, "delay")?;
        } else if v == "nodelay" {
            delay = u64::MAX / 1000;
        } else {
            return Err(err(d, format!("invalid parameter \"{v}\"")));
        }
    }
    let zone = zone.ok_or_else(|| err(d, "\"limit_req\" must have \"zone\" parameter"))?;
    let list = c.limit_req.get_or_insert_with(Vec::new);
    if list.iter().any(|l| l.zone == zone) {
        return Err(err(d, "\"limit_req\" directive is duplicate"));
    }
    e.limit_refs.push((zone.clone(), true, d.span.clone()));
    list.push(LimitReq {
        zone,
        burst: burst * 1000,
        delay: delay.saturating_mul(1000),
    });
    Ok(())
}

/// `limit_conn zone number`.
pub(crate) fn limit_conn(c: &mut LocConf, d: &Directive, e: &mut Env) -> Result<()> {
    let zone = d.arg(0).to_string();
    let conn = parse_number(d.arg(1))
        .filter(|n| (1..=65535).contains(n))
        .ok_or_else(|| err(d, format!("invalid number of connections \"{}\"", d.arg(1))))?;
    let list = c.limit_conn.get_or_insert_with(Vec::new);
    if list.iter().any(|l| l.zone == zone) {
        return Err(err(d, "\"limit_conn\" directive is duplicate"));
    }
    e.limit_refs.push((zone.clone(), false, d.span.clone()));
    list.push(LimitConn {
        zone,
        conn: conn as u32,
    });
    Ok(())
}

/// `limit_req_status`/`limit_conn_status code`: 400 to 599.
pub(crate) fn status(d: &Directive) -> Result<u16> {
    parse_number(d.arg(0))
        .filter(|n| (400..=599).contains(n))
        .map(|n| n as u16)
        .ok_or_else(|| err(d, "value must be between 400 and 599"))
}

/// `limit_req_log_level`/`limit_conn_log_level`: info, notice, warn or error.
pub(crate) fn log_level(d: &Directive) -> Result<LogLevel> {
    match parse_level(d.arg(0)) {
        Some(l @ (LogLevel::Info | LogLevel::Notice | LogLevel::Warn | LogLevel::Error)) => Ok(l),
        _ => Err(err(d, format!("invalid value \"{}\"", d.arg(0)))),
    }
}

/// Every `limit_req`/`limit_conn` names a zone of its kind (nginx checks when it creates the
/// shared memory: `zero size shared memory zone`).
pub(crate) fn check_refs(h: &HttpConf, e: &mut Env) -> Result<()> {
    for (name, req, span) in std::mem::take(&mut e.limit_refs) {
        let found = h.limit_zones.iter().find(|z| z.name == name);
        let msg = match found.map(|z| matches!(z.state, ZoneState::Req(_))) {
            None => format!("zero size shared memory zone \"{name}\""),
            Some(kind) if kind != req => {
                format!("the shared memory zone \"{name}\" is already declared for a different use")
            }
            Some(_) => continue,
        };
        return Err(super::ConfigError::at(&span, msg));
    }
    Ok(())
}
