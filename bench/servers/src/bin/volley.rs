//! Volley's echo server: the same loop as `volley echo` (the replies to
//! everything one read brought in go out in one write), without compression,
//! on a current-thread runtime like the peers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protocol = volley::Config::builder()
        .max_size(volley_bench_servers::MAX_MESSAGE)
        .deflate(None)
        .build()?;
    let config = volley::WebSocketConfig::builder()
        .protocol(protocol)
        .build()?;
    volley_bench_servers::serve("volley", move |tcp| {
        let config = config.clone();
        async move {
            // As in `volley echo`: each stage boxed at its own size, so an
            // idle connection's task holds a pointer, not the handshake.
            let session = {
                let accepting = Box::pin(volley::accept_with(tcp, config, |_| {
                    Ok(volley::Accept::new())
                }));
                match accepting.await {
                    Ok(ws) => Box::pin(echo(ws)),
                    Err(_) => return,
                }
            };
            let _ = session.await;
        }
    })?;
    Ok(())
}

/// Echoes until the peer closes, as `volley echo` does: a plain state
/// machine over the WebSocket's `Stream` and `Sink` (its future is the
/// WebSocket and nothing more); the replies to one read go out in one write.
fn echo(
    mut ws: volley::WebSocket<tokio::net::TcpStream>,
) -> impl std::future::Future<Output = volley::Result<()>> {
    use futures_util::{Sink, Stream};
    use std::pin::Pin;
    use std::task::{Poll, ready};
    std::future::poll_fn(move |cx| {
        loop {
            ready!(Pin::new(&mut ws).poll_ready(cx))?;
            let next = match Pin::new(&mut ws).poll_next(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    ready!(Pin::new(&mut ws).poll_flush(cx))?;
                    return Poll::Pending;
                }
            };
            match next {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                Some(Ok(message)) => {
                    Pin::new(&mut ws).start_send(message)?;
                    while let Some(message) = ws.try_recv() {
                        Pin::new(&mut ws).start_send(message)?;
                    }
                }
            }
        }
    })
}
