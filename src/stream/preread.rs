//! `ssl_preread`: reads a TLS ClientHello from the bytes a client sent first, without
//! terminating TLS, for `$ssl_preread_server_name`, `$ssl_preread_protocol` and
//! `$ssl_preread_alpn_protocols` (nginx's `ngx_stream_ssl_preread_module`). Sans-IO: [`parse`]
//! looks at what has arrived so far and says whether it needs more.
//!
//! Hand-written rather than a crate: only three fields of one message are needed, a walk over
//! length-prefixed fields, where a general TLS parser (tls-parser and its nom stack) would add
//! far more code to the build than it saves. The bytes read are not consumed for the backend:
//! the session forwards them first, before anything else the client sends.

/// What the ClientHello says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    /// The SNI host name (empty when the client sent none).
    pub server_name: String,
    /// The highest protocol version offered (`TLSv1.3`), as nginx names it.
    pub protocol: String,
    /// ALPN protocols in the client's order.
    pub alpn: Vec<String>,
}

/// The outcome of looking at the first bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// The ClientHello has not fully arrived.
    NeedMore,
    /// Not a TLS ClientHello: the session goes on without values.
    NotTls,
    /// Parsed.
    Done(Hello),
}

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;

/// Looks at `buf`, the bytes the client has sent so far.
pub fn parse(buf: &[u8]) -> Parse {
    if buf.first().is_some_and(|b| b & 0x80 != 0) {
        return sslv2(buf);
    }
    // The handshake message may span records: collect their payloads.
    let mut message = Vec::new();
    let mut at = 0;
    loop {
        let Some(head) = buf.get(at..at + 5) else {
            return if buf.first().is_some_and(|&b| b != HANDSHAKE) {
                Parse::NotTls
            } else {
                Parse::NeedMore
            };
        };
        if head[0] != HANDSHAKE || head[1] != 3 {
            return Parse::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        let Some(payload) = buf.get(at + 5..at + 5 + len) else {
            return Parse::NeedMore;
        };
        message.extend_from_slice(payload);
        at += 5 + len;
        if message.len() >= 4 {
            if message[0] != CLIENT_HELLO {
                return Parse::NotTls;
            }
            let body = usize::from(message[1]) << 16
                | usize::from(message[2]) << 8
                | usize::from(message[3]);
            if message.len() >= 4 + body {
                return match client_hello(&message[4..4 + body]) {
                    Some(h) => Parse::Done(h),
                    None => Parse::NotTls,
                };
            }
        }
    }
}

/// An SSLv2-framed ClientHello (two length bytes with the top bit set, type 1, version), which
/// old clients send to offer SSLv2 and TLS at once: only its version is read, as nginx does.
fn sslv2(buf: &[u8]) -> Parse {
    let Some(head) = buf.get(..5) else {
        return Parse::NeedMore;
    };
    if head[2] != CLIENT_HELLO {
        return Parse::NotTls;
    }
    let version = u16::from_be_bytes([head[3], head[4]]);
    let protocol = match version {
        0x0002 => "SSLv2",
        v => version_name(v).unwrap_or(""),
    };
    Parse::Done(Hello {
        protocol: protocol.to_string(),
        ..Hello::default()
    })
}

/// A cursor over length-prefixed fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

fn version_name(v: u16) -> Option<&'static str> {
    Some(match v {
        0x0300 => "SSLv3",
        0x0301 => "TLSv1",
        0x0302 => "TLSv1.1",
        0x0303 => "TLSv1.2",
        0x0304 => "TLSv1.3",
        _ => return None,
    })
}

