//! Upgrading a hyper 1 (or axum) request to a WebSocket, with the handshake
//! decided by the core as in [`accept_with`](crate::accept_with).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use volley_proto::Connection;
use volley_proto::handshake::{Accept, Rejection, ServerRequest};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::server::negotiate;
use crate::websocket::WebSocket;

/// The WebSocket behind a hyper upgrade, once hyper hands over the connection.
pub type Upgrading =
    Pin<Box<dyn Future<Output = Result<WebSocket<TokioIo<hyper::upgrade::Upgraded>>>> + Send>>;

/// Upgrades a hyper 1 request (works with axum too): validates it, runs
/// `callback`, and returns the 101 response to send plus a future that
/// yields the [`WebSocket`] once hyper has switched protocols. Spawn that
/// future; return the response from your service.
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
    let validated = validate(
        request.method(),
        request.uri(),
        request.version(),
        request.headers(),
    )?;
    let accepted = negotiate(&validated, &config, callback).map_err(|r| rejection_response(&r))?;
    let (response, conn) = accepted.into_parts();
    let response = response.map(|()| Empty::new());
    Ok((
        response,
        upgrading(hyper::upgrade::on(request), conn, config),
    ))
}

/// Validates a request head that hyper (or axum) parsed.
pub(crate) fn validate(
    method: &http::Method,
    uri: &http::Uri,
    version: http::Version,
    headers: &http::HeaderMap,
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
    ServerRequest::validate(head).map_err(|e| rejection_response(&e.rejection()))
}

/// The [`WebSocket`] once hyper has switched protocols.
pub(crate) fn upgrading(
    on_upgrade: hyper::upgrade::OnUpgrade,
    conn: Connection,
    config: WebSocketConfig,
) -> Upgrading {
    Box::pin(async move {
        let upgraded = on_upgrade
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        Ok(WebSocket::from_parts(
            TokioIo::new(upgraded),
            conn,
            config,
            &[],
        ))
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
