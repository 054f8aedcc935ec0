//! Opening WebSocket connections: `ws://` and `wss://` (rustls), custom
//! headers, subprotocols, timeouts, proxies ([`proxy`]) and TLS options
//! ([`tls`]).

pub(crate) mod proxy;
#[cfg(feature = "rustls")]
pub(crate) mod tls;

#[cfg(feature = "rustls")]
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Response, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use volley_proto::handshake::{
    ClientHandshake, HeadScanner, RequestError, ResponseError, is_tls_record,
};
use volley_proto::{Connection, Role};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;
use proxy::{Proxy, ProxyError, Tunnel};
#[cfg(feature = "rustls")]
use tls::TlsOptions;

/// Default time allowed for the TCP connection and TLS handshake: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to a `ws://` or `wss://` URL with the default configuration.
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
    ClientBuilder::new(url).connect().await
}

/// The opening handshake request as the client sent it, found in the
/// extensions of the `Response` that [`ClientBuilder::connect`] returns (for
/// tools that show the handshake, such as `volley connect --show-headers`).
#[derive(Clone, Debug)]
pub struct SentRequest(bytes::Bytes);

impl SentRequest {
    /// The request head's bytes (request line and headers).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Builds a client connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> volley::Result<()> {
/// use std::time::Duration;
/// use volley::{Accept, ClientBuilder, Rejection, WebSocketConfig};
///
/// // A server that wants a token header and speaks `chat.v2`.
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move {
///     let (tcp, _) = listener.accept().await?;
///     let ws = volley::accept_with(tcp, WebSocketConfig::default(), |req| {
///         match req.headers().get("x-token") {
///             Some(t) if t == "secret" => Ok(Accept::new().protocol("chat.v2")),
///             _ => Err(Rejection::new(http::StatusCode::UNAUTHORIZED)),
///         }
///     })
///     .await?;
///     drop(ws);
///     Ok::<(), volley::Error>(())
/// });
///
/// let (ws, response) = ClientBuilder::new(format!("ws://{addr}/chat"))
///     .header("X-Token", "secret")?
///     .protocol("chat.v1")
///     .protocol("chat.v2")
///     .connect_timeout(Duration::from_secs(5))
///     .config(
///         WebSocketConfig::builder()
///             .keepalive(Duration::from_secs(20), Duration::from_secs(20))
///             .build()?,
///     )
///     .connect()
///     .await?;
/// assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
/// # drop(ws);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    pub(crate) url: String,
    pub(crate) headers: HeaderMap,
    pub(crate) protocols: Vec<String>,
    pub(crate) config: WebSocketConfig,
    connect_timeout: Duration,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    #[cfg(feature = "rustls")]
    tls_options: TlsOptions,
    proxy: Option<Proxy>,
    proxy_from_env: bool,
}

/// The parts of a WebSocket URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// True for `wss://`.
    pub tls: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// The `Host` header value.
    pub host_header: String,
}

impl Target {
    /// Parses a `ws://` or `wss://` URL (`http://` and `https://` are accepted
    /// as synonyms).
    pub fn parse(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::Url(format!("{url}: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("ws") | Some("http") => false,
            Some("wss") | Some("https") => true,
            Some(other) => {
                return Err(Error::Url(format!(
                    "unsupported scheme {other:?} (use ws:// or wss://)"
                )));
            }
            None => {
                return Err(Error::Url(format!(
                    "{url}: missing scheme (use ws:// or wss://)"
                )));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| Error::Url(format!("{url}: missing host")))?;
        let raw_host = authority.host();
        let host = raw_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(Error::Url(format!("{url}: missing host")));
        }
        let default_port = if tls { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let host_header = if port == default_port {
            raw_host.to_owned()
        } else {
            format!("{raw_host}:{port}")
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let path = if path.is_empty() { "/".into() } else { path };
        Ok(Self {
            tls,
            host,
            port,
            path,
            host_header,
        })
    }
}

impl ClientBuilder {
    /// A client for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: HeaderMap::new(),
            protocols: Vec::new(),
            config: WebSocketConfig::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            #[cfg(feature = "rustls")]
            tls: None,
            #[cfg(feature = "rustls")]
            tls_options: TlsOptions::default(),
            proxy: None,
            proxy_from_env: false,
        }
    }

    /// Adds a request header (Authorization, Cookie, Origin, ...).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self> {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| Error::Url(format!("header name {name:?}: {e}")))?;
        let v = HeaderValue::from_str(value)
            .map_err(|e| Error::Url(format!("header {name} value: {e}")))?;
        self.headers.append(n, v);
        Ok(self)
    }

