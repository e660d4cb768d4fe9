//! The tunnel: after a `101 Switching Protocols`, bytes flow both ways until both sides close.
//!
//! Each direction waits for readability with no buffer held, then borrows a pooled buffer (copy
//! path) or a pooled pipe (splice path), moves what is there with non-blocking system calls, and
//! returns it before waiting again (docs/architecture.md, decisions 2 and 3: splice is
//! `splice(2)` after readiness, never io_uring's splice op, which parks a kernel thread per
//! pending call).
//! A FIN is passed on as a half-close while the other direction keeps flowing; an error or reset
//! closes both. `proxy_read_timeout` closes a tunnel silent in both directions that long; a write
//! that stays blocked closes it after `send_timeout` towards the client, `proxy_send_timeout`
//! towards the upstream, as in nginx (a blocked write is not silence).
//! A slow reader blocks the writer of its direction, which stops reading its source: memory per
//! tunnel stays one buffer per active direction.
//!
//! Either side may be TLS ([`Stream`]): the tunnel then copies (splice cannot see plaintext),
//! whatever `proxy_splice` says; a FIN becomes close_notify then FIN; and a TLS write that would
//! block may leave bytes in rustls' bounded buffer, flushed before the source is read again.
//!
//! A WebSocket tunnel follows the frame boundaries of both directions ([`Frames`]: headers
//! only). On a graceful stop, at the moment the shard's schedule gives it ([`IdleClock`]), each
//! direction forwards the frame in flight to its end, then sends its destination a Close 1001
//! (masked towards the upstream, as a client's) and stops forwarding; it then reads and drops
//! what its source sends until that side's Close reply (not forwarded: each side already has
//! its Close), for at most [`CLOSE_WAIT`]. The splice path keeps the boundary without reading
//! payloads: between frames it peeks at the next header (`MSG_PEEK`) and splices at most to the
//! end of that frame; a header that has not fully arrived is read by a copy round instead.
//!
//! Binary upgrade: a tunnel with both sides plain may move to the new binary. Asked through its
//! [`IdleClock`] slot, it ends with [`End::HandOver`] at a moment when both directions wait for
//! readability holding no byte (no buffer or pipe in use, no blocked write), carrying its
//! settings and where each direction stands frame-wise; the caller sends the two sockets
//! (`super::handoff`). A direction that has ended (half-close) keeps the tunnel here.

use std::cell::Cell;
use std::io;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};
use monoio::net::TcpStream;
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use super::conn::Stream;
use super::frames::{self, Frames};
use super::idle::{IdleClock, Wake};
use super::pool::{PooledBuf, PooledPipe, BUF_SIZE, PIPE_SIZE};
use crate::sys::fd;

/// Auto: a readiness round moving less than this is small (chat-like traffic).
const SMALL_ROUND: usize = BUF_SIZE / 4;
/// Auto: small rounds in a row that end a bulk phase (back from splice to copy).
const SMALL_ROUNDS: u8 = 8;
/// Graceful stop of a WebSocket tunnel: how long each direction may take to finish its frame
/// in flight, and then how long it waits for its source's Close reply.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How a tunnel forwards bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Read into a pooled buffer, write it out.
    Copy,
    /// `splice(2)` socket -> pooled pipe -> socket.
    Splice,
    /// Copy while messages are small; splice, per direction, once a readiness round fills a
    /// whole buffer (bulk transfer), back to copy after several small rounds in a row.
    Auto,
}

