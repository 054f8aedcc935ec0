//! The hub's configuration: a TOML file, overridden by flags and environment
//! variables in `volley serve`. Every key is optional; the defaults are the
//! "hub default" column of `docs/limits.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::channel::valid_namespace;

/// Everything `volley serve` needs to run.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The HTTP API key (`Authorization: apikey KEY`). No API without it.
    pub api_key: Option<String>,
    /// The key of the admin page and `/admin/api/stats`.
    pub admin_key: Option<String>,
    /// Accept `connect` without a token.
    pub allow_anonymous: bool,
    /// Origins allowed to open a WebSocket; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Asks `volley serve` to add the demo (the page at `/`, the ticker
    /// publisher, `/demo/token`, see [`crate::Server::with_demo`]) and the demo
    /// namespaces `chat` and `ticker` when not configured.
    pub demo: bool,
    /// Token verification keys.
    pub auth: AuthConfig,
    /// Connection and traffic limits.
    pub limits: Limits,
    /// Graceful drain on SIGTERM/SIGINT.
    pub drain: DrainConfig,
    /// TLS: serve `https://` and `wss://`, over HTTP/1.1 or HTTP/2 (ALPN
    /// `h2`, WebSocket by extended CONNECT, RFC 8441).
    pub tls: Option<TlsConfig>,
    /// Without TLS, also accept HTTP/2 with prior knowledge (h2c), so
    /// WebSockets can arrive by extended CONNECT from a proxy or CDN that
    /// speaks HTTP/2 to the origin. Off by default.
    pub h2c: bool,
    /// Options of channels without a `namespace:` prefix.
    pub default_namespace: NamespaceOptions,
    /// Options per namespace; a channel in an unlisted namespace gets error 102.
    pub namespaces: BTreeMap<String, NamespaceOptions>,
    /// Load balancers and proxies (CIDRs) whose word on the client's address
    /// is taken: a PROXY protocol header (v1 or v2) at the start of their
    /// connections, and `X-Forwarded-For`. A PROXY header from any other peer
    /// closes the connection; their `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// The engine: `memory` (one process, the default) or `redis` (many
    /// nodes, docs/cluster.md).
    pub engine: EngineKind,
    /// The Redis shards of the `redis` engine: one URL or a list
    /// (`redis://host:port/db`, `rediss://`, or
    /// `redis+sentinel://host:port,host:port/master_name`).
    pub redis_url: RedisUrls,
    /// Tuning of the `redis` engine.
    pub redis: RedisOptions,
}

/// Which engine runs the hub.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// One process, in memory.
    #[default]
    Memory,
    /// Many nodes on Redis.
    Redis,
}

/// One Redis URL or a list of them (one per shard).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(from = "OneOrMany")]
pub struct RedisUrls(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for RedisUrls {
    fn from(v: OneOrMany) -> Self {
        match v {
            OneOrMany::One(s) => Self(vec![s]),
            OneOrMany::Many(v) => Self(v),
        }
    }
}

/// Tuning of the Redis engine (docs/cluster.md, docs/limits.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisOptions {
    /// Prefix of every key and pub/sub channel, so that several hubs can
    /// share a Redis.
    pub prefix: String,
    /// Time for one Redis command (then error 100).
    pub command_timeout_ms: u64,
    /// Time to open a connection to Redis.
    pub connect_timeout_ms: u64,
    /// A node's presence entries expire this long after its last refresh
    /// (it refreshes them every third of it): a killed node's users leave
    /// presence within this time.
    pub presence_ttl_ms: u64,
    /// Interval of the node's announcement (`info`); a node is gone from the
    /// list three intervals after its last one.
    pub node_heartbeat_ms: u64,
    /// Durable publish: wait until this many replicas have the publication
    /// (Redis `WAIT`) before acknowledging it; 0 acknowledges at once.
    pub durable_replicas: u32,
    /// How long the durable publish waits for the replicas (then error 100).
    pub durable_timeout_ms: u64,
    /// Publications a node sends to a shard in one script call at most. The
    /// publishes waiting while a call is made go in the next one, so under
    /// load the script's own cost is paid once per batch; alone, a publish
    /// goes at once. 1: one call per publication.
    pub publish_batch: u32,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "volley".into(),
            command_timeout_ms: 2_000,
            connect_timeout_ms: 2_000,
            presence_ttl_ms: 30_000,
            node_heartbeat_ms: 2_000,
            durable_replicas: 0,
            durable_timeout_ms: 1_000,
            publish_batch: 64,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            api_key: None,
            admin_key: None,
            allow_anonymous: false,
            allowed_origins: Vec::new(),
            demo: false,
            auth: AuthConfig::default(),
            limits: Limits::default(),
            drain: DrainConfig::default(),
            tls: None,
            h2c: false,
            default_namespace: NamespaceOptions::default(),
            namespaces: BTreeMap::new(),
            trusted_proxies: Vec::new(),
            engine: EngineKind::default(),
            redis_url: RedisUrls::default(),
            redis: RedisOptions::default(),
        }
    }
}

