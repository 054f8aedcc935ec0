//! `volley bench fanout`: fan-out of `volley serve`, black box.
//!
//! N subscribers (10,000 by default) on one channel, all on one
//! current-thread runtime (with `--engine epoll`, read by one thread of
//! their own after subscribing); events published through the HTTP API at
//! rising rates. Per rate: deliveries per second, publish-to-last-delivery latency
//! (from the start of the HTTP publish call to the moment the last subscriber
//! received the publication; p50, p99, max), the load generator's CPU and,
//! with `--server-pid`, the hub's CPU; once, the hub's resident memory per idle
//! subscriber. Every subscriber must receive every event exactly once and in
//! order: each push's offset is checked against the subscriber's position,
//! and its `seq` against the event published at that offset.
//!
//! On a cluster (the Redis engine), `--subscribe-addr` spreads the
//! subscribers over other nodes while events are published on `--addr`:
//! the same numbers, across nodes (bench/cluster.sh).
//!
//! Pushes are read cheaply: only `"offset":` and `"seq":` are located in the
//! text; no JSON tree is built on the hot path.

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use volley::{ClientBuilder, CloseCode, Message, WebSocketConfig};

use super::fanout_epoll::EpollReader;
use super::fanout_raw::{self, RawSubscriber};
use crate::http_api::HttpApi;

/// Arguments of `volley bench fanout`.
#[derive(Debug, Args)]
pub(crate) struct FanoutArgs {
    /// The hub's address, host:port (WebSocket at /connection/websocket, HTTP API at /api/).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// Nodes of a cluster the subscribers connect to instead (host:port,
    /// comma-separated; subscriber i goes to the (i mod n)-th); events are
    /// still published on --addr, so with `--subscribe-addr B` every
    /// delivery crosses from node A to node B.
    #[arg(long, value_delimiter = ',')]
    subscribe_addr: Vec<String>,
    /// The hub's HTTP API key.
    #[arg(long, env = "VOLLEY_API_KEY")]
    api_key: String,
    /// The channel; its namespace must keep history (offsets) and allow
    /// anonymous subscribers, and nothing else may publish to it.
    #[arg(long, default_value = "fanout:bench")]
    channel: String,
    /// Subscriber connections.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    subscribers: usize,
    /// Publication rates to step through, events per second.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100,200,500,1000")]
    rates: Vec<f64>,
    /// Seconds of publishing per rate.
    #[arg(short = 'd', long, default_value_t = 3.0)]
    seconds: f64,
    /// HTTP connections publishing in parallel.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Bytes of padding in each event's data.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds to wait after a step's last publication for its deliveries.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Subscribers connecting at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// PID of the hub: its resident memory and CPU are read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Go on to the next rate even after a step missed deliveries.
    #[arg(long)]
    keep_going: bool,
    /// Append one JSON line per result to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// A label for the results.
    #[arg(long, default_value = "")]
    label: String,
    /// Subscriber engine: `client` runs the volley client per subscriber;
    /// `raw` reads the sockets directly into one buffer per thread and
    /// parses the frames in place (cheap enough for millions of
    /// deliveries per second); `epoll` connects as `raw` does, then reads
    /// every socket from one dedicated thread through epoll (the cheapest
    /// per read). All three check every delivery the same way.
    #[arg(long, value_enum, default_value_t = FanoutEngine::Client)]
    engine: FanoutEngine,
    /// Events published at the first rate before the measured steps, checked
    /// like the others but reported apart (`"mode": "fanout-warmup"`). A
    /// fresh TCP connection acknowledges its first 16 or so segments at once
    /// (Linux's quick-ACK mode); over loopback those acknowledgements cost
    /// the sending core, so the first events cost the hub more than the
    /// steady state. 20 covers them.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Append each event's timings to this file, a line per event: its
    /// step (`warmup` for the `--warmup` events, else the step's index),
    /// seq, when it was published (ms after the step's first publication),
    /// its HTTP publish latency and its publish-to-last-delivery latency
    /// (ms; `-` when not every subscriber got it). To see what the
    /// percentiles are made of: whether the slow events come together,
    /// or at a period.
    #[arg(long)]
    events: Option<std::path::PathBuf>,
}

/// The subscriber engine of `volley bench fanout` (`--engine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FanoutEngine {
    /// The volley client, one per subscriber.
    Client,
    /// Raw sockets read by tokio tasks into one shared buffer.
    Raw,
    /// Raw sockets read by one thread through epoll.
    Epoll,
}

impl FanoutEngine {
    /// The engine's name, as on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Raw => "raw",
            Self::Epoll => "epoll",
        }
    }
}

/// What can stop the fan-out benchmark.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum FanoutError {
    /// A subscriber could not connect or subscribe.
    Subscribe {
        /// Which subscriber.
        index: usize,
        /// What went wrong.
        detail: String,
    },
    /// An HTTP API call failed.
    Http {
        /// The API method.
        method: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The subscribers disagree on the channel's position before the first event.
    Setup(String),
    /// The runtime or a file could not be set up.
    Io(std::io::Error),
    /// The benchmark thread panicked or vanished.
    Thread,
}

impl fmt::Display for FanoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subscribe { index, detail } => write!(f, "subscriber {index}: {detail}"),
            Self::Http { method, detail } => write!(f, "HTTP API {method}: {detail}"),
            Self::Setup(detail) => write!(f, "setup: {detail}"),
            Self::Io(e) => write!(f, "I/O: {e}"),
            Self::Thread => write!(f, "the benchmark thread ended without a result"),
        }
    }
}

