//! The DNS messages phantom's resolver and proxy need (RFC 1035 §4): read
//! a query's one question, answer REFUSED, build an A query, read the A
//! records of a response.
//!
//! By hand rather than with hickory-proto: the resolver forwards allowed
//! queries upstream byte for byte and only ever builds two messages, so a
//! full DNS library (and its build time on the shared builders) buys
//! nothing; every read below is bounds-checked and tested.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const RCODE_REFUSED: u8 = 5;

/// The one question of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Lower case, without the final dot.
    pub name: String,
    pub qtype: u16,
    /// Where the question ends in the message.
    pub end: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// A query (QR clear, opcode QUERY) with exactly one question whose name
/// is uncompressed.
pub fn parse_query(b: &[u8]) -> Option<Question> {
    let id = u16_at(b, 0)?;
    let flags = u16_at(b, 2)?;
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || u16_at(b, 4)? != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let n = usize::from(*b.get(at)?);
        at += 1;
        if n == 0 {
            break;
        }
        if n > 63 {
            return None; // a pointer or a reserved label type
        }
        let l = std::str::from_utf8(b.get(at..at + n)?).ok()?;
        labels.push(l.to_ascii_lowercase());
        at += n;
    }
    let qtype = u16_at(b, at)?;
    Some(Question {
        id,
        name: labels.join("."),
        qtype,
        end: at + 4,
    })
}

/// The answer `rcode` (no records) to `query`, whose question is `q`.
pub fn error_response(query: &[u8], q: &Question, rcode: u8) -> Vec<u8> {
    let flags = u16_at(query, 2).unwrap_or(0);
    // QR, the opcode and RD as asked, RA, the rcode.
    let out_flags = 0x8000 | (flags & 0x7900) | 0x0080 | u16::from(rcode & 0xf);
    let mut out = Vec::with_capacity(q.end);
    out.extend(q.id.to_be_bytes());
    out.extend(out_flags.to_be_bytes());
    out.extend([0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend(&query[12..q.end]);
    out
}

/// A recursive query for `name`'s `qtype` records.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 18);
    out.extend(id.to_be_bytes());
    out.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.trim_end_matches('.').split('.') {
        out.push(l.len().min(63) as u8);
        out.extend(&l.as_bytes()[..l.len().min(63)]);
    }
    out.push(0);
    out.extend(qtype.to_be_bytes());
    out.extend([0, 1]);
    out
}

fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let n = *b.get(at)?;
        match n {
            0 => return Some(at + 1),
            n if n & 0xc0 == 0xc0 => return Some(at + 2),
            n if n <= 63 => at += 1 + usize::from(n),
            _ => return None,
        }
    }
}

/// The addresses of a response to query `id`: `None` if it is not a
/// well-formed answer to it; empty if the name has none (or an error).
pub fn answer_addrs(b: &[u8], id: u16) -> Option<Vec<IpAddr>> {
    if u16_at(b, 0)? != id || u16_at(b, 2)? & 0x8000 == 0 {
        return None;
    }
    let rcode = u16_at(b, 2)? & 0xf;
    let (qd, an) = (u16_at(b, 4)?, u16_at(b, 6)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
    }
    let mut out = Vec::new();
    if rcode != 0 {
        return Some(out);
    }
    for _ in 0..an {
        at = skip_name(b, at)?;
        let kind = u16_at(b, at)?;
        let len = usize::from(u16_at(b, at + 8)?);
        let data = b.get(at + 10..at + 10 + len)?;
        match (kind, len) {
            (TYPE_A, 4) => out.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (TYPE_AAAA, 16) => {
                let a: [u8; 16] = data.try_into().ok()?;
                out.push(IpAddr::V6(Ipv6Addr::from(a)));
            }
            _ => {}
        }
        at += 10 + len;
    }
    Some(out)
}

/// The first `nameserver` of a resolv.conf, on port 53.
pub fn resolv_conf_server(text: &str) -> Option<std::net::SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let q = build_query(0x1234, "Allowed.Test.", TYPE_A);
        let p = parse_query(&q).unwrap();
        assert_eq!(p.id, 0x1234);
        assert_eq!(p.name, "allowed.test");
        assert_eq!(p.qtype, TYPE_A);
        assert_eq!(p.end, q.len());
        let r = error_response(&q, &p, RCODE_REFUSED);
        assert_eq!(r[3] & 0xf, RCODE_REFUSED);
        assert_eq!(answer_addrs(&r, 0x1234), Some(vec![]));
        assert_eq!(answer_addrs(&r, 0x1235), None);
    }

    #[test]
    fn answers_with_a_pointer() {
        let mut r = build_query(7, "a.test", TYPE_A);
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1; // ancount
        r.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 10]);
        assert_eq!(
            answer_addrs(&r, 7),
            Some(vec!["198.18.0.10".parse().unwrap()])
        );
        assert_eq!(answer_addrs(&r[..r.len() - 2], 7), None);
    }

    #[test]
    fn resolv_conf() {
        assert_eq!(
            resolv_conf_server("# x\nsearch a\nnameserver 10.0.0.2\nnameserver 1.1.1.1\n"),
            Some("10.0.0.2:53".parse().unwrap())
        );
    }
}
