//! The Redis engine: many nodes share channels, history and presence through
//! one or more Redis servers (shards). docs/cluster.md describes the keys,
//! the guarantees and the settings.
//!
//! - A channel lives on one shard, chosen by a consistent (jump) hash of its
//!   name, so adding a shard moves only a part of the channels.
//! - A publish is one Lua script: the next offset, the epoch (made when the
//!   stream is new), the history entry, the keys' TTLs and the pub/sub
//!   message, atomically. The publishes waiting for a shard go in one call
//!   of the script (up to `redis.publish_batch`), and the calls share one
//!   multiplexed connection per shard, which pipelines them.
//! - Each node holds one pub/sub connection per shard, subscribed to the
//!   channels it has local subscribers for (and to the control channel on
//!   the first shard). When that connection drops, the node reconnects by
//!   itself and asks the hub to check every channel against its stream
//!   ([`BrokerEvents::resync`]).
//! - Presence entries carry an expiry time; the node refreshes its own.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::AsyncConnectionConfig;
use tokio::sync::oneshot;

use super::{
    Broker, BrokerEvents, Control, EngineError, EngineFuture, HistoryError, HistoryQuery,
    HistoryResult, JoinLeave, NewPublication, NodeInfo, PresenceStore, PublishResult,
    StreamSummary,
};
use crate::config::{NamespaceOptions, RedisOptions, RedisUrls};
use crate::protocol::{ClientInfo, Publication};

mod scripts;
mod shard;

use shard::{Publish, Shard, SubCommand};

/// Why the Redis engine cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// No URL.
    #[error("the redis engine needs redis_url (one URL or a list)")]
    NoUrl,
    /// A URL the client cannot use.
    #[error("redis_url {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// The Redis engine: a [`Broker`] and a [`PresenceStore`].
pub struct RedisEngine {
    shards: Vec<Arc<Shard>>,
    options: RedisOptions,
    /// This broker's id: control messages it sent come back and are skipped.
    id: String,
    events: OnceLock<Arc<dyn BrokerEvents>>,
    scripts: scripts::Scripts,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// FNV-1a: a hash that is the same on every node and every build.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Jump consistent hash (Lamping and Veach): adding a bucket moves only
/// `1/n` of the keys.
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

impl RedisEngine {
    /// An engine on these shards. Connections open in the background and
    /// reopen by themselves; nothing here waits for Redis.
    pub fn new(urls: &RedisUrls, options: &RedisOptions) -> Result<Arc<Self>, RedisConfigError> {
        if urls.0.is_empty() {
            return Err(RedisConfigError::NoUrl);
        }
        let shards = urls
            .0
            .iter()
            .map(|url| Shard::new(url, options).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Self {
            shards,
            options: options.clone(),
            id: super::memory::new_epoch(),
            events: OnceLock::new(),
            scripts: scripts::Scripts::new(),
        }))
    }

    fn shard_of(&self, channel: &str) -> &Arc<Shard> {
        &self.shards[jump(fnv1a(channel), self.shards.len())]
    }

    fn key(&self, kind: &str, channel: &str) -> String {
        format!("{}.{kind}.{channel}", self.options.prefix)
    }

    /// The pub/sub channel of a channel.
    fn pubsub_name(&self, channel: &str) -> String {
        self.key("c", channel)
    }

    fn control_name(&self) -> String {
        format!("{}.control", self.options.prefix)
    }

    fn stream_keys(&self, channel: &str) -> (String, String) {
        (self.key("s", channel), self.key("h", channel))
    }

