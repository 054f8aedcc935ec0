//! tokio-websockets' echo server, as its example: `next()` then `send()` per
//! message; pings and Close are answered by the library.

use futures_util::{SinkExt, StreamExt};
use tokio_websockets::{Limits, ServerBuilder};

fn main() -> std::io::Result<()> {
    volley_bench_servers::serve("tokio-websockets", |tcp| async move {
        let accepted = ServerBuilder::new()
            .limits(Limits::default().max_payload_len(Some(volley_bench_servers::MAX_MESSAGE)))
            .accept(tcp)
            .await;
        let Ok((_request, mut ws)) = accepted else {
            return;
        };
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                return;
            }
        }
    })
}
