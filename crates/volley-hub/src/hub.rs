//! The hub: what every connection and the HTTP API share — the
//! configuration, the engine, the registry of connected clients, metrics and
//! the drain state.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use serde_json::value::RawValue;
use volley::{Message, PreparedFrame, WebSocketConfig};

use crate::auth::TokenVerifier;
use crate::budget::QueueBudget;
use crate::channel;
use crate::config::{ConfigError, HubConfig, NamespaceOptions};
use crate::engine::{
    Broker, BrokerEvents, Control, Engine, EngineError, JoinLeave, NodeInfo, PresenceStore,
    PublishResult,
};
use crate::fanout::Fanout;
use crate::metrics::Metrics;
use crate::outbox::{Directive, Outbox};
use crate::protocol::{self, DisconnectCode, ErrorCode};
use crate::protocol::{ClientInfo, Publication};
use crate::throttle::{Throttle, WARN_EVERY};

/// The hub's shared state.
pub struct Hub {
    config: HubConfig,
    engine: Engine,
    fanout: Fanout,
    /// The hub-wide budget of queued push bytes.
    budget: Arc<QueueBudget>,
    node_id: String,
    verifier: TokenVerifier,
    metrics: Metrics,
    ws_config: WebSocketConfig,
    registry: Mutex<Registry>,
    next_key: AtomicU64,
    draining: AtomicBool,
    started: Instant,
    /// Wakes the drain's waiters when the last connection ends.
    idle: tokio::sync::Notify,
    /// The fallback sessions (SSE, long-polling) by id.
    sessions: crate::fallback::Sessions,
    /// Failures to list the cluster's nodes, warned about once per interval.
    nodes_warning: Throttle,
    /// Failures to announce this node, the same.
    announce_warning: Throttle,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Registry {
    /// Every open WebSocket, connected or not.
    connections: HashMap<u64, Arc<Outbox>>,
    /// Connected clients: client id -> key.
    clients: HashMap<Arc<str>, u64>,
    /// Connected clients of each user.
    users: HashMap<Arc<str>, HashSet<u64>>,
    /// Open WebSockets per IP address.
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a new connection is refused before the upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The node is draining (503).
    Draining,
    /// The node is at its connection limit (503).
    NodeFull,
    /// The IP address has too many connections (429).
    IpFull,
}

/// Who sends to an API method that targets connections.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// Every connection of this user.
    pub user: Option<String>,
    /// This connection.
    pub client: Option<String>,
}

/// A snapshot for `/api/info` and the admin page.
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    /// The server's version.
    pub version: &'static str,
    /// Milliseconds since start.
    pub uptime_ms: u64,
    /// Open WebSocket connections.
    pub num_connections: usize,
    /// Distinct connected users (anonymous ones count as one).
    pub num_users: usize,
    /// Channels with subscribers or history.
    pub num_channels: usize,
    /// Active subscriptions.
    pub num_subscriptions: i64,
    /// This node's id.
    pub node: String,
    /// Every live node (this one included) with its connections; with the
    /// memory engine, this node alone.
    pub nodes: Vec<NodeInfo>,
}

