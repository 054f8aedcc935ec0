//! # volley
//!
//! WebSocket (RFC 6455, with permessage-deflate of RFC 7692) for tokio, on
//! the sans-IO core [`volley_proto`].
//!
//! ```no_run
//! # async fn run() -> volley::Result<()> {
//! // A client.
//! let (mut ws, _response) = volley::connect("ws://127.0.0.1:9001/").await?;
//! ws.send("hello").await?;
//! while let Some(message) = ws.recv().await {
//!     println!("{:?}", message?);
//! }
//!
//! // A server.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9002").await?;
//! let (tcp, _) = listener.accept().await?;
//! let mut ws = volley::accept(tcp).await?;
//! while let Some(Ok(message)) = ws.recv().await {
//!     ws.send(message).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! - Servers: [`accept`], [`accept_with`] (inspect the request, pick a
//!   subprotocol, reject), [`upgrade`] for hyper and axum.
//! - Clients: [`connect`] and [`ClientBuilder`] (headers, subprotocols, TLS
//!   roots and client certificates, timeouts, HTTP and SOCKS5 [`Proxy`]s).
//! - WebSocket over HTTP/2 (RFC 8441, feature `http2`): [`upgrade`] answers
//!   extended CONNECT requests on a hyper HTTP/2 connection, and `h2::Client`
//!   opens many WebSockets over one HTTP/2 connection.
//! - [`WebSocket`] is a `Stream` and a `Sink`, with `recv`/`send`, and
//!   [`split`](WebSocket::split)s into halves for separate tasks.
//!
//! Cargo features (all but `axum` and `http2` on by default):
//!
//! - `rustls`: `wss://` in [`ClientBuilder`] (rustls, ring, webpki-roots).
//! - `hyper`: `upgrade`, upgrading a hyper 1 request.
//! - `axum`: `axum::WebSocketUpgrade`, an extractor like axum's own
//!   (implies `hyper`).
//! - `deflate`: permessage-deflate (RFC 7692) in the core.
//! - `http2` (off by default): WebSocket over HTTP/2 (RFC 8441), the `h2`
//!   module (implies `hyper`).
//!
//! With `--no-default-features` a plain `ws://` client or server builds on
//! tokio and the core alone.

#![forbid(unsafe_code)]

#[cfg(feature = "axum")]
pub mod axum;
mod client;
mod config;
#[cfg(feature = "rustls")]
mod crypto;
mod error;
#[cfg(feature = "http2")]
pub mod h2;
mod server;
mod split;
mod stream;
#[cfg(feature = "hyper")]
mod upgrade;
mod wakers;
mod websocket;

pub use client::proxy::{Proxy, ProxyError, ProxyScheme};
#[cfg(feature = "rustls")]
pub use client::tls::TlsSetupError;
pub use client::{ClientBuilder, DEFAULT_CONNECT_TIMEOUT, SentRequest, Target, connect};
pub use config::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_READ_BUFFER_SIZE, DEFAULT_WRITE_HIGH_WATER_MARK, Keepalive,
    WebSocketConfig, WebSocketConfigBuilder,
};
#[cfg(feature = "rustls")]
pub use crypto::crypto_provider;
pub use error::{Error, Result};
pub use server::{accept, accept_with};
pub use split::{ReadHalf, WriteHalf};
pub use stream::MaybeTlsStream;
#[cfg(feature = "hyper")]
pub use upgrade::{Upgrading, UpgradingWith, upgrade, upgrade_with};
pub use volley_proto::handshake::{Accept, Rejection, ServerRequest};
pub use volley_proto::{
    CloseCode, CloseFrame, Config, DeflateConfig, Message, PreparedFrame, PreparedFrames, Role,
    State, Utf8Bytes,
};
pub use websocket::WebSocket;
pub use {http, volley_proto as proto};
