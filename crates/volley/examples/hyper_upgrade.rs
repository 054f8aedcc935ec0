//! Serving HTTP and WebSocket from one hyper 1 server (the same works inside
//! an axum handler): `cargo run -p volley --example hyper_upgrade`
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use std::convert::Infallible;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use volley::{Accept, WebSocketConfig};

type Body = Either<http_body_util::Empty<Bytes>, Full<Bytes>>;

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.uri().path() != "/ws" {
        return Ok(Response::new(Either::Right(Full::new(Bytes::from(
            "try ws://127.0.0.1:3000/ws\n",
        )))));
    }
    match volley::upgrade(&mut req, WebSocketConfig::default(), |_| Ok(Accept::new())) {
        Ok((response, upgrading)) => {
            tokio::spawn(async move {
                let Ok(mut ws) = upgrading.await else { return };
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
    let listener = TcpListener::bind("127.0.0.1:3000").await?;
    println!("http://127.0.0.1:3000/ and ws://127.0.0.1:3000/ws");
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service_fn(handle))
                .with_upgrades()
                .await;
        });
    }
}