/// A channel with subscribers or retained history, across the cluster.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelSummary {
    /// The channel.
    pub channel: String,
    /// Subscribed connections on every live node.
    pub num_clients: usize,
    /// The stream's top, when the broker lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// The server's version string.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Hub {
    /// A hub with the engine the configuration names (the memory engine by
    /// default).
    pub fn new(config: HubConfig) -> Result<Arc<Self>, ConfigError> {
        let engine = Engine::from_config(&config).map_err(|e| ConfigError::Key(e.to_string()))?;
        Self::with_engine(config, engine)
    }

    /// A hub with the given engine.
    pub fn with_engine(config: HubConfig, engine: Engine) -> Result<Arc<Self>, ConfigError> {
        config.validate()?;
        let verifier = TokenVerifier::new(&config.auth)?;
        let l = &config.limits;
        let deflate = volley::Config::default()
            .deflate()
            .cloned()
            .map(|d| d.client_no_context_takeover(!l.client_compression_context));
        let protocol = volley::Config::builder()
            .max_message_size(l.max_message_size)
            .max_frame_size(l.max_message_size)
            .deflate(deflate)
            .build()
            .map_err(|e| ConfigError::Key(format!("limits.max_message_size: {e}")))?;
        let ws_config = WebSocketConfig::builder()
            .protocol(protocol)
            .handshake_timeout(Duration::from_millis(l.handshake_timeout_ms))
            .keepalive(
                Duration::from_millis(l.ping_interval_ms),
                Duration::from_millis(l.pong_timeout_ms),
            )
            .build()
            .map_err(|e| ConfigError::Key(format!("limits: {e}")))?;
        let metrics = Metrics::new();
        let limit = l
            .outbound_budget_bytes
            .unwrap_or_else(crate::budget::default_budget);
        metrics
            .outbound_budget_bytes
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
        let budget = Arc::new(QueueBudget::new(
            limit,
            metrics.outbound_queued_bytes.clone(),
            metrics.budget_disconnects.clone(),
        ));
        let hub = Arc::new(Self {
            config,
            engine,
            fanout: Fanout::new(),
            budget: budget.clone(),
            node_id: crate::engine::memory::new_epoch(),
            verifier,
            metrics,
            ws_config,
            registry: Mutex::new(Registry::default()),
            next_key: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            started: Instant::now(),
            idle: tokio::sync::Notify::new(),
            sessions: crate::fallback::Sessions::default(),
            nodes_warning: Throttle::new(WARN_EVERY),
            announce_warning: Throttle::new(WARN_EVERY),
        });
        hub.engine.broker.run(Arc::new(NodeEvents {
            hub: Arc::downgrade(&hub),
        }));
        // Outside a runtime (a hub built before one starts) there is no
        // eviction task; the budget still refuses what would pass it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(evict_when_wanted(Arc::downgrade(&hub), budget));
        }
        Ok(hub)
    }

    /// Disconnects the clients with the largest backlogs (4002, reconnect
    /// and recover) until the queued bytes are projected under the budget's
    /// target, when they are past its trigger. Returns how many.
    pub(crate) fn evict_largest(&self) -> usize {
        let budget = &self.budget;
        let queued = budget.queued();
        if i64::try_from(queued).unwrap_or(i64::MAX) <= budget.trigger() {
            return 0;
        }
        let outboxes: Vec<Arc<Outbox>> = self.registry().connections.values().cloned().collect();
        let mut backlogs: Vec<(usize, Arc<Outbox>)> = outboxes
            .into_iter()
            .map(|o| (o.backlog(), o))
            .filter(|(b, _)| *b > 0)
            .collect();
        backlogs.sort_unstable_by_key(|(b, _)| std::cmp::Reverse(*b));
        let mut projected = queued;
        let mut evicted = 0;
        for (_, outbox) in backlogs {
            if projected <= budget.target() {
                break;
            }
            let freed = outbox.evict();
            if freed > 0 {
                projected = projected.saturating_sub(freed);
                evicted += 1;
            }
        }
        budget.disconnected(evicted as u64);
        if evicted == 0 {
            return 0;
        }
        tracing::warn!(
            "outbound budget: {queued} of {} bytes queued, disconnected the {evicted} largest \
             backlogs (4002)",
            budget.limit()
        );
        evicted
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        crate::sync::lock(&self.registry)
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine's broker.
    pub(crate) fn broker(&self) -> &dyn Broker {
        &*self.engine.broker
    }

    /// The engine's presence store.
    pub(crate) fn presence_store(&self) -> &dyn PresenceStore {
        &*self.engine.presence
    }

    /// This node's subscribers.
    pub(crate) fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// This node's id (random, new at each start).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether the node can serve: not draining, and its engine reachable.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.broker().is_ready()
    }

    /// The token verifier.
    pub(crate) fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The fallback sessions by id.
    pub(crate) fn sessions(&self) -> &crate::fallback::Sessions {
        &self.sessions
    }

    /// The WebSocket configuration of client connections.
    pub(crate) fn ws_config(&self) -> &WebSocketConfig {
        &self.ws_config
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether a handshake with this `Origin` may open a WebSocket. Browsers
    /// always send `Origin`, and the allowlist is what protects their users
    /// from other sites; a request without one comes from a non-browser
    /// client (which could send any value) and is allowed.
    pub(crate) fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let allowed = &self.config.allowed_origins;
        match origin {
            None => true,
            Some(o) => allowed.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(o)),
        }
    }

    /// Admits a new WebSocket from `ip`, or says why not. On success the
    /// connection is registered and must be released with [`Hub::leave`].
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<(u64, Arc<Outbox>), Admission> {
        if self.is_draining() {
            return Err(Admission::Draining);
        }
        let mut reg = self.registry();
        if reg.connections.len() >= self.config.limits.max_connections {
            return Err(Admission::NodeFull);
        }
        let per_ip = reg.per_ip.entry(ip).or_default();
        if *per_ip >= self.config.limits.max_connections_per_ip {
            return Err(Admission::IpFull);
        }
        *per_ip += 1;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(
            self.config.limits.outbound_queue_bytes,
            self.budget.clone(),
        ));
        reg.connections.insert(key, outbox.clone());
        drop(reg);
        self.metrics.connections.inc();
        Ok((key, outbox))
    }

    /// Records a successful `connect`, or refuses it when the user already
    /// has `limits.max_connections_per_user` connections on this node (error
    /// 106; anonymous connections are not counted).
    pub(crate) fn register_client(
        &self,
        key: u64,
        client: &Arc<str>,
        user: &Arc<str>,
    ) -> Result<(), ErrorCode> {
        let mut reg = self.registry();
        let keys = reg.users.get(user).map_or(0, HashSet::len);
        if !user.is_empty() && keys >= self.config.limits.max_connections_per_user {
            return Err(ErrorCode::LimitExceeded);
        }
        reg.clients.insert(client.clone(), key);
        reg.users.entry(user.clone()).or_default().insert(key);
        Ok(())
    }

    /// Releases a connection admitted by [`Hub::admit`].
    pub(crate) fn leave(&self, key: u64, ip: IpAddr, client: Option<(&Arc<str>, &Arc<str>)>) {
        let mut reg = self.registry();
        reg.connections.remove(&key);
        if let Some(n) = reg.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                reg.per_ip.remove(&ip);
            }
        }
        if let Some((client, user)) = client {
            reg.clients.remove(client);
            if let Some(keys) = reg.users.get_mut(user) {
                keys.remove(&key);
                if keys.is_empty() {
                    reg.users.remove(user);
                }
            }
        }
        let empty = reg.connections.is_empty();
        drop(reg);
        self.metrics.connections.dec();
        if empty {
            self.idle.notify_waiters();
        }
    }

    /// Checks a channel name and finds its namespace options (107, 102).
    pub(crate) fn namespace_of(&self, channel: &str) -> Result<&NamespaceOptions, ErrorCode> {
        let parsed = channel::parse(channel).ok_or(ErrorCode::BadRequest)?;
        self.config
            .namespace(parsed.namespace)
            .ok_or(ErrorCode::UnknownChannel)
    }

    /// Publishes `data` to `channel` as the server (no publisher `info`),
    /// as the HTTP API's `publish` does.
    pub async fn publish(
        &self,
        channel: &str,
        data: Box<RawValue>,
    ) -> Result<PublishResult, ErrorCode> {
        crate::commands::publish(self, channel, data, None).await
    }

    fn targets(&self, target: &Target) -> Vec<Arc<Outbox>> {
        let reg = self.registry();
        let mut keys = HashSet::new();
        if let Some(user) = &target.user
            && let Some(k) = reg.users.get(user.as_str())
        {
            keys.extend(k.iter().copied());
        }
        if let Some(client) = &target.client
            && let Some(k) = reg.clients.get(client.as_str())
        {
            keys.insert(*k);
        }
        keys.iter()
            .filter_map(|k| reg.connections.get(k).cloned())
            .collect()
    }

    /// Disconnects the targeted connections: a `disconnect` push and a close
    /// with 4000 (`reconnect`) or 4501, with `reason` or the code's name.
    /// Returns how many.
    pub async fn disconnect(
        &self,
        target: &Target,
        reconnect: bool,
        reason: Option<&str>,
    ) -> Result<usize, EngineError> {
        let n = self.disconnect_local(target, reconnect, reason);
        self.broker()
            .publish_control(&Control::Disconnect {
                user: target.user.clone(),
                client: target.client.clone(),
                reconnect,
                reason: reason.map(str::to_owned),
            })
            .await?;
        Ok(n)
    }

    /// Sends a `message` push to every connection of the target, on every
    /// node; returns how many were on this node.
    pub async fn send(&self, target: &Target, data: &RawValue) -> Result<usize, EngineError> {
        let n = self.send_local(target, data);
        if let Some(user) = &target.user {
            self.broker()
                .publish_control(&Control::Send {
                    user: user.clone(),
                    data: data.to_owned(),
                })
                .await?;
        }
        Ok(n)
    }

    /// Unsubscribes every connection of `user`, on every node, from
    /// `channel` (the HTTP API's `unsubscribe`); returns how many were on
    /// this node.
    pub async fn unsubscribe_user(
        &self,
        user: &str,
        channel: &str,
        code: u16,
        reason: &str,
    ) -> Result<usize, ErrorCode> {
        let n = self
            .unsubscribe_user_local(user, channel, code, reason)
            .await?;
        self.broker()
            .publish_control(&Control::Unsubscribe {
                user: user.to_owned(),
                channel: channel.to_owned(),
                code,
                reason: reason.to_owned(),
            })
            .await
            .map_err(|e| {
                tracing::warn!("unsubscribe {user} from {channel}: {e}");
                ErrorCode::Internal
            })?;
        Ok(n)
    }

    /// A control message from another node.
    async fn apply_control(self: Arc<Self>, control: Control) {
        match control {
            Control::Disconnect {
                user,
                client,
                reconnect,
                reason,
            } => {
                self.disconnect_local(&Target { user, client }, reconnect, reason.as_deref());
            }
            Control::Send { user, data } => {
                let target = Target {
                    user: Some(user),
                    client: None,
                };
                self.send_local(&target, &data);
            }
            Control::Unsubscribe {
                user,
                channel,
                code,
                reason,
            } => {
                if let Err(e) = self
                    .unsubscribe_user_local(&user, &channel, code, &reason)
                    .await
                {
                    tracing::warn!("unsubscribe {user} from {channel}: {e:?}");
                }
            }
        }
    }

    /// Disconnects the targeted connections of this node; returns how many.
    fn disconnect_local(&self, target: &Target, reconnect: bool, reason: Option<&str>) -> usize {
        let code = if reconnect {
            DisconnectCode::Reconnect
        } else {
            DisconnectCode::Forbidden
        };
        let reason: Option<Arc<str>> = reason.map(Arc::from);
        let outboxes = self.targets(target);
        for outbox in &outboxes {
            outbox.disconnect(Directive::Disconnect(code, None, reason.clone()));
        }
        outboxes.len()
    }

    /// Unsubscribes every connection of `user` on this node from `channel`
    /// (docs/protocol.md §7.4): each gets an `unsubscribe` push with `code`
    /// and `reason` (2500–2999: stay unsubscribed; 2000–2499: resubscribe
    /// with recovery), after which nothing of the channel reaches it. Returns
    /// how many connections were subscribed. This is the node-local half of
    /// the HTTP API's `unsubscribe`; a cluster routes it to every node.
    async fn unsubscribe_user_local(
        &self,
        user: &str,
        channel: &str,
        code: u16,
        reason: &str,
    ) -> Result<usize, ErrorCode> {
        let options = self.namespace_of(channel)?;
        let outboxes: Vec<(u64, Arc<Outbox>)> = {
            let reg = self.registry();
            reg.users
                .get(user)
                .into_iter()
                .flatten()
                .filter_map(|k| reg.connections.get(k).map(|o| (*k, o.clone())))
                .collect()
        };
        let frame = text_frame(protocol::unsubscribe_push(channel, code, reason));
        let mut n = 0;
        for (key, outbox) in outboxes {
            let existed = self.unsubscribe(channel, options, key).await.map_err(|e| {
                tracing::warn!("unsubscribe {user} from {channel}: {e}");
                ErrorCode::Internal
            })?;
            if existed {
                outbox.unsubscribed(channel, frame.clone());
                self.metrics.subscriptions.dec();
                n += 1;
            }
        }
        Ok(n)
    }

    /// Sends a `message` push to this node's connections of the target.
    fn send_local(&self, target: &Target, data: &RawValue) -> usize {
        let frame = text_frame(protocol::message_push(data));
        self.targets(target)
            .iter()
            .filter(|o| o.push(&frame, None))
            .count()
    }

    /// Node statistics.
    pub async fn info(&self) -> Info {
        let nodes = self.nodes().await;
        let num_channels = self.channels().await.map(|c| c.len()).unwrap_or(0);
        let this = &nodes[0];
        Info {
            version: VERSION,
            uptime_ms: this.uptime_ms,
            num_connections: this.num_connections,
            num_users: this.num_users,
            num_channels,
            num_subscriptions: this.num_subscriptions,
            node: self.node_id.clone(),
            nodes,
        }
    }

    /// This node, as it announces itself.
    pub fn node_info(&self) -> NodeInfo {
        let (num_connections, num_users) = {
            let reg = self.registry();
            (reg.connections.len(), reg.users.len())
        };
        NodeInfo {
            id: self.node_id.clone(),
            name: self.config.listen.to_string(),
            num_connections,
            num_users,
            num_subscriptions: self.metrics.subscriptions.get(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            channels: self.fanout.counts(),
        }
    }

    /// Every live node: this one, fresh, and the others as last announced.
    pub async fn nodes(&self) -> Vec<NodeInfo> {
        let mut nodes = vec![self.node_info()];
        match self.broker().nodes().await {
            Ok(others) => nodes.extend(others.into_iter().filter(|n| n.id != self.node_id)),
            Err(e) => {
                if let Some(held) = self.nodes_warning.allow(Instant::now()) {
                    tracing::warn!(
                        "listing the cluster's nodes: {e} (and {held} more failures since the last warning); info, channels and the cluster metrics show only this node"
                    );
                }
            }
        }
        nodes
    }

    /// Channels with subscribers on any live node, or with a stream the
    /// broker lists.
    pub async fn channels(&self) -> Result<Vec<ChannelSummary>, EngineError> {
        let mut all: HashMap<String, ChannelSummary> = HashMap::new();
        for node in self.nodes().await {
            for (channel, n) in node.channels {
                all.entry(channel.clone())
                    .or_insert_with(|| ChannelSummary {
                        channel,
                        num_clients: 0,
                        offset: None,
                    })
                    .num_clients += n;
            }
        }
        for stream in self.broker().streams().await? {
            all.entry(stream.channel.clone())
                .or_insert_with(|| ChannelSummary {
                    channel: stream.channel,
                    num_clients: 0,
                    offset: None,
                })
                .offset = Some(stream.offset);
        }
        let mut out: Vec<_> = all.into_values().collect();
        out.sort_by(|a, b| a.channel.cmp(&b.channel));
        Ok(out)
    }

    /// Periodic work: the engine's housekeeping, this node's announcement,
    /// and the refresh of its presence entries when they expire. Runs until
    /// the hub is dropped.
    pub(crate) async fn background(self: Arc<Self>) {
        let announce_every = Duration::from_millis(self.config.redis.node_heartbeat_ms);
        // The announcement expires after three intervals (presence entries
        // after three refresh intervals): the loop must wake at least once an
        // interval, or a heartbeat under a second would announce once a
        // second and the node's entry would be missing from the listing most
        // of the time (other nodes then count without it).
        let mut period = announce_every.min(Duration::from_secs(1));
        if let Some(every) = self.presence_store().refresh_interval() {
            period = period.min(every);
        }
        let mut tick = tokio::time::interval(period.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_maintain = Instant::now();
        let mut last_presence = Instant::now();
        let mut last_announce: Option<Instant> = None;
        loop {
            tick.tick().await;
            if last_maintain.elapsed() >= Duration::from_secs(5) {
                last_maintain = Instant::now();
                self.broker().maintain();
            }
            if last_announce.is_none_or(|at| at.elapsed() >= announce_every) {
                last_announce = Some(Instant::now());
                if let Err(e) = self.broker().announce(&self.node_info()).await
                    && let Some(held) = self.announce_warning.allow(Instant::now())
                {
                    tracing::warn!(
                        "announcing the node: {e} (and {held} more failures since the last warning); other nodes stop listing it"
                    );
                }
                let nodes = self.nodes().await;
                let connections: usize = nodes.iter().map(|n| n.num_connections).sum();
                self.metrics.cluster_nodes.set(nodes.len() as i64);
                self.metrics.cluster_connections.set(connections as i64);
                self.metrics
                    .engine_ready
                    .set(i64::from(self.broker().is_ready()));
            }
            if let Some(every) = self.presence_store().refresh_interval()
                && last_presence.elapsed() >= every
            {
                last_presence = Instant::now();
                let entries = self.fanout.presence_entries(|channel| {
                    self.namespace_of(channel).is_ok_and(|o| o.presence)
                });
                for (channel, info) in entries {
                    if let Err(e) = self.presence_store().add(&channel, &info).await {
                        tracing::debug!("refreshing presence in {channel}: {e}");
                        break;
                    }
                }
            }
        }
    }

    /// Starts the drain: new upgrades get 503, every client is told to
    /// reconnect after a random delay in `[0, spread)`.
    pub(crate) fn start_drain(&self) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        let spread = self.config.drain.spread_ms.max(1);
        let outboxes: Vec<_> = self.registry().connections.values().cloned().collect();
        let mut rng = rand::rng();
        for outbox in outboxes {
            let after = rng.random_range(0..spread);
            let push = protocol::disconnect_push(DisconnectCode::Shutdown, None, Some(after));
            outbox.reply(text_frame(push));
        }
    }

    /// Closes every remaining connection with 1001.
    pub(crate) fn close_all(&self) {
        for outbox in self.registry().connections.values() {
            outbox.disconnect(Directive::GoingAway);
        }
    }

    /// Waits until no connection is open, or `timeout` passes. Returns the
    /// number still open.
    pub(crate) async fn wait_idle(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            let open = self.registry().connections.len();
            if open == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.registry().connections.len();
            }
        }
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.registry().connections.len()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Lets the eviction task see that the hub is gone.
        self.budget.wake();
    }
}

