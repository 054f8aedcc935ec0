//! The client's real address behind load balancers: which peers are trusted
//! to say it (`trusted_proxies`), and `X-Forwarded-For` read from them.
//!
//! The PROXY protocol header (see [`crate::proxy_protocol`]) gives the
//! address a trusted balancer saw; `X-Forwarded-For` is then walked from the
//! right for as long as the address at hand is itself a trusted proxy, the way
//! nginx's `real_ip_recursive` does. An untrusted peer's header is ignored, so
//! a client cannot pick its own address and escape the per-IP limit.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose word on the client's address is taken.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// The configured networks.
    pub(crate) fn new(networks: &[IpNet]) -> Self {
        Self(networks.to_vec())
    }

    /// Whether `ip` belongs to a trusted proxy. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`, from a dual-stack socket) counts as its IPv4 form.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that came over a connection from
    /// `connection` (the peer, or the PROXY header's source), with these
    /// headers: the rightmost `X-Forwarded-For` entry that is not a trusted
    /// proxy, while each hop on the way is trusted. An entry that does not
    /// parse stops the walk at the last address known good.
    pub(crate) fn client(&self, connection: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut ip = connection.to_canonical();
        if !self.contains(ip) {
            return ip;
        }
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(list) = value.to_str() else {
                return ip;
            };
            for entry in list.rsplit(',') {
                let Some(next) = parse_entry(entry.trim()) else {
                    return ip;
                };
                ip = next.to_canonical();
                if !self.contains(ip) {
                    return ip;
                }
            }
        }
        ip
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[::1]:5678`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedProxies {
        TrustedProxies::new(&[
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ])
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let h = xff(&["203.0.113.9"]);
        assert_eq!(trusted().client(ip("198.51.100.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn a_trusted_peer_forwards_the_rightmost_untrusted_hop() {
        // The client forged the first entry; the trusted hops are skipped.
        let h = xff(&["1.1.1.1, 203.0.113.9", "10.0.0.5"]);
        assert_eq!(trusted().client(ip("127.0.0.1"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        assert_eq!(
            trusted().client(ip("::ffff:127.0.0.1"), &xff(&["203.0.113.9:4711"])),
            ip("203.0.113.9")
        );
        assert_eq!(
            trusted().client(ip("127.0.0.1"), &xff(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_good_address() {
        let h = xff(&["203.0.113.9, nonsense, 10.0.0.7"]);
        assert_eq!(trusted().client(ip("127.0.0.1"), &h), ip("10.0.0.7"));
        assert_eq!(
            trusted().client(ip("127.0.0.1"), &xff(&[])),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn nothing_is_trusted_by_default() {
        let h = xff(&["203.0.113.9"]);
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }
}
