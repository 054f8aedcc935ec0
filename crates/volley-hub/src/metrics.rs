//! Prometheus metrics (`GET /metrics`), and the per-second rates the admin
//! page shows.

use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a handshake was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `origin`, `draining`, `connection_limit`, `ip_limit`, `subprotocol`, `bad_request`,
    /// `proxy_untrusted` (a PROXY header from an untrusted peer), `proxy_invalid`.
    pub reason: &'static str,
}

/// How a connection reaches the hub.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    /// `websocket-h1` (HTTP/1.1 upgrade), `websocket-h2` (HTTP/2 extended
    /// CONNECT, RFC 8441), `sse` (Server-Sent Events) or `long-poll`.
    pub transport: &'static str,
}

/// A connection thread (`Server::with_threads`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThreadLabels {
    /// The thread's number (0 is the runtime that runs the server).
    pub thread: u32,
}

/// Why the hub closed a connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DisconnectLabels {
    /// The close code.
    pub code: u16,
}

/// Every metric of the hub.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Active subscriptions.
    pub subscriptions: Gauge,
    /// Messages received from clients.
    pub messages_in: Counter,
    /// Messages sent to clients.
    pub messages_out: Counter,
    /// Payload bytes received from clients.
    pub bytes_in: Counter,
    /// Frame bytes sent to clients.
    pub bytes_out: Counter,
    /// Publications accepted (clients and HTTP API).
    pub publications: Counter,
    /// Seconds from a publication entering the hub to its frame being handed
    /// to a subscriber's socket; observed once per batch handed to a socket,
    /// for the batch's oldest publication.
    pub delivery_latency: Histogram,
    /// Clients disconnected for a full outbound queue.
    pub slow_consumer_disconnects: Counter,
    /// Push bytes queued for clients, charged to the hub-wide budget (see
    /// `budget.rs` for what is counted).
    pub outbound_queued_bytes: Gauge,
    /// The hub-wide budget of queued push bytes.
    pub outbound_budget_bytes: Gauge,
    /// Clients disconnected (4002) to keep the queued bytes within the
    /// hub-wide budget (also counted in `slow_consumer_disconnects`).
    pub budget_disconnects: Counter,
    /// Connections the hub closed, by code.
    pub disconnects: Family<DisconnectLabels, Counter>,
    /// Handshakes refused, by reason.
    pub handshakes_rejected: Family<RejectLabels, Counter>,
    /// Live nodes of the cluster (this one included; 1 with the memory
    /// engine), as of the last announcement.
    pub cluster_nodes: Gauge,
    /// Open connections on every live node.
    pub cluster_connections: Gauge,
    /// 1 while the engine is reachable (every Redis shard), else 0.
    pub engine_ready: Gauge,
    /// Holes found in a channel's stream by this node (filled from history,
    /// or signalled to the subscribers with 4005).
    pub stream_holes: Counter,
    /// Open connections, by transport.
    pub connections_by_transport: Family<TransportLabels, Gauge>,
    /// Publications queued to subscribers by each connection thread (of a
    /// server; a hub used without `Server` does not count them).
    pub thread_deliveries: Family<ThreadLabels, Counter>,
    /// Writes a connection thread made itself to the socket of a connection
    /// whose task was parked (every frame queued to it), instead of waking
    /// the task.
    pub direct_writes: Counter,
    rates: Mutex<RateWindow>,
}

#[derive(Debug)]
struct RateWindow {
    at: Instant,
    counts: [u64; 4],
    rates: [f64; 4],
}