impl std::error::Error for FanoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for FanoutError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Connections opened from one source address before moving to the next.
const PORTS_PER_SOURCE: usize = 20_000;

/// Runs the benchmark on a current-thread runtime of its own thread.
pub(crate) async fn run(args: FanoutArgs) -> Result<(), FanoutError> {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("fanout".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(FanoutError::from)
                .and_then(|rt| {
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, bench(args))
                });
            let _ = tx.send(result);
        })?;
    rx.await.map_err(|_| FanoutError::Thread)?
}

// ---- bookkeeping shared by the subscribers and the publishers -----------------

/// Moments as nanoseconds after a base (0: none yet), one per event, so that
/// the epoll engine's thread can set them without a lock.
pub(super) struct Stamps {
    base: Instant,
    at: Vec<AtomicU64>,
}

impl Stamps {
    fn new(base: Instant, events: usize) -> Self {
        Self {
            base,
            at: (0..events).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Nanoseconds after the base of `now`, at least 1 (0 stands for none).
    fn encode(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.base).as_nanos() as u64).max(1)
    }

    /// Sets event `i`'s moment.
    fn set(&self, i: usize, now: Instant) {
        if let Some(slot) = self.at.get(i) {
            slot.store(self.encode(now), Ordering::Relaxed);
        }
    }

    /// Moves event `i`'s moment to `now` if that is later.
    fn raise(&self, i: usize, now: Instant) {
        if let Some(slot) = self.at.get(i) {
            slot.fetch_max(self.encode(now), Ordering::Relaxed);
        }
    }

    /// Event `i`'s moment, if set.
    fn get(&self, i: usize) -> Option<Instant> {
        match self.at.get(i)?.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n)),
        }
    }
}

/// Per event (indexed by `seq`), filled by the publishers and subscribers.
///
/// Shared between threads (the epoll engine reads on a thread of its own):
/// every field is an atomic, updated with relaxed loads and adds except
/// where noted, so a delivery costs a few uncontended atomic instructions.
/// A step's results are read once `complete` (acquire) says every delivery
/// is in; each delivery's updates come before its `received` and
/// `complete` increments (release).
pub(super) struct Tracker {
    subscribers: u32,
    publish_at: Stamps,
    http_done_at: Stamps,
    received: Vec<AtomicU32>,
    last_at: Stamps,
    /// The offset each event was delivered at (0 = not yet seen).
    offset_of: Vec<AtomicU64>,
    /// Events received by every subscriber.
    complete: AtomicU64,
    deliveries: AtomicU64,
    /// Socket reads that brought data (counted by the raw and epoll engines).
    reads: AtomicU64,
    errors: AtomicU64,
    /// Rare: taken only on an error.
    first_errors: Mutex<Vec<String>>,
    /// Subscribers whose connection ended before the stop event.
    closed: AtomicU64,
    /// Subscribers end after receiving this seq.
    stop_seq: u64,
}

impl Tracker {
    /// Counts a delivery error (the first ten are kept for the verdict).
    pub(super) fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if first.len() < 10 {
            first.push(e);
        }
    }

    /// Counts a subscriber whose connection ended before the stop event,
    /// and why, as an error.
    pub(super) fn closed(&self, detail: String) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        self.error(detail);
    }

    /// Subscribers whose connection ended before the stop event.
    fn closed_count(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Counts one socket read that brought data.
    pub(super) fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
}

/// The position of `needle` (which starts with `"`) in `hay`: a scan from
/// quote to quote, cheaper than `str::find` for these short texts and keys.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let q = hay[i..].iter().position(|&b| b == b'"')?;
        i += q;
        // The byte after the quote first: most quotes differ there, and
        // that costs no call to `memcmp`.
        if needle.get(1).is_none_or(|b| hay.get(i + 1) == Some(b))
            && hay.get(i..i + needle.len()) == Some(needle)
        {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Finds the unsigned integer after `key` (e.g. `"offset":`).
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(text, key)? + key.len();
    let digits = text[start..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .fold((0u64, 0usize), |(n, len), d: u8| {
            (
                n.wrapping_mul(10).wrapping_add(u64::from(d - b'0')),
                len + 1,
            )
        });
    (digits.1 > 0 && digits.1 <= 16).then_some(digits.0)
}

fn client_config() -> Result<WebSocketConfig, String> {
    let protocol = volley::Config::builder()
        .max_size(64 << 20)
        .deflate(None)
        .build()
        .map_err(|e| e.to_string())?;
    WebSocketConfig::builder()
        .protocol(protocol)
        .build()
        .map_err(|e| e.to_string())
}

type Ws = volley::WebSocket<TcpStream>;

/// A subscribed connection of either engine (held only between connecting
/// and starting the read loops; the read loops own their connections).
#[allow(clippy::large_enum_variant)]
enum Subscriber {
    Client(Ws),
    Raw(RawSubscriber),
}

/// Connects subscriber `index`: TCP, handshake with `volley.v1`, anonymous
/// `connect`, `subscribe`. Returns the socket and the channel's offset.
async fn subscribe(
    index: usize,
    server: SocketAddr,
    url: &str,
    channel: &str,
    config: WebSocketConfig,
) -> Result<(Ws, u64), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(source) = source_address(index, server) {
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
    }
    let tcp = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut ws, response) = ClientBuilder::new(url)
        .protocol("volley.v1")
        .config(config)
        .connect_on(tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let selected = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
    if selected != Some("volley.v1") {
        return Err(format!("subprotocol {selected:?}, want volley.v1"));
    }
    let connect = r#"{"id":1,"method":"connect","params":{"name":"volley-bench","version":"1"}}"#;
    connect_result(&command(&mut ws, connect, 1).await?)?;
    let subscribe =
        serde_json::json!({"id": 2, "method": "subscribe", "params": {"channel": channel}});
    let offset = subscribe_offset(&command(&mut ws, &subscribe.to_string(), 2).await?)?;
    Ok((ws, offset))
}

