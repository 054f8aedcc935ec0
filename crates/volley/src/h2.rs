//! WebSocket over HTTP/2 (RFC 8441, extended CONNECT), client side: one
//! HTTP/2 connection ([`Client`]) carries many WebSockets, each an HTTP/2
//! stream with its own flow control. Over TLS (`wss://`/`https://`, ALPN
//! `h2`) or cleartext with prior knowledge (h2c, `ws://`/`http://`).
//!
//! The server side is [`upgrade`](crate::upgrade): served by a hyper HTTP/2
//! connection with extended CONNECT enabled, it answers an extended CONNECT
//! with `200` and yields the same [`WebSocket`] as for an HTTP/1.1 upgrade.
//!
//! ```no_run
//! # async fn run() -> volley::Result<()> {
//! let client = volley::h2::connect("https://example.com").await?;
//! let (mut chat, _) = client.websocket("/chat").await?;
//! let (mut feed, _) = client.websocket("/feed").await?; // same connection
//! chat.send("hello").await?;
//! # let _ = feed.recv().await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;
use volley_proto::handshake::ClientHandshake;
use volley_proto::{Connection, Role};

use crate::client::{ClientBuilder, Target};
use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;

/// The transport of a WebSocket carried by an HTTP/2 stream, on either side
/// (the same as behind an HTTP/1.1 upgrade done by hyper).
pub type H2Stream = TokioIo<Upgraded>;

/// Opens an HTTP/2 connection to the host of `url` with the default
/// configuration; see [`ClientBuilder::connect_http2`].
pub async fn connect(url: &str) -> Result<Client> {
    ClientBuilder::new(url).connect_http2().await
}

impl ClientBuilder {
    /// Opens an HTTP/2 connection to the URL's host (TLS with ALPN `h2` for
    /// `wss://` and `https://`, h2c with prior knowledge for `ws://` and
    /// `http://`), on which [`Client::websocket`] opens WebSockets. The
    /// builder's headers, subprotocols and configuration apply to each of
    /// them; its path is ignored.
    pub async fn connect_http2(self) -> Result<Client> {
        let target = Target::parse(&self.url)?;
        let stream = self.transport(&target, &[b"h2"]).await?;
        if target.tls && !negotiated_h2(&stream) {
            return Err(Error::NoHttp2);
        }
        let (send, conn) = tokio::time::timeout(
            self.config.handshake_timeout(),
            http2::handshake(TokioExecutor::new(), TokioIo::new(stream)),
        )
        .await
        .map_err(|_| Error::HandshakeTimeout)?
        .map_err(Error::Http2)?;
        let (extended, watcher) = watch::channel(false);
        let deadline = tokio::time::Instant::now() + self.config.handshake_timeout();
        tokio::spawn(Driver {
            conn,
            extended,
            settings_tick: Some((tokio::time::interval(SETTINGS_TICK), deadline)),
        });
        let authority = target.host_header.clone();
        Ok(Client {
            send,
            scheme: if target.tls { "https" } else { "http" },
            authority,
            extended: watcher,
            defaults: Arc::new(self),
        })
    }
}

/// Whether TLS to the target picked `h2` by ALPN.
fn negotiated_h2(stream: &MaybeTlsStream) -> bool {
    match stream {
        #[cfg(feature = "rustls")]
        MaybeTlsStream::Tls(s) => s.get_ref().1.alpn_protocol() == Some(b"h2"),
        #[cfg(feature = "rustls")]
        MaybeTlsStream::TlsInTls(s) => s.get_ref().1.alpn_protocol() == Some(b"h2"),
        _ => false,
    }
}

/// An HTTP/2 connection carrying WebSockets. Clones share the connection;
/// it closes when every clone and every WebSocket opened on it is dropped.
#[derive(Clone)]
pub struct Client {
    send: http2::SendRequest<Empty<Bytes>>,
    scheme: &'static str,
    authority: String,
    extended: watch::Receiver<bool>,
    defaults: Arc<ClientBuilder>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens a WebSocket on `path` (path and query) with the connection's
    /// headers, subprotocols and configuration.
    pub async fn websocket(&self, path: &str) -> Result<(WebSocket<H2Stream>, Response<()>)> {
        self.websocket_with(path, &HeaderMap::new(), &[]).await
    }