/// Tunnel settings, from the location's configuration.
#[derive(Clone, Copy, Debug)]
pub struct TunnelConfig {
    /// Close when both directions were silent this long (`proxy_read_timeout`).
    pub read_timeout: Duration,
    /// Close when a write to the client stays blocked this long (`send_timeout`).
    pub client_send_timeout: Duration,
    /// Close when a write to the upstream stays blocked this long (`proxy_send_timeout`).
    pub upstream_send_timeout: Duration,
    /// Forwarding path.
    pub path: Path,
    /// A WebSocket tunnel: where each direction stands frame-wise when the tunnel starts
    /// (client to upstream, upstream to client), after the bytes forwarded with the heads.
    pub frames: Option<[Frames; 2]>,
    /// The shard's configuration generation the tunnel started on: a reload with
    /// `worker_shutdown_timeout` drains it and cuts it at the timeout.
    pub generation: u32,
    /// A FIN from one side is passed on as a half-close while the other direction keeps
    /// flowing; when false the first FIN ends the tunnel (nginx's stream `proxy_half_close off`).
    pub half_close: bool,
}

impl TunnelConfig {
    /// How long a write towards `side` may stay blocked.
    fn send_timeout(&self, side: Side) -> Duration {
        match side {
            Side::Client => self.client_send_timeout,
            Side::Upstream => self.upstream_send_timeout,
        }
    }
}

/// Which side of the tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client connection.
    Client,
    /// The upstream connection.
    Upstream,
}

/// Why a tunnel ended.
#[derive(Debug)]
pub enum End {
    /// Both directions closed cleanly (FIN both ways).
    Closed,
    /// Silent in both directions for `proxy_read_timeout`.
    ReadTimeout,
    /// Its configuration was replaced and `worker_shutdown_timeout` passed.
    ShutdownTimeout,
    /// A write blocked for `proxy_send_timeout` towards this side.
    SendTimeout(Side),
    /// A read or write on this side failed (reset, ...).
    Error(Side, io::Error),
    /// Asked to move to a new binary, it stopped with no byte held: these settings (with the
    /// frame trackers where the directions stand now) resume it on the same two sockets.
    HandOver(TunnelConfig),
}

/// Bytes moved and why the tunnel ended.
#[derive(Debug)]
pub struct Outcome {
    /// Client to upstream.
    pub up_bytes: u64,
    /// Upstream to client.
    pub down_bytes: u64,
    /// Why it ended.
    pub end: End,
}

enum PumpErr {
    ReadTimeout,
    HandOver,
    SendTimeout(Side),
    Io(Side, io::Error),
}

/// Runs the tunnel to its end. The caller has already forwarded any bytes that arrived with the
/// heads (a pipelined first frame), and closes both sockets when this returns. Splice needs
/// both sides plain: with TLS on either side the tunnel copies.
///
/// Everything lives in this one future (no boxes): with the caller's task it is the whole cost
/// of an idle tunnel, and the idle timeout is a slot in the shard's [`IdleClock`] table rather
/// than a timer of its own.
pub async fn run(client: &Stream, upstream: &Stream, mut cfg: TunnelConfig) -> Outcome {
    if client.plain().is_none() || upstream.plain().is_none() {
        cfg.path = Path::Copy;
    }
    let clock = IdleClock::register(cfg.read_timeout);
    clock.of_generation(cfg.generation);
    if cfg.frames.is_some() {
        clock.drains();
    }
    if client.plain().is_some() && upstream.plain().is_some() {
        clock.movable();
    }
    // Owned here, lent to the pumps: on a hand-over they tell where each direction stands.
    let [mut up_frames, mut down_frames] = match cfg.frames {
        Some([u, d]) => [Some(u), Some(d)],
        None => [None, None],
    };
    let up_bytes = Cell::new(0u64);
    let down_bytes = Cell::new(0u64);
    // In a block of its own: the pumps (and their loans) end before a hand-over reads them.
    let result = {
        let up = pin!(pump(
            client,
            upstream,
            Side::Client,
            &cfg,
            &clock,
            &up_bytes,
            &mut up_frames
        ));
        let down = pin!(pump(
            upstream,
            client,
            Side::Upstream,
            &cfg,
            &clock,
            &down_bytes,
            &mut down_frames
        ));
        let pumps = pin!(async {
            match select(up, down).await {
                Either::Left((Ok(()), _)) | Either::Right((Ok(()), _)) if !cfg.half_close => Ok(()),
                Either::Left((Ok(()), rest)) => rest.await,
                Either::Right((Ok(()), rest)) => rest.await,
                Either::Left((Err(e), _)) | Either::Right((Err(e), _)) => Err(e),
            }
        });
        // The pumps are polled first: when the clock then says hand over, both wait for
        // readability (or have just been woken for it, with nothing read yet).
        match select(pumps, clock.expired()).await {
            Either::Left((r, _)) => r,
            Either::Right((Wake::Silent, _)) => Err(PumpErr::ReadTimeout),
            Either::Right((Wake::HandOver, _)) => Err(PumpErr::HandOver),
        }
    };
    let end = match result {
        Ok(()) => End::Closed,
        Err(PumpErr::ReadTimeout) if clock.was_cut() => End::ShutdownTimeout,
        Err(PumpErr::HandOver) => End::HandOver(TunnelConfig {
            frames: up_frames.zip(down_frames).map(|(u, d)| [u, d]),
            ..cfg
        }),
        Err(PumpErr::ReadTimeout) => End::ReadTimeout,
        Err(PumpErr::SendTimeout(side)) => End::SendTimeout(side),
        Err(PumpErr::Io(side, e)) => End::Error(side, e),
    };
    Outcome {
        up_bytes: up_bytes.get(),
        down_bytes: down_bytes.get(),
        end,
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Upstream,
        Side::Upstream => Side::Client,
    }
}

