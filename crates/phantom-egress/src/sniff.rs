//! The name a connection asks for, from its first bytes: the HTTP/1 Host
//! header (RFC 9112 §3.2) or the TLS ClientHello's server_name extension
//! (RFC 8446 §4.1.2, RFC 6066 §3), read without terminating TLS.
//!
//! Written by hand rather than with rustls' `server::Acceptor` or an HTTP
//! parser: the proxy needs one field of each and nothing else, a bounded
//! parser of either is some sixty lines with tests, and it keeps a TLS
//! stack and its crypto provider out of phantom-server's build.

/// What the bytes read so far say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// Not enough yet.
    More,
    /// The name asked for (lower case, no port).
    Name(String),
    /// A complete request or ClientHello naming nothing, or not the
    /// protocol of the port.
    Nothing,
}

/// The most the proxy reads before it decides.
pub const MAX_SNIFF: usize = 16 * 1024 + 5;

/// The Host header of an HTTP/1 request.
pub fn http_host(buf: &[u8]) -> Sniffed {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_SNIFF {
            Sniffed::Nothing
        } else {
            Sniffed::More
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Sniffed::Nothing;
    };
    for line in head.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("host") {
            let v = v.trim();
            let host = if let Some(rest) = v.strip_prefix('[') {
                rest.split(']').next().unwrap_or("")
            } else {
                v.rsplit_once(':').map_or(v, |(h, _)| h)
            };
            return if host.is_empty() {
                Sniffed::Nothing
            } else {
                Sniffed::Name(phantom_policy::egress::normalise(host))
            };
        }
    }
    Sniffed::Nothing
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|s| usize::from(s[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
    }
}

/// The SNI of a TLS ClientHello (in its first record).
pub fn tls_sni(buf: &[u8]) -> Sniffed {
    if buf.len() < 5 {
        return Sniffed::More;
    }
    if buf[0] != 0x16 {
        return Sniffed::Nothing;
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if buf.len() < 5 + len {
        return Sniffed::More;
    }
    client_hello_sni(&buf[5..5 + len]).map_or(Sniffed::Nothing, Sniffed::Name)
}

fn client_hello_sni(b: &[u8]) -> Option<String> {
    let mut r = Reader { b, at: 0 };
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    r.take(3)?; // handshake length
    r.take(2 + 32)?; // legacy_version, random
    let n = r.u8()?;
    r.take(n)?; // session id
    let n = r.u16()?;
    r.take(n)?; // cipher suites
    let n = r.u8()?;
    r.take(n)?; // compression methods
    let n = r.u16()?;
    let mut ext = Reader {
        b: r.take(n)?,
        at: 0,
    };
    while let (Some(kind), Some(len)) = (ext.u16(), ext.u16()) {
        let data = ext.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader { b: data, at: 0 };
        let n = list.u16()?;
        let mut names = Reader {
            b: list.take(n)?,
            at: 0,
        };
        while let Some(t) = names.u8() {
            let n = names.u16()?;
            let name = names.take(n)?;
            if t == 0 {
                let s = std::str::from_utf8(name).ok()?;
                return Some(phantom_policy::egress::normalise(s));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header() {
        assert_eq!(http_host(b"GET / HTTP/1.1\r\nHo"), Sniffed::More);
        assert_eq!(
            http_host(b"GET / HTTP/1.1\r\nUser-Agent: x\r\nHOST: Allowed.Test:8080\r\n\r\n"),
            Sniffed::Name("allowed.test".into())
        );
        assert_eq!(http_host(b"GET / HTTP/1.0\r\n\r\n"), Sniffed::Nothing);
    }

    /// A ClientHello as clients send it, built field by field.
    fn hello(name: &str) -> Vec<u8> {
        let mut sni = vec![0u8];
        sni.extend((name.len() as u16).to_be_bytes());
        sni.extend(name.as_bytes());
        let mut list = (sni.len() as u16).to_be_bytes().to_vec();
        list.extend(sni);
        let mut exts = vec![0, 10, 0, 2, 0, 0]; // an extension before it
        exts.extend([0, 0]);
        exts.extend((list.len() as u16).to_be_bytes());
        exts.extend(list);
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.extend([0]); // session id
        body.extend([0, 2, 0x13, 0x01]);
        body.extend([1, 0]);
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![1, 0];
        hs.extend((body.len() as u16).to_be_bytes());
        hs.extend(body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn sni() {
        let h = hello("Files.PythonHosted.org");
        assert_eq!(tls_sni(&h), Sniffed::Name("files.pythonhosted.org".into()));
        assert_eq!(tls_sni(&h[..20]), Sniffed::More);
        assert_eq!(tls_sni(b"GET / HTTP/1.1\r\n"), Sniffed::Nothing);
        let mut cut = h.clone();
        cut[9] = 0xff; // a handshake length past the record: still the record's bytes
        let _ = tls_sni(&cut);
    }
}