/// Keys for connection and subscription tokens (JWT).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 shared secret.
    pub hmac_secret: Option<String>,
    /// RS256 public key, a PEM file.
    pub rsa_public_key: Option<PathBuf>,
    /// ES256 public key, a PEM file.
    pub ec_public_key: Option<PathBuf>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// Keys named by a `kid`, several per algorithm if need be (key
    /// rotation): a token whose header has a `kid` is checked with that key
    /// only.
    pub keys: Vec<KeyConfig>,
    /// A JWKS document (an identity provider's published keys), fetched at
    /// start and every `jwks_refresh_s`, and sooner when a token names an
    /// unknown `kid`.
    pub jwks_url: Option<String>,
    /// Seconds between JWKS fetches.
    pub jwks_refresh_s: u64,
    /// The shortest time between two fetches asked for by tokens naming an
    /// unknown `kid`, in milliseconds.
    pub jwks_min_refetch_ms: u64,
    /// Time for one JWKS fetch (connect, TLS, response), in milliseconds.
    pub jwks_timeout_ms: u64,
    /// The largest JWKS document, in bytes.
    pub jwks_max_bytes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hmac_secret: None,
            rsa_public_key: None,
            ec_public_key: None,
            audience: None,
            issuer: None,
            leeway: 0,
            keys: Vec::new(),
            jwks_url: None,
            jwks_refresh_s: 300,
            jwks_min_refetch_ms: 10_000,
            jwks_timeout_ms: 5_000,
            jwks_max_bytes: 256 * 1024,
        }
    }
}

/// One verification key with its `kid` (`[[auth.keys]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id tokens name in their header.
    pub kid: String,
    /// The algorithm: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384,
    /// PS512, ES256, ES384 or EdDSA.
    pub alg: String,
    /// The shared secret (HS*).
    #[serde(default)]
    pub secret: Option<String>,
    /// The public key, a PEM file (RS*, PS*, ES*, EdDSA).
    #[serde(default)]
    pub public_key: Option<PathBuf>,
}

/// The default `listen(2)` backlog of `volley serve` and `volley echo`: a
/// burst of thousands of connects overflows the usual 128.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;

/// Per-connection and per-node limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// WebSocket connections on this node.
    pub max_connections: usize,
    /// WebSocket connections from one IP address.
    pub max_connections_per_ip: usize,
    /// The largest message a client may send, in bytes.
    pub max_message_size: usize,
    /// Sustained commands per second per connection (token bucket; the burst
    /// is one second's worth).
    pub commands_per_second: u32,
    /// Channels one connection may be subscribed to.
    pub max_channels_per_connection: usize,
    /// Bytes queued for one client before it is disconnected as slow (4002).
    pub outbound_queue_bytes: usize,
    /// Push bytes queued for all clients together (the hub-wide budget, see
    /// docs/limits.md); past three quarters of it the clients with the
    /// largest backlogs are disconnected with 4002. `None`: a quarter of the
    /// memory this process may use ([`crate::default_budget`]).
    pub outbound_budget_bytes: Option<usize>,
    /// Time to a successful `connect` after the WebSocket opens (then 4003).
    pub connect_timeout_ms: u64,
    /// Interval of WebSocket pings.
    pub ping_interval_ms: u64,
    /// Time for the pong to come back.
    pub pong_timeout_ms: u64,
    /// Time for the WebSocket handshake (and, from a trusted proxy, for its
    /// PROXY protocol header).
    pub handshake_timeout_ms: u64,
    /// Connections the kernel queues before they are accepted (the
    /// `listen(2)` backlog, capped by `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// The largest PROXY protocol header read from a trusted proxy, in bytes
    /// (v1 headers are at most 107; v2 headers carry optional TLVs).
    pub proxy_header_max_bytes: usize,
    /// Connected (authenticated) connections of one user on this node; then
    /// the `connect` is refused with error 106 and close 4006. Anonymous
    /// connections are not counted (they share the empty user).
    pub max_connections_per_user: usize,
    /// The largest HTTP request head (request line and headers), in bytes;
    /// then 431. At least 8 KiB (hyper's smallest read buffer).
    pub max_request_head_bytes: usize,
    /// The largest HTTP API request body, in bytes; then 413.
    pub api_max_body_bytes: usize,
    /// Time for an HTTP API request body to arrive once the head is read and
    /// the API key checked; then 408 and the connection is closed.
    pub api_body_timeout_ms: u64,
    /// Long-polling: how long a poll is held when no message is waiting
    /// (then it answers with none).
    pub poll_timeout_ms: u64,
    /// Long-polling: a session with no poll for this long after its last
    /// poll ended is over (as a lost connection).
    pub session_timeout_ms: u64,
    /// Whether a client that compresses its messages (permessage-deflate)
    /// may keep its compression context from one message to the next. When
    /// false (the default) the hub asks for `client_no_context_takeover`:
    /// the hub then holds no decompressor (about 47 KB of zlib state)
    /// between a client's messages, at the cost of compressing each of them
    /// on its own.
    pub client_compression_context: bool,
}

