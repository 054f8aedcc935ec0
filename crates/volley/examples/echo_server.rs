//! An echo server: `cargo run -p volley --example echo_server -- 127.0.0.1:9001`
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> volley::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("echoing on ws://{}/", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let mut ws = match volley::accept(tcp).await {
                Ok(ws) => ws,
                Err(e) => return eprintln!("{peer}: handshake failed: {e}"),
            };
            while let Some(message) = ws.recv().await {
                match message {
                    Ok(m) => {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => return eprintln!("{peer}: {e}"),
                }
            }
            if let Some(frame) = ws.close_frame() {
                println!("{peer} closed: {} {}", frame.code, frame.reason);
            }
        });
    }
}
