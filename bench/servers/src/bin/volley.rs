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
            let Ok(mut ws) = volley::accept_with(tcp, config, |_| Ok(volley::Accept::new())).await
            else {
                return;
            };
            while let Some(Ok(message)) = ws.recv().await {
                if ws.feed(message).await.is_err() {
                    return;
                }
                while let Some(message) = ws.try_recv() {
                    if ws.feed(message).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        }
    })?;
    Ok(())
}