/// One direction: `src` to `dst` until `src` sends FIN (then half-close `dst`).
///
/// While idle this future holds only its readiness wait: bytes are moved synchronously right
/// after readiness, and only a write that would block (a slow reader) moves the in-flight data
/// into a boxed slow path. So an idle tunnel costs two small futures and no buffer, and the
/// common case allocates nothing per message.
async fn pump(
    src: &Stream,
    dst: &Stream,
    side: Side,
    cfg: &TunnelConfig,
    clock: &IdleClock,
    moved: &Cell<u64>,
    frames: &mut Option<Frames>,
) -> Result<(), PumpErr> {
    // Auto: whether this direction is in a bulk phase (splicing), and how many readiness rounds
    // in a row moved little since. Splicing starts on a full buffer and stays through the short
    // rounds a bulk stream has between its segments; only `SMALL_ROUNDS` small rounds in a row
    // (the traffic became chat-like) go back to copying, so a stream does not flip-flop.
    let mut bulk = cfg.path == Path::Splice;
    let mut small = 0u8;
    loop {
        // A stream that cannot be followed closes at the deadline, as other upgrades do.
        if let Some(f) = frames.as_mut().filter(|f| !f.lost()) {
            if clock.draining() {
                return Box::pin(close_handshake(src, dst, side, moved, f)).await;
            }
            let readable = pin!(wait_readable(src, side));
            if let Either::Left((r, _)) = select(readable, clock.drain_due()).await {
                r?;
            } else {
                continue;
            }
        } else {
            wait_readable(src, side).await?;
        }
        let pipe = match (bulk, src.plain(), dst.plain()) {
            // No pipe to be had (descriptor table full): this round copies instead.
            (true, Some(s), Some(d)) => PooledPipe::take().ok().map(|p| (p, s, d)),
            _ => None,
        };
        let f = frames.as_mut().filter(|f| !f.lost());
        let (spliced, f) = match pipe {
            Some((pipe, s, d)) => match f {
                Some(f) => (
                    splice_now(pipe, s, d, side, clock, moved, Some(&mut *f))?,
                    Some(f),
                ),
                None => (splice_now(pipe, s, d, side, clock, moved, None)?, None),
            },
            None => (None, f),
        };
        let mut step = match spliced {
            Some(step) => step,
            // A frame header split across packets is read by a copy round.
            None => copy_now(src, dst, side, clock, moved, cfg.path == Path::Auto, f)?,
        };
        if cfg.path == Path::Auto {
            match step {
                // A full buffer and more waiting: switch to splice within this round.
                Step::Full => {
                    // Auto only runs with both sides plain (see `run`).
                    if let (Some(s), Some(d)) = (src.plain(), dst.plain()) {
                        bulk = true;
                        small = 0;
                        if let Ok(pipe) = PooledPipe::take() {
                            let f = frames.as_mut().filter(|f| !f.lost());
                            if let Some(next) = splice_now(pipe, s, d, side, clock, moved, f)? {
                                step = next;
                            }
                        }
                    }
                }
                Step::Drained(n) if bulk && n < SMALL_ROUND => {
                    small += 1;
                    if small >= SMALL_ROUNDS {
                        bulk = false;
                    }
                }
                Step::Drained(_) => small = 0,
                _ => {}
            }
        }
        match step {
            Step::Drained(_) | Step::Full => {}
            Step::Eof => {
                // Pass the FIN on; the other direction keeps flowing, here (a half-closed
                // tunnel does not move to a new binary).
                clock.stays();
                dst.shutdown_write();
                return Ok(());
            }
            Step::Blocked(pending) => Box::pin(finish(dst, pending, side, cfg, clock)).await?,
        }
    }
}

