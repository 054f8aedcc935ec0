//! Proxies for the client: HTTP CONNECT (plain `http://` or `https://` to the
//! proxy, Basic auth) and SOCKS5 (username/password auth; `socks5h://` lets
//! the proxy resolve the target's name), and the curl-style environment
//! variables.

use std::fmt;
use std::io;
use std::net::IpAddr;

use base64::Engine as _;
use http::Uri;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
#[cfg(feature = "rustls")]
use tokio_rustls::client::TlsStream;

use super::{ClientBuilder, Target};

/// Largest CONNECT response head read from an HTTP proxy.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

/// How the client talks to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyScheme {
    /// `http://`: an HTTP proxy, `CONNECT` over plain TCP.
    Http,
    /// `https://`: an HTTP proxy reached over TLS, `CONNECT` inside it.
    Https,
    /// `socks5://`: SOCKS5; the client resolves the target's name.
    Socks5,
    /// `socks5h://`: SOCKS5; the proxy resolves the target's name.
    Socks5h,
}

/// A proxy for [`ClientBuilder::proxy`](crate::ClientBuilder::proxy).
///
/// ```
/// let proxy = volley::Proxy::parse("socks5h://alice:s3cret@127.0.0.1:1080")?;
/// assert_eq!(proxy.scheme(), volley::ProxyScheme::Socks5h);
/// # Ok::<(), volley::ProxyError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    scheme: ProxyScheme,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("Proxy")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl fmt::Display for Proxy {
    /// The proxy's URL without its credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            ProxyScheme::Http => "http",
            ProxyScheme::Https => "https",
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Why the proxy did not give a tunnel to the target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL cannot be used.
    #[error("invalid proxy URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (credentials included: do not log it).
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No TCP connection (or TLS session, for `https://`) to the proxy.
    #[error("proxy {proxy} unreachable: {source}")]
    Unreachable {
        /// The proxy, without credentials.
        proxy: String,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// The proxy did not open the tunnel within the connect timeout.
    #[error("proxy {proxy} timed out")]
    Timeout {
        /// The proxy, without credentials.
        proxy: String,
    },
    /// The proxy refused the credentials (HTTP 407 or 401, SOCKS5 password
    /// rejected) or wants some and none were given.
    #[error("proxy {proxy} authentication failed: {detail}")]
    AuthFailed {
        /// The proxy, without credentials.
        proxy: String,
        /// `407 Proxy Authentication Required`, `password rejected`, ...
        detail: String,
    },
    /// The HTTP proxy answered `CONNECT` with a status other than 2xx.
    #[error("proxy {proxy} refused CONNECT to {target}: {status} {reason}")]
    ConnectRefused {
        /// The proxy, without credentials.
        proxy: String,
        /// `host:port` of the target.
        target: String,
        /// The HTTP status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The SOCKS5 proxy refused the connection or the handshake failed.
    #[error("SOCKS5 proxy {proxy} failed to connect to {target}: {source}")]
    Socks {
        /// The proxy, without credentials.
        proxy: String,
        /// `host:port` of the target.
        target: String,
        /// What the proxy reported.
        #[source]
        source: tokio_socks::Error,
    },
    /// The proxy's answer is not HTTP, or too long.
    #[error("proxy {proxy} sent an invalid CONNECT response")]
    BadResponse {
        /// The proxy, without credentials.
        proxy: String,
    },
    /// Reading from or writing to the proxy failed mid-way.
    #[error("proxy {proxy}: {source}")]
    Io {
        /// The proxy, without credentials.
        proxy: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The connection to the target through the proxy, before TLS to the target.
pub(crate) enum Tunnel {
    /// Through an `http://` or SOCKS5 proxy.
    Tcp(TcpStream),
    /// Through an `https://` proxy: the TLS session with the proxy.
    #[cfg(feature = "rustls")]
    Tls(Box<TlsStream<TcpStream>>),
}

impl Proxy {
    /// Parses a proxy URL: `http://`, `https://`, `socks5://` or
    /// `socks5h://`, with optional `user:password@` (percent-encoded, as in
    /// curl). Without a scheme, `http://` is assumed; without a port, 443
    /// for `https://` and 1080 otherwise (curl's defaults).
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let invalid = |reason| ProxyError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let full = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = full.parse().map_err(|_| invalid("not a URL"))?;
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => ProxyScheme::Http,
            Some("https") => ProxyScheme::Https,
            Some("socks5") => ProxyScheme::Socks5,
            Some("socks5h") => ProxyScheme::Socks5h,
            _ => return Err(invalid("the scheme must be http, https, socks5 or socks5h")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = authority.port_u16().unwrap_or(match scheme {
            ProxyScheme::Https => 443,
            _ => 1080,
        });
        let credentials = match authority.as_str().rsplit_once('@') {
            Some((userinfo, _)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Some((
                    percent_decode(user).ok_or_else(|| invalid("bad percent-encoding"))?,
                    percent_decode(password).ok_or_else(|| invalid("bad percent-encoding"))?,
                ))
            }
            None => None,
        };
        Ok(Self {
            scheme,
            host,
            port,
            credentials,
        })
    }

    /// Sets the user and password (replacing those of the URL): Basic auth
    /// for HTTP proxies, username/password auth (RFC 1929) for SOCKS5.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// The scheme.
    pub fn scheme(&self) -> ProxyScheme {
        self.scheme
    }

    /// The proxy's host name or IP address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The proxy for `target` from the environment, as curl picks it:
    /// `https_proxy`/`HTTPS_PROXY` for `wss://`, `http_proxy` (lower case
    /// only, as curl, against "httpoxy") for `ws://`, then
    /// `all_proxy`/`ALL_PROXY`; none when `no_proxy`/`NO_PROXY` matches the
    /// host (comma-separated names matching the host and its subdomains,
    /// IP addresses, CIDR ranges, or `*` for all). An unparsable value is
    /// treated as unset.
    pub fn from_env(target: &Target) -> Option<Self> {
        Self::from_lookup(target, |name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(
        target: &Target,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let get = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| env(n))
                .find(|v| !v.trim().is_empty())
        };
        if let Some(no_proxy) = get(&["no_proxy", "NO_PROXY"]) {
            if no_proxy_matches(&no_proxy, &target.host) {
                return None;
            }
        }
        let specific: &[&str] = if target.tls {
            &["https_proxy", "HTTPS_PROXY"]
        } else {
            &["http_proxy"]
        };
        let value = get(specific).or_else(|| get(&["all_proxy", "ALL_PROXY"]))?;
        Self::parse(value.trim()).ok()
    }

    /// Opens a tunnel to `target` through this proxy; `client`'s TLS
    /// options apply to an `https://` proxy.
    pub(crate) async fn tunnel(
        &self,
        target: &Target,
        client: &ClientBuilder,
    ) -> Result<Tunnel, crate::Error> {
        let proxy = self.to_string();
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| ProxyError::Unreachable {
                proxy: proxy.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let authority = if target.host.contains(':') {
            format!("[{}]:{}", target.host, target.port)
        } else {
            format!("{}:{}", target.host, target.port)
        };
        match self.scheme {
            ProxyScheme::Http => {
                let mut tcp = tcp;
                self.http_connect(&mut tcp, &authority).await?;
                Ok(Tunnel::Tcp(tcp))
            }
            #[cfg(not(feature = "rustls"))]
            ProxyScheme::Https => {
                let _ = client;
                Err(crate::Error::TlsUnavailable)
            }
            #[cfg(feature = "rustls")]
            ProxyScheme::Https => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| crate::Error::Url(format!("proxy host {}: {e}", self.host)))?;
                let mut stream = tokio_rustls::TlsConnector::from(client.tls_client_config()?)
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ProxyError::Unreachable {
                        proxy: proxy.clone(),
                        source,
                    })?;
                self.http_connect(&mut stream, &authority).await?;
                Ok(Tunnel::Tls(Box::new(stream)))
            }
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
                let socks_error = |source| ProxyError::Socks {
                    proxy: proxy.clone(),
                    target: authority.clone(),
                    source,
                };
                let addr: tokio_socks::TargetAddr<'_> = if self.scheme == ProxyScheme::Socks5h {
                    tokio_socks::TargetAddr::Domain(target.host.as_str().into(), target.port)
                } else {
                    let resolved = tokio::net::lookup_host((target.host.as_str(), target.port))
                        .await?
                        .next()
                        .ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::NotFound,
                                format!("{}: no address", target.host),
                            )
                        })?;
                    tokio_socks::TargetAddr::Ip(resolved)
                };
                let stream = match &self.credentials {
                    Some((user, password)) => {
                        tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(
                            tcp, addr, user, password,
                        )
                        .await
                    }
                    None => tokio_socks::tcp::Socks5Stream::connect_with_socket(tcp, addr).await,
                };
                match stream {
                    Ok(stream) => Ok(Tunnel::Tcp(stream.into_inner())),
                    Err(
                        e @ (tokio_socks::Error::PasswordAuthFailure(_)
                        | tokio_socks::Error::NoAcceptableAuthMethods
                        | tokio_socks::Error::AuthorizationRequired),
                    ) => Err(ProxyError::AuthFailed {
                        proxy: proxy.clone(),
                        detail: e.to_string(),
                    }
                    .into()),
                    Err(tokio_socks::Error::Io(source)) => {
                        Err(ProxyError::Io { proxy, source }.into())
                    }
                    Err(e) => Err(socks_error(e).into()),
                }
            }
        }
    }

    /// Sends `CONNECT authority` and reads the answer, byte by byte so that
    /// nothing of the target's bytes is read past the head.
    async fn http_connect<S>(&self, stream: &mut S, authority: &str) -> Result<(), ProxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let proxy = self.to_string();
        let io_error = |source| ProxyError::Io {
            proxy: proxy.clone(),
            source,
        };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((user, password)) = &self.credentials {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(io_error)?;
        stream.flush().await.map_err(io_error)?;
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_CONNECT_RESPONSE {
                return Err(ProxyError::BadResponse { proxy });
            }
            if stream.read(&mut byte).await.map_err(io_error)? == 0 {
                return Err(io_error(io::ErrorKind::UnexpectedEof.into()));
            }
            head.push(byte[0]);
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let (status, reason) = match response.parse(&head) {
            Ok(httparse::Status::Complete(_)) => (
                response.code.unwrap_or(0),
                response.reason.unwrap_or("").to_owned(),
            ),
            _ => return Err(ProxyError::BadResponse { proxy }),
        };
        match status {
            200..=299 => Ok(()),
            // 407 is the standard answer; some proxies (tinyproxy) send 401
            // with Proxy-Authenticate, which to a CONNECT means the same.
            401 | 407 => Err(ProxyError::AuthFailed {
                proxy,
                detail: if self.credentials.is_some() {
                    format!("{status} {reason} (credentials refused)")
                } else {
                    format!("{status} {reason} (no credentials given)")
                },
            }),
            _ => Err(ProxyError::ConnectRefused {
                proxy,
                target: authority.to_owned(),
                status,
                reason,
            }),
        }
    }
}

