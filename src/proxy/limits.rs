//! nginx's pre-access phase for the limit modules, run once a location is chosen and before the
//! access rules: `limit_req` (the request may wait, or be refused with `limit_req_status`), then
//! `limit_conn` (a slot of each zone held for the request's life, and an upgraded request's
//! tunnel's: the slots travel with the tunnel's guards). As nginx, each module decides once per
//! request: an internal redirect does not count the request again.

use super::req::Req;
use crate::config::limits::{LimitZone, ZoneState};
use crate::config::model::{LocConf, LogLevel};
use crate::limits::req::{decide, Decision, Limit};
use crate::limits::{ConnZone, ReqZone};
use crate::log;

/// Runs both modules; `Err` carries the status of a refusal.
pub(super) async fn preaccess(req: &mut Req<'_>, conf: &LocConf) -> Result<(), u16> {
    if req.vars.limits.req.is_none() && conf.limit_req.as_ref().is_some_and(|l| !l.is_empty()) {
        limit_req(req, conf).await?;
    }
    if req.vars.limits.conn.is_none() && conf.limit_conn.as_ref().is_some_and(|l| !l.is_empty()) {
        limit_conn(req, conf)?;
    }
    Ok(())
}

fn req_zone<'h>(zones: &'h [LimitZone], name: &str) -> Option<(&'h ReqZone, &'h LimitZone)> {
    zones
        .iter()
        .find(|z| z.name == name)
        .and_then(|z| match &z.state {
            ZoneState::Req(r) => Some((&**r, z)),
            ZoneState::Conn(_) => None,
        })
}

fn conn_zone<'h>(
    zones: &'h [LimitZone],
    name: &str,
) -> Option<(&'h std::sync::Arc<ConnZone>, &'h LimitZone)> {
    zones
        .iter()
        .find(|z| z.name == name)
        .and_then(|z| match &z.state {
            ZoneState::Conn(c) => Some((c, z)),
            ZoneState::Req(_) => None,
        })
}

/// The key of a zone for this request; `None` when empty (not limited) or too long (logged,
/// as nginx, and not limited either).
fn key(req: &mut Req<'_>, zone: &LimitZone, max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    req.vars.render(&zone.key, &mut out);
    if out.len() > max {
        log!(
            Error,
            "the value of the \"{}\" key is more than {max} bytes: \"{}\"{}",
            zone.key,
            String::from_utf8_lossy(&out),
            context(req)
        );
        return None;
    }
    (!out.is_empty()).then_some(out)
}

/// `, client: ..., server: ..., request: "...", host: "..."` of nginx's request log lines.
fn context(req: &Req<'_>) -> String {
    let head = req.head;
    format!(
        ", client: {}, server: {}, request: \"{} {} {}\", host: \"{}\"",
        req.vars.remote_ip(),
        req.facts.server_name,
        head.method,
        head.target.raw,
        crate::http::vars::protocol(head.version),
        head.host.unwrap_or("")
    )
}

/// nginx logs delays one level below `limit_req_log_level` (`info` stays `info`).
fn delay_level(l: LogLevel) -> LogLevel {
    match l {
        LogLevel::Error => LogLevel::Warn,
        LogLevel::Warn => LogLevel::Notice,
        _ => LogLevel::Info,
    }
}

async fn limit_req(req: &mut Req<'_>, conf: &LocConf) -> Result<(), u16> {
    let http = req.http;
    let mut keyed = Vec::new();
    for line in conf.limit_req.as_deref().unwrap_or(&[]) {
        let Some((zone, def)) = req_zone(&http.limit_zones, &line.zone) else {
            continue;
        };
        if let Some(k) = key(req, def, 65535) {
            keyed.push((zone, k, line));
        }
    }
    if keyed.is_empty() {
        return Ok(());
    }
    let limits: Vec<Limit<'_>> = keyed
        .iter()
        .map(|(zone, key, line)| Limit {
            zone,
            key,
            burst: line.burst,
            delay: line.delay,
        })
        .collect();
    let decision = decide(&limits, crate::limits::now_ms());
    let dry = conf.limit_req_dry_run();
    let name = |i: usize| keyed[i].0.name();
    let (status, wait) = match decision {
        Decision::Pass => ("PASSED", None),
        Decision::Busy { excess, limit } => {
            let dry_run = if dry { ", dry run" } else { "" };
            let line = format!(
                "limiting requests{dry_run}, excess: {}.{:03} by zone \"{}\"{}",
                excess / 1000,
                excess % 1000,
                name(limit),
                context(req)
            );
            log::log(conf.limit_req_log_level(), format_args!("{line}"));
            ("REJECTED", None)
        }
        Decision::NoMemory { limit } => {
            log!(
                Alert,
                "could not allocate node in limit_req zone \"{}\"",
                name(limit)
            );
            ("REJECTED", None)
        }
        Decision::Delay { ms, excess, limit } => {
            let dry_run = if dry { ", dry run" } else { "" };
            let line = format!(
                "delaying request{dry_run}, excess: {}.{:03}, by zone \"{}\"{}",
                excess / 1000,
                excess % 1000,
                name(limit),
                context(req)
            );
            log::log(
                delay_level(conf.limit_req_log_level()),
                format_args!("{line}"),
            );
            ("DELAYED", Some(ms))
        }
    };
    drop(limits);
    if dry {
        req.vars.limits.req = Some(match status {
            "REJECTED" => "REJECTED_DRY_RUN",
            "DELAYED" => "DELAYED_DRY_RUN",
            s => s,
        });
        return Ok(());
    }
    req.vars.limits.req = Some(status);
    if status == "REJECTED" {
        return Err(conf.limit_req_status());
    }
    if let Some(ms) = wait {
        monoio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    Ok(())
}

fn limit_conn(req: &mut Req<'_>, conf: &LocConf) -> Result<(), u16> {
    let http = req.http;
    for line in conf.limit_conn.as_deref().unwrap_or(&[]) {
        let Some((zone, def)) = conn_zone(&http.limit_zones, &line.zone) else {
            continue;
        };
        let Some(k) = key(req, def, 255) else {
            continue;
        };
        req.vars.limits.conn = Some("PASSED");
        let refused = match zone.acquire(&k, line.conn) {
            Ok(slot) => {
                req.conn.limit_slots.push(slot);
                continue;
            }
            Err(r) => r,
        };
        let dry = conf.limit_conn_dry_run();
        if refused == crate::limits::conn::Refused::Busy {
            let dry_run = if dry { ", dry run," } else { "" };
            let line = format!(
                "limiting connections{dry_run} by zone \"{}\"{}",
                zone.name(),
                context(req)
            );
            log::log(conf.limit_conn_log_level(), format_args!("{line}"));
        }
        req.conn.limit_slots.clear();
        if dry {
            req.vars.limits.conn = Some("REJECTED_DRY_RUN");
            return Ok(());
        }
        req.vars.limits.conn = Some("REJECTED");
        return Err(conf.limit_conn_status());
    }
    Ok(())
}