async fn wait_readable(src: &Stream, side: Side) -> Result<(), PumpErr> {
    src.readable().await.map_err(|e| PumpErr::Io(side, e))
}

/// Bytes read from `src` that `dst` could not take yet.
enum Pending {
    /// Copy path: `buf[at..end]` still to write.
    Buf {
        buf: PooledBuf,
        at: usize,
        end: usize,
    },
    /// Splice path: `left` bytes still in the pipe.
    Pipe { pipe: PooledPipe, left: usize },
    /// TLS: everything was taken, part of it is still in rustls' buffer.
    Flush,
}

/// What one readiness round moved.
enum Step {
    /// Everything available was forwarded (this many bytes in this round).
    Drained(usize),
    /// Copy path with `stop_when_full`: a whole buffer was forwarded and more is probably
    /// waiting (Auto switches to splice).
    Full,
    /// `src` reached end of stream.
    Eof,
    /// `dst` would block: finish writing `Pending` (waiting for writability).
    Blocked(Pending),
}

/// Copies what `src` has ready without waiting (plain or TLS on either side). With
/// `stop_when_full`, returns `Full` after forwarding a whole buffer instead of reading on.
fn copy_now(
    src: &Stream,
    dst: &Stream,
    side: Side,
    clock: &IdleClock,
    moved: &Cell<u64>,
    stop_when_full: bool,
    mut frames: Option<&mut Frames>,
) -> Result<Step, PumpErr> {
    let mut buf = PooledBuf::take();
    let mut round = 0;
    loop {
        let n = match src.try_read(buf.bytes()) {
            Ok(Some(0)) => return Ok(Step::Eof),
            Ok(Some(n)) => n,
            Ok(None) => return Ok(Step::Drained(round)),
            Err(e) => return Err(PumpErr::Io(side, e)),
        };
        moved.set(moved.get() + n as u64);
        clock.touch(Instant::now());
        round += n;
        if let Some(f) = frames.as_deref_mut() {
            f.feed(&buf.bytes()[..n]);
        }
        let mut at = 0;
        while at < n {
            match dst.try_write(&buf.bytes()[at..n]) {
                Ok(Some(w)) => at += w,
                Ok(None) => return Ok(Step::Blocked(Pending::Buf { buf, at, end: n })),
                Err(e) => return Err(PumpErr::Io(other(side), e)),
            }
        }
        match dst.try_flush() {
            Ok(true) => {}
            Ok(false) => return Ok(Step::Blocked(Pending::Flush)),
            Err(e) => return Err(PumpErr::Io(other(side), e)),
        }
        if n < BUF_SIZE && !src.has_buffered() {
            // Probably drained: wait for readiness again without holding the buffer.
            return Ok(Step::Drained(round));
        }
        if stop_when_full {
            return Ok(Step::Full);
        }
    }
}

