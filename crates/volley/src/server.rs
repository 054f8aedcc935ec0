//! Accepting WebSocket connections over any transport. The core decides the
//! handshake ([`ServerRequest::accept`]); the hyper upgrade path
//! (`upgrade.rs`) calls the same decision.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use volley_proto::handshake::{
    Accept, HeadScanner, Rejection, RequestError, ServerAccepted, ServerRequest, reject_response,
};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::websocket::WebSocket;

/// Accepts a WebSocket connection on `stream` with the default configuration,
/// any path and no subprotocol.
pub async fn accept<S>(stream: S) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, WebSocketConfig::default(), |_| Ok(Accept::new())).await
}

/// Accepts a WebSocket connection on `stream`. `callback` sees the validated
/// request (path, headers, Origin, cookies, offered subprotocols) and accepts
/// it or rejects it with a status.
///
/// Malformed requests are answered as RFC 6455 asks: 400 with
/// `Connection: close`, 426 with `Sec-WebSocket-Version: 13`, 431 for a head
/// over the limit. The whole handshake is bounded by the handshake timeout.
pub async fn accept_with<S, F>(
    mut stream: S,
    config: WebSocketConfig,
    callback: F,
) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&ServerRequest) -> Result<Accept, Rejection>,
{
    let timeout = config.handshake_timeout();
    let limits = config.protocol().head_limits();
    let handshake = async {
        let mut buf = Vec::with_capacity(1024);
        let mut scanner = HeadScanner::new();
        let end = loop {
            match scanner.scan(&buf, &limits) {
                Ok(Some(end)) => break end,
                Ok(None) => {}
                Err(too_large) => {
                    let err = RequestError::from(too_large);
                    reject(&mut stream, &err.rejection()).await;
                    return Err(err.into());
                }
            }
            buf.reserve(4096);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        let request = match ServerRequest::parse(&buf[..end], &limits) {
            Ok(r) => r,
            Err(err) => {
                reject(&mut stream, &err.rejection()).await;
                return Err(err.into());
            }
        };
        let accepted = match negotiate(&request, &config, callback) {
            Ok(ok) => ok,
            Err(rejection) => {
                reject(&mut stream, &rejection).await;
                return Err(Error::Rejected(rejection.status));
            }
        };
        let mut response = Vec::with_capacity(256);
        accepted.write_response(&mut response);
        stream.write_all(&response).await?;
        stream.flush().await?;
        Ok(WebSocket::from_parts(
            stream,
            accepted.into_connection(),
            config.clone(),
            &buf[end..],
        ))
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| Error::HandshakeTimeout)?
}

/// Runs the callback, then the core's handshake decision (subprotocol,
/// permessage-deflate, the configured connection).
pub(crate) fn negotiate<F>(
    request: &ServerRequest,
    config: &WebSocketConfig,
    callback: F,
) -> Result<ServerAccepted, Rejection>
where
    F: FnOnce(&ServerRequest) -> Result<Accept, Rejection>,
{
    let accept = callback(request)?;
    if let Some(p) = accept.picked_protocol() {
        if !request.protocols.iter().any(|o| o == p) {
            tracing::warn!(protocol = %p, "accept picked a subprotocol the client did not offer; not sent");
        }
    }
    request.accept(accept, config.protocol())
}

async fn reject<S: AsyncWrite + Unpin>(stream: &mut S, rejection: &Rejection) {
    let mut out = Vec::new();
    reject_response(&mut out, rejection);
    // The peer may already be gone; the error that matters is the rejection.
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}
