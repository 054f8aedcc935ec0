//! The ceiling: a raw TCP echo. Every byte read is written back as it is; no
//! WebSocket framing, no masking, no handshake (the load generator's
//! `--raw-tcp` mode skips it too), one read and one write per batch.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> std::io::Result<()> {
    volley_bench_servers::serve("raw-tcp", |mut tcp| async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tcp.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}
