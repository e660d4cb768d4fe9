//! After the upstream's `101`: `proxy_pass::proxy` hands the upgraded exchange to
//! [`tunnel_after_101`], which sends the client its head, forwards the bytes that came with
//! either head, and returns `State::Tunnel` with the tunnel's settings; `handler::serve` then
//! spawns `tunnel::run` on a task that holds only the two sockets.

use super::answer::{send, send_head};
use super::conn::Stream;
use super::frames::Frames;
use super::handler::State;
use super::io::write_all;
use super::proxy_pass::PeerSlot;
use super::req::Req;
use super::tunnel::{Path, TunnelConfig};
use crate::config::model::SpliceMode;

/// `tunnel`: the upstream, its peer slot, and whether the upgrade is to WebSocket (the tunnel
/// then follows frame boundaries, from the bytes that came with the heads on). `head`: the
/// client's `101` head; `early_down`: upstream bytes that came with the upstream's.
pub(super) async fn tunnel_after_101(
    req: &mut Req<'_>,
    (upstream, slot, websocket): (Stream, PeerSlot, bool),
    head: Vec<u8>,
    early_down: Vec<u8>,
) -> State {
    let (conn, conf) = (&mut *req.conn, req.conf);
    if !send_head(conn, 101, &head, conf).await {
        return State::Closed;
    }
    drop(head);
    // Bytes that came with the heads: the backend's first frame, the client's pipelined one.
    if !early_down.is_empty() && !send(conn, &early_down, conf).await {
        return State::Closed;
    }
    let early_up = std::mem::take(&mut conn.buf);
    let frames = websocket.then(|| {
        let (mut up, mut down) = (Frames::default(), Frames::default());
        up.feed(&early_up);
        down.feed(&early_down);
        [up, down]
    });
    drop(early_down);
    if !early_up.is_empty()
        && write_all(&upstream, &early_up, conf.proxy_send_timeout())
            .await
            .is_err()
    {
        return State::Closed;
    }
    drop(early_up);
    let path = match conf.proxy_splice() {
        SpliceMode::On => Path::Splice,
        SpliceMode::Off => Path::Copy,
        SpliceMode::Auto => Path::Auto,
    };
    let cfg = TunnelConfig {
        read_timeout: conf.proxy_read_timeout(),
        client_send_timeout: conf.send_timeout(),
        upstream_send_timeout: conf.proxy_send_timeout(),
        path,
        frames,
        generation: req.ctx.serial,
        half_close: true,
    };
    State::Tunnel(upstream, cfg, slot)
}
