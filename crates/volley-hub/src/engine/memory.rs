//! The in-memory engine: one process, nothing to start. Channels live in
//! shards, each behind its own lock; a publication's offset, retention and
//! delivery happen under its channel's shard lock, so every subscriber sees
//! the stream in the same order, and a subscribe (recovery read, reply, start
//! of delivery) cannot interleave with a publish.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use volley::{Message, PreparedFrame};

use super::{
    ChannelSummary, Engine, EngineFuture, HistoryError, HistoryQuery, HistoryResult,
    NewPublication, PublishResult, ReplyEncoder, SubscribeOutcome, SubscribeRequest, Subscriber,
};
use crate::config::NamespaceOptions;
use crate::protocol::{self, ClientInfo, Publication};
use crate::sync::lock;

const SHARDS: usize = 32;

/// The in-memory engine.
#[derive(Debug)]
pub struct MemoryEngine {
    shards: Box<[Mutex<Shard>]>,
}

type Shard = HashMap<Box<str>, ChannelState>;

#[derive(Debug, Default)]
struct ChannelState {
    stream: Option<Stream>,
    subscribers: HashMap<u64, Subscriber>,
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

impl ChannelState {
    /// No subscribers and no stream worth keeping.
    fn is_idle(&self, now: Instant) -> bool {
        self.subscribers.is_empty() && self.stream.as_ref().is_none_or(|s| s.keep_until <= now)
    }

    /// The channel's live stream: `None` when it has none or it expired.
    fn live_stream(&mut self, now: Instant) -> Option<&mut Stream> {
        if self.is_idle(now) {
            self.stream = None;
        }
        self.stream.as_mut()
    }

    /// The channel's stream, created (new epoch) when there is none.
    fn stream(&mut self, now: Instant, options: &NamespaceOptions) -> &mut Stream {
        if self.is_idle(now) {
            self.stream = None;
        }
        let stream = self.stream.get_or_insert_with(|| Stream::new(now, options));
        stream.trim(now, options.history_size);
        stream
    }

    fn deliver(&self, frame: &PreparedFrame, at: Option<Instant>, except: Option<u64>) {
        for (key, sub) in &self.subscribers {
            if Some(*key) != except {
                sub.outbox.push(frame, at);
            }
        }
    }
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        lock(&self.shards[(h.finish() as usize) % SHARDS])
    }

    fn publish_now(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        publication: NewPublication,
    ) -> PublishResult {
        let mut shard = self.shard(channel);
        let state = shard.entry(channel.into()).or_default();
        let mut result = PublishResult::default();
        let now = Instant::now();
        let offset = if options.has_history() {
            let stream = state.stream(now, options);
            stream.published(now, options);
            stream.top += 1;
            result.epoch = Some(stream.epoch.clone());
            result.offset = Some(stream.top);
            Some(stream.top)
        } else {
            None
        };
        let at = publication.at;
        let publication = Arc::new(Publication {
            offset,
            data: publication.data,
            info: publication.info,
        });
        let frame = text_frame(protocol::publication_push(channel, &publication));
        state.deliver(&frame, Some(at), None);
        if let Some(stream) = &mut state.stream
            && offset.is_some()
        {
            stream.retained.push_back(Retained {
                expires: now + options.history_ttl(),
                publication,
            });
            stream.trim(now, options.history_size);
        }
        if state.is_idle(now) {
            shard.remove(channel);
        }
        result
    }

    fn subscribe_now(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        subscriber: Subscriber,
        request: SubscribeRequest,
        reply: ReplyEncoder,
    ) {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        let state = shard.entry(channel.into()).or_default();
        let mut outcome = SubscribeOutcome {
            recoverable: false,
            epoch: None,
            offset: None,
            recovered: false,
            publications: Vec::new(),
            join_leave: options.join_leave,
            presence: None,
        };
        if options.has_history() {
            let stream = state.stream(now, options);
            outcome.recoverable = true;
            outcome.epoch = Some(stream.epoch.clone());
            outcome.offset = Some(stream.top);
            if let Some(pos) = &request.recover {
                let ok = *pos.epoch == *stream.epoch
                    && pos.offset <= stream.top
                    && pos.offset + 1 >= stream.oldest();
                if ok {
                    outcome.recovered = true;
                    outcome.publications =
                        stream.range(pos.offset + 1, stream.top).cloned().collect();
                }
            }
        }
        let key = subscriber.key;
        let info = subscriber.info.clone();
        let outbox = subscriber.outbox.clone();
        state.subscribers.insert(key, subscriber);
        if request.presence && options.presence {
            outcome.presence = Some(state.subscribers.values().map(|s| s.info.clone()).collect());
        }
        outbox.reply(reply(&outcome));
        if options.join_leave {
            let frame = text_frame(protocol::presence_push("join", channel, &info));
            state.deliver(&frame, None, None);
        }
    }