/// curl's `NO_PROXY` rules: `*` matches everything; a name matches itself
/// and its subdomains (a leading dot is optional); an IP address matches
/// itself, a CIDR range its addresses.
fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    list.split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry
                .trim_start_matches('.')
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            if let Some(ip) = host_ip {
                if let Some((net, bits)) = entry.split_once('/') {
                    return match (net.parse::<IpAddr>(), bits.parse::<u32>()) {
                        (Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                        _ => false,
                    };
                }
                return entry.parse::<IpAddr>().is_ok_and(|e| e == ip);
            }
            host == entry || host.ends_with(&format!(".{entry}"))
        })
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("socks5h://al%40ce:p%3Ass@[::1]:9050").unwrap();
        assert_eq!(p.scheme(), ProxyScheme::Socks5h);
        assert_eq!((p.host(), p.port()), ("::1", 9050));
        assert_eq!(p.credentials, Some(("al@ce".into(), "p:ss".into())));
        assert_eq!(p.to_string(), "socks5h://[::1]:9050");
        assert!(!format!("{p:?}").contains("p:ss"));
        let p = Proxy::parse("proxy.example:3128").unwrap();
        assert_eq!((p.scheme(), p.port()), (ProxyScheme::Http, 3128));
        assert_eq!(Proxy::parse("https://p.example").unwrap().port(), 443);
        assert_eq!(Proxy::parse("socks5://p.example").unwrap().port(), 1080);
        assert!(matches!(
            Proxy::parse("ftp://p.example"),
            Err(ProxyError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn picks_the_proxy_from_the_environment_as_curl() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let vars: &[(&str, &str)] = &[
            ("HTTPS_PROXY", "http://secure:1"),
            ("HTTP_PROXY", "http://ignored:2"),
            ("all_proxy", "socks5://all:3"),
            ("NO_PROXY", "internal.example, .corp, 10.0.0.0/8, ::1"),
        ];
        let pick = |url| Proxy::from_lookup(&target(url), env(vars)).map(|p| p.to_string());
        assert_eq!(pick("wss://x.example/"), Some("http://secure:1".into()));
        // Upper-case HTTP_PROXY is ignored, as in curl; ALL_PROXY applies.
        assert_eq!(pick("ws://x.example/"), Some("socks5://all:3".into()));
        assert_eq!(pick("ws://internal.example/"), None);
        assert_eq!(pick("ws://a.internal.example/"), None);
        assert_eq!(
            pick("ws://notinternal.example/"),
            Some("socks5://all:3".into())
        );
        assert_eq!(pick("ws://b.corp/"), None);
        assert_eq!(pick("ws://10.1.2.3/"), None);
        assert_eq!(pick("ws://11.1.2.3/"), Some("socks5://all:3".into()));
        assert_eq!(pick("ws://[::1]:80/"), None);
        let star: &[(&str, &str)] = &[("http_proxy", "http://p:1"), ("no_proxy", "*")];
        assert_eq!(Proxy::from_lookup(&target("ws://x/"), env(star)), None);
        let none: &[(&str, &str)] = &[];
        assert_eq!(Proxy::from_lookup(&target("ws://x/"), env(none)), None);
    }
}