/// hyper's smallest read buffer, the floor of `max_request_head_bytes`.
pub(crate) const MIN_REQUEST_HEAD_BYTES: usize = 8192;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_connections_per_ip: 10_000,
            max_message_size: 64 * 1024,
            commands_per_second: 2000,
            max_channels_per_connection: 128,
            outbound_queue_bytes: 1024 * 1024,
            outbound_budget_bytes: None,
            connect_timeout_ms: 15_000,
            ping_interval_ms: 20_000,
            pong_timeout_ms: 20_000,
            handshake_timeout_ms: 10_000,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            proxy_header_max_bytes: 4096,
            max_connections_per_user: 1000,
            max_request_head_bytes: 16 * 1024,
            api_max_body_bytes: 1024 * 1024,
            api_body_timeout_ms: 10_000,
            poll_timeout_ms: 25_000,
            session_timeout_ms: 30_000,
            client_compression_context: false,
        }
    }
}

/// Graceful drain.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrainConfig {
    /// Time from the signal until remaining connections are closed with 1001.
    pub grace_ms: u64,
    /// Clients are told to reconnect after a delay drawn from `[0, spread_ms)`.
    pub spread_ms: u64,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            grace_ms: 30_000,
            spread_ms: 25_000,
        }
    }
}

/// Certificate chain and private key, PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// What a namespace allows (docs/protocol.md §8.2).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceOptions {
    /// `presence`, `presence_stats` and the subscribe `presence` flag.
    pub presence: bool,
    /// `join` and `leave` pushes.
    pub join_leave: bool,
    /// Publications retained per channel (0: no history, no recovery).
    pub history_size: usize,
    /// How long a publication is retained, in seconds.
    pub history_ttl: u64,
    /// Subscribed clients may publish.
    pub allow_publish: bool,
    /// Anonymous connections may subscribe.
    pub allow_anonymous: bool,
}

impl NamespaceOptions {
    /// Whether channels of this namespace keep history (offsets, recovery).
    pub fn has_history(&self) -> bool {
        self.history_size > 0 && self.history_ttl > 0
    }

