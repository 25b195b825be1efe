//! Which address a request came from when HAVEN sits behind a reverse proxy: the connection's peer,
//! unless that peer is one of `[auth] trusted_proxies`, whose `X-Forwarded-For` is then believed
//! (read right to left, past the trusted proxies). A header from anyone else is ignored, so a client
//! cannot pick the address the sign-in throttle counts.

use std::net::IpAddr;

/// Addresses and networks (`10.0.0.5`, `172.16.0.0/12`, `::1`, `fd00::/8`) of the proxies in front.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses each entry; the error names the one that is not an address or network.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries.iter().map(|e| network(e.trim()).ok_or_else(|| format!("{:?} is not an IP address or network (a.b.c.d, a.b.c.d/n, IPv6, IPv6/n)", crate::text::shown(e)))).collect::<Result<_, _>>().map(TrustedProxies)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|&(net, bits)| contains(net, bits, ip))
    }

    /// The client's address: `peer` itself unless it is trusted; then the right-most entry of
    /// `forwarded_for` (the `X-Forwarded-For` values, in order) that is not a trusted proxy. An entry
    /// that is not an address stops the walk at the last trusted hop: nothing past it is believed.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let mut client = peer;
        let hops = forwarded_for.iter().flat_map(|h| h.split(',')).map(str::trim).collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            if !self.trusts(client) {
                break;
            }
            match parse_hop(hop) {
                Some(ip) => client = ip,
                None => break,
            }
        }
        client
    }
}

/// One `X-Forwarded-For` hop: an address, `[IPv6]`, or either with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(v6) = hop.strip_prefix('[') {
        return v6.split(']').next()?.parse().ok();
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

fn network(entry: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match entry.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
        None => {
            let ip: IpAddr = entry.parse().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    let ip = match (net, ip) {
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        _ => ip,
    };
    let (n, a, width) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n) as u128, u32::from(a) as u128, 32),
        (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (n >> shift) == (a >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_behind_a_trusted_proxy_is_counted_by_its_own_address() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(p.client(ip("127.0.0.1"), &["203.0.113.7"]), ip("203.0.113.7"));
        // Two proxies of ours (nginx at 10.1.2.3 in front of a local one), the client before them.
        assert_eq!(p.client(ip("127.0.0.1"), &["203.0.113.7, 10.1.2.3"]), ip("203.0.113.7"));
        assert_eq!(p.client(ip("127.0.0.1"), &["203.0.113.7", "10.1.2.3"]), ip("203.0.113.7"));
        // A forged entry the client put first is left of the real client: never reached.
        assert_eq!(p.client(ip("127.0.0.1"), &["1.2.3.4, 203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(p.client(ip("127.0.0.1"), &["[2001:db8::1]:4711"]), ip("2001:db8::1"));
        assert_eq!(p.client(ip("127.0.0.1"), &["198.51.100.2:5000"]), ip("198.51.100.2"));
        // IPv4 peers seen through an IPv6 socket.
        assert_eq!(p.client(ip("::ffff:127.0.0.1"), &["203.0.113.7"]), ip("203.0.113.7"));
    }

    #[test]
    fn nobody_else_chooses_their_address() {
        let p = proxies(&["127.0.0.1"]);
        assert_eq!(p.client(ip("192.0.2.9"), &["203.0.113.7"]), ip("192.0.2.9"));
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), &["203.0.113.7"]), ip("127.0.0.1"));
        // Junk in the header stops at the last trusted hop; an empty header leaves the peer.
        assert_eq!(p.client(ip("127.0.0.1"), &["203.0.113.7, junk"]), ip("127.0.0.1"));
        assert_eq!(p.client(ip("127.0.0.1"), &[]), ip("127.0.0.1"));
        // Every hop trusted: the left-most.
        assert_eq!(p.client(ip("127.0.0.1"), &["127.0.0.1"]), ip("127.0.0.1"));
    }

    #[test]
    fn networks_are_parsed_and_bad_entries_named() {
        let p = proxies(&["172.16.0.0/12", "fd00::/8", "0.0.0.0/0"]);
        assert!(p.trusts(ip("172.31.255.1")) && p.trusts(ip("fd12::1")) && p.trusts(ip("8.8.8.8")));
        let p = proxies(&["172.16.0.0/12", "::1"]);
        assert!(!p.trusts(ip("172.32.0.1")) && p.trusts(ip("::1")) && !p.trusts(ip("::2")));
        for bad in ["localhost", "10.0.0.0/33", "10.0.0.0/", "::1/129", ""] {
            let err = TrustedProxies::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains("not an IP address"), "{bad}: {err}");
        }
    }
}
