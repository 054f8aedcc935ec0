//! Engines: what the hub needs from the world outside one node.
//!
//! The split follows the hub's concerns. The hub owns this node's subscriber
//! map, the encode-once fan-out and the reply-before-pushes rule
//! (`crate::fanout`). An engine is a [`Broker`] (streams: offsets, epochs and
//! history; publications, join/leave and control messages between nodes) and
//! a [`PresenceStore`]. The memory engine ([`memory`]) serves one process; the
//! Redis engine ([`redis`]) many nodes. Both pass the same conformance kit
//! (`tests/engine.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::{EngineKind, HubConfig, NamespaceOptions};
use crate::protocol::{ClientInfo, Publication, StreamPosition};

pub mod memory;
pub mod redis;

pub use memory::{MemoryBroker, MemoryPresence};

/// An engine operation.
pub type EngineFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'a>>;

/// An engine failure (error 100 to the client, temporary).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The backing store is unavailable: the operation was not done.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The operation was sent to the backing store but its answer never
    /// came (the connection dropped, or the answer timed out): it may or
    /// may not have taken effect.
    #[error("engine outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The backing store answered something this node cannot read.
    #[error("engine protocol: {0}")]
    Protocol(String),
}

/// The result of a publish.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PublishResult {
    /// The epoch, when the channel keeps history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Arc<str>>,
    /// The new publication's offset, when the channel keeps history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// A history read (§6.8).
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// At most this many.
    pub limit: Option<usize>,
    /// Start after (or before, reversed) this position.
    pub since: Option<StreamPosition>,
    /// Newest first.
    pub reverse: bool,
    /// Create the stream (a new epoch) when there is none, and keep it
    /// `history_ttl` longer: a subscribe does, a history read does not.
    pub create: bool,
}

/// A history read's result.
#[derive(Debug, Serialize)]
pub struct HistoryResult {
    /// The current epoch.
    pub epoch: Arc<str>,
    /// The current top.
    pub offset: u64,
    /// The publications.
    pub publications: Vec<Arc<Publication>>,
}

/// Why a history read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// `since` is not in the current stream (113).
    #[error("unrecoverable position")]
    Unrecoverable,
    /// The engine failed (100).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A history read's publications, picked from a stream in `epoch` whose top
/// is `top` and oldest retained offset `oldest` (`top + 1` when it retains
/// none); `range(from, to)` yields the retained publications with offsets in
/// `from..=to`, oldest first. Both engines answer history with it.
pub(crate) fn select<'a, I>(
    epoch: &str,
    top: u64,
    oldest: u64,
    query: &HistoryQuery,
    range: impl Fn(u64, u64) -> I,
) -> Result<Vec<Arc<Publication>>, HistoryError>
where
    I: DoubleEndedIterator<Item = &'a Arc<Publication>>,
{
    let limit = query.limit.unwrap_or(usize::MAX);
    Ok(match (&query.since, query.reverse) {
        (None, false) => range(0, top).take(limit).cloned().collect(),
        (None, true) => range(0, top).rev().take(limit).cloned().collect(),
        (Some(since), false) => {
            if *since.epoch != *epoch || since.offset > top || oldest > since.offset + 1 {
                return Err(HistoryError::Unrecoverable);
            }
            let out: Vec<Arc<Publication>> =
                range(since.offset + 1, top).take(limit).cloned().collect();
            // Exactly what follows `since`: no offset missing in between,
            // and up to the top unless the limit stopped it.
            let contiguous = out
                .iter()
                .zip(since.offset + 1..)
                .all(|(p, o)| p.offset == Some(o));
            let end = since.offset + out.len() as u64;
            if !contiguous || (out.len() < limit && end != top) {
                return Err(HistoryError::Unrecoverable);
            }
            out
        }
        (Some(since), true) => {
            if *since.epoch != *epoch || since.offset > top + 1 {
                return Err(HistoryError::Unrecoverable);
            }
            match since.offset.checked_sub(1) {
                Some(to) => range(0, to).rev().take(limit).cloned().collect(),
                None => Vec::new(),
            }
        }
    })
}

/// A channel with a stream, as the broker sees it.
#[derive(Clone, Debug, Serialize)]
pub struct StreamSummary {
    /// The channel.
    pub channel: String,
    /// The stream's top.
    pub offset: u64,
}

/// A publication on its way in.
#[derive(Debug)]
pub struct NewPublication {
    /// The payload.
    pub data: Box<RawValue>,
    /// The publishing client, when a client published.
    pub info: Option<ClientInfo>,
    /// When it entered the hub.
    pub at: Instant,
}

/// `join` or `leave`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinLeave {
    /// A subscription started.
    Join,
    /// A subscription ended.
    Leave,
}

impl JoinLeave {
    /// The push's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }
}

/// An operation on connections that every node applies to its own: what
/// makes the HTTP API of any node act on the whole cluster.
// Externally tagged: an internally tagged enum cannot hold a `RawValue`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Control {
    /// Disconnect every connection of a user, or one client.
    Disconnect {
        /// The user, when targeting a user.
        #[serde(default)]
        user: Option<String>,
        /// The client id, when targeting one connection.
        #[serde(default)]
        client: Option<String>,
        /// Whether the client may reconnect (4000) or not (4501).
        reconnect: bool,
        /// The reason sent with the code, instead of the code's name.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Unsubscribe every connection of a user from a channel (§7.4).
    Unsubscribe {
        /// The user.
        user: String,
        /// The channel.
        channel: String,
        /// The `unsubscribe` push's code.
        code: u16,
        /// Its reason.
        reason: String,
    },
    /// Send a `message` push to every connection of a user.
    Send {
        /// The user.
        user: String,
        /// The payload.
        data: Box<RawValue>,
    },
}

