//! tokio-tungstenite's echo server, written as its documentation shows:
//! `next()` then `send()` (write and flush) per message. Pings and the close
//! handshake are answered by the library.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn main() -> std::io::Result<()> {
    volley_bench_servers::serve("tokio-tungstenite", |tcp| async move {
        let config = WebSocketConfig::default()
            .max_message_size(Some(volley_bench_servers::MAX_MESSAGE))
            .max_frame_size(Some(volley_bench_servers::MAX_MESSAGE));
        let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
        else {
            return;
        };
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                return;
            }
        }
    })
}
