//! Upgrading a hyper 1 (or axum) request to a WebSocket, with the handshake
//! decided by the core as in [`accept_with`](crate::accept_with).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use volley_proto::Connection;
use volley_proto::handshake::{Accept, Rejection, ServerRequest};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::server::negotiate;
use crate::websocket::WebSocket;

/// The WebSocket behind a hyper upgrade, once hyper hands over the connection.
pub type Upgrading = UpgradingWith<TokioIo<hyper::upgrade::Upgraded>>;

/// The WebSocket behind a hyper upgrade, on the transport
/// [`upgrade_with`]'s `wrap` made of hyper's connection.
pub type UpgradingWith<S> = Pin<Box<dyn Future<Output = Result<WebSocket<S>>> + Send>>;

/// Upgrades a hyper 1 request (works with axum too): validates it, runs
/// `callback`, and returns the 101 response to send plus a future that
/// yields the [`WebSocket`] once hyper has switched protocols. Spawn that
/// future; return the response from your service.
///
/// With the `http2` feature, an HTTP/2 extended CONNECT (RFC 8441, on a
/// hyper HTTP/2 connection built with `enable_connect_protocol()`) is
/// accepted the same way: the response is then a `200`, and the WebSocket
/// is the request's HTTP/2 stream.
///
/// On a bad request, returns the response to send instead (400, 426, or the
/// callback's rejection).
pub fn upgrade<B, F>(
    request: &mut Request<B>,
    config: WebSocketConfig,
    callback: F,
) -> Result<(Response<Empty<Bytes>>, Upgrading), Response<String>>
where
    F: FnOnce(&ServerRequest) -> Result<Accept, Rejection>,
{
    upgrade_with(request, config, callback, |upgraded| {
        (TokioIo::new(upgraded), Bytes::new())
    })
}

/// Like [`upgrade`], but the WebSocket runs on the transport `wrap` makes of
/// hyper's upgraded connection. `wrap` returns that transport and the bytes
/// already read from the connection past the request, which the WebSocket
/// reads first.
///
/// A server uses it to take its own stream back out of hyper's boxed one
/// ([`hyper::upgrade::Upgraded::downcast`]), for example to share the
/// socket with code that writes to it while the WebSocket's task sleeps.
// The shape of `upgrade`'s result, with the transport generic.
#[allow(clippy::type_complexity)]
pub fn upgrade_with<B, F, S, W>(
    request: &mut Request<B>,
    config: WebSocketConfig,
    callback: F,
    wrap: W,
) -> Result<(Response<Empty<Bytes>>, UpgradingWith<S>), Response<String>>
where
    F: FnOnce(&ServerRequest) -> Result<Accept, Rejection>,
    W: FnOnce(hyper::upgrade::Upgraded) -> (S, Bytes) + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let validated = validate(
        request.method(),
        request.uri(),
        request.version(),
        request.headers(),
        request.extensions(),
    )?;
    let accepted = negotiate(&validated, &config, callback).map_err(|r| rejection_response(&r))?;
    let (response, conn) = accepted.into_parts();
    let response = response.map(|()| Empty::new());
    Ok((
        response,
        upgrading_with(hyper::upgrade::on(request), conn, config, wrap),
    ))
}

/// Validates a request head that hyper (or axum) parsed: an HTTP/1.1
/// upgrade, or over HTTP/2 an extended CONNECT (whose `:protocol` hyper
/// keeps in the `extensions`).
pub(crate) fn validate(
    method: &http::Method,
    uri: &http::Uri,
    version: http::Version,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
) -> Result<ServerRequest, Response<String>> {
    let mut head = Request::builder()
        .method(method.clone())
        .uri(uri.clone())
        .version(version);
    if let Some(h) = head.headers_mut() {
        *h = headers.clone();
    }
    let head = head.body(()).map_err(|e| {
        rejection_response(&Rejection::new(StatusCode::BAD_REQUEST).body(e.to_string()))
    })?;
    if version == http::Version::HTTP_2 {
        ServerRequest::validate_extended_connect(head, extended_connect_protocol(extensions))
    } else {
        ServerRequest::validate(head)
    }
    .map_err(|e| rejection_response(&e.rejection()))
}

/// The `:protocol` pseudo-header of an HTTP/2 extended CONNECT.
#[cfg(feature = "http2")]
fn extended_connect_protocol(extensions: &http::Extensions) -> Option<&str> {
    extensions.get::<hyper::ext::Protocol>().map(|p| p.as_str())
}

/// Without HTTP/2 support no `:protocol` can arrive.
#[cfg(not(feature = "http2"))]
fn extended_connect_protocol(_extensions: &http::Extensions) -> Option<&str> {
    None
}

/// The [`WebSocket`] once hyper has switched protocols.
#[cfg(feature = "axum")]
pub(crate) fn upgrading(
    on_upgrade: hyper::upgrade::OnUpgrade,
    conn: Connection,
    config: WebSocketConfig,
) -> Upgrading {
    upgrading_with(on_upgrade, conn, config, |upgraded| {
        (TokioIo::new(upgraded), Bytes::new())
    })
}

/// The [`WebSocket`] on `wrap`'s transport once hyper has switched protocols.
fn upgrading_with<S, W>(
    on_upgrade: hyper::upgrade::OnUpgrade,
    conn: Connection,
    config: WebSocketConfig,
    wrap: W,
) -> UpgradingWith<S>
where
    W: FnOnce(hyper::upgrade::Upgraded) -> (S, Bytes) + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(async move {
        let upgraded = on_upgrade
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let (io, leftover) = wrap(upgraded);
        Ok(WebSocket::from_parts(io, conn, config, &leftover))
    })
}

/// The HTTP answer to a refused upgrade, with `Connection: close`.
pub(crate) fn rejection_response(r: &Rejection) -> Response<String> {
    let mut response = Response::new(format!("{}\n", r.body));
    *response.status_mut() = r.status;
    response.headers_mut().extend(r.headers.clone());
    response
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}
