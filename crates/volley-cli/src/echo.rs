//! `volley echo`: an echo server.

use std::net::SocketAddr;

use clap::Args;
use tokio::net::TcpListener;
use volley::{DeflateConfig, WebSocket, WebSocketConfig};

/// Arguments of `volley echo`.
#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, short, default_value_t = 9001)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Largest message and frame accepted, in bytes.
    #[arg(long, default_value_t = volley::proto::config::DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: usize,
    /// Turn permessage-deflate off.
    #[arg(long)]
    no_compression: bool,
}

pub(crate) async fn run(args: EchoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let deflate = (!args.no_compression).then(DeflateConfig::default);
    let protocol = volley::Config::builder()
        .max_size(args.max_message_size)
        .deflate(deflate)
        .build()?;
    let config = WebSocketConfig::builder().protocol(protocol).build()?;
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    println!("volley echo listening on ws://{addr}/");
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let config = config.clone();
        tokio::spawn(async move {
            match volley::accept_with(tcp, config, |_| Ok(volley::Accept::new())).await {
                Ok(ws) => {
                    if let Err(e) = echo(ws).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "handshake failed"),
            }
        });
    }
}

/// Echoes until the peer closes. The replies to every message that arrived
/// in one read go out in one write; a lone message is written at once.
pub(crate) async fn echo<S>(mut ws: WebSocket<S>) -> volley::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = ws.recv().await {
        ws.feed(message?).await?;
        while let Some(message) = ws.try_recv() {
            ws.feed(message).await?;
        }
        ws.flush().await?;
    }
    Ok(())
}
