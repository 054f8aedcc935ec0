//! The `--listen` address of `volley serve` and `volley echo`: `host:port`
//! (a name is resolved), `:port` or a bare `port`; the last two keep the
//! default host, the loopback address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// The host of `:port` and of a bare port.
pub(crate) const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Why a `--listen` value is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ListenError {
    /// The port is not a number from 0 to 65535.
    #[error("{value:?}: the port must be a number from 0 to 65535 (host:port, :port or port)")]
    Port {
        /// The value given.
        value: String,
    },
    /// The host name could not be resolved.
    #[error("{value:?}: cannot resolve {host:?}: {source}")]
    Resolve {
        /// The value given.
        value: String,
        /// The host part.
        host: String,
        /// Why.
        source: std::io::Error,
    },
    /// The host name resolved to no address.
    #[error("{value:?}: {host:?} resolves to no address")]
    NoAddress {
        /// The value given.
        value: String,
        /// The host part.
        host: String,
    },
}

/// Parses a `--listen` value (clap's value parser).
pub(crate) fn parse(value: &str) -> Result<SocketAddr, ListenError> {
    let port_error = || ListenError::Port {
        value: value.to_owned(),
    };
    let value = value.trim();
    // A bare port, or `:port`.
    let bare = value.strip_prefix(':').unwrap_or(value);
    if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_digit()) {
        let port = bare.parse::<u16>().map_err(|_| port_error())?;
        return Ok(SocketAddr::new(DEFAULT_HOST, port));
    }
    // A literal address: `1.2.3.4:80`, `[::1]:80`.
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // `name:port`.
    let (host, port) = value.rsplit_once(':').ok_or_else(port_error)?;
    let port = port.parse::<u16>().map_err(|_| port_error())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|source| ListenError::Resolve {
            value: value.to_owned(),
            host: host.to_owned(),
            source,
        })?
        .collect::<Vec<_>>();
    // `localhost` usually resolves to both ::1 and 127.0.0.1: prefer IPv4,
    // which every client tries.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| ListenError::NoAddress {
            value: value.to_owned(),
            host: host.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_port_and_colon_port_keep_the_loopback_host() {
        assert_eq!(parse("8001").unwrap(), "127.0.0.1:8001".parse().unwrap());
        assert_eq!(parse(":8001").unwrap(), "127.0.0.1:8001".parse().unwrap());
        assert_eq!(parse("0").unwrap(), "127.0.0.1:0".parse().unwrap());
    }

    #[test]
    fn literal_addresses() {
        assert_eq!(
            parse("0.0.0.0:443").unwrap(),
            "0.0.0.0:443".parse().unwrap()
        );
        assert_eq!(parse("[::1]:9000").unwrap(), "[::1]:9000".parse().unwrap());
    }

    #[test]
    fn names_are_resolved() {
        let addr = parse("localhost:8000").unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 8000);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for bad in ["65536", ":99999", "localhost", "localhost:http", ":", ""] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("port"), "{bad:?}: {e}");
        }
        let e = parse("no-such-host.invalid:80").unwrap_err().to_string();
        assert!(e.contains("no-such-host.invalid"), "{e}");
    }
}
