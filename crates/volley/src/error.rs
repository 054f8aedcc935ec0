//! Errors of the tokio layer.

use std::io;

use volley_proto::handshake::{RequestError, ResponseError};
use volley_proto::{ConfigError, ProtocolError, SendError};

use crate::client::proxy::ProxyError;
#[cfg(feature = "rustls")]
use crate::client::tls::TlsSetupError;

/// Anything that can go wrong on a WebSocket.
///
/// A clean close is not an error: [`WebSocket::recv`](crate::WebSocket::recv)
/// returns `None` and [`close_frame`](crate::WebSocket::close_frame) tells
/// what the peer said.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the protocol or a limit; a Close frame with the
    /// matching code was sent.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The message could not be sent (the connection is closing, or the
    /// message is malformed).
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// The client's upgrade request was refused.
    #[error("invalid upgrade request: {0}")]
    Request(#[from] RequestError),
    /// The server's handshake response was refused.
    #[error("handshake failed: {0}")]
    Response(#[from] ResponseError),
    /// The opening handshake did not finish in time.
    #[error("the opening handshake timed out")]
    HandshakeTimeout,
    /// The TCP connection or TLS session could not be set up in time.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// The application refused the upgrade in its `accept_with` callback.
    #[error("upgrade rejected with status {0}")]
    Rejected(http::StatusCode),
    /// The URL is not a usable ws:// or wss:// URL.
    #[error("invalid URL: {0}")]
    Url(String),
    /// TLS setup failed.
    #[cfg(feature = "rustls")]
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A `wss://` URL in a build without the `rustls` feature.
    #[error("wss:// (and https:// proxies) need the rustls feature of volley")]
    TlsUnavailable,
    /// A TLS option (root certificates, client certificate) is unusable.
    #[cfg(feature = "rustls")]
    #[error("TLS setup: {0}")]
    TlsSetup(#[from] TlsSetupError),
    /// The proxy did not open a tunnel to the target.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The TCP connection to the server could not be opened.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// The host of the URL.
        host: String,
        /// The port.
        port: u16,
        /// Why.
        source: io::Error,
    },
    /// The TLS handshake with the server failed (for `wss://`).
    #[error(
        "TLS handshake with {host}:{port} failed: {source}{}",
        tls_hint(source)
    )]
    TlsHandshake {
        /// The host of the URL.
        host: String,
        /// The port.
        port: u16,
        /// Why (rustls's error, as an I/O error).
        source: io::Error,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// No pong arrived within the keepalive timeout; the connection was
    /// closed with 1011.
    #[error("no pong within the keepalive timeout")]
    KeepaliveTimeout,
    /// The HTTP/2 connection failed, or refused a stream.
    #[cfg(feature = "http2")]
    #[error("HTTP/2: {0}")]
    Http2(#[source] hyper::Error),
    /// The TLS server did not pick `h2` by ALPN, so WebSocket over HTTP/2
    /// cannot be used on this connection.
    #[error("the server did not negotiate HTTP/2 (ALPN h2)")]
    NoHttp2,
    /// The HTTP/2 server did not announce `SETTINGS_ENABLE_CONNECT_PROTOCOL`
    /// (RFC 8441) within the handshake timeout, so it cannot carry WebSockets.
    #[error("the HTTP/2 server does not enable extended CONNECT (RFC 8441)")]
    ExtendedConnectDisabled,
    /// The HTTP/2 connection closed.
    #[error("the HTTP/2 connection is closed")]
    Http2Closed,
}

/// What a failed TLS handshake most likely means: rustls reports bytes that
/// are not TLS (a plain HTTP server's answer) as corrupt data, and a server
/// that closes at once as an early end of file.
fn tls_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            " (does the server speak TLS? use ws:// for a plain server)"
        }
        _ => "",
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