/// Splices what `src` has ready through `pipe` (from the shard's pool) without waiting.
/// Following `frames`, it never splices past the end of a frame whose header it has not seen;
/// `None`: the next header has not fully arrived, a copy round must read it.
fn splice_now(
    pipe: PooledPipe,
    src: &TcpStream,
    dst: &TcpStream,
    side: Side,
    clock: &IdleClock,
    moved: &Cell<u64>,
    mut frames: Option<&mut Frames>,
) -> Result<Option<Step>, PumpErr> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let mut round = 0;
    loop {
        let mut peeked = [0u8; frames::PEEK];
        let mut seen = 0;
        let limit = match frames.as_deref() {
            None => PIPE_SIZE,
            Some(f) if f.left() > 0 => f.left().min(PIPE_SIZE as u64) as usize,
            Some(f) if f.in_header() => {
                pipe.give_back();
                return Ok((round > 0).then_some(Step::Drained(round)));
            }
            Some(_) => {
                let peek = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
                match rustix::net::recv(fd(src), &mut peeked, peek) {
                    Ok((0, _)) => {
                        pipe.give_back();
                        return Ok(Some(Step::Eof));
                    }
                    Ok((k, _)) => match frames::frame_len(&peeked[..k]) {
                        Some(len) => {
                            seen = k;
                            len.min(PIPE_SIZE as u64) as usize
                        }
                        None => {
                            pipe.give_back();
                            return Ok((round > 0).then_some(Step::Drained(round)));
                        }
                    },
                    Err(Errno::AGAIN) => {
                        pipe.give_back();
                        return Ok(Some(Step::Drained(round)));
                    }
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(PumpErr::Io(side, e.into())),
                }
            }
        };
        let n = match rustix::pipe::splice(fd(src), None, &pipe.write, None, limit, flags) {
            Ok(0) => {
                pipe.give_back();
                return Ok(Some(Step::Eof));
            }
            Ok(n) => n,
            Err(Errno::AGAIN) => {
                pipe.give_back();
                return Ok(Some(Step::Drained(round)));
            }
            Err(Errno::INTR) => continue,
            // The pipe is dropped (closed), never reused, on errors: it may hold bytes.
            Err(e) => return Err(PumpErr::Io(side, e.into())),
        };
        moved.set(moved.get() + n as u64);
        clock.touch(Instant::now());
        round += n;
        if let Some(f) = frames.as_deref_mut() {
            // Between frames the peek saw the whole header, which went by in the splice.
            let head = if seen > 0 {
                frames::header_len(&peeked[..seen]).unwrap_or(0).min(n)
            } else {
                0
            };
            f.feed(&peeked[..head]);
            f.skip((n - head) as u64);
        }
        let mut left = n;
        while left > 0 {
            match rustix::pipe::splice(&pipe.read, None, fd(dst), None, left, flags) {
                Ok(m) => left -= m,
                Err(Errno::AGAIN) => return Ok(Some(Step::Blocked(Pending::Pipe { pipe, left }))),
                Err(Errno::INTR) => {}
                Err(e) => return Err(PumpErr::Io(other(side), e.into())),
            }
        }
    }
}

/// The slow path: `dst` is full. Waits for writability (bounded by its side's send timeout) until
/// the pending bytes are out; `src` is not read meanwhile (backpressure).
async fn finish(
    dst: &Stream,
    pending: Pending,
    side: Side,
    cfg: &TunnelConfig,
    clock: &IdleClock,
) -> Result<(), PumpErr> {
    let dst_side = other(side);
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    // Blocked on a slow reader: the send timeout applies, not the idle timeout (as nginx,
    // which drops the read timer while it cannot write); the tunnel counts as active again when
    // the write completes.
    let _held = clock.hold();
    match pending {
        Pending::Buf { mut buf, at, end } => {
            write_all(dst, &buf.bytes()[at..end], dst_side, cfg).await?;
        }
        Pending::Flush => {
            dst.flush(cfg.send_timeout(dst_side))
                .await
                .map_err(|e| send_err(e, dst_side))?;
        }
        Pending::Pipe { pipe, mut left } => {
            let Some(dst) = dst.plain() else {
                return Err(PumpErr::Io(dst_side, io::ErrorKind::Unsupported.into()));
            };
            while left > 0 {
                match rustix::pipe::splice(&pipe.read, None, fd(dst), None, left, flags) {
                    Ok(m) => left -= m,
                    Err(Errno::AGAIN) => {
                        let limit = cfg.send_timeout(dst_side);
                        match monoio::time::timeout(limit, dst.writable(false)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return Err(PumpErr::Io(dst_side, e)),
                            Err(_) => return Err(PumpErr::SendTimeout(dst_side)),
                        }
                    }
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(PumpErr::Io(dst_side, e.into())),
                }
            }
            pipe.give_back();
        }
    }
    Ok(())
}