/// One node of the cluster, as it announces itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id (random, new at each start).
    pub id: String,
    /// The node's listen address, for people reading `info`.
    pub name: String,
    /// Open WebSocket connections.
    pub num_connections: usize,
    /// Distinct connected users.
    pub num_users: usize,
    /// Active subscriptions.
    pub num_subscriptions: i64,
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
    /// Channels with local subscribers, and how many.
    pub channels: Vec<(String, usize)>,
}

/// What a broker delivers to its node. Calls for one channel come in the
/// order the broker received them; the hub checks offsets and fills holes.
pub trait BrokerEvents: Send + Sync + 'static {
    /// A publication of a channel this node is subscribed to. `epoch` is set
    /// when the channel keeps history.
    fn publication(
        &self,
        channel: &str,
        epoch: Option<Arc<str>>,
        publication: Arc<Publication>,
        at: Instant,
    );

    /// A join or leave in a channel this node is subscribed to.
    fn join_leave(&self, channel: &str, kind: JoinLeave, info: ClientInfo);

    /// A control message published by another node.
    fn control(&self, control: Control);

    /// Publications of these channels may have been missed (a dropped
    /// connection to the broker): the hub compares what it delivered with
    /// each stream and fills or signals the hole.
    fn resync(&self, channels: Vec<String>);
}

/// Streams and messaging between nodes.
///
/// Node-level `subscribe`/`unsubscribe` calls take effect in the order they
/// are made (the call, not the await, fixes the order), so that an
/// unsubscribe followed by a subscribe leaves the node subscribed.
pub trait Broker: Send + Sync + 'static {
    /// Starts delivering events to `events`. Called once, before any other
    /// method.
    fn run(&self, events: Arc<dyn BrokerEvents>);

    /// Assigns the next offset (with history), retains the publication and
    /// sends it to every node subscribed to the channel.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        publication: NewPublication,
    ) -> EngineFuture<'a, PublishResult>;

    /// Sends a join or leave to every node subscribed to the channel.
    fn publish_join_leave<'a>(
        &'a self,
        channel: &'a str,
        kind: JoinLeave,
        info: &'a ClientInfo,
    ) -> EngineFuture<'a, ()>;

    /// Sends a control message to every other node.
    fn publish_control<'a>(&'a self, control: &'a Control) -> EngineFuture<'a, ()>;

    /// This node starts receiving the channel's events. The order is fixed
    /// by the call; the future says when it is done.
    fn subscribe(&self, channel: &str) -> EngineFuture<'static, ()>;

    /// This node stops receiving the channel's events.
    fn unsubscribe(&self, channel: &str) -> EngineFuture<'static, ()>;

    /// Reads the stream. Without `query.create`, a channel without a stream
    /// answers with an epoch of its own and nothing in it (and a `since`
    /// with 113); with it, the stream is created and kept `history_ttl`
    /// longer.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        query: HistoryQuery,
    ) -> Pin<Box<dyn Future<Output = Result<HistoryResult, HistoryError>> + Send + 'a>>;

    /// Ends the stream if its epoch is still `epoch` (the next read or
    /// publish starts a new epoch): used when the stream's top went back.
    fn reset_stream<'a>(&'a self, channel: &'a str, epoch: &'a str) -> EngineFuture<'a, ()>;

    /// Channels with a stream that this broker can list cheaply.
    fn streams(&self) -> EngineFuture<'_, Vec<StreamSummary>>;

    /// Announces this node (called every few seconds).
    fn announce<'a>(&'a self, node: &'a NodeInfo) -> EngineFuture<'a, ()>;

    /// The other live nodes.
    fn nodes(&self) -> EngineFuture<'_, Vec<NodeInfo>>;

    /// Whether the broker can serve now (`/health/ready`).
    fn is_ready(&self) -> bool {
        true
    }

    /// Periodic housekeeping; called every few seconds.
    fn maintain(&self) {}
}

/// Who is subscribed to a channel, across the cluster.
pub trait PresenceStore: Send + Sync + 'static {
    /// Adds (or refreshes) a client's entry.
    fn add<'a>(&'a self, channel: &'a str, info: &'a ClientInfo) -> EngineFuture<'a, ()>;

    /// Removes a client's entry.
    fn remove<'a>(&'a self, channel: &'a str, client: &'a str) -> EngineFuture<'a, ()>;

    /// The channel's entries.
    fn presence<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Vec<ClientInfo>>;

    /// Whether entries expire unless refreshed (the hub then refreshes its
    /// own every [`PresenceStore::refresh_interval`]).
    fn refresh_interval(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A broker and a presence store: what the hub runs on.
#[derive(Clone)]
pub struct Engine {
    /// Streams and messaging.
    pub broker: Arc<dyn Broker>,
    /// Presence.
    pub presence: Arc<dyn PresenceStore>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// The memory engine: one process.
    pub fn memory() -> Self {
        Self {
            broker: Arc::new(MemoryBroker::new()),
            presence: Arc::new(MemoryPresence::new()),
        }
    }

    /// The engine the configuration names. The Redis engine connects in
    /// the background: the node starts even while Redis is down.
    pub fn from_config(config: &HubConfig) -> Result<Self, redis::RedisConfigError> {
        match config.engine {
            EngineKind::Memory => Ok(Self::memory()),
            EngineKind::Redis => {
                let engine = redis::RedisEngine::new(&config.redis_url, &config.redis)?;
                Ok(Self {
                    broker: engine.clone(),
                    presence: engine,
                })
            }
        }
    }
}