    fn unsubscribe_now(&self, channel: &str, options: &NamespaceOptions, key: u64) -> bool {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        let Some(state) = shard.get_mut(channel) else {
            return false;
        };
        let Some(sub) = state.subscribers.remove(&key) else {
            return false;
        };
        if options.join_leave && !state.subscribers.is_empty() {
            let frame = text_frame(protocol::presence_push("leave", channel, &sub.info));
            state.deliver(&frame, None, None);
        }
        if state.is_idle(now) {
            shard.remove(channel);
        }
        true
    }

    fn history_now(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        query: HistoryQuery,
    ) -> Result<HistoryResult, HistoryError> {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        // Reading history neither creates nor prolongs a stream: a channel
        // without one answers with an epoch of its own and nothing in it.
        let Some(stream) = shard.get_mut(channel).and_then(|s| s.live_stream(now)) else {
            if shard.get(channel).is_some_and(|s| s.is_idle(now)) {
                shard.remove(channel);
            }
            return match query.since {
                Some(_) => Err(HistoryError::Unrecoverable),
                None => Ok(HistoryResult {
                    epoch: new_epoch().into(),
                    offset: 0,
                    publications: Vec::new(),
                }),
            };
        };
        stream.trim(now, options.history_size);
        let limit = query.limit.unwrap_or(usize::MAX);
        let top = stream.top;
        let publications: Vec<_> = match (&query.since, query.reverse) {
            (None, false) => stream.range(0, top).take(limit).cloned().collect(),
            (None, true) => stream.range(0, top).rev().take(limit).cloned().collect(),
            (Some(since), false) => {
                if *since.epoch != *stream.epoch
                    || since.offset > top
                    || stream.oldest() > since.offset + 1
                {
                    return Err(HistoryError::Unrecoverable);
                }
                stream
                    .range(since.offset + 1, top)
                    .take(limit)
                    .cloned()
                    .collect()
            }
            (Some(since), true) => {
                if *since.epoch != *stream.epoch || since.offset > top + 1 {
                    return Err(HistoryError::Unrecoverable);
                }
                match since.offset.checked_sub(1) {
                    Some(to) => stream.range(0, to).rev().take(limit).cloned().collect(),
                    None => Vec::new(),
                }
            }
        };
        Ok(HistoryResult {
            epoch: stream.epoch.clone(),
            offset: top,
            publications,
        })
    }
}

fn text_frame(json: String) -> PreparedFrame {
    PreparedFrame::new(&Message::text(json))
}

/// A new epoch: 8 random URL-safe characters.
fn new_epoch() -> String {
    use base64::Engine as _;
    let bytes: [u8; 6] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Engine for MemoryEngine {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        publication: NewPublication,
    ) -> EngineFuture<'a, PublishResult> {
        let result = self.publish_now(channel, options, publication);
        Box::pin(std::future::ready(Ok(result)))
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        subscriber: Subscriber,
        request: SubscribeRequest,
        reply: ReplyEncoder,
    ) -> EngineFuture<'a, ()> {
        self.subscribe_now(channel, options, subscriber, request, reply);
        Box::pin(std::future::ready(Ok(())))
    }

    fn unsubscribe<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        key: u64,
    ) -> EngineFuture<'a, bool> {
        let existed = self.unsubscribe_now(channel, options, key);
        Box::pin(std::future::ready(Ok(existed)))
    }

    fn presence<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Vec<ClientInfo>> {
        let shard = self.shard(channel);
        let list = shard
            .get(channel)
            .map(|s| s.subscribers.values().map(|s| s.info.clone()).collect())
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(list)))
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        query: HistoryQuery,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HistoryResult, HistoryError>> + Send + 'a>,
    > {
        let result = self.history_now(channel, options, query);
        Box::pin(std::future::ready(result))
    }

    fn channels(&self) -> EngineFuture<'_, Vec<ChannelSummary>> {
        let now = Instant::now();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (name, state) in shard.iter().filter(|(_, s)| !s.is_idle(now)) {
                out.push(ChannelSummary {
                    channel: name.to_string(),
                    num_clients: state.subscribers.len(),
                    offset: state.stream.as_ref().map(|s| s.top),
                });
            }
        }
        out.sort_by(|a, b| a.channel.cmp(&b.channel));
        Box::pin(std::future::ready(Ok(out)))
    }

    fn maintain(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.retain(|_, state| {
                if let Some(stream) = &mut state.stream {
                    while stream.retained.front().is_some_and(|r| r.expires <= now) {
                        stream.retained.pop_front();
                    }
                }
                !state.is_idle(now)
            });
        }
    }
}
