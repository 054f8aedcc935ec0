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
//! let server = volley_hub::Server::bind(volley_hub::HubConfig::demo()).await?.with_demo();
//! println!("listening on {:?}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod assets;
mod auth;
mod budget;
mod channel;
mod client_ip;
mod commands;
mod config;
mod demo;
mod direct;
pub mod engine;
mod fallback;
mod fanout;
mod http;
mod hub;
mod jwks;
mod key_order;
mod lane;
mod metrics;
mod outbox;
mod protocol;
mod proxy_protocol;
mod server;
mod session;
mod subscribe;
mod sync;
mod throttle;
mod transport;

pub use auth::sign_hs256;
pub use budget::{QueueBudget, default_budget};
pub use config::{
    AuthConfig, ConfigError, DEFAULT_LISTEN_BACKLOG, DrainConfig, EngineKind, HubConfig, KeyConfig,
    Limits, NamespaceOptions, RedisOptions, RedisUrls, TlsConfig,
};
pub use engine::{Broker, Engine, PresenceStore, PublishResult};
pub use hub::{Hub, Info, Target, VERSION};
pub use metrics::Metrics;
pub use outbox::Outbox;
pub use protocol::{ClientInfo, ErrorCode, Publication, StreamPosition};
pub use server::{DrainReport, ServeError, Server, TlsError, listen};