    /// Offers a subprotocol (call again for more, in order of preference).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// The connection's configuration.
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// Time allowed for TCP connect and TLS handshake.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A custom rustls configuration. It replaces the TLS options below
    /// ([`add_root_certificates_pem`](Self::add_root_certificates_pem),
    /// [`client_certificate_pem`](Self::client_certificate_pem),
    /// [`danger_accept_invalid_certs`](Self::danger_accept_invalid_certs)).
    /// By default the Mozilla roots of `webpki-roots` are trusted.
    #[cfg(feature = "rustls")]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Trusts the certificates of a PEM bundle (`-----BEGIN CERTIFICATE-----`
    /// blocks) in addition to the Mozilla roots: a private CA, a test CA.
    /// Also used for an `https://` proxy.
    #[cfg(feature = "rustls")]
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self> {
        self.tls_options.add_roots_pem(pem)?;
        Ok(self)
    }

    /// Presents a client certificate (mutual TLS): the certificate chain
    /// (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[cfg(feature = "rustls")]
    pub fn client_certificate_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self> {
        self.tls_options.identity_pem(chain, key)?;
        Ok(self)
    }

    /// **For testing only**: accepts any server certificate, whoever signed
    /// it and whatever name it carries (the handshake signatures are still
    /// checked). Anyone on the path can then read and change the traffic.
    /// Use [`add_root_certificates_pem`](Self::add_root_certificates_pem)
    /// with the test CA instead where possible.
    #[cfg(feature = "rustls")]
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls_options.accept_invalid_certs(accept);
        self
    }

    /// Connects through `proxy`: an HTTP proxy (`CONNECT`, plain or TLS to
    /// the proxy, Basic auth) or a SOCKS5 proxy (username/password auth;
    /// `socks5h://` resolves the target's name at the proxy). For `wss://`
    /// TLS to the target runs inside the tunnel. Takes precedence over
    /// [`proxy_from_env`](Self::proxy_from_env).
    ///
    /// ```no_run
    /// # async fn run() -> volley::Result<()> {
    /// let proxy = volley::Proxy::parse("http://user:pass@proxy.internal:3128")?;
    /// let (ws, _) = volley::ClientBuilder::new("wss://feed.example/ws")
    ///     .proxy(proxy)
    ///     .connect()
    ///     .await?;
    /// # drop(ws); Ok(()) }
    /// ```
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Opts in to the proxy environment variables, read as curl reads them
    /// when connecting (see [`Proxy::from_env`]): `https_proxy`/`HTTPS_PROXY`
    /// for `wss://`, `http_proxy` for `ws://`, `all_proxy`/`ALL_PROXY`, and
    /// `no_proxy`/`NO_PROXY`. Off by default.
    pub fn proxy_from_env(mut self) -> Self {
        self.proxy_from_env = true;
        self
    }

    #[cfg(feature = "rustls")]
    fn tls_client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        match &self.tls {
            Some(c) => Ok(Arc::clone(c)),
            None => Ok(self.tls_options.build()?),
        }
    }

    /// Connects: TCP (through the proxy, if any), then TLS for `wss://`,
    /// then the opening handshake.
    ///
    /// The connect timeout covers the proxy too: a proxy that has not opened
    /// the tunnel by then gives [`ProxyError::Timeout`], a TCP connection or
    /// TLS session to the target that is not up by then
    /// [`Error::ConnectTimeout`].
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream>, Response<()>)> {
        let target = Target::parse(&self.url)?;
        let stream = self.transport(&target, &[]).await?;
        self.handshake(stream, &target).await
    }

    /// TCP (through the proxy, if any), then TLS for `wss://` offering the
    /// `alpn` protocols (none when empty), within the connect timeout.
    pub(crate) async fn transport(
        &self,
        target: &Target,
        alpn: &[&[u8]],
    ) -> Result<MaybeTlsStream> {
        let proxy = match (&self.proxy, self.proxy_from_env) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => Proxy::from_env(target),
            (None, false) => None,
        };
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let connecting = async {
            let tunnel = match &proxy {
                None => {
                    let tcp = TcpStream::connect((target.host.as_str(), target.port))
                        .await
                        .map_err(|source| Error::Connect {
                            host: target.host.clone(),
                            port: target.port,
                            source,
                        })?;
                    tcp.set_nodelay(true)?;
                    Tunnel::Tcp(tcp)
                }
                Some(proxy) => tokio::time::timeout_at(deadline, proxy.tunnel(target, self))
                    .await
                    .map_err(|_| ProxyError::Timeout {
                        proxy: proxy.to_string(),
                    })??,
            };
            if !target.tls {
                return Ok(match tunnel {
                    Tunnel::Tcp(tcp) => MaybeTlsStream::Plain(tcp),
                    #[cfg(feature = "rustls")]
                    Tunnel::Tls(tls) => MaybeTlsStream::Tls(tls),
                });
            }
            self.start_tls(target, tunnel, alpn).await
        };
        tokio::time::timeout_at(deadline, connecting)
            .await
            .map_err(|_| Error::ConnectTimeout)?
    }

    /// TLS to the target, over TCP or inside the TLS session with an
    /// `https://` proxy.
    #[cfg(feature = "rustls")]
    async fn start_tls(
        &self,
        target: &Target,
        tunnel: Tunnel,
        alpn: &[&[u8]],
    ) -> Result<MaybeTlsStream> {
        let mut config = self.tls_client_config()?;
        if !alpn.is_empty() {
            let mut with_alpn = (*config).clone();
            with_alpn.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            config = Arc::new(with_alpn);
        }
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| Error::Url(format!("{}: {e}", target.host)))?;
        let failed = |source| Error::TlsHandshake {
            host: target.host.clone(),
            port: target.port,
            source,
        };
        Ok(match tunnel {
            Tunnel::Tcp(tcp) => MaybeTlsStream::Tls(Box::new(
                connector.connect(name, tcp).await.map_err(failed)?,
            )),
            Tunnel::Tls(tls) => MaybeTlsStream::TlsInTls(Box::new(
                connector.connect(name, *tls).await.map_err(failed)?,
            )),
        })
    }

    #[cfg(not(feature = "rustls"))]
    async fn start_tls(
        &self,
        _target: &Target,
        _tunnel: Tunnel,
        _alpn: &[&[u8]],
    ) -> Result<MaybeTlsStream> {
        Err(Error::TlsUnavailable)
    }

    /// Runs the opening handshake over an already connected `stream` (the
    /// URL gives the Host header and path).
    pub async fn connect_on<S>(self, stream: S) -> Result<(WebSocket<S>, Response<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let target = Target::parse(&self.url)?;
        self.handshake(stream, &target).await
    }

    async fn handshake<S>(
        self,
        mut stream: S,
        target: &Target,
    ) -> Result<(WebSocket<S>, Response<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limits = self.config.protocol().head_limits();
        let deflate = self.config.protocol().deflate().cloned();
        let deadline = tokio::time::Instant::now() + self.config.handshake_timeout();
        let work = async {
            let mut request = Vec::with_capacity(512);
            let hs = ClientHandshake::start(
                &mut request,
                &target.host_header,
                &target.path,
                &self.protocols,
                deflate.as_ref(),
                &self.headers,
            );
            stream.write_all(&request).await?;
            stream.flush().await?;
            let mut buf = Vec::with_capacity(1024);
            let mut scanner = HeadScanner::new();
            let end = loop {
                if is_tls_record(&buf) {
                    return Err(ResponseError::TlsAnswer.into());
                }
                if let Some(end) = scanner.scan(&buf, &limits).map_err(RequestError::from)? {
                    break end;
                }
                buf.reserve(4096);
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(if is_tls_record(&buf) {
                        ResponseError::TlsAnswer
                    } else {
                        ResponseError::Closed
                    }
                    .into());
                }
            };
            let response = match hs.finish(&buf[..end], &limits) {
                Ok(response) => response,
                Err(refusal) => {
                    // Keep the body, bounded: it says why (e.g. the hub's
                    // "offer the WebSocket subprotocol volley.v1"). Read
                    // until the deadline at most; the outer timeout polls
                    // this future first, so what arrived is kept.
                    let mut body = buf.split_off(end);
                    let reading = async {
                        loop {
                            let missing = refusal.body_missing(body.len());
                            if missing == 0 {
                                break;
                            }
                            body.reserve(missing);
                            let mut limited = (&mut stream).take(missing as u64);
                            match limited.read_buf(&mut body).await {
                                Ok(0) | Err(_) => break,
                                Ok(_) => {}
                            }
                        }
                    };
                    let _ = tokio::time::timeout_at(deadline, reading).await;
                    return Err(refusal.with_body(&body).into());
                }
            };
            let mut response = response;
            response
                .response
                .extensions_mut()
                .insert(SentRequest(request.into()));
            let conn = Connection::new(
                Role::Client,
                self.config.protocol().clone(),
                response.deflate,
            );
            let ws = WebSocket::from_parts(stream, conn, self.config.clone(), &buf[end..]);
            Ok((ws, response.response))
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| Error::HandshakeTimeout)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("ws://example.com/chat?x=1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (false, "example.com", 80, "/chat?x=1")
        );
        assert_eq!(t.host_header, "example.com");
        let t = Target::parse("wss://[::1]:9443").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (true, "::1", 9443, "/")
        );
        assert_eq!(t.host_header, "[::1]:9443");
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("example.com").is_err());
    }
}