    async fn publish_now(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        publication: NewPublication,
    ) -> Result<PublishResult, EngineError> {
        let shard = self.shard_of(channel);
        let json = serde_json::to_string(&Publication {
            offset: None,
            data: publication.data,
            info: publication.info,
        })
        .map_err(|e| EngineError::Protocol(e.to_string()))?;
        let ts = now_ms();
        let mut conn = shard.connection().await?;
        if !options.has_history() {
            let message = format!("q {ts} {json}");
            let r: Result<(), _> = redis::cmd("PUBLISH")
                .arg(self.pubsub_name(channel))
                .arg(message)
                .query_async(&mut conn)
                .await;
            shard.check(r)?;
            return Ok(PublishResult::default());
        }
        let (stream, list) = self.stream_keys(channel);
        let (epoch, offset) = shard
            .publish(
                Publish {
                    stream,
                    list,
                    new_epoch: super::memory::new_epoch(),
                    ttl: options.history_ttl,
                    size: options.history_size,
                    ts,
                    json,
                    pubsub: self.pubsub_name(channel),
                },
                &self.scripts.publish,
            )
            .await?;
        if self.options.durable_replicas > 0 {
            let acked: Result<u32, _> = redis::cmd("WAIT")
                .arg(self.options.durable_replicas)
                .arg(self.options.durable_timeout_ms)
                .query_async(&mut conn)
                .await;
            let acked = shard.check(acked)?;
            if acked < self.options.durable_replicas {
                // Stored on the master, maybe lost in a failover.
                return Err(EngineError::OutcomeUnknown(format!(
                    "publication {offset} in {channel} reached {acked} of {} replicas",
                    self.options.durable_replicas
                )));
            }
        }
        Ok(PublishResult {
            epoch: Some(epoch.into()),
            offset: Some(offset),
        })
    }

    async fn history_now(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        query: HistoryQuery,
    ) -> Result<HistoryResult, HistoryError> {
        let shard = self.shard_of(channel);
        let (meta, list) = self.stream_keys(channel);
        let fetch = query.limit != Some(0) || query.since.is_some();
        let mut conn = shard.connection().await?;
        let r: Result<(String, u64, Vec<String>), _> = self
            .scripts
            .read
            .key(meta)
            .key(list)
            .arg(super::memory::new_epoch())
            .arg(options.history_ttl)
            .arg(u8::from(fetch))
            .arg(u8::from(query.create))
            .invoke_async(&mut conn)
            .await;
        let (epoch, top, entries) = shard.check(r)?;
        let epoch: Arc<str> = epoch.into();
        // Entries older than the TTL are left out, as the memory engine
        // drops them.
        let oldest_ms = now_ms().saturating_sub(options.history_ttl.saturating_mul(1000));
        let mut retained = Vec::with_capacity(entries.len());
        for entry in &entries {
            let (offset, ts, json) = parse_entry(entry)?;
            if ts > oldest_ms {
                let mut publication: Publication = serde_json::from_str(json)
                    .map_err(|e| EngineError::Protocol(format!("history of {channel}: {e}")))?;
                publication.offset = Some(offset);
                retained.push(Arc::new(publication));
            }
        }
        let oldest = retained.first().and_then(|p| p.offset).unwrap_or(top + 1);
        let publications = super::select(&epoch, top, oldest, &query, |from, to| {
            retained
                .iter()
                .filter(move |p| p.offset.is_some_and(|o| o >= from && o <= to))
        })?;
        Ok(HistoryResult {
            epoch,
            offset: top,
            publications,
        })
    }

    /// The first shard: node announcements and control messages.
    fn first(&self) -> &Arc<Shard> {
        &self.shards[0]
    }

    /// A node's announcement.
    fn node_key(&self, id: &str) -> String {
        format!("{}.node.{id}", self.options.prefix)
    }

    /// The index of live nodes: a sorted set of node ids scored by the time
    /// (ms) their announcement expires.
    fn nodes_index(&self) -> String {
        format!("{}.nodes", self.options.prefix)
    }

