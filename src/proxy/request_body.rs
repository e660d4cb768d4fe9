//! The request body on its way upstream, streamed as it arrives (nginx with
//! `proxy_request_buffering off`) and re-framed: a length as a length, chunks re-chunked, or
//! nothing at all with `proxy_pass_request_body off` (the body is still read, and dropped, so the
//! next request on the connection starts where it should).
//!
//! `client_max_body_size` is held against the chunk sizes as each size line arrives, as nginx
//! does, so a chunk that would go over is never forwarded; the chunks that came with the head
//! are checked before the request goes upstream at all ([`check_early_chunks`]).
//! `client_body_timeout` bounds each wait for the client, `proxy_send_timeout` each wait for the
//! upstream. A failure says which side it came from ([`BodyError`]), since nginx answers them
//! differently: nothing for a client that timed out or left (408 or 400 in the log), 413, 400
//! for a malformed body, 504 or 502 for the upstream.

use std::io;
use std::time::Instant;

use super::conn::Stream;
use super::handler::Conn;
use super::io::{read_into, read_some, write_all};
use super::pool::PooledBuf;
use crate::config::model::LocConf;
use crate::http::body::{encode_chunk, ChunkedDecoder, LAST_CHUNK};
use crate::http::request::Body;

/// Why relaying a request body stopped.
#[derive(Debug)]
pub(super) enum BodyError {
    /// Reading from the client failed or timed out, or it closed before the body's end.
    Client(io::Error),
    /// Writing to the upstream failed or timed out.
    Upstream(io::Error),
    /// A chunk size took the body past `client_max_body_size`: the bytes announced before that
    /// chunk, and its size (nginx's "too large chunked body: A+B bytes").
    TooLarge(u64, u64),
    /// The chunked framing is malformed.
    Invalid,
}

/// Why chunked bytes could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChunksError {
    /// Malformed framing.
    Invalid,
    /// Past the limit: bytes announced before the chunk, and its size.
    TooLarge(u64, u64),
}

impl From<ChunksError> for BodyError {
    fn from(e: ChunksError) -> BodyError {
        match e {
            ChunksError::Invalid => BodyError::Invalid,
            ChunksError::TooLarge(before, size) => BodyError::TooLarge(before, size),
        }
    }
}

/// Decodes the chunked bytes in `input` into `out`, re-chunked or as plain data. With `limit`
/// (not 0), stops at the first chunk size that takes the announced total past it. Returns the
/// bytes consumed and the payload bytes produced.
pub(super) fn decode_chunks(
    dec: &mut ChunkedDecoder,
    input: &[u8],
    out: &mut Vec<u8>,
    rechunk: bool,
    limit: u64,
) -> Result<(usize, u64), ChunksError> {
    let (mut consumed, mut data) = (0, 0u64);
    while consumed < input.len() && !dec.is_done() {
        let step = dec
            .decode(&input[consumed..])
            .map_err(|_| ChunksError::Invalid)?;
        // One call reads at most one size line (it returns at the data that follows).
        let (announced, last) = dec.announced();
        if limit > 0 && announced > limit {
            return Err(ChunksError::TooLarge(announced - last, last));
        }
        consumed += step.consumed;
        if !step.data.is_empty() {
            data += step.data.len() as u64;
            if rechunk {
                encode_chunk(step.data, out);
            } else {
                out.extend_from_slice(step.data);
            }
        }
        if step.consumed == 0 && step.data.is_empty() && !step.done {
            break;
        }
    }
    Ok((consumed, data))
}

/// Checks the chunked body bytes that came with the head (`early`) against `limit`
/// (`client_max_body_size`, 0: none) and for malformed framing, before anything goes upstream.
pub(super) fn check_early_chunks(early: &[u8], limit: u64) -> Result<(), ChunksError> {
    let mut sink = Vec::new();
    decode_chunks(&mut ChunkedDecoder::new(), early, &mut sink, false, limit).map(|_| ())
}

/// Writes `data` to the upstream (nowhere without one: `proxy_pass_request_body off`).
async fn forward(upstream: Option<&Stream>, data: &[u8], conf: &LocConf) -> Result<(), BodyError> {
    match upstream {
        Some(u) if !data.is_empty() => write_all(u, data, conf.proxy_send_timeout())
            .await
            .map_err(BodyError::Upstream),
        _ => Ok(()),
    }
}

fn client_eof() -> BodyError {
    BodyError::Client(io::ErrorKind::UnexpectedEof.into())
}

/// Sends the request body to `upstream` (or drops it, for `None`), re-framed, starting with
/// `early` (bytes read with the head). Returns the bytes read beyond the body (the next
/// pipelined request).
pub(super) async fn relay_request_body(
    conn: &Conn,
    upstream: Option<&Stream>,
    body: Body,
    early: &[u8],
    conf: &LocConf,
) -> Result<Vec<u8>, BodyError> {
    match body {
        Body::None => Ok(early.to_vec()),
        Body::Length(mut left) => {
            let take = (left as usize).min(early.len());
            forward(upstream, &early[..take], conf).await?;
            left -= take as u64;
            let mut chunk = PooledBuf::take();
            while left > 0 {
                let want = (left as usize).min(chunk.bytes().len());
                let deadline = Instant::now() + conf.client_body_timeout();
                let n = read_some(&conn.stream, &mut chunk.bytes()[..want], deadline)
                    .await
                    .map_err(BodyError::Client)?;
                if n == 0 {
                    return Err(client_eof());
                }
                forward(upstream, &chunk.bytes()[..n], conf).await?;
                left -= n as u64;
            }
            Ok(early[take..].to_vec())
        }
        Body::Chunked => {
            let max = conf.client_max_body_size();
            let mut dec = ChunkedDecoder::new();
            let mut out = Vec::new();
            let mut pending = early.to_vec();
            loop {
                let (consumed, _) = decode_chunks(&mut dec, &pending, &mut out, true, max)?;
                pending.drain(..consumed);
                if dec.is_done() {
                    out.extend_from_slice(LAST_CHUNK);
                    forward(upstream, &out, conf).await?;
                    return Ok(pending);
                }
                forward(upstream, &out, conf).await?;
                out.clear();
                let deadline = Instant::now() + conf.client_body_timeout();
                let n = read_into(&conn.stream, &mut pending, 16 * 1024, deadline)
                    .await
                    .map_err(BodyError::Client)?;
                if n == 0 {
                    return Err(client_eof());
                }
            }
        }
    }
}
