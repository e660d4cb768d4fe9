//! Relaying a proxied response's body: `proxy_pass::proxy` has sent the client its head and
//! calls [`relay_response_body`] (or `gzip_relay::relay` when gzip applies), which re-frames the
//! upstream's body for the client (length, chunks, or until close). Whether the upstream
//! connection may go back to its pool, and the client's next request, are decided back there.

use std::time::Instant;

use super::conn::Stream;
use super::exchange::read_upstream;
use super::handler::Conn;
use super::io::write_all;
use super::req::Req;
use super::request_body::decode_chunks;
use super::response::ClientFraming;
use crate::http::body::{encode_chunk, ChunkedDecoder, LAST_CHUNK};
use crate::http::response::ResponseBody;

/// How a body goes from the upstream's framing to the client's.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame {
    /// No body for the client.
    None,
    /// `Content-Length` both ways.
    Length(u64),
    /// Chunked both ways.
    Chunked,
    /// Until close from the upstream, chunked to the client.
    CloseToChunked,
    /// Chunked from the upstream, until close to the client.
    ChunkedToClose,
    /// Until close both ways.
    Close,
}

impl Frame {
    /// The relay for the upstream's `body` framed as `client` for the client.
    pub(super) fn of(body: ResponseBody, client: ClientFraming) -> Frame {
        match (body, client) {
            (_, ClientFraming::None) => Frame::None,
            (ResponseBody::Length(n), _) => Frame::Length(n),
            (ResponseBody::Chunked, ClientFraming::Chunked) => Frame::Chunked,
            (ResponseBody::Chunked, _) => Frame::ChunkedToClose,
            (_, ClientFraming::Chunked) => Frame::CloseToChunked,
            _ => Frame::Close,
        }
    }
}

/// Writes response body bytes to the client, counting them for the access log.
async fn write_counted(
    conn: &Conn,
    data: &[u8],
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    write_all(&conn.stream, data, timeout).await?;
    conn.sent.set(conn.sent.get() + data.len() as u64);
    Ok(())
}

/// Relays the response body. `Ok(true)`: its end was framed (length, chunks, or no body) and
/// the upstream sent nothing beyond it, so the connection may be reused.
pub(super) async fn relay_response_body(
    req: &Req<'_>,
    upstream: &Stream,
    mut pending: Vec<u8>,
    frame: Frame,
) -> std::io::Result<bool> {
    let (conn, conf) = (&*req.conn, req.conf);
    let read_to = conf.proxy_read_timeout();
    let send_to = conf.send_timeout();
    let mut dec = ChunkedDecoder::new();
    let mut left = match frame {
        Frame::Length(n) => n,
        _ => 0,
    };
    if frame == Frame::None || (frame == Frame::Length(0)) {
        return Ok(pending.is_empty());
    }
    let mut out = Vec::new();
    loop {
        // Forward what we have.
        match frame {
            Frame::Length(_) => {
                let take = (left as usize).min(pending.len());
                write_counted(conn, &pending[..take], send_to).await?;
                left -= take as u64;
                if left == 0 {
                    return Ok(pending.len() == take);
                }
                pending.clear();
            }
            Frame::Chunked | Frame::ChunkedToClose => {
                let rechunk = frame == Frame::Chunked;
                let (consumed, _) = decode_chunks(&mut dec, &pending, &mut out, rechunk, 0)
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
                pending.drain(..consumed);
                if dec.is_done() && frame == Frame::Chunked {
                    out.extend_from_slice(LAST_CHUNK);
                }
                write_counted(conn, &out, send_to).await?;
                out.clear();
                if dec.is_done() {
                    return Ok(pending.is_empty());
                }
            }
            Frame::CloseToChunked => {
                if !pending.is_empty() {
                    encode_chunk(&pending, &mut out);
                    write_counted(conn, &out, send_to).await?;
                    out.clear();
                    pending.clear();
                }
            }
            Frame::Close => {
                write_counted(conn, &pending, send_to).await?;
                pending.clear();
            }
            Frame::None => return Ok(false),
        }
        let deadline = Instant::now() + read_to;
        let n = read_upstream(req, upstream, &mut pending, 16 * 1024, deadline).await?;
        if n == 0 {
            return match frame {
                Frame::CloseToChunked => write_counted(conn, LAST_CHUNK, send_to)
                    .await
                    .map(|()| false),
                Frame::Close => Ok(false),
                _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
            };
        }
    }
}