/// Messages and bytes per second over the last completed window.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Rates {
    /// Messages from clients per second.
    pub messages_in_per_s: f64,
    /// Messages to clients per second.
    pub messages_out_per_s: f64,
    /// Bytes from clients per second.
    pub bytes_in_per_s: f64,
    /// Bytes to clients per second.
    pub bytes_out_per_s: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("volley");
        let connections = Gauge::default();
        let subscriptions = Gauge::default();
        let messages_in = Counter::default();
        let messages_out = Counter::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let publications = Counter::default();
        let delivery_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let slow_consumer_disconnects = Counter::default();
        let disconnects = Family::<DisconnectLabels, Counter>::default();
        let outbound_queued_bytes = Gauge::default();
        let outbound_budget_bytes = Gauge::default();
        let budget_disconnects = Counter::default();
        registry.register(
            "outbound_queued_bytes",
            "Push bytes queued for clients, counted against the hub-wide budget",
            outbound_queued_bytes.clone(),
        );
        registry.register(
            "outbound_budget_bytes",
            "The hub-wide budget of queued push bytes",
            outbound_budget_bytes.clone(),
        );
        registry.register(
            "budget_disconnects",
            "Clients disconnected (4002) to keep queued bytes within the hub-wide budget",
            budget_disconnects.clone(),
        );
        let handshakes_rejected = Family::<RejectLabels, Counter>::default();
        let cluster_nodes = Gauge::default();
        let cluster_connections = Gauge::default();
        let engine_ready = Gauge::default();
        let stream_holes = Counter::default();
        registry.register(
            "cluster_nodes",
            "Live nodes of the cluster, this one included",
            cluster_nodes.clone(),
        );
        registry.register(
            "cluster_connections",
            "Open WebSocket connections on every live node",
            cluster_connections.clone(),
        );
        registry.register(
            "engine_ready",
            "1 while the engine (every Redis shard) is reachable",
            engine_ready.clone(),
        );
        registry.register(
            "stream_holes",
            "Holes found in channel streams (filled from history or signalled with 4005)",
            stream_holes.clone(),
        );
        let connections_by_transport = Family::<TransportLabels, Gauge>::default();
        registry.register(
            "connections_by_transport",
            "Open connections by transport (websocket-h1, websocket-h2, sse, long-poll)",
            connections_by_transport.clone(),
        );
        let thread_deliveries = Family::<ThreadLabels, Counter>::default();
        registry.register(
            "thread_deliveries",
            "Publications queued to subscribers by each connection thread",
            thread_deliveries.clone(),
        );
        let direct_writes = Counter::default();
        registry.register(
            "direct_writes",
            "Writes a connection thread made itself to an idle connection's socket (the frames queued to it), instead of waking the connection's task",
            direct_writes.clone(),
        );
        registry.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        registry.register(
            "subscriptions",
            "Active subscriptions",
            subscriptions.clone(),
        );
        registry.register(
            "messages_in",
            "Messages received from clients",
            messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Messages sent to clients",
            messages_out.clone(),
        );
        registry.register(
            "bytes_in",
            "Payload bytes received from clients",
            bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Frame bytes sent to clients",
            bytes_out.clone(),
        );
        registry.register(
            "publications",
            "Publications accepted",
            publications.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from a publication entering the hub to its frame reaching a subscriber's socket (once per write of a connection's task, and once per turn of a thread's direct writes, for the oldest publication)",
            delivery_latency.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Clients disconnected (4002) because their outbound queue overflowed or the hub's budget was spent",
            slow_consumer_disconnects.clone(),
        );
        registry.register(
            "disconnects",
            "Connections closed by the hub, by close code",
            disconnects.clone(),
        );
        registry.register(
            "handshakes_rejected",
            "WebSocket handshakes refused, by reason",
            handshakes_rejected.clone(),
        );
        Self {
            registry,
            connections,
            subscriptions,
            messages_in,
            messages_out,
            bytes_in,
            bytes_out,
            publications,
            delivery_latency,
            slow_consumer_disconnects,
            outbound_queued_bytes,
            outbound_budget_bytes,
            budget_disconnects,
            disconnects,
            handshakes_rejected,
            cluster_nodes,
            cluster_connections,
            engine_ready,
            stream_holes,
            connections_by_transport,
            thread_deliveries,
            direct_writes,
            rates: Mutex::new(RateWindow {
                at: Instant::now(),
                counts: [0; 4],
                rates: [0.0; 4],
            }),
        }
    }

    /// Counts a refused handshake.
    pub fn rejected(&self, reason: &'static str) {
        self.handshakes_rejected
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Rates over the last window of at least a second (updated on read).
    pub fn rates(&self) -> Rates {
        let mut w = crate::sync::lock(&self.rates);
        let now = Instant::now();
        let elapsed = now.duration_since(w.at).as_secs_f64();
        let counts = [
            self.messages_in.get(),
            self.messages_out.get(),
            self.bytes_in.get(),
            self.bytes_out.get(),
        ];
        if elapsed >= 1.0 {
            for (i, c) in counts.iter().enumerate() {
                w.rates[i] = (c - w.counts[i]) as f64 / elapsed;
            }
            w.counts = counts;
            w.at = now;
        }
        Rates {
            messages_in_per_s: w.rates[0],
            messages_out_per_s: w.rates[1],
            bytes_in_per_s: w.rates[2],
            bytes_out_per_s: w.rates[3],
        }
    }
}
