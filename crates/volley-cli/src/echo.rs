//! `volley echo`: an echo server.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use clap::Args;
use futures_core::Stream as _;
use futures_sink::Sink as _;
use volley::{DeflateConfig, WebSocket, WebSocketConfig};

/// Arguments of `volley echo`.
#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, short, default_value_t = 9001, conflicts_with = "listen")]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", conflicts_with = "listen")]
    host: String,
    /// The address to listen on, instead of --host and --port: host:port (a
    /// name is resolved), :port or a bare port (both on 127.0.0.1).
    #[arg(long, value_parser = crate::listen::parse)]
    listen: Option<SocketAddr>,
    /// Connections the kernel queues before they are accepted.
    #[arg(long, default_value_t = volley_hub::DEFAULT_LISTEN_BACKLOG)]
    backlog: u32,
    /// Runtime threads; with 1, the accept loop and every connection share one
    /// thread [default: the CPUs this process may run on].
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Largest message and frame accepted, in bytes.
    #[arg(long, default_value_t = volley::proto::config::DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: usize,
    /// Turn permessage-deflate off.
    #[arg(long)]
    no_compression: bool,
}

/// Why `volley echo` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum EchoError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

pub(crate) async fn run(args: EchoArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let deflate = (!args.no_compression).then(DeflateConfig::default);
    let protocol = volley::Config::builder()
        .max_size(args.max_message_size)
        .deflate(deflate)
        .build()?;
    let config = WebSocketConfig::builder().protocol(protocol).build()?;
    // Connections are bounded by the open-files limit alone: raise the soft
    // limit to the hard one.
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        if soft < hard {
            let _ = rlimit::Resource::NOFILE.set(hard, hard);
        }
    }
    let addr = match args.listen {
        Some(addr) => addr,
        None if args.host.contains(':') && !args.host.starts_with('[') => {
            crate::listen::parse(&format!("[{}]:{}", args.host, args.port))?
        }
        None => crate::listen::parse(&format!("{}:{}", args.host, args.port))?,
    };
    let listener = volley_hub::listen(addr, args.backlog)
        .map_err(|source| EchoError::Bind { addr, source })?;
    let addr: SocketAddr = listener.local_addr()?;
    println!("volley echo listening on ws://{addr}/");
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (or a connection reset before it
                // was accepted): keep serving the open connections and try
                // again shortly, rather than exit.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let config = config.clone();
        tokio::spawn(async move {
            // Both stages are boxed, each exactly its own size, and the
            // WebSocket is moved into the second: the task of an idle
            // connection holds one pointer, not the handshake's state next
            // to a second copy of the WebSocket.
            let session = {
                let accepting = Box::pin(volley::accept_with(tcp, config, |_| {
                    Ok(volley::Accept::new())
                }));
                match accepting.await {
                    Ok(ws) => Box::pin(echo(ws)),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "handshake failed");
                        return;
                    }
                }
            };
            if let Err(e) = session.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Echoes until the peer closes. The replies to every message that arrived
/// in one read go out in one write; a lone message is written at once.
///
/// A plain state machine over the `Stream` and `Sink` halves of the
/// WebSocket rather than an `async fn`: its future is the WebSocket and
/// nothing more, which is most of what an idle connection costs.
pub(crate) fn echo<S>(mut ws: WebSocket<S>) -> impl Future<Output = volley::Result<()>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    std::future::poll_fn(move |cx| poll_echo(&mut ws, cx))
}

fn poll_echo<S>(ws: &mut WebSocket<S>, cx: &mut Context<'_>) -> Poll<volley::Result<()>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        // Reading goes on while earlier replies are being written, until
        // they pass the write high-water mark (backpressure on a peer that
        // does not read its echoes).
        ready!(Pin::new(&mut *ws).poll_ready(cx))?;
        let next = match Pin::new(&mut *ws).poll_next(cx) {
            Poll::Ready(next) => next,
            Poll::Pending => {
                // Nothing more to read now: write out everything queued.
                ready!(Pin::new(&mut *ws).poll_flush(cx))?;
                return Poll::Pending;
            }
        };
        match next {
            None => return Poll::Ready(Ok(())),
            Some(Err(e)) => return Poll::Ready(Err(e)),
            Some(Ok(message)) => {
                Pin::new(&mut *ws).start_send(message)?;
                // The rest of what the same read brought in, answered by the
                // same write.
                while let Some(message) = ws.try_recv() {
                    Pin::new(&mut *ws).start_send(message)?;
                }
            }
        }
    }
}
