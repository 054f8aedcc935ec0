//! The axum extractor, through the `axum_state` example run over real
//! sockets: subprotocol choice, the app state shared with the handler,
//! Volley's config (permessage-deflate, limits), and bad requests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use volley::{ClientBuilder, Message};

#[allow(dead_code)] // its main() is for `cargo run`
#[path = "../examples/axum_state.rs"]
mod example;

async fn serve() -> (std::net::SocketAddr, example::AppState) {
    let state = example::AppState {
        greeting: "hi".into(),
        connections: Arc::new(AtomicUsize::new(0)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

#[tokio::test]
async fn upgrades_with_the_offered_protocol_and_shares_state() {
    let (addr, state) = serve().await;
    for n in 1..=2 {
        let (mut ws, response) = ClientBuilder::new(format!("ws://{addr}/ws"))
            .protocol("other")
            .protocol("echo.v1")
            .connect()
            .await
            .unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], "echo.v1");
        assert!(ws.is_compressed(), "deflate on by default");
        let hello = ws.recv().await.unwrap().unwrap();
        assert_eq!(hello, Message::text(format!("hi, you are connection #{n}")));
        ws.send("ping me back").await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("ping me back")
        );
        ws.close(volley::CloseCode::NORMAL, "").await.unwrap();
    }
    assert_eq!(
        state.connections.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test]
async fn no_common_protocol_upgrades_without_one() {
    let (addr, _) = serve().await;
    let (mut ws, response) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .protocol("nope")
        .connect()
        .await
        .unwrap();
    assert!(!response.headers().contains_key("sec-websocket-protocol"));
    assert!(ws.recv().await.unwrap().is_ok());
}

#[tokio::test]
async fn the_handlers_limits_apply() {
    let (addr, _) = serve().await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .protocol("echo.v1")
        .connect()
        .await
        .unwrap();
    ws.recv().await.unwrap().unwrap();
    ws.send(Message::binary(vec![0u8; (1 << 20) + 1]))
        .await
        .unwrap();
    // The example's 1 MiB limit: the server closes with 1009.
    while let Some(Ok(_)) = ws.recv().await {}
    assert_eq!(
        ws.close_frame().map(|f| f.code),
        Some(volley::CloseCode::MESSAGE_TOO_BIG)
    );
}

#[tokio::test]
async fn a_plain_get_is_refused_before_the_handler() {
    let (addr, state) = serve().await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert_eq!(
        state.connections.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