    /// The nodes whose announcement has not expired: the ids from the index
    /// (never a scan of the keyspace), then their announcements.
    async fn nodes_now(&self) -> Result<Vec<NodeInfo>, EngineError> {
        let shard = self.first();
        let mut conn = shard.connection().await?;
        let r: Result<Vec<String>, _> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.nodes_index())
            .arg(now_ms())
            .arg("+inf")
            .query_async(&mut conn)
            .await;
        let ids = shard.check(r)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.node_key(id)).collect();
        let r: Result<Vec<Option<String>>, _> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await;
        let values = shard.check(r)?;
        let mut nodes: Vec<NodeInfo> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str(&v).ok())
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(nodes)
    }

    /// Writes this node's announcement and its place in the index, and
    /// drops the index's expired entries, in one transaction.
    async fn announce_now(&self, node: &NodeInfo) -> Result<(), EngineError> {
        let shard = self.first();
        let json = serde_json::to_string(node).map_err(|e| EngineError::Protocol(e.to_string()))?;
        let ttl = self.options.node_heartbeat_ms.saturating_mul(3);
        let now = now_ms();
        let index = self.nodes_index();
        let mut conn = shard.connection().await?;
        let r: Result<(), _> = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.node_key(&node.id))
            .arg(json)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("ZADD")
            .arg(&index)
            .arg(now.saturating_add(ttl))
            .arg(&node.id)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore()
            // The index goes when the last node stops announcing itself.
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(ttl)
            .ignore()
            .query_async(&mut conn)
            .await;
        shard.check(r)
    }
}

/// Reads `offset ts json`.
fn parse_entry(entry: &str) -> Result<(u64, u64, &str), EngineError> {
    let bad = || EngineError::Protocol(format!("history entry {entry:.40}"));
    let (offset, rest) = entry.split_once(' ').ok_or_else(bad)?;
    let (ts, json) = rest.split_once(' ').ok_or_else(bad)?;
    Ok((
        offset.parse().map_err(|_| bad())?,
        ts.parse().map_err(|_| bad())?,
        json,
    ))
}

/// The local instant of a wall-clock time in milliseconds (for the delivery
/// latency histogram).
fn instant_of(ts: u64) -> Instant {
    let now = now_ms();
    Instant::now()
        .checked_sub(Duration::from_millis(now.saturating_sub(ts)))
        .unwrap_or_else(Instant::now)
}

/// Hands one message of a channel to the hub.
fn deliver(events: &dyn BrokerEvents, channel: &str, payload: &str) -> Result<(), EngineError> {
    let bad = |what: &str| EngineError::Protocol(format!("{what}: {payload:.60}"));
    let (kind, rest) = payload.split_once(' ').ok_or_else(|| bad("no kind"))?;
    match kind {
        "p" => {
            let (epoch, rest) = rest.split_once(' ').ok_or_else(|| bad("no epoch"))?;
            let (offset, ts, json) = parse_entry(rest)?;
            let mut publication: Publication =
                serde_json::from_str(json).map_err(|_| bad("publication"))?;
            publication.offset = Some(offset);
            events.publication(
                channel,
                Some(epoch.into()),
                Arc::new(publication),
                instant_of(ts),
            );
        }
        "q" => {
            let (ts, json) = rest.split_once(' ').ok_or_else(|| bad("no time"))?;
            let ts: u64 = ts.parse().map_err(|_| bad("time"))?;
            let publication: Publication =
                serde_json::from_str(json).map_err(|_| bad("publication"))?;
            events.publication(channel, None, Arc::new(publication), instant_of(ts));
        }
        "j" | "l" => {
            let info: ClientInfo = serde_json::from_str(rest).map_err(|_| bad("client info"))?;
            let kind = if kind == "j" {
                JoinLeave::Join
            } else {
                JoinLeave::Leave
            };
            events.join_leave(channel, kind, info);
        }
        _ => return Err(bad("unknown kind")),
    }
    Ok(())
}