    /// Opens a WebSocket on `path`, adding `headers` to the connection's and
    /// offering `protocols` (or, when empty, the connection's).
    ///
    /// Waits, within the handshake timeout, for the server's
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL` before sending the extended
    /// CONNECT, as RFC 8441 requires.
    pub async fn websocket_with(
        &self,
        path: &str,
        headers: &HeaderMap,
        protocols: &[String],
    ) -> Result<(WebSocket<H2Stream>, Response<()>)> {
        let config: &WebSocketConfig = &self.defaults.config;
        let protocols = if protocols.is_empty() {
            &self.defaults.protocols[..]
        } else {
            protocols
        };
        let work = async {
            let mut extended = self.extended.clone();
            extended
                .wait_for(|on| *on)
                .await
                .map_err(|_| Error::Http2Closed)?;
            let mut head = self.defaults.headers.clone();
            head.extend(headers.clone());
            let hs = ClientHandshake::extended_connect(
                &mut head,
                protocols,
                config.protocol().deflate(),
            );
            let path = if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            };
            let mut request = Request::builder()
                .method(Method::CONNECT)
                .version(Version::HTTP_2)
                .uri(format!("{}://{}{path}", self.scheme, self.authority))
                .extension(hyper::ext::Protocol::from_static("websocket"))
                .body(Empty::new())
                .map_err(|e| Error::Url(format!("{path}: {e}")))?;
            *request.headers_mut() = head;
            let mut send = self.send.clone();
            send.ready().await.map_err(Error::Http2)?;
            let mut response = send.send_request(request).await.map_err(Error::Http2)?;
            let on_upgrade = hyper::upgrade::on(&mut response);
            let (parts, _body) = response.into_parts();
            let accepted = hs.finish_extended_connect(Response::from_parts(parts, ()))?;
            let upgraded = on_upgrade.await.map_err(Error::Http2)?;
            let conn = Connection::new(Role::Client, config.protocol().clone(), accepted.deflate);
            let ws = WebSocket::from_parts(TokioIo::new(upgraded), conn, config.clone(), &[]);
            Ok((ws, accepted.response))
        };
        tokio::time::timeout(config.handshake_timeout(), work)
            .await
            .map_err(|_| match *self.extended.borrow() {
                true => Error::HandshakeTimeout,
                false => Error::ExtendedConnectDisabled,
            })?
    }

    /// Whether the server has announced extended CONNECT so far.
    pub fn is_extended_connect_enabled(&self) -> bool {
        *self.extended.borrow()
    }

    /// Whether the HTTP/2 connection has closed.
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }
}

/// How often the driver looks for the server's SETTINGS until they enable
/// extended CONNECT or the handshake timeout passes.
const SETTINGS_TICK: std::time::Duration = std::time::Duration::from_millis(2);

/// Drives the HTTP/2 connection and publishes whether the server enabled
/// extended CONNECT, which its SETTINGS frame tells once read.
///
/// hyper reads frames in a task of its own and does not wake this one when
/// SETTINGS arrive, so until they enable extended CONNECT (or the handshake
/// timeout passes) the driver also wakes on a short tick to look.
struct Driver {
    conn: http2::Connection<TokioIo<MaybeTlsStream>, Empty<Bytes>, TokioExecutor>,
    extended: watch::Sender<bool>,
    settings_tick: Option<(tokio::time::Interval, tokio::time::Instant)>,
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.conn).poll(cx);
        let on = this.conn.is_extended_connect_protocol_enabled();
        this.extended
            .send_if_modified(|v| std::mem::replace(v, on) != on);
        if let Some((tick, deadline)) = &mut this.settings_tick {
            if on || tokio::time::Instant::now() >= *deadline {
                this.settings_tick = None;
            } else {
                while tick.poll_tick(cx).is_ready() {}
            }
        }
        match done {
            Poll::Ready(Err(e)) => {
                tracing::debug!("HTTP/2 connection ended: {e}");
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether an I/O error from an HTTP/2 stream is a reset with NO_ERROR: the
/// peer sent a complete response and asks us to stop sending (RFC 9113
/// §8.1), which hyper reports as an I/O error. After a WebSocket Close it is
/// how a server over HTTP/2 may end the stream (RFC 8441): a clean end.
pub(crate) fn is_no_error_reset(e: &std::io::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(error) = source {
        if let Some(reset) = error.downcast_ref::<::h2::Error>() {
            return reset.reason() == Some(::h2::Reason::NO_ERROR);
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod no_error_reset_tests {
    use super::is_no_error_reset;
    use std::io;

    /// An error that carries another as its source, the way hyper wraps h2's.
    #[derive(Debug)]
    struct Wrapped(::h2::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "body write: {}", self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn only_a_no_error_reset_means_the_is_no_error_reset() {
        let reset = |reason| io::Error::other(Wrapped(::h2::Error::from(reason)));
        assert!(is_no_error_reset(&reset(::h2::Reason::NO_ERROR)));
        assert!(is_no_error_reset(&io::Error::other(::h2::Error::from(
            ::h2::Reason::NO_ERROR
        ))));
        assert!(!is_no_error_reset(&reset(::h2::Reason::CANCEL)));
        assert!(!is_no_error_reset(&reset(::h2::Reason::PROTOCOL_ERROR)));
        assert!(!is_no_error_reset(&io::Error::from(
            io::ErrorKind::BrokenPipe
        )));
        assert!(!is_no_error_reset(&io::Error::other("no error")));
    }
}