/// The eviction task: runs [`Hub::evict_largest`] whenever a charge passes
/// the budget's trigger, until the hub is dropped.
async fn evict_when_wanted(hub: Weak<Hub>, budget: Arc<QueueBudget>) {
    loop {
        budget.wanted().await;
        let Some(hub) = hub.upgrade() else {
            return;
        };
        hub.evict_largest();
    }
}

/// The broker's events, delivered to the hub.
struct NodeEvents {
    hub: Weak<Hub>,
}

impl BrokerEvents for NodeEvents {
    fn publication(
        &self,
        channel: &str,
        epoch: Option<Arc<str>>,
        publication: Arc<Publication>,
        at: Instant,
    ) {
        if let Some(hub) = self.hub.upgrade() {
            let action = hub.fanout.publication(channel, epoch, publication, at);
            hub.act(channel, action);
        }
    }

    fn join_leave(&self, channel: &str, kind: JoinLeave, info: ClientInfo) {
        if let Some(hub) = self.hub.upgrade() {
            hub.fanout.presence_push(channel, kind.as_str(), &info);
        }
    }

    fn control(&self, control: Control) {
        if let Some(hub) = self.hub.upgrade() {
            tokio::spawn(hub.apply_control(control));
        }
    }

    fn resync(&self, channels: Vec<String>) {
        if let Some(hub) = self.hub.upgrade() {
            for (channel, epoch, top) in hub.fanout.positions(&channels) {
                hub.act(&channel, crate::fanout::Action::Fill(epoch, top));
            }
        }
    }
}

/// A JSON text as a frame.
pub(crate) fn text_frame(json: String) -> PreparedFrame {
    PreparedFrame::new(&Message::text(json))
}

/// A random UUID (version 4), the client id of a connection.
pub(crate) fn new_client_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
