//! Engines store channel streams (offsets, history, epochs) and presence, and
//! deliver publications to this node's subscribers. The memory engine is the
//! default; a Redis engine (several nodes) implements the same trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::value::RawValue;
use volley::PreparedFrame;

use crate::config::NamespaceOptions;
use crate::outbox::Outbox;
use crate::protocol::{ClientInfo, Publication, StreamPosition};

mod memory;

pub use memory::MemoryEngine;

/// An engine operation.
pub type EngineFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'a>>;

/// An engine failure (error 100 to the client, temporary).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The backing store is unavailable.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

/// One subscription of one connection, as the engine sees it.
#[derive(Clone, Debug)]
pub struct Subscriber {
    /// The connection's key on this node.
    pub key: u64,
    /// Where its frames go.
    pub outbox: Arc<Outbox>,
    /// Its presence entry, and the `info` of its publications.
    pub info: ClientInfo,
}

/// What a subscribe asks for.
#[derive(Clone, Debug, Default)]
pub struct SubscribeRequest {
    /// Recover from this position.
    pub recover: Option<StreamPosition>,
    /// Include a presence snapshot.
    pub presence: bool,
}

/// The outcome of a subscribe (the reply's fields, §6.3).
#[derive(Debug, Serialize)]
pub struct SubscribeOutcome {
    /// The channel keeps history.
    pub recoverable: bool,
    /// The current epoch, when recoverable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Arc<str>>,
    /// The top offset, when recoverable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Recovery was asked for and succeeded.
    pub recovered: bool,
    /// Exactly the missed publications, when recovered.
    pub publications: Vec<Arc<Publication>>,
    /// join/leave pushes are sent.
    pub join_leave: bool,
    /// The presence snapshot, when asked for and enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<Vec<ClientInfo>>,
}

/// Encodes the subscribe reply. The engine queues it to the subscriber
/// atomically with starting delivery, so that the reply comes before any
/// publication of the subscription and no publication falls between them.
pub type ReplyEncoder = Box<dyn FnOnce(&SubscribeOutcome) -> PreparedFrame + Send>;

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
pub enum HistoryError {
    /// `since` is not in the current stream (113).
    #[error("unrecoverable position")]
    Unrecoverable,
    /// The engine failed (100).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A channel with subscribers or retained history.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelSummary {
    /// The channel.
    pub channel: String,
    /// Subscribed connections on this node.
    pub num_clients: usize,
    /// The stream's top, when the channel keeps history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
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

/// The storage and delivery behind the hub.
pub trait Engine: Send + Sync + 'static {
    /// Assigns the next offset (with history), retains the publication, and
    /// delivers it, encoded once, to every subscriber of the channel.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        publication: NewPublication,
    ) -> EngineFuture<'a, PublishResult>;

    /// Subscribes: computes the outcome (recovery, presence), queues the reply
    /// made by `reply`, starts delivery, and sends `join` when enabled.
    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        subscriber: Subscriber,
        request: SubscribeRequest,
        reply: ReplyEncoder,
    ) -> EngineFuture<'a, ()>;

    /// Ends a subscription (and sends `leave` when enabled). Returns whether
    /// it existed.
    fn unsubscribe<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        key: u64,
    ) -> EngineFuture<'a, bool>;

    /// The channel's subscribers.
    fn presence<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Vec<ClientInfo>>;

    /// Reads retained publications.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        query: HistoryQuery,
    ) -> Pin<Box<dyn Future<Output = Result<HistoryResult, HistoryError>> + Send + 'a>>;

    /// Channels with subscribers or history.
    fn channels(&self) -> EngineFuture<'_, Vec<ChannelSummary>>;

    /// Periodic housekeeping (expired history); called every few seconds.
    fn maintain(&self) {}
}
