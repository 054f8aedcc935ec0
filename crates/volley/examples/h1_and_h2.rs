//! WebSocket over HTTP/1.1 upgrades and over HTTP/2 extended CONNECT
//! (RFC 8441) on one port, with hyper-util's auto builder (it tells HTTP/1.1
//! from HTTP/2 by the connection preface; h2c here, add TLS with ALPN
//! `h2, http/1.1` for browsers):
//!
//! ```text
//! cargo run -p volley --features http2 --example h1_and_h2 [ADDR]
//! ```
//!
//! Then `volley::connect("ws://ADDR/ws")` and
//! `volley::h2::connect("http://ADDR")?.websocket("/ws")` both echo.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use std::convert::Infallible;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use volley::{Accept, WebSocketConfig};

type Body = Either<http_body_util::Empty<Bytes>, Full<Bytes>>;

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let version = req.version();
    // The same call answers a GET with Upgrade (101) and an extended
    // CONNECT (200).
    match volley::upgrade(&mut req, WebSocketConfig::default(), |_| Ok(Accept::new())) {
        Ok((response, upgrading)) => {
            tokio::spawn(async move {
                let Ok(mut ws) = upgrading.await else { return };
                println!("WebSocket over {version:?}");
                while let Some(Ok(message)) = ws.recv().await {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
            Ok(response.map(Either::Left))
        }
        Err(rejection) => Ok(rejection.map(|body| Either::Right(Full::new(Bytes::from(body))))),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("ws://{addr}/ws over HTTP/1.1 or HTTP/2 (h2c)");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    loop {
        let (tcp, _) = listener.accept().await?;
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), service_fn(handle))
                .await;
        });
    }
}
