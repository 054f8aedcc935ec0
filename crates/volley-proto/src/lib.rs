//! # volley-proto
//!
//! A sans-IO implementation of the WebSocket protocol (RFC 6455) with
//! permessage-deflate (RFC 7692), for both roles. No sockets, no async, no
//! clock: bytes in, events and bytes out, time as an argument. The `volley`
//! crate drives it over tokio; any other runtime can do the same.
//!
//! ```
//! use std::time::Instant;
//! use volley_proto::{Config, Connection, Event, Message, Role};
//!
//! let mut client = Connection::new(Role::Client, Config::default(), None);
//! let mut server = Connection::new(Role::Server, Config::default(), None);
//! client.send(&Message::text("hello")).unwrap();
//! let mut wire = Vec::new();
//! client.poll_transmit(&mut wire);
//! server.receive(&wire);
//! assert_eq!(server.poll_event(), Some(Event::Message(Message::text("hello"))));
//! # let _ = Instant::now();
//! ```
//!
//! Every limit is in [`Config`]; defaults are documented in `docs/limits.md`.

#![deny(unsafe_code)] // one audited exception: frame::mask::simd (AVX2 masking)

pub mod config;
pub mod conn;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod headers;
pub mod message;

pub use config::{Config, ConfigBuilder, HeadLimits};
pub use conn::{Connection, Event, Keepalive, MessageKind, Role, State};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{ConfigError, ProtocolError, SendError};
pub use frame::{CloseCode, PreparedFrame, PreparedFrames};
pub use message::{CloseFrame, Message, Utf8Bytes};