impl Broker for RedisEngine {
    fn run(&self, events: Arc<dyn BrokerEvents>) {
        if self.events.set(events).is_err() {
            return;
        }
        // The engine lives as long as the hub; the readers hold only what
        // they need.
        for (i, shard) in self.shards.iter().enumerate() {
            let control = (i == 0).then(|| self.control_name());
            let handler = self.handler();
            shard.start(control, handler, self.scripts.publish.clone());
        }
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        publication: NewPublication,
    ) -> EngineFuture<'a, PublishResult> {
        Box::pin(self.publish_now(channel, options, publication))
    }

    fn publish_join_leave<'a>(
        &'a self,
        channel: &'a str,
        kind: JoinLeave,
        info: &'a ClientInfo,
    ) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let shard = self.shard_of(channel);
            let json =
                serde_json::to_string(info).map_err(|e| EngineError::Protocol(e.to_string()))?;
            let tag = match kind {
                JoinLeave::Join => "j",
                JoinLeave::Leave => "l",
            };
            let mut conn = shard.connection().await?;
            let r: Result<(), _> = redis::cmd("PUBLISH")
                .arg(self.pubsub_name(channel))
                .arg(format!("{tag} {json}"))
                .query_async(&mut conn)
                .await;
            shard.check(r)
        })
    }

    fn publish_control<'a>(&'a self, control: &'a Control) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let shard = self.first();
            let json =
                serde_json::to_string(control).map_err(|e| EngineError::Protocol(e.to_string()))?;
            let mut conn = shard.connection().await?;
            let r: Result<(), _> = redis::cmd("PUBLISH")
                .arg(self.control_name())
                .arg(format!("{} {json}", self.id))
                .query_async(&mut conn)
                .await;
            shard.check(r)
        })
    }

    fn subscribe(&self, channel: &str) -> EngineFuture<'static, ()> {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .shard_of(channel)
            .command(SubCommand::Subscribe(self.pubsub_name(channel), tx));
        Box::pin(async move {
            sent?;
            rx.await
                .map_err(|_| unavailable("the pub/sub connection stopped"))?
        })
    }

    fn unsubscribe(&self, channel: &str) -> EngineFuture<'static, ()> {
        let sent = self
            .shard_of(channel)
            .command(SubCommand::Unsubscribe(self.pubsub_name(channel)));
        Box::pin(std::future::ready(sent))
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        options: &'a NamespaceOptions,
        query: HistoryQuery,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<HistoryResult, HistoryError>> + Send + 'a>>
    {
        Box::pin(self.history_now(channel, options, query))
    }

    fn reset_stream<'a>(&'a self, channel: &'a str, epoch: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let shard = self.shard_of(channel);
            let (meta, list) = self.stream_keys(channel);
            let mut conn = shard.connection().await?;
            let r: Result<i64, _> = self
                .scripts
                .reset
                .key(meta)
                .key(list)
                .arg(epoch)
                .invoke_async(&mut conn)
                .await;
            shard.check(r).map(|_| ())
        })
    }

    fn streams(&self) -> EngineFuture<'_, Vec<StreamSummary>> {
        // Listing every stream would scan the keyspace: channels come from
        // the nodes' announcements instead.
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn announce<'a>(&'a self, node: &'a NodeInfo) -> EngineFuture<'a, ()> {
        Box::pin(self.announce_now(node))
    }

    fn nodes(&self) -> EngineFuture<'_, Vec<NodeInfo>> {
        Box::pin(self.nodes_now())
    }

    fn is_ready(&self) -> bool {
        self.shards.iter().all(|s| s.is_healthy())
    }
}

impl RedisEngine {
    /// What the shards' readers call: this engine's message handling,
    /// without keeping the engine alive.
    fn handler(&self) -> shard::Handler {
        let prefix = self.options.prefix.clone();
        let control = self.control_name();
        let id = self.id.clone();
        let events = self.events.get().cloned();
        Arc::new(move |event: shard::ReaderEvent<'_>| {
            let Some(events) = &events else {
                return;
            };
            match event {
                shard::ReaderEvent::Message(name, payload) => {
                    on_message(&**events, &prefix, &control, &id, name, payload);
                }
                shard::ReaderEvent::Reconnected(wanted) => {
                    let p = format!("{prefix}.c.");
                    let channels = wanted
                        .iter()
                        .filter_map(|c| c.strip_prefix(&p).map(str::to_owned))
                        .collect();
                    events.resync(channels);
                }
            }
        })
    }
}