/// The source address of subscriber `index`: past [`PORTS_PER_SOURCE`]
/// connections to a loopback hub, the next loopback address.
fn source_address(index: usize, server: SocketAddr) -> Option<IpAddr> {
    (server.ip().is_loopback() && index >= PORTS_PER_SOURCE).then(|| {
        IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + (index / PORTS_PER_SOURCE) as u8,
        ))
    })
}

/// Checks the reply to `connect`.
pub(super) fn connect_result(reply: &serde_json::Value) -> Result<(), String> {
    match reply.get("result") {
        Some(_) => Ok(()),
        None => Err(format!("connect: {reply}")),
    }
}

/// Checks the reply to `subscribe`: the channel must be recoverable (keep
/// offsets). Returns the channel's offset.
pub(super) fn subscribe_offset(reply: &serde_json::Value) -> Result<u64, String> {
    let result = reply
        .get("result")
        .ok_or_else(|| format!("subscribe: {reply}"))?;
    if result.get("recoverable") != Some(&serde_json::Value::Bool(true)) {
        return Err(format!(
            "the channel keeps no history (no offsets to check order by): {result}"
        ));
    }
    result
        .get("offset")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("subscribe reply without offset: {result}"))
}

/// Sends a command and waits for the reply with `id` (pushes before it are
/// unexpected here: nothing is published while subscribing).
async fn command(ws: &mut Ws, text: &str, id: u64) -> Result<serde_json::Value, String> {
    ws.send(Message::text(text.to_owned()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    loop {
        let m = match tokio::time::timeout(Duration::from_secs(30), ws.recv()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(format!("recv: {e}")),
            Ok(None) => {
                return Err(format!(
                    "closed by the server: {:?}",
                    ws.close_frame()
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                ));
            }
            Err(_) => return Err("no reply within 30 s".into()),
        };
        let v: serde_json::Value = serde_json::from_slice(m.as_bytes())
            .map_err(|e| format!("invalid JSON from the server: {e}"))?;
        if v.get("id").and_then(serde_json::Value::as_u64) == Some(id) {
            return Ok(v);
        }
    }
}

/// The subscriber's read loop: every push checked, counted and timed.
async fn receive(mut ws: Ws, mut next_offset: u64, t: Arc<Tracker>) {
    loop {
        let message = match ws.recv().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                t.closed(format!("subscriber connection failed: {e}"));
                return;
            }
            None => {
                t.closed(format!(
                    "subscriber closed by the server: {:?}",
                    ws.close_frame()
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                ));
                return;
            }
        };
        let now = Instant::now();
        let Some(text) = message.as_text() else {
            t.error("binary message from the hub".into());
            continue;
        };
        if check_publication(&t, &mut next_offset, text.as_bytes(), now) {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), ws.close(CloseCode::NORMAL, "")).await;
            return;
        }
    }
}

/// The offset and `seq` of a publication push; `None` for other messages.
pub(super) fn push_numbers(text: &[u8]) -> Option<(u64, u64)> {
    find(text, br#""push":"publication""#)?;
    Some((
        number_after(text, br#""offset":"#)?,
        number_after(text, br#""seq":"#)?,
    ))
}

/// Checks one message a subscriber received at `now` (both engines): a
/// publication must come at the subscriber's next offset, and its `seq` at
/// the same offset for every subscriber; it is counted and timed. Other
/// pushes are skipped. Returns whether it was the stop event.
pub(super) fn check_publication(
    t: &Tracker,
    next_offset: &mut u64,
    text: &[u8],
    now: Instant,
) -> bool {
    if find(text, br#""push":"publication""#).is_none() {
        return false; // join/leave/other pushes; replies are not expected
    }
    let Some((offset, seq)) = push_numbers(text) else {
        t.error(format!(
            "publication without offset or seq: {}",
            String::from_utf8_lossy(&text[..text.len().min(200)])
        ));
        return false;
    };
    if offset != *next_offset {
        t.error(format!(
            "{} at offset {offset}, expected {next_offset}",
            if offset < *next_offset {
                "duplicate"
            } else {
                "gap"
            }
        ));
    }
    *next_offset = offset + 1;
    let i = seq as usize;
    let Some(at) = t.offset_of.get(i) else {
        t.error(format!("seq {seq} was never published"));
        return false;
    };
    // The first subscriber to see the seq records its offset; the others
    // must find the same.
    if let Err(first) = at.compare_exchange(0, offset, Ordering::Relaxed, Ordering::Relaxed)
        && first != offset
    {
        t.error(format!(
            "seq {seq} at offset {offset} here, at {first} elsewhere"
        ));
    }
    t.deliveries.fetch_add(1, Ordering::Relaxed);
    t.last_at.raise(i, now);
    if let Some(r) = t.received.get(i)
        && r.fetch_add(1, Ordering::AcqRel) + 1 == t.subscribers
    {
        t.complete.fetch_add(1, Ordering::Release);
    }
    seq == t.stop_seq
}

// ---- CPU and memory from /proc ---------------------------------------------------

/// CPU seconds (user + system) of a process (`None`: this one).
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

/// The hub's `volley_delivery_latency_seconds` histogram: (upper bound in
/// seconds, cumulative count) per bucket, from `GET /metrics`.
async fn hub_latency_buckets(http: &mut HttpApi) -> Vec<(f64, u64)> {
    const PREFIX: &str = "volley_delivery_latency_seconds_bucket{le=\"";
    let Ok((200, body)) = http.get("/metrics").await else {
        return Vec::new();
    };
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(PREFIX)?;
            let (le, count) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound (ms) under which fraction `q` of the deliveries between
/// two readings of the histogram fell.
fn hub_quantile_ms(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    if before.len() != after.len() || after.is_empty() {
        return None;
    }
    let total = after.last()?.1.saturating_sub(before.last()?.1);
    if total == 0 {
        return None;
    }
    let want = (total as f64 * q).ceil() as u64;
    before
        .iter()
        .zip(after)
        .find(|(b, a)| a.1.saturating_sub(b.1) >= want)
        .map(|(_, a)| a.0 * 1000.0)
}

/// Busy and total jiffies of each CPU, from /proc/stat (to see what other
/// processes took from the two pinned cores during a step).
fn cpu_jiffies() -> Vec<(u64, u64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total.saturating_sub(idle), total)
        })
        .collect()
}

/// Busy percentage of each CPU between two `cpu_jiffies` readings.
fn cpu_busy(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let total = a.1.saturating_sub(b.1);
            if total == 0 {
                0.0
            } else {
                100.0 * a.0.saturating_sub(b.0) as f64 / total as f64
            }
        })
        .collect()
}