/// One direction of a WebSocket tunnel's graceful stop (see the module doc): the frame in
/// flight goes to its end and not a byte further, `dst` gets a Close 1001 unless a Close from
/// `src` already reached it, and what `src` sends until its own Close has gone by is dropped.
/// Each part is bounded by [`CLOSE_WAIT`]; when it passes, the direction just ends.
async fn close_handshake(
    src: &Stream,
    dst: &Stream,
    side: Side,
    moved: &Cell<u64>,
    f: &mut Frames,
) -> Result<(), PumpErr> {
    let dst_side = other(side);
    let mut buf = PooledBuf::take();
    let deadline = Instant::now() + CLOSE_WAIT;
    while !f.at_boundary() {
        let room = f.to_boundary().min(BUF_SIZE as u64) as usize;
        let Some(n) = read_within(src, &mut buf.bytes()[..room], deadline, side).await? else {
            return Ok(());
        };
        f.feed(&buf.bytes()[..n]);
        moved.set(moved.get() + n as u64);
        dst.write_all(&buf.bytes()[..n], CLOSE_WAIT)
            .await
            .map_err(|e| send_err(e, dst_side))?;
        if f.lost() {
            return Ok(());
        }
    }
    if !f.closed() {
        // A client's frames are masked (RFC 6455 §5.3); the key need not be secret here.
        let mask =
            (dst_side == Side::Upstream).then(|| (super::idle::random() as u32).to_ne_bytes());
        dst.write_all(&frames::going_away(mask), CLOSE_WAIT)
            .await
            .map_err(|e| send_err(e, dst_side))?;
    }
    let deadline = Instant::now() + CLOSE_WAIT;
    while !(f.lost() || (f.closed() && f.at_boundary())) {
        let Some(n) = read_within(src, buf.bytes(), deadline, side).await? else {
            return Ok(());
        };
        f.feed(&buf.bytes()[..n]);
    }
    Ok(())
}

/// Reads what `src` has, waiting until `deadline`; `None` at its end or at the deadline.
async fn read_within(
    src: &Stream,
    buf: &mut [u8],
    deadline: Instant,
    side: Side,
) -> Result<Option<usize>, PumpErr> {
    match src.read_some(buf, deadline).await {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(None),
        Err(e) => Err(PumpErr::Io(side, e)),
    }
}

fn send_err(e: io::Error, dst_side: Side) -> PumpErr {
    if e.kind() == io::ErrorKind::TimedOut {
        PumpErr::SendTimeout(dst_side)
    } else {
        PumpErr::Io(dst_side, e)
    }
}

