//! The hub: what every connection and the HTTP API share — the
//! configuration, the engine, the registry of connected clients, metrics and
//! the drain state.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use serde_json::value::RawValue;
use volley::{Message, PreparedFrame, WebSocketConfig};

use crate::auth::TokenVerifier;
use crate::channel;
use crate::config::{ConfigError, HubConfig, NamespaceOptions};
use crate::engine::{Engine, MemoryEngine, PublishResult};
use crate::metrics::Metrics;
use crate::outbox::{Directive, Outbox};
use crate::protocol::{self, DisconnectCode, ErrorCode};

/// The hub's shared state.
pub struct Hub {
    config: HubConfig,
    engine: Arc<dyn Engine>,
    verifier: TokenVerifier,
    metrics: Metrics,
    ws_config: WebSocketConfig,
    registry: Mutex<Registry>,
    next_key: AtomicU64,
    draining: AtomicBool,
    started: Instant,
    /// Wakes the drain's waiters when the last connection ends.
    idle: tokio::sync::Notify,
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
}

/// The server's version string.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Hub {
    /// A hub with the memory engine.
    pub fn new(config: HubConfig) -> Result<Arc<Self>, ConfigError> {
        Self::with_engine(config, Arc::new(MemoryEngine::new()))
    }

    /// A hub with the given engine.
    pub(crate) fn with_engine(
        config: HubConfig,
        engine: Arc<dyn Engine>,
    ) -> Result<Arc<Self>, ConfigError> {
        config.validate()?;
        let verifier = TokenVerifier::new(&config.auth)?;
        let l = &config.limits;
        let protocol = volley::Config::builder()
            .max_message_size(l.max_message_size)
            .max_frame_size(l.max_message_size)
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
        Ok(Arc::new(Self {
            config,
            engine,
            verifier,
            metrics: Metrics::new(),
            ws_config,
            registry: Mutex::new(Registry::default()),
            next_key: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            started: Instant::now(),
            idle: tokio::sync::Notify::new(),
        }))
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        crate::sync::lock(&self.registry)
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The engine.
    pub(crate) fn engine(&self) -> &dyn Engine {
        &*self.engine
    }

    /// The token verifier.
    pub(crate) fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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
        let outbox = Arc::new(Outbox::new(self.config.limits.outbound_queue_bytes));
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
    pub fn disconnect(&self, target: &Target, reconnect: bool, reason: Option<&str>) -> usize {
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
    pub async fn unsubscribe_user(
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
            let existed = self
                .engine
                .unsubscribe(channel, options, key)
                .await
                .map_err(|e| {
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

    /// Sends a `message` push to every connection of the target.
    pub fn send(&self, target: &Target, data: &RawValue) -> usize {
        let frame = text_frame(protocol::message_push(data));
        self.targets(target)
            .iter()
            .filter(|o| o.push(&frame, None))
            .count()
    }

    /// Node statistics.
    pub async fn info(&self) -> Info {
        let (num_connections, num_users) = {
            let reg = self.registry();
            (reg.connections.len(), reg.users.len())
        };
        let num_channels = self.engine.channels().await.map(|c| c.len()).unwrap_or(0);
        Info {
            version: VERSION,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            num_connections,
            num_users,
            num_channels,
            num_subscriptions: self.metrics.subscriptions.get(),
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
