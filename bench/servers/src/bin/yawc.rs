//! yawc's echo server: hyper 1 upgrade, then `next()` and `send()` per
//! frame of a message; yawc answers pings and Close itself.

use futures_util::SinkExt;
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use yawc::{OpCode, Options, WebSocket};

async fn upgrade(mut req: Request<Incoming>) -> yawc::Result<Response<Empty<Bytes>>> {
    let limit = volley_bench_servers::MAX_MESSAGE;
    let (response, fut) =
        WebSocket::upgrade_with_options(&mut req, Options::default().with_limits(limit, limit))?;
    tokio::spawn(async move {
        let mut ws = match fut.await {
            Ok(ws) => ws,
            Err(_) => return,
        };
        loop {
            let Ok(frame) = ws.next_frame().await else {
                return;
            };
            match frame.opcode() {
                OpCode::Text | OpCode::Binary => {
                    if ws.send(frame).await.is_err() {
                        return;
                    }
                }
                // yawc queued its answer to the Close; reading on writes it.
                OpCode::Close => {
                    let _ = ws.next_frame().await;
                    return;
                }
                _ => {}
            }
        }
    });
    Ok(response)
}

fn main() -> std::io::Result<()> {
    volley_bench_servers::serve_hyper("yawc", upgrade)
}
