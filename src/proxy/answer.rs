//! What a request writes to the client itself, wherever it is: response heads and bodies
//! counted for the access log, ringproxy's own error pages ([`fail`]) and `return`/redirect
//! replies ([`reply`], [`send_page`]). Inside the location loop (`locations`) an error or a
//! bare redirect is not sent but comes back as `State::Error`, for `error_page` to answer.

use super::handler::{Conn, State};
use super::io::write_all;
use super::req::Req;
use super::respond;
use crate::config::model::LocConf;
use crate::http::script::Reply;

/// Writes `bytes` to the client within `send_timeout`, counting them for the access log.
pub(super) async fn send(conn: &Conn, bytes: &[u8], conf: &LocConf) -> bool {
    let ok = write_all(&conn.stream, bytes, conf.send_timeout())
        .await
        .is_ok();
    if ok {
        conn.sent.set(conn.sent.get() + bytes.len() as u64);
    }
    ok
}

/// Sends a response head: records the status and the head's size for the access log.
pub(super) async fn send_head(conn: &Conn, status: u16, bytes: &[u8], conf: &LocConf) -> bool {
    conn.status.set(status);
    conn.head_sent.set(bytes.len() as u64);
    send(conn, bytes, conf).await
}

/// Sends a response ringproxy made whole (head and body in one buffer), recording the head's
/// size so that `$body_bytes_sent` counts the body only, as nginx.
async fn send_whole(conn: &Conn, bytes: &[u8], conf: &LocConf) -> bool {
    let head = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |i| i + 4);
    conn.head_sent.set(head as u64);
    send(conn, bytes, conf).await
}

/// Answers with ringproxy's own page for `code` and closes.
pub(super) async fn fail(conn: &Conn, code: u16, conf: &LocConf) -> State {
    if conn.defer_errors.get() {
        return State::Error(Reply::status(code), false);
    }
    conn.status.set(code);
    let _ = send_whole(
        conn,
        &respond::error(code, false, conf.server_tokens()),
        conf,
    )
    .await;
    State::Closed
}

/// Sends a `return`/redirect reply; inside the location loop, a bare status or redirect goes
/// back to `error_page` first.
pub(super) async fn reply(req: &mut Req<'_>, r: Reply, keep_alive: bool) -> State {
    if req.conn.defer_errors.get() && r.body.is_none() && r.code >= 300 && r.code != 444 {
        return State::Error(r, keep_alive);
    }
    let Some(code) = req.conn.err_status.get() else {
        return send_page(req, r, keep_alive).await;
    };
    // Under an error_page status, nginx sends a bare `return` below 300 as the empty body it is
    // (`ngx_http_send_response`), not the page of the status; and a redirect's `Location` from
    // before the error_page stays unless this reply sets its own.
    let r = Reply {
        code,
        body: r.body.or_else(|| (r.code < 300).then(Vec::new)),
        location: r.location.or_else(|| req.conn.err_location.take()),
    };
    send_page(req, r, keep_alive).await
}

/// Sends ringproxy's own response for `r` (its text, or nginx's page for the status), with the
/// location's `add_header` lines and gzip.
pub(super) async fn send_page(req: &mut Req<'_>, r: Reply, keep_alive: bool) -> State {
    let conn = &*req.conn;
    conn.status.set(r.code);
    if r.code == 444 {
        return State::Closed;
    }
    let (bytes, keep, gzip) = respond::reply(&mut req.vars, req.conf, &r, keep_alive);
    conn.gzip_io.set(gzip);
    if send_whole(conn, &bytes, req.conf).await && keep {
        State::ReadingHead
    } else {
        State::Closed
    }
}
