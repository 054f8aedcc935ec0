//! The in-memory engine: one process, nothing to start. Streams live in
//! shards, each behind its own lock; a publication's offset, retention and
//! hand-off to the hub happen under its channel's shard lock, so the hub
//! receives every channel's publications in offset order.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use super::{
    Broker, BrokerEvents, Control, EngineFuture, HistoryError, HistoryQuery, HistoryResult,
    JoinLeave, NewPublication, NodeInfo, PresenceStore, PublishResult, StreamSummary,
};
use crate::config::NamespaceOptions;
use crate::protocol::{ClientInfo, Publication};
use crate::sync::lock;

const SHARDS: usize = 32;

/// The in-memory broker.
pub struct MemoryBroker {
    shards: Box<[Mutex<Shard>]>,
    /// The channels this node is subscribed to, whose streams are kept
    /// while they have subscribers; by the same index as `shards`, under
    /// locks of their own that are always taken last. The fan-out
    /// subscribes and unsubscribes under its lock, and a publication takes
    /// that lock under a shard's: were these sets in the shards, two
    /// threads could each hold one lock and wait for the other (two clients
    /// leaving a channel with join/leave at once, on two threads, did).
    subscribed: Box<[Mutex<HashSet<Box<str>>>]>,
    events: OnceLock<Arc<dyn BrokerEvents>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").finish_non_exhaustive()
    }
}

/// One shard: the streams.
#[derive(Debug, Default)]
struct Shard {
    streams: HashMap<Box<str>, Stream>,
}

#[derive(Debug)]
struct Stream {
    epoch: Arc<str>,
    top: u64,
    retained: VecDeque<Retained>,
    /// The stream (epoch and top) is kept `history_ttl` after the channel's
    /// last publication (or its creation), and for as long as the channel
    /// has subscribers, whose positions stay valid; then it is gone, and a
    /// new epoch starts with the next publication or subscribe.
    keep_until: Instant,
}

#[derive(Debug)]
struct Retained {
    expires: Instant,
    publication: Arc<Publication>,
}

impl Stream {
    fn new(now: Instant, options: &NamespaceOptions) -> Self {
        Self {
            epoch: new_epoch().into(),
            top: 0,
            retained: VecDeque::new(),
            keep_until: now + options.history_ttl(),
        }
    }

    fn published(&mut self, now: Instant, options: &NamespaceOptions) {
        self.keep_until = now + options.history_ttl();
    }

    fn trim(&mut self, now: Instant, size: usize) {
        while self.retained.len() > size || self.retained.front().is_some_and(|r| r.expires <= now)
        {
            self.retained.pop_front();
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.keep_until <= now
    }

    /// The oldest retained offset; `top + 1` when nothing is retained.
    fn oldest(&self) -> u64 {
        self.retained
            .front()
            .and_then(|r| r.publication.offset)
            .unwrap_or(self.top + 1)
    }

    /// Publications with offsets in `from..=to`.
    fn range(&self, from: u64, to: u64) -> impl DoubleEndedIterator<Item = &Arc<Publication>> {
        let oldest = self.oldest();
        let skip = from.saturating_sub(oldest) as usize;
        let take = (to + 1).saturating_sub(from.max(oldest)) as usize;
        self.retained
            .iter()
            .skip(skip)
            .take(take)
            .map(|r| &r.publication)
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            subscribed: (0..SHARDS).map(|_| Mutex::default()).collect(),
            events: OnceLock::new(),
        }
    }

    fn index(channel: &str) -> usize {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        (h.finish() as usize) % SHARDS
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        lock(&self.shards[Self::index(channel)])
    }

    /// The subscribed channels of `channel`'s shard (a lock taken last:
    /// nothing else is locked while it is held).
    fn subscribed(&self, channel: &str) -> MutexGuard<'_, HashSet<Box<str>>> {
        lock(&self.subscribed[Self::index(channel)])
    }

    /// The channel's live stream, trimmed; `None` when it has none or it
    /// expired (it is then dropped).
    fn live<'s>(
        &self,
        shard: &'s mut Shard,
        channel: &str,
        now: Instant,
        options: &NamespaceOptions,
    ) -> Option<&'s mut Stream> {
        let kept = self.subscribed(channel).contains(channel);
        if !kept && shard.streams.get(channel).is_some_and(|s| s.expired(now)) {
            shard.streams.remove(channel);
        }
        let stream = shard.streams.get_mut(channel)?;
        stream.trim(now, options.history_size);
        Some(stream)
    }

    /// The channel's stream, created (new epoch) when there is none.
    fn stream<'s>(
        &self,
        shard: &'s mut Shard,
        channel: &str,
        now: Instant,
        options: &NamespaceOptions,
    ) -> &'s mut Stream {
        // Drops an expired stream first.
        let _ = self.live(shard, channel, now, options);
        shard
            .streams
            .entry(channel.into())
            .or_insert_with(|| Stream::new(now, options))
    }

    fn publish_now(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        publication: NewPublication,
    ) -> PublishResult {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        let mut result = PublishResult::default();
        let at = publication.at;
        let mut publication = Publication {
            offset: None,
            data: publication.data,
            info: publication.info,
        };
        let events = self.events.get();
        if !options.has_history() {
            if let Some(events) = events {
                events.publication(channel, None, Arc::new(publication), at);
            }
            return result;
        }
        let stream = self.stream(&mut shard, channel, now, options);
        stream.published(now, options);
        stream.top += 1;
        publication.offset = Some(stream.top);
        let publication = Arc::new(publication);
        result.epoch = Some(stream.epoch.clone());
        result.offset = Some(stream.top);
        stream.retained.push_back(Retained {
            expires: now + options.history_ttl(),
            publication: publication.clone(),
        });
        stream.trim(now, options.history_size);
        if let Some(events) = events {
            events.publication(channel, Some(stream.epoch.clone()), publication, at);
        }
        result
    }

    fn history_now(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        query: HistoryQuery,
    ) -> Result<HistoryResult, HistoryError> {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        let stream = if query.create {
            self.stream(&mut shard, channel, now, options)
        } else {
            // Reading history neither creates nor prolongs a stream: a
            // channel without one answers with an epoch of its own and
            // nothing in it.
            match self.live(&mut shard, channel, now, options) {
                Some(stream) => stream,
                None => {
                    return match query.since {
                        Some(_) => Err(HistoryError::Unrecoverable),
                        None => Ok(HistoryResult {
                            epoch: new_epoch().into(),
                            offset: 0,
                            publications: Vec::new(),
                        }),
                    };
                }
            }
        };
        let top = stream.top;
        let publications =
            super::select(&stream.epoch, top, stream.oldest(), &query, |from, to| {
                stream.range(from, to)
            })?;
        Ok(HistoryResult {
            epoch: stream.epoch.clone(),
            offset: top,
            publications,
        })
    }
}

