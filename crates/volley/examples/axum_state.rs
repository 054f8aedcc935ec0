//! A WebSocket endpoint in an axum app, sharing the app's state with the
//! WebSocket handler: `cargo run -p volley --features axum --example
//! axum_state [ADDR]`, then connect to `ws://ADDR/ws` with the subprotocol
//! `echo.v1`. Each connection is greeted with its number, then echoed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use volley::WebSocketConfig;
use volley::axum::{WebSocket, WebSocketUpgrade};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The first word of each greeting.
    pub(crate) greeting: Arc<str>,
    /// Connections accepted so far.
    pub(crate) connections: Arc<AtomicUsize>,
}

/// The app: `GET /ws` upgrades to a WebSocket.
pub(crate) fn app(state: AppState) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(state)
}

async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    // Volley's settings: keepalive pings, and a smaller message limit than
    // the library's default.
    let config = WebSocketConfig::builder()
        .keepalive(Duration::from_secs(20), Duration::from_secs(20))
        .protocol(
            volley::Config::builder()
                .max_message_size(1 << 20)
                .max_frame_size(1 << 20)
                .build()
                .expect("valid limits"),
        )
        .build()
        .expect("valid config");
    ws.protocols(["echo.v1"])
        .config(config)
        .on_upgrade(move |socket| echo(socket, state))
}

async fn echo(mut socket: WebSocket, state: AppState) {
    let n = state.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let hello = format!("{}, you are connection #{n}", state.greeting);
    if socket.send(hello).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        if socket.send(message).await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let state = AppState {
        greeting: "hello".into(),
        connections: Arc::new(AtomicUsize::new(0)),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("listening on ws://{}/ws", listener.local_addr().unwrap());
    axum::serve(listener, app(state)).await.unwrap();
}