fn emit(path: Option<&std::path::Path>, line: &serde_json::Value) -> Result<(), FanoutError> {
    Ok(super::emit_line(path, line)?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---- the benchmark ------------------------------------------------------------------

/// Runs the steps in order: plan, connect the subscribers, report the hub's
/// idle memory, start the subscribers' read loops, then one measured step per
/// rate (publish, wait for the deliveries, report), the stop event, and the
/// final verdict on every delivery.
async fn bench(a: FanoutArgs) -> Result<(), FanoutError> {
    let plan = Plan::new(&a)?;
    let t = Arc::new(Tracker::new(plan.subscribers, plan.total_events(a.warmup)));
    let rss_before = a.server_pid.and_then(super::rss_bytes);
    let started = Instant::now();
    let sockets = connect_subscribers(&a, &plan).await?;
    report_idle_memory(&a, plan.subscribers, rss_before, started.elapsed()).await?;
    let (receivers, epoll) = start_receivers(a.engine, sockets, &t)?;
    let pad = "x".repeat(a.size);
    let mut first_seq = 0u64;
    let warmup = (a.warmup > 0).then(|| (a.rates.first().copied().unwrap_or(10.0), a.warmup));
    let steps = warmup.into_iter().map(|w| (w, true)).chain(
        a.rates
            .iter()
            .copied()
            .zip(plan.counts.iter().copied())
            .map(|s| (s, false)),
    );
    for (step, ((rate, count), warmup)) in steps.enumerate() {
        let step = Step {
            index: step,
            rate,
            count,
            first_seq,
            warmup,
        };
        let complete = measure_step(&a, &plan, &t, &step, &pad).await?;
        first_seq += count;
        if t.closed_count() > 0 || (!complete && !a.keep_going) {
            eprintln!(
                "{:>10} stopping: the hub no longer keeps up at {rate} events/s",
                a.label
            );
            break;
        }
    }
    stop_subscribers(&a, &t, receivers).await;
    // The epoll thread has ended on the stop event; if not, it stops now.
    drop(epoll);
    verdict(&a, &t)
}

/// Starts the subscribers' read loops, each from the offset after the one
/// it subscribed at. Returns what ends when they have: one task per
/// subscriber, or (epoll engine) one task awaiting the reader thread, with
/// that thread.
fn start_receivers(
    engine: FanoutEngine,
    sockets: Vec<(Subscriber, u64)>,
    t: &Arc<Tracker>,
) -> Result<(Vec<JoinHandle<()>>, Option<EpollReader>), FanoutError> {
    if engine == FanoutEngine::Epoll {
        let subs = sockets
            .into_iter()
            .filter_map(|(sub, offset)| match sub {
                Subscriber::Raw(raw) => Some((raw, offset + 1)),
                Subscriber::Client(_) => None,
            })
            .collect();
        let (reader, finished) = EpollReader::start(subs, t.clone())?;
        let waiter = tokio::task::spawn_local(async move {
            let _ = finished.await;
        });
        return Ok((vec![waiter], Some(reader)));
    }
    // The raw engine's subscribers all read into this one buffer, in turn.
    let buffer = Rc::new(RefCell::new(vec![0u8; fanout_raw::READ_BUFFER]));
    let receivers = sockets
        .into_iter()
        .map(|(sub, offset)| match sub {
            Subscriber::Client(ws) => tokio::task::spawn_local(receive(ws, offset + 1, t.clone())),
            Subscriber::Raw(raw) => tokio::task::spawn_local(fanout_raw::receive(
                raw,
                offset + 1,
                t.clone(),
                buffer.clone(),
            )),
        })
        .collect();
    Ok((receivers, None))
}

/// What the arguments settle before anything connects.
struct Plan {
    /// The subscribers' nodes: address and WebSocket URL.
    nodes: Vec<(SocketAddr, String)>,
    config: WebSocketConfig,
    subscribers: usize,
    publishers: u64,
    /// Events per rate.
    counts: Vec<u64>,
}

impl Plan {
    fn new(a: &FanoutArgs) -> Result<Self, FanoutError> {
        let addrs = if a.subscribe_addr.is_empty() {
            std::slice::from_ref(&a.addr)
        } else {
            &a.subscribe_addr[..]
        };
        let nodes = addrs
            .iter()
            .map(|addr| {
                let server = addr
                    .parse()
                    .map_err(|e| FanoutError::Setup(format!("subscriber address {addr}: {e}")))?;
                Ok((server, format!("ws://{addr}/connection/websocket")))
            })
            .collect::<Result<Vec<_>, FanoutError>>()?;
        Ok(Self {
            nodes,
            config: client_config().map_err(FanoutError::Setup)?,
            subscribers: a.subscribers.max(1),
            publishers: a.publishers.max(1) as u64,
            counts: a
                .rates
                .iter()
                .map(|r| (r * a.seconds).round().max(1.0) as u64)
                .collect(),
        })
    }

    /// Every event of the warm-up and of every rate, plus the stop event.
    fn total_events(&self, warmup: u64) -> usize {
        (warmup + self.counts.iter().sum::<u64>()) as usize + 1
    }
}

impl Tracker {
    /// Bookkeeping for `events` events (the last is the stop event).
    fn new(subscribers: usize, events: usize) -> Self {
        let base = Instant::now();
        Self {
            subscribers: subscribers as u32,
            publish_at: Stamps::new(base, events),
            http_done_at: Stamps::new(base, events),
            received: (0..events).map(|_| AtomicU32::new(0)).collect(),
            last_at: Stamps::new(base, events),
            offset_of: (0..events).map(|_| AtomicU64::new(0)).collect(),
            complete: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
            closed: AtomicU64::new(0),
            stop_seq: events as u64 - 1,
        }
    }
}

/// Connects and subscribes every subscriber, `--concurrency` at a time, and
/// checks that all of them start from the same offset (nothing else
/// publishes). Returns each socket with the channel's offset.
async fn connect_subscribers(
    a: &FanoutArgs,
    plan: &Plan,
) -> Result<Vec<(Subscriber, u64)>, FanoutError> {
    let n = plan.subscribers;
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let mut joins = Vec::with_capacity(n);
    for index in 0..n {
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FanoutError::Thread)?;
        let (server, url) = plan.nodes[index % plan.nodes.len()].clone();
        let (channel, config, engine) = (a.channel.clone(), plan.config.clone(), a.engine);
        joins.push(tokio::task::spawn_local(async move {
            let r = match engine {
                FanoutEngine::Client => subscribe(index, server, &url, &channel, config)
                    .await
                    .map(|(ws, o)| (Subscriber::Client(ws), o)),
                FanoutEngine::Raw | FanoutEngine::Epoll => {
                    let source = source_address(index, server);
                    fanout_raw::subscribe(index, server, source, &channel)
                        .await
                        .map(|(raw, o)| (Subscriber::Raw(raw), o))
                }
            };
            drop(permit);
            r
        }));
    }
    let mut sockets = Vec::with_capacity(n);
    for (index, j) in joins.into_iter().enumerate() {
        match j.await {
            Ok(Ok(s)) => sockets.push(s),
            Ok(Err(detail)) => return Err(FanoutError::Subscribe { index, detail }),
            Err(_) => return Err(FanoutError::Thread),
        }
    }
    let base = sockets.first().map(|s| s.1).unwrap_or(0);
    if let Some((i, s)) = sockets.iter().enumerate().find(|(_, s)| s.1 != base) {
        return Err(FanoutError::Setup(format!(
            "subscriber {i} subscribed at offset {}, subscriber 0 at {base}: is something else publishing to {}?",
            s.1, a.channel
        )));
    }
    Ok(sockets)
}

/// Reports how long connecting took and, with `--server-pid`, the hub's
/// memory per idle subscriber (read after a second's settling).
async fn report_idle_memory(
    a: &FanoutArgs,
    n: usize,
    rss_before: Option<u64>,
    connect_time: Duration,
) -> Result<(), FanoutError> {
    let connect_secs = connect_time.as_secs_f64();
    // Let the hub settle its allocations, then read its memory while all are idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = a.server_pid.and_then(super::rss_bytes);
    let per_sub = match (rss_before, rss_after) {
        (Some(b), Some(af)) => Some(af.saturating_sub(b) as f64 / n as f64),
        _ => None,
    };
    eprintln!(
        "{:>10} {n} subscribers on {} over {} node(s) in {connect_secs:.2} s ({:.0}/s); hub RSS {} -> {} ({})",
        a.label,
        a.channel,
        a.subscribe_addr.len().max(1),
        n as f64 / connect_secs,
        fmt_mib(rss_before),
        fmt_mib(rss_after),
        per_sub
            .map(|p| format!("{:.2} KiB per idle subscriber", p / 1024.0))
            .unwrap_or("no --server-pid".into()),
    );
    emit(
        a.json.as_deref(),
        &serde_json::json!({
            "mode": "fanout-memory", "label": a.label, "subscribers": n, "connect_seconds": connect_secs,
            "server_rss_before": rss_before, "server_rss_after": rss_after,
            "bytes_per_idle_subscriber": per_sub,
        }),
    )
}

/// One rate of the rising series.
struct Step {
    index: usize,
    /// Events per second.
    rate: f64,
    /// Events to publish.
    count: u64,
    /// The `seq` of the step's first event.
    first_seq: u64,
    /// The warm-up before the measured steps (`--warmup`).
    warmup: bool,
}

impl Step {
    /// The seqs of the step's events.
    fn seqs(&self) -> std::ops::Range<usize> {
        self.first_seq as usize..(self.first_seq + self.count) as usize
    }
}

/// Counters read at the start of a step, to take differences at its end.
struct Readings {
    cpu: Option<f64>,
    hub_cpu: Option<f64>,
    wall: Instant,
    hub_latency: Vec<(f64, u64)>,
    jiffies: Vec<(u64, u64)>,
    deliveries: u64,
    reads: u64,
    complete: u64,
}

impl Readings {
    async fn take(a: &FanoutArgs, t: &Tracker, metrics_http: &mut HttpApi) -> Self {
        let (cpu, hub_cpu, wall) = (
            cpu_seconds(None),
            a.server_pid.and_then(|p| cpu_seconds(Some(p))),
            Instant::now(),
        );
        let hub_latency = hub_latency_buckets(metrics_http).await;
        Self {
            cpu,
            hub_cpu,
            wall,
            hub_latency,
            jiffies: cpu_jiffies(),
            deliveries: t.deliveries.load(Ordering::Relaxed),
            reads: t.reads.load(Ordering::Relaxed),
            complete: t.complete.load(Ordering::Acquire),
        }
    }
}

/// One measured step: publish at the step's rate, wait for the deliveries,
/// report. Returns whether every event reached every subscriber.
async fn measure_step(
    a: &FanoutArgs,
    plan: &Plan,
    t: &Arc<Tracker>,
    step: &Step,
    pad: &str,
) -> Result<bool, FanoutError> {
    let mut metrics_http = HttpApi::new(&a.addr, &a.api_key);
    let before = Readings::take(a, t, &mut metrics_http).await;
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let published = publish_step(a, plan, t, step, pad, start).await?;
    let publish_secs = start.elapsed().as_secs_f64();
    let complete = wait_for_deliveries(a, t, before.complete, published).await;
    let outcome = Outcome {
        published,
        publish_secs,
        complete,
    };
    report_step(a, plan, t, step, &before, &mut metrics_http, &outcome).await?;
    Ok(complete)
}

/// What a step's publishing and waiting came to.
struct Outcome {
    /// Events published.
    published: u64,
    /// Seconds from the scheduled start to the last publisher's end.
    publish_secs: f64,
    /// Whether every event reached every subscriber in time.
    complete: bool,
}

/// Publishes the step's events over `--publishers` HTTP connections, each
/// event at its scheduled time from `start`. Returns how many were published.
///
/// A hub that cannot keep up slows the publishers down (each HTTP call waits
/// for its reply); the step still ends on time. With several HTTP
/// connections, seq order and offset order may differ: order is checked by
/// offset, and each seq must sit at one offset for all.
async fn publish_step(
    a: &FanoutArgs,
    plan: &Plan,
    t: &Arc<Tracker>,
    step: &Step,
    pad: &str,
    start: tokio::time::Instant,
) -> Result<u64, FanoutError> {
    let hard_end = start + Duration::from_secs_f64(a.seconds + 0.25);
    let publishers = plan.publishers;
    let (rate, count, seq0) = (step.rate, step.count, step.first_seq);
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let (t, addr, key, channel, pad) = (
            t.clone(),
            a.addr.clone(),
            a.api_key.clone(),
            a.channel.clone(),
            pad.to_owned(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let mut http = HttpApi::new(&addr, &key);
            let (mut i, mut published) = (p, 0u64);
            while i < count && tokio::time::Instant::now() < hard_end {
                let seq = seq0 + i;
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
                let body =
                    format!(r#"{{"channel":"{channel}","data":{{"seq":{seq},"p":"{pad}"}}}}"#);
                t.publish_at.set(seq as usize, Instant::now());
                match http.post("publish", &body).await {
                    Ok((200, reply)) => {
                        let text = String::from_utf8_lossy(&reply);
                        if number_after(text.as_bytes(), br#""offset":"#).is_none() {
                            return Err(format!("publish reply without offset: {text:.200}"));
                        }
                    }
                    Ok((status, reply)) => {
                        return Err(format!(
                            "publish: HTTP {status} {:.200}",
                            String::from_utf8_lossy(&reply)
                        ));
                    }
                    Err(e) => return Err(format!("publish: {e}")),
                }
                t.http_done_at.set(seq as usize, Instant::now());
                published += 1;
                i += publishers;
            }
            Ok(published)
        }));
    }
    let mut published = 0u64;
    for task in tasks {
        match task.await {
            Ok(Ok(n)) => published += n,
            Ok(Err(detail)) => {
                return Err(FanoutError::Http {
                    method: "publish",
                    detail,
                });
            }
            Err(_) => return Err(FanoutError::Thread),
        }
    }
    Ok(published)
}