fn on_message(
    events: &dyn BrokerEvents,
    prefix: &str,
    control: &str,
    id: &str,
    name: &str,
    payload: &str,
) {
    if name == control {
        let Some((sender, json)) = payload.split_once(' ') else {
            return;
        };
        if sender == id {
            return;
        }
        match serde_json::from_str::<Control>(json) {
            Ok(control) => events.control(control),
            Err(e) => tracing::warn!("unreadable control message: {e}"),
        }
        return;
    }
    let Some(channel) = name
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(".c."))
    else {
        return;
    };
    if let Err(e) = deliver(events, channel, payload) {
        tracing::warn!("unreadable message in {channel}: {e}");
    }
}

impl PresenceStore for RedisEngine {
    fn add<'a>(&'a self, channel: &'a str, info: &'a ClientInfo) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let shard = self.shard_of(channel);
            let json =
                serde_json::to_string(info).map_err(|e| EngineError::Protocol(e.to_string()))?;
            let ttl = self.options.presence_ttl_ms;
            let mut conn = shard.connection().await?;
            let r: Result<(), _> = self
                .scripts
                .presence_add
                .key(self.key("pz", channel))
                .key(self.key("ph", channel))
                .arg(&*info.client)
                .arg(json)
                .arg(now_ms() + ttl)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await;
            shard.check(r)
        })
    }

    fn remove<'a>(&'a self, channel: &'a str, client: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let shard = self.shard_of(channel);
            let mut conn = shard.connection().await?;
            let r: Result<(), _> = self
                .scripts
                .presence_remove
                .key(self.key("pz", channel))
                .key(self.key("ph", channel))
                .arg(client)
                .invoke_async(&mut conn)
                .await;
            shard.check(r)
        })
    }

    fn presence<'a>(&'a self, channel: &'a str) -> EngineFuture<'a, Vec<ClientInfo>> {
        Box::pin(async move {
            let shard = self.shard_of(channel);
            let mut conn = shard.connection().await?;
            let r: Result<Vec<String>, _> = self
                .scripts
                .presence_get
                .key(self.key("pz", channel))
                .key(self.key("ph", channel))
                .arg(now_ms())
                .invoke_async(&mut conn)
                .await;
            let values = shard.check(r)?;
            values
                .iter()
                .map(|v| {
                    serde_json::from_str(v)
                        .map_err(|e| EngineError::Protocol(format!("presence of {channel}: {e}")))
                })
                .collect()
        })
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(
            (self.options.presence_ttl_ms / 3).max(1),
        ))
    }
}

/// The command connections' timeouts.
pub(crate) fn connection_config(options: &RedisOptions) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(options.connect_timeout_ms)))
        .set_response_timeout(Some(Duration::from_millis(options.command_timeout_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_spreads_and_moves_little() {
        let names: Vec<String> = (0..10_000).map(|i| format!("chat:{i}")).collect();
        let mut counts = [0usize; 4];
        for n in &names {
            counts[jump(fnv1a(n), 4)] += 1;
        }
        for c in counts {
            assert!((2_000..3_000).contains(&c), "{counts:?}");
        }
        let moved = names
            .iter()
            .filter(|n| jump(fnv1a(n), 4) != jump(fnv1a(n), 5))
            .count();
        // About a fifth moves to the new shard, and nothing else moves.
        assert!((1_500..2_500).contains(&moved), "{moved}");
        assert!(
            names
                .iter()
                .all(|n| jump(fnv1a(n), 4) == jump(fnv1a(n), 5) || jump(fnv1a(n), 5) == 4)
        );
    }

    #[test]
    fn history_entries_parse() {
        assert_eq!(
            parse_entry("12 1700 {\"data\":1}").unwrap(),
            (12, 1700, "{\"data\":1}")
        );
        assert!(parse_entry("x 1 {}").is_err());
        assert!(parse_entry("1").is_err());
    }
}