fn client_hello(body: &[u8]) -> Option<Hello> {
    let mut r = Reader(body);
    let legacy = r.u16()?;
    r.take(32)?;
    r.vec8()?;
    r.vec16()?;
    r.vec8()?;
    let mut hello = Hello::default();
    let mut best = legacy;
    if !r.0.is_empty() {
        let mut exts = Reader(r.vec16()?);
        while !exts.0.is_empty() {
            let kind = exts.u16()?;
            // An extension claiming more than the message holds is read as far as it goes
            // (nginx's parser follows the inner lengths and stops at the message's end).
            let len = usize::from(exts.u16()?).min(exts.0.len());
            let mut data = Reader(exts.take(len)?);
            match kind {
                0 => {
                    let mut list = Reader(data.vec16()?);
                    while !list.0.is_empty() {
                        let name_type = list.u8()?;
                        let name = list.vec16()?;
                        if name_type == 0 && hello.server_name.is_empty() {
                            hello.server_name = String::from_utf8_lossy(name).into_owned();
                        }
                    }
                }
                16 => {
                    let mut list = Reader(data.vec16()?);
                    while !list.0.is_empty() {
                        let p = list.vec8()?;
                        hello.alpn.push(String::from_utf8_lossy(p).into_owned());
                    }
                }
                43 => {
                    // supported_versions: the highest one known wins (GREASE values are not).
                    let mut list = Reader(data.vec8()?);
                    best = 0;
                    while !list.0.is_empty() {
                        let mut v = list.u16()?;
                        // TLS 1.3 drafts (0x7fNN) count as TLSv1.3, as nginx reports them.
                        if v >> 8 == 0x7f {
                            v = 0x0304;
                        }
                        if version_name(v).is_some() && v > best {
                            best = v;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    hello.protocol = version_name(best).unwrap_or("").to_string();
    Some(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut v = kind.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn hello(exts: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let all: Vec<u8> = exts.concat();
        body.extend_from_slice(&(all.len() as u16).to_be_bytes());
        body.extend_from_slice(&all);
        let mut msg = vec![CLIENT_HELLO, 0, 0, body.len() as u8];
        msg.extend_from_slice(&body);
        let mut rec = vec![HANDSHAKE, 3, 1, 0, msg.len() as u8];
        rec.extend_from_slice(&msg);
        rec
    }

    fn sni(name: &str) -> Vec<u8> {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        ext(0, &list)
    }

    #[test]
    fn reads_sni_alpn_and_the_highest_version() {
        let alpn = {
            let protos = b"\x02h2\x08http/1.1";
            let mut l = (protos.len() as u16).to_be_bytes().to_vec();
            l.extend_from_slice(protos);
            ext(16, &l)
        };
        let versions = ext(43, &[6, 0x0a, 0x0a, 3, 4, 3, 3]);
        let bytes = hello(&[sni("a.example"), alpn, versions]);
        let want = Hello {
            server_name: "a.example".into(),
            protocol: "TLSv1.3".into(),
            alpn: vec!["h2".into(), "http/1.1".into()],
        };
        assert_eq!(parse(&bytes), Parse::Done(want));
        for cut in [0, 1, 5, bytes.len() - 1] {
            assert_eq!(parse(&bytes[..cut]), Parse::NeedMore, "cut at {cut}");
        }
    }

    #[test]
    fn without_extensions_the_legacy_version_counts() {
        let bytes = hello(&[]);
        let Parse::Done(h) = parse(&bytes) else {
            panic!("not parsed")
        };
        assert_eq!(
            (h.protocol.as_str(), h.server_name.as_str()),
            ("TLSv1.2", "")
        );
    }

    #[test]
    fn drafts_sslv2_framing_and_short_extensions() {
        // A TLS 1.3 draft in supported_versions, whose extension length overstates its data.
        let mut bytes = hello(&[ext(43, &[2, 0x7f, 0x1c])]);
        let at = bytes.len() - 4;
        bytes[at] = 7;
        let Parse::Done(h) = parse(&bytes) else {
            panic!("not parsed")
        };
        assert_eq!(h.protocol, "TLSv1.3");
        let v2 = [0x80, 0x1c, 1, 0, 2, 0, 3, 0, 0];
        let Parse::Done(h) = parse(&v2) else {
            panic!("not parsed")
        };
        assert_eq!(h.protocol, "SSLv2");
    }

    #[test]
    fn plain_bytes_are_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.0\r\n"), Parse::NotTls);
        assert_eq!(
            parse(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"),
            Parse::NotTls
        );
    }
}
