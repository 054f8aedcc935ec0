//! The fallback transports of docs/protocol.md ("Transports"), for clients
//! whose network blocks WebSocket: the server's messages by Server-Sent
//! Events (`GET /connection/sse`) or by long-polling (`/connection/poll`),
//! the client's commands by `POST /connection/send`.
//!
//! A fallback session is one connection of the hub, run by the same command
//! loop as a WebSocket (`crate::session` over the [`carrier::Carrier`]
//! transport): it counts in the connection limits, presence, metrics and
//! the drain alike. Its HTTP requests find it by its id in [`Sessions`].

mod carrier;
mod link;
mod routes;
mod sse;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

pub(crate) use link::Link;
pub(crate) use routes::{close, cors, poll, poll_open, send, sse};

/// The open fallback sessions of this node, by id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<Box<str>, Arc<Link>>>,
}

impl Sessions {
    /// Registers a session under a new id: 128 random bits, URL-safe base64
    /// without padding (22 characters). The id is a capability: whoever has
    /// it can act as the session, so it is never logged.
    pub(crate) fn insert(&self, link: Arc<Link>) -> String {
        let mut map = crate::sync::lock(&self.map);
        loop {
            let bytes: [u8; 16] = rand::random();
            let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            if !map.contains_key(id.as_str()) {
                map.insert(id.as_str().into(), link);
                return id;
            }
        }
    }

    /// The session with this id.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Link>> {
        crate::sync::lock(&self.map).get(id).cloned()
    }

    /// Forgets a session (later requests get 404).
    pub(crate) fn remove(&self, id: &str) {
        crate::sync::lock(&self.map).remove(id);
    }
}
