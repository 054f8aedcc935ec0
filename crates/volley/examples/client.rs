//! A client that sends each line of standard input and prints what comes back:
//! `cargo run -p volley --example client -- ws://127.0.0.1:9001/`
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use tokio::io::{AsyncBufReadExt, BufReader};
use volley::CloseCode;

#[tokio::main]
async fn main() -> volley::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".into());
    let (mut ws, response) = volley::ClientBuilder::new(url)
        .protocol("chat")
        .connect()
        .await?;
    eprintln!(
        "connected ({}), compression: {}",
        response.status(),
        ws.is_compressed()
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => ws.send(line).await?,
                None => break,
            },
            message = ws.recv() => match message {
                Some(m) => println!("< {:?}", m?),
                None => return Ok(()),
            },
        }
    }
    ws.close(CloseCode::NORMAL, "bye").await
}