/// Waits (at most `--drain-timeout`) for every subscriber to have every
/// event of the step. Returns whether they all did.
async fn wait_for_deliveries(a: &FanoutArgs, t: &Tracker, complete0: u64, published: u64) -> bool {
    let drain_deadline = Instant::now() + Duration::from_secs_f64(a.drain_timeout);
    let complete = || t.complete.load(Ordering::Acquire) - complete0;
    while complete() < published && Instant::now() < drain_deadline && t.closed_count() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    complete() == published
}

/// Publish-to-last-delivery latencies (ms, sorted) of the events every
/// subscriber received, HTTP publish latencies (ms, sorted), and the span
/// from the first publication to the last delivery (s).
fn step_latencies(t: &Tracker, step: &Step) -> (Vec<f64>, Vec<f64>, f64) {
    let (mut latencies, mut http_ms) = (Vec::new(), Vec::new());
    let mut first_publish: Option<Instant> = None;
    let mut last_delivery: Option<Instant> = None;
    for i in step.seqs() {
        let (Some(p), Some(l)) = (t.publish_at.get(i), t.last_at.get(i)) else {
            continue;
        };
        first_publish = Some(first_publish.map_or(p, |f| f.min(p)));
        last_delivery = Some(last_delivery.map_or(l, |x| x.max(l)));
        if t.received[i].load(Ordering::Acquire) == t.subscribers {
            latencies.push(l.saturating_duration_since(p).as_secs_f64() * 1000.0);
        }
        if let Some(h) = t.http_done_at.get(i) {
            http_ms.push(h.saturating_duration_since(p).as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    http_ms.sort_by(f64::total_cmp);
    let span = match (first_publish, last_delivery) {
        (Some(f), Some(l)) => l.saturating_duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    (latencies, http_ms, span)
}

/// Appends the step's events to `path` (`--events`).
fn write_events(path: &std::path::Path, t: &Tracker, step: &Step) -> Result<(), FanoutError> {
    use std::fmt::Write as _;
    let ms = |from: Instant, to: Option<Instant>| {
        to.map_or("-".to_owned(), |to| {
            format!(
                "{:.3}",
                to.saturating_duration_since(from).as_secs_f64() * 1000.0
            )
        })
    };
    let first = step.seqs().find_map(|i| t.publish_at.get(i));
    let label = if step.warmup {
        "warmup".to_owned()
    } else {
        step.index.to_string()
    };
    let mut out = String::new();
    for i in step.seqs() {
        let (Some(first), Some(p)) = (first, t.publish_at.get(i)) else {
            continue;
        };
        let last = (t.received[i].load(Ordering::Acquire) == t.subscribers)
            .then(|| t.last_at.get(i))
            .flatten();
        let _ = writeln!(
            out,
            "{label} {i} {} {} {}",
            ms(first, Some(p)),
            ms(p, t.http_done_at.get(i)),
            ms(p, last)
        );
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, out.as_bytes()))
        .map_err(FanoutError::Io)
}

/// Prints the step's line and emits its JSON record.
async fn report_step(
    a: &FanoutArgs,
    plan: &Plan,
    t: &Tracker,
    step: &Step,
    before: &Readings,
    metrics_http: &mut HttpApi,
    outcome: &Outcome,
) -> Result<(), FanoutError> {
    let (n, rate, count) = (plan.subscribers, step.rate, step.count);
    let Outcome {
        published,
        publish_secs,
        complete,
    } = *outcome;
    let wall = before.wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds(None)
        .zip(before.cpu)
        .map(|(b, a0)| 100.0 * (b - a0) / wall);
    let hub_cpu = a
        .server_pid
        .and_then(|p| cpu_seconds(Some(p)))
        .zip(before.hub_cpu)
        .map(|(b, a0)| 100.0 * (b - a0) / wall);
    let busy = cpu_busy(&before.jiffies, &cpu_jiffies());
    let rss_step = a.server_pid.and_then(super::rss_bytes);
    let loadgen_cpu_s = cpu_seconds(None).zip(before.cpu).map(|(b, a0)| b - a0);
    let hub_hist1 = hub_latency_buckets(metrics_http).await;
    let hub_p50 = hub_quantile_ms(&before.hub_latency, &hub_hist1, 0.5);
    let hub_p99 = hub_quantile_ms(&before.hub_latency, &hub_hist1, 0.99);
    // The load generator's CPU per event: a floor under what it can measure
    // as publish-to-last-delivery (it reads the N deliveries one by one).
    let loadgen_ms_per_event = loadgen_cpu_s.map(|c| 1000.0 * c / published as f64);
    let deliveries = t.deliveries.load(Ordering::Relaxed) - before.deliveries;
    // How many deliveries one read carried (raw engine): a read costs the
    // load generator far more than a delivery it carries.
    let reads = t.reads.load(Ordering::Relaxed) - before.reads;
    let per_read = (reads > 0).then(|| deliveries as f64 / reads as f64);
    let (latencies, http_ms, span) = step_latencies(t, step);
    if let Some(path) = &a.events {
        write_events(path, t, step)?;
    }
    let per_sec = if span > 0.0 {
        deliveries as f64 / span
    } else {
        0.0
    };
    let achieved = published as f64 / publish_secs;
    eprintln!(
        "{:>10} {}rate {rate:>6} ev/s (achieved {achieved:>7.1}) x {n}: {per_sec:>10.0} deliveries/s, publish-to-last-delivery p50 {:>7.2} ms p99 {:>7.2} ms max {:>7.2} ms, HTTP publish p50 {:.2} ms, loadgen CPU {} ({} ms per event{}), hub CPU {}, CPUs busy {}; hub-side delivery latency p50 {} ms p99 {} ms (bucket bounds), hub RSS {}{}",
        a.label,
        if step.warmup { "warm-up: " } else { "" },
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        percentile(&http_ms, 0.5),
        cpu.map(|c| format!("{c:.0}%")).unwrap_or("?".into()),
        loadgen_ms_per_event
            .map(|c| format!("{c:.1}"))
            .unwrap_or("?".into()),
        per_read
            .map(|r| format!(", {r:.2} deliveries per read"))
            .unwrap_or_default(),
        hub_cpu.map(|c| format!("{c:.0}%")).unwrap_or("?".into()),
        busy.iter()
            .map(|b| format!("{b:.0}%"))
            .collect::<Vec<_>>()
            .join("/"),
        fmt_bound(hub_p50, &hub_hist1),
        fmt_bound(hub_p99, &hub_hist1),
        fmt_mib(rss_step),
        if complete {
            String::new()
        } else {
            format!(
                "  INCOMPLETE: {} of {published} events reached all subscribers within {} s",
                t.complete.load(Ordering::Acquire) - before.complete,
                a.drain_timeout
            )
        },
    );
    emit(
        a.json.as_deref(),
        &serde_json::json!({
            "mode": if step.warmup { "fanout-warmup" } else { "fanout" }, "label": a.label, "subscribers": n, "nodes": plan.nodes.len(), "step": step.index, "rate": rate,
            "achieved_rate": achieved, "events": published, "scheduled_events": count, "deliveries": deliveries,
            "expected_deliveries": published * n as u64, "complete": complete,
            "deliveries_per_sec": per_sec, "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99), "max_ms": latencies.last(),
            "http_publish_p50_ms": percentile(&http_ms, 0.5), "http_publish_p99_ms": percentile(&http_ms, 0.99),
            "loadgen_cpu_percent": cpu, "hub_cpu_percent": hub_cpu, "cpu_busy_percent": busy,
            "loadgen_cpu_ms_per_event": loadgen_ms_per_event, "server_rss_after_step": rss_step,
            "hub_delivery_latency_p50_le_ms": hub_p50, "hub_delivery_latency_p99_le_ms": hub_p99,
            "errors": t.errors.load(Ordering::Relaxed), "engine": a.engine.name(), "deliveries_per_read": per_read,
        }),
    )
}

/// Publishes the stop event, on which every subscriber closes, and waits
/// (at most 30 s) for their read loops to end. Skipped once a subscriber
/// was closed by the hub.
async fn stop_subscribers(a: &FanoutArgs, t: &Tracker, receivers: Vec<JoinHandle<()>>) {
    if t.closed_count() > 0 {
        return;
    }
    let stop = t.stop_seq;
    let mut http = HttpApi::new(&a.addr, &a.api_key);
    let body = format!(
        r#"{{"channel":"{}","data":{{"seq":{stop},"stop":true}}}}"#,
        a.channel
    );
    t.publish_at.set(stop as usize, Instant::now());
    if let Err(e) = http.post("publish", &body).await {
        t.error(format!("stop event: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in receivers {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, r).await.is_err() {
            break;
        }
    }
}

/// Prints how many deliveries were checked; fails if any was wrong.
fn verdict(a: &FanoutArgs, t: &Tracker) -> Result<(), FanoutError> {
    let errors = t.errors.load(Ordering::Relaxed);
    eprintln!(
        "{:>10} {} deliveries checked (offset order, exactly once, seq at its offset); {errors} errors{}",
        a.label,
        t.deliveries.load(Ordering::Relaxed),
        if errors > 0 {
            format!(
                ": {:?}",
                t.first_errors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            )
        } else {
            String::new()
        }
    );
    if errors > 0 {
        return Err(FanoutError::Setup(format!("{errors} delivery errors")));
    }
    Ok(())
}

/// A histogram bucket bound for display; past the last finite bucket, "> last".
fn fmt_bound(v: Option<f64>, buckets: &[(f64, u64)]) -> String {
    match v {
        None => "?".into(),
        Some(v) if v.is_finite() => format!("<= {v:.1}"),
        Some(_) => {
            let last = buckets
                .iter()
                .map(|b| b.0)
                .filter(|b| b.is_finite())
                .fold(0.0, f64::max);
            format!("> {:.1}", last * 1000.0)
        }
    }
}

fn fmt_mib(b: Option<u64>) -> String {
    b.map(|b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64))
        .unwrap_or("?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numbers_in_a_push() {
        let push = r#"{"push":"publication","channel":"fanout:bench","offset":12,"data":{"seq":7,"p":"x"}}"#;
        assert!(find(push.as_bytes(), br#""push":"publication""#).is_some());
        assert_eq!(number_after(push.as_bytes(), br#""offset":"#), Some(12));
        assert_eq!(number_after(push.as_bytes(), br#""seq":"#), Some(7));
        assert_eq!(number_after(push.as_bytes(), br#""missing":"#), None);
        assert_eq!(push_numbers(push.as_bytes()), Some((12, 7)));
        assert_eq!(push_numbers(br#"{"push":"join","offset":1,"seq":2}"#), None);
        // A key at the very end, or followed by no digits.
        assert_eq!(number_after(br#"{"offset":"#, br#""offset":"#), None);
        assert_eq!(number_after(br#"{"offset":"x"}"#, br#""offset":"#), None);
        assert_eq!(find(b"\"a", b"\"abc"), None);
        assert_eq!(find(b"", b"\"a"), None);
        assert_eq!(find(b"ab\"", b"\""), Some(2));
        // The first occurrence wins, also after an earlier partial match.
        assert_eq!(
            find(br#""off" "offset":1,"offset":2"#, br#""offset":"#),
            Some(6)
        );
    }

    #[test]
    fn quantiles_from_histogram_deltas() {
        let before = [(0.001, 10), (0.002, 10), (f64::INFINITY, 10)];
        let after = [(0.001, 60), (0.002, 108), (f64::INFINITY, 110)];
        assert_eq!(hub_quantile_ms(&before, &after, 0.5), Some(1.0));
        assert_eq!(hub_quantile_ms(&before, &after, 0.98), Some(2.0));
        assert_eq!(hub_quantile_ms(&before, &after, 0.99), Some(f64::INFINITY));
        assert_eq!(hub_quantile_ms(&after, &after, 0.5), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
    }
}