    /// The retention time.
    pub fn history_ttl(&self) -> Duration {
        Duration::from_secs(self.history_ttl)
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or ill-typed keys.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A namespace name breaks the channel grammar.
    #[error("namespace {0:?}: names are 1-64 characters of A-Z a-z 0-9 _ -")]
    NamespaceName(String),
    /// History needs both a size and a TTL.
    #[error("namespace {0:?}: history_size and history_ttl must both be set (or both 0)")]
    History(String),
    /// A limit of zero would refuse everything.
    #[error("limits.{0} must be greater than 0")]
    ZeroLimit(&'static str),
    /// A key of a TLS or token setting is unusable.
    #[error("{0}")]
    Key(String),
}

impl HubConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            source: Box::new(e),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The demo's configuration: anonymous access, the `chat` and `ticker`
    /// namespaces, `demo = true` (the server adds the demo's pages and
    /// publisher with [`crate::Server::with_demo`]).
    pub fn demo() -> Self {
        let mut config = Self {
            allow_anonymous: true,
            demo: true,
            ..Self::default()
        };
        config.add_demo_namespaces();
        config
    }

    /// Adds the demo namespaces where the configuration has none of that name.
    pub fn add_demo_namespaces(&mut self) {
        self.namespaces
            .entry("chat".into())
            .or_insert(NamespaceOptions {
                presence: true,
                join_leave: true,
                history_size: 100,
                history_ttl: 600,
                allow_publish: true,
                allow_anonymous: true,
            });
        self.namespaces
            .entry("ticker".into())
            .or_insert(NamespaceOptions {
                history_size: 100,
                history_ttl: 60,
                allow_anonymous: true,
                ..NamespaceOptions::default()
            });
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let all = std::iter::once(("", &self.default_namespace))
            .chain(self.namespaces.iter().map(|(k, v)| (k.as_str(), v)));
        for (name, ns) in all {
            if !name.is_empty() && !valid_namespace(name) {
                return Err(ConfigError::NamespaceName(name.into()));
            }
            if (ns.history_size > 0) != (ns.history_ttl > 0) {
                return Err(ConfigError::History(name.into()));
            }
        }
        let l = &self.limits;
        for (value, name) in [
            (l.max_connections, "max_connections"),
            (l.max_connections_per_ip, "max_connections_per_ip"),
            (l.max_message_size, "max_message_size"),
            (l.commands_per_second as usize, "commands_per_second"),
            (l.max_channels_per_connection, "max_channels_per_connection"),
            (l.outbound_queue_bytes, "outbound_queue_bytes"),
            (
                l.outbound_budget_bytes.unwrap_or(usize::MAX),
                "outbound_budget_bytes",
            ),
            (l.connect_timeout_ms as usize, "connect_timeout_ms"),
            (l.ping_interval_ms as usize, "ping_interval_ms"),
            (l.pong_timeout_ms as usize, "pong_timeout_ms"),
            (l.handshake_timeout_ms as usize, "handshake_timeout_ms"),
            (l.listen_backlog as usize, "listen_backlog"),
            (l.proxy_header_max_bytes, "proxy_header_max_bytes"),
            (l.max_connections_per_user, "max_connections_per_user"),
            (l.api_max_body_bytes, "api_max_body_bytes"),
            (l.api_body_timeout_ms as usize, "api_body_timeout_ms"),
            (l.poll_timeout_ms as usize, "poll_timeout_ms"),
            (l.session_timeout_ms as usize, "session_timeout_ms"),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        if self.engine == EngineKind::Redis && self.redis_url.0.is_empty() {
            return Err(ConfigError::Key(
                "engine = \"redis\" needs redis_url (one URL or a list)".into(),
            ));
        }
        let r = &self.redis;
        for (value, name) in [
            (r.command_timeout_ms, "redis.command_timeout_ms"),
            (r.connect_timeout_ms, "redis.connect_timeout_ms"),
            (r.presence_ttl_ms, "redis.presence_ttl_ms"),
            (r.node_heartbeat_ms, "redis.node_heartbeat_ms"),
            (r.durable_timeout_ms, "redis.durable_timeout_ms"),
            (u64::from(r.publish_batch), "redis.publish_batch"),
        ] {
            if value == 0 {
                return Err(ConfigError::Key(format!("{name} must be greater than 0")));
            }
        }
        if l.max_request_head_bytes < MIN_REQUEST_HEAD_BYTES {
            return Err(ConfigError::Key(format!(
                "limits.max_request_head_bytes must be at least {MIN_REQUEST_HEAD_BYTES}"
            )));
        }
        Ok(())
    }

    /// The options of a namespace (`""` is the default namespace).
    pub fn namespace(&self, name: &str) -> Option<&NamespaceOptions> {
        if name.is_empty() {
            Some(&self.default_namespace)
        } else {
            self.namespaces.get(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c = HubConfig::from_toml("").unwrap();
        assert_eq!(c.limits.max_message_size, 65536);
        assert_eq!(c.limits.outbound_queue_bytes, 1 << 20);
        assert!(!c.allow_anonymous);
        assert!(c.namespaces.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_namespaces_are_refused() {
        assert!(matches!(
            HubConfig::from_toml("listn = \"127.0.0.1:1\""),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            HubConfig::from_toml("[namespaces.\"a:b\"]"),
            Err(ConfigError::NamespaceName(_))
        ));
        assert!(matches!(
            HubConfig::from_toml("[namespaces.chat]\nhistory_size = 10"),
            Err(ConfigError::History(_))
        ));
        assert!(matches!(
            HubConfig::from_toml("[limits]\ncommands_per_second = 0"),
            Err(ConfigError::ZeroLimit("commands_per_second"))
        ));
    }

    #[test]
    fn the_example_config_parses() {
        let c = HubConfig::from_toml(include_str!("../../../docs/volley.example.toml")).unwrap();
        assert_eq!(
            c.limits.max_message_size,
            Limits::default().max_message_size
        );
        assert!(c.namespace("chat").unwrap().join_leave);
        assert!(c.namespace("prices").unwrap().has_history());
    }

    #[test]
    fn trusted_proxies_are_cidrs() {
        let c = HubConfig::from_toml("trusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]").unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[0].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(matches!(
            HubConfig::from_toml("trusted_proxies = [\"10.0.0.1\"]"),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn namespaces_parse() {
        let c = HubConfig::from_toml(
            "allow_anonymous = true\n[namespaces.chat]\npresence = true\nhistory_size = 10\nhistory_ttl = 60\n",
        )
        .unwrap();
        let chat = c.namespace("chat").unwrap();
        assert!(chat.presence && chat.has_history());
        assert!(c.namespace("news").is_none());
        assert!(!c.namespace("").unwrap().has_history());
    }
}
