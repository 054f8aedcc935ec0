//! # volley-hub
//!
//! Volley's realtime hub, the library behind `volley serve`: channels with
//! namespaces, presence, history with exact recovery after a reconnect, JWT
//! authentication, an HTTP API for application backends, Prometheus metrics,
//! limits with a slow-consumer policy, and a graceful drain.
//!
//! Clients speak `volley.v1` (docs/protocol.md) over a WebSocket at
//! `/connection/websocket`; backends use the HTTP API (docs/http-api.md).
//!
//! ```no_run
//! # async fn run() -> Result<(), volley_hub::ServeError> {
//! let server = volley_hub::Server::bind(volley_hub::HubConfig::demo()).await?;
//! println!("listening on {}", server.local_addr().map_err(|e| volley_hub::ServeError::Tls(e.to_string()))?);
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod assets;
pub mod auth;
pub mod channel;
pub mod config;
pub mod demo;
pub mod engine;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod protocol;
pub mod server;
mod session;
mod sync;

pub use config::{ConfigError, HubConfig, Limits, NamespaceOptions};
pub use engine::{Engine, MemoryEngine};
pub use hub::Hub;
pub use server::{DrainReport, ServeError, Server};
