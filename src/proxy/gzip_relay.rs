//! Sending a compressed body: the upstream body (length, chunked or until close) is decoded,
//! compressed slice by slice ([`BodyEncoder`]) and written to the client framed as the head
//! said. One read buffer (16 KiB at most) and the compressor's own state are all it holds.
//!
//! Place in the data flow: response head written by the proxy with `Content-Encoding: gzip` ->
//! **[`relay`]** -> keep-alive or close. Static files use [`send`] the same way.

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

use super::conn::Stream;

use super::gzip::BodyEncoder;
use super::io::{read_into, write_all};
use crate::config::model::LocConf;
use crate::http::body::ChunkedDecoder;
use crate::http::response::ResponseBody;

/// Compresses `data` and writes what the compressor produced; `last` ends the stream. Counts
/// the bytes written in `sent`.
pub async fn send(
    client: &Stream,
    enc: &mut BodyEncoder,
    data: &[u8],
    last: bool,
    timeout: Duration,
    sent: &Cell<u64>,
) -> io::Result<()> {
    let mut out = Vec::new();
    enc.push(data, &mut out)?;
    if last {
        enc.finish(&mut out)?;
    }
    if !out.is_empty() {
        write_all(client, &out, timeout).await?;
        sent.set(sent.get() + out.len() as u64);
    }
    Ok(())
}

/// Relays the upstream body (framed as `body`, starting with `pending`, bytes read with the
/// head) compressed through `enc`.
pub async fn relay(
    client: &Stream,
    sent: &Cell<u64>,
    upstream: &Stream,
    mut pending: Vec<u8>,
    body: ResponseBody,
    enc: &mut BodyEncoder,
    conf: &LocConf,
) -> io::Result<()> {
    let read_to = conf.proxy_read_timeout();
    let send_to = conf.send_timeout();
    let mut left = match body {
        ResponseBody::Length(n) => n,
        _ => 0,
    };
    let mut dec = ChunkedDecoder::new();
    let mut data = Vec::new();
    loop {
        let done = match body {
            ResponseBody::Length(_) => {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(pending.len());
                data.extend_from_slice(&pending[..take]);
                left -= take as u64;
                pending.clear();
                left == 0
            }
            ResponseBody::Chunked => {
                let mut consumed = 0;
                while consumed < pending.len() && !dec.is_done() {
                    let step = dec
                        .decode(&pending[consumed..])
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
                    consumed += step.consumed;
                    data.extend_from_slice(step.data);
                    if step.consumed == 0 && step.data.is_empty() && !step.done {
                        break;
                    }
                }
                pending.drain(..consumed);
                dec.is_done()
            }
            ResponseBody::UntilClose => {
                data.append(&mut pending);
                false
            }
            ResponseBody::None | ResponseBody::SwitchingProtocols => true,
        };
        send(client, enc, &data, done, send_to, sent).await?;
        data.clear();
        if done {
            return Ok(());
        }
        let deadline = Instant::now() + read_to;
        if read_into(upstream, &mut pending, 16 * 1024, deadline).await? == 0 {
            return match body {
                ResponseBody::UntilClose => send(client, enc, &[], true, send_to, sent).await,
                _ => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
    }
}