async fn write_all(
    dst: &Stream,
    data: &[u8],
    dst_side: Side,
    cfg: &TunnelConfig,
) -> Result<(), PumpErr> {
    dst.write_all(data, cfg.send_timeout(dst_side))
        .await
        .map_err(|e| send_err(e, dst_side))
}

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};
    use monoio::net::TcpListener;

    /// Two connected monoio sockets on 127.0.0.1.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// Sends `data` from `from` and reads it back whole on `to`.
    async fn through(from: &mut TcpStream, to: &mut TcpStream, data: Vec<u8>) {
        let n = data.len();
        let write = async {
            let (r, _) = from.write_all(data).await;
            r.unwrap();
        };
        let read = async {
            let (r, got) = to.read_exact(vec![0u8; n]).await;
            r.unwrap();
            got
        };
        let ((), got) = futures_util::join!(write, read);
        let want: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        assert!(got == want, "bytes changed on the way ({n} bytes)");
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn auto_path_switches_between_copy_and_splice_without_losing_bytes() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, proxy_client) = pair().await;
            let (proxy_up, mut backend) = pair().await;
            crate::proxy::io::set_nonblocking(&proxy_client).unwrap();
            crate::proxy::io::set_nonblocking(&proxy_up).unwrap();
            let cfg = TunnelConfig {
                read_timeout: Duration::from_secs(30),
                client_send_timeout: Duration::from_secs(30),
                upstream_send_timeout: Duration::from_secs(30),
                path: Path::Auto,
                frames: None,
                generation: 0,
                half_close: true,
            };
            let (proxy_client, proxy_up) = (Stream::Plain(proxy_client), Stream::Plain(proxy_up));
            let tunnel = monoio::spawn(async move {
                let out = run(&proxy_client, &proxy_up, cfg).await;
                (out.up_bytes, out.down_bytes)
            });
            let pipes_before = idle_pipes_now();
            let deadline = monoio::time::timeout(Duration::from_secs(20), async {
                // Small messages (copy), bulk (splice), small again, both directions.
                for _ in 0..20 {
                    through(&mut client, &mut backend, pattern(64)).await;
                    through(&mut backend, &mut client, pattern(64)).await;
                }
                through(&mut client, &mut backend, pattern(1 << 20)).await;
                through(&mut backend, &mut client, pattern(1 << 20)).await;
                assert!(idle_pipes_now() > pipes_before, "bulk went through a pipe");
                for _ in 0..20 {
                    through(&mut client, &mut backend, pattern(100)).await;
                    through(&mut backend, &mut client, pattern(100)).await;
                }
            });
            deadline.await.expect("tunnel traffic in time");
            drop(client);
            drop(backend);
            let (up, down) = monoio::time::timeout(Duration::from_secs(5), tunnel)
                .await
                .expect("tunnel ends when both sides close");
            let want = 20 * 64 + (1 << 20) + 20 * 100;
            assert_eq!((up, down), (want, want));
        });
    }

    #[test]
    fn without_pipes_the_splice_path_copies_instead_of_failing() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            super::super::pool::tests::no_pipes_left();
            let (mut client, proxy_client) = pair().await;
            let (proxy_up, mut backend) = pair().await;
            crate::proxy::io::set_nonblocking(&proxy_client).unwrap();
            crate::proxy::io::set_nonblocking(&proxy_up).unwrap();
            let (proxy_client, proxy_up) = (Stream::Plain(proxy_client), Stream::Plain(proxy_up));
            for path in [Path::Splice, Path::Auto] {
                let cfg = TunnelConfig {
                    read_timeout: Duration::from_secs(30),
                    client_send_timeout: Duration::from_secs(30),
                    upstream_send_timeout: Duration::from_secs(30),
                    path,
                    frames: None,
                    generation: 0,
                    half_close: true,
                };
                let tunnel = run(&proxy_client, &proxy_up, cfg);
                let traffic = async {
                    through(&mut client, &mut backend, pattern(1 << 20)).await;
                    through(&mut backend, &mut client, pattern(100)).await;
                };
                let both = monoio::time::timeout(Duration::from_secs(20), async {
                    futures_util::pin_mut!(tunnel);
                    futures_util::pin_mut!(traffic);
                    match select(tunnel, traffic).await {
                        Either::Left((out, _)) => panic!("{path:?}: tunnel ended: {:?}", out.end),
                        Either::Right(((), _)) => {}
                    }
                });
                both.await.expect("bytes flow without pipes");
            }
        });
    }

    fn idle_pipes_now() -> usize {
        super::super::pool::idle_pipes()
    }
}