/// A new epoch: 8 random URL-safe characters.
pub(crate) fn new_epoch() -> String {
    use base64::Engine as _;
    let bytes: [u8; 6] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn ready<'a, T: Send + 'a>(value: T) -> EngineFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl Broker for MemoryBroker {
    fn run(&self, events: Arc<dyn BrokerEvents>) {
        let _ = self.events.set(events);
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        publication: NewPublication,
    ) -> EngineFuture<'a, PublishResult> {
        ready(self.publish_now(channel, options, publication))
    }

    fn publish_join_leave<'a>(
        &'a self,
        channel: &'a str,
        kind: JoinLeave,
        info: &'a ClientInfo,
    ) -> EngineFuture<'a, ()> {
        if let Some(events) = self.events.get() {
            // Under the channel's lock: in order with its publications.
            let _shard = self.shard(channel);
            events.join_leave(channel, kind, info.clone());
        }
        ready(())
    }

    fn publish_control<'a>(&'a self, _control: &'a Control) -> EngineFuture<'a, ()> {
        // No other node.
        ready(())
    }

    fn subscribe(&self, channel: &str) -> EngineFuture<'static, ()> {
        self.subscribed(channel).insert(channel.into());
        ready(())
    }

    fn unsubscribe(&self, channel: &str) -> EngineFuture<'static, ()> {
        self.subscribed(channel).remove(channel);
        ready(())
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        query: HistoryQuery,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<HistoryResult, HistoryError>> + Send + 'a>>
    {
        Box::pin(std::future::ready(
            self.history_now(channel, options, query),
        ))
    }

    fn reset_stream<'a>(&'a self, channel: &'a str, epoch: &'a str) -> EngineFuture<'a, ()> {
        let mut shard = self.shard(channel);
        if shard
            .streams
            .get(channel)
            .is_some_and(|s| &*s.epoch == epoch)
        {
            shard.streams.remove(channel);
        }
        ready(())
    }

    fn streams(&self) -> EngineFuture<'_, Vec<StreamSummary>> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (shard, subscribed) in self.shards.iter().zip(self.subscribed.iter()) {
            let shard = lock(shard);
            let subscribed = lock(subscribed);
            for (name, stream) in shard.streams.iter() {
                if stream.expired(now) && !subscribed.contains(name) {
                    continue;
                }
                out.push(StreamSummary {
                    channel: name.to_string(),
                    offset: stream.top,
                });
            }
        }
        ready(out)
    }

    fn announce<'a>(&'a self, _node: &'a NodeInfo) -> EngineFuture<'a, ()> {
        ready(())
    }

    fn nodes(&self) -> EngineFuture<'_, Vec<NodeInfo>> {
        ready(Vec::new())
    }

    fn maintain(&self) {
        let now = Instant::now();
        for (shard, subscribed) in self.shards.iter().zip(self.subscribed.iter()) {
            let mut shard = lock(shard);
            let subscribed = lock(subscribed);
            shard.streams.retain(|name, stream| {
                while stream.retained.front().is_some_and(|r| r.expires <= now) {
                    stream.retained.pop_front();
                }
                subscribed.contains(name) || !stream.expired(now)
            });
        }
    }
}

/// The entries of one channel, by client id.
type Entries = HashMap<Arc<str>, ClientInfo>;

/// The in-memory presence store: exact, nothing expires.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    channels: Mutex<HashMap<Box<str>, Entries>>,
}

impl MemoryPresence {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PresenceStore for MemoryPresence {
    fn add<'a>(&'a self, channel: &'a str, info: &'a ClientInfo) -> EngineFuture<'a, ()> {
        lock(&self.channels)
            .entry(channel.into())
            .or_default()
            .insert(info.client.clone(), info.clone());
        ready(())
    }

    fn remove<'a>(&'a self, channel: &'a str, client: &'a str) -> EngineFuture<'a, ()> {
        let mut channels = lock(&self.channels);
        if let Some(entries) = channels.get_mut(channel) {
            entries.remove(client);
            if entries.is_empty() {
                channels.remove(channel);
            }
        }
        ready(())
    }

    fn presence<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Vec<ClientInfo>> {
        let list = lock(&self.channels)
            .get(channel)
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default();
        ready(list)
    }
}
