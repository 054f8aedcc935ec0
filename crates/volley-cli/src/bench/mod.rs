//! `volley bench`: a load generator for WebSocket echo servers.
//!
//! Every echoed byte is checked. Results print as a table and, with
//! `--json`, append one JSON line per run.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use tokio::net::TcpSocket;
use volley::{ClientBuilder, DeflateConfig, Message, WebSocketConfig};

mod fanout;
mod fanout_epoll;
mod fanout_raw;
mod publish;
mod raw;

/// Arguments of `volley bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Throughput: C connections, each with K messages of S bytes in flight.
    Echo(EchoArgs),
    /// Round-trip latency percentiles of one connection, one message at a time.
    Latency(LatencyArgs),
    /// Open N idle connections, then report the server's memory per connection.
    Connect(ConnectArgs),
    /// Fan-out of `volley serve`: N subscribers on one channel, events
    /// published through the HTTP API at rising rates.
    Fanout(fanout::FanoutArgs),
    /// Publications per second through the HTTP API (`broadcast` to many
    /// channels), over one or several nodes.
    Publish(publish::PublishArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// The echo server.
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Offer permessage-deflate.
    #[arg(long)]
    compression: bool,
    /// Append a JSON line with the result to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// A label for the result (e.g. the server's name).
    #[arg(long, default_value = "")]
    label: String,
    /// Load engine: `raw` drives sockets directly (cheap enough for servers
    /// past a million messages per second); `client` uses the volley client
    /// per connection (always used with --compression).
    #[arg(long, value_enum, default_value_t = Engine::Raw)]
    engine: Engine,
    /// The server is a raw TCP echo (the ceiling): no handshake, and the
    /// echo must equal the bytes sent (masked frames and all).
    #[arg(long)]
    raw_tcp: bool,
    /// Carry the WebSockets over one HTTP/2 connection (RFC 8441 extended
    /// CONNECT: h2c for ws://, ALPN h2 for wss://) instead of one TCP
    /// connection each. Runs on the client engine.
    #[arg(long)]
    http2: bool,
}

/// Which load engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Engine {
    /// Raw sockets, frames encoded once, one current-thread runtime per thread.
    Raw,
    /// The volley client, one per connection.
    Client,
}

impl Common {
    /// Whether the raw engine runs.
    fn raw(&self) -> bool {
        self.raw_tcp || (self.engine == Engine::Raw && !self.compression && !self.http2)
    }

    fn target(&self) -> Result<raw::Target, BoxError> {
        use std::net::ToSocketAddrs as _;
        let t = volley::Target::parse(&self.url)?;
        if t.tls {
            return Err("the raw engine speaks ws:// only (use --engine client)".into());
        }
        let addr = (t.host.as_str(), t.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", t.host))?;
        Ok(raw::Target {
            addr,
            host: t.host_header,
            path: t.path,
            raw_tcp: self.raw_tcp,
            protocol: None,
        })
    }
}

/// Whether a run of this length gets a progress bar (on a terminal only).
fn show_progress(seconds: f64) -> bool {
    use std::io::IsTerminal as _;
    seconds >= 3.0 && std::io::stderr().is_terminal()
}

#[derive(Debug, Args)]
struct EchoArgs {
    #[command(flatten)]
    common: Common,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// Messages in flight per connection.
    #[arg(short = 'k', long, default_value_t = 16)]
    in_flight: usize,
    /// Message size in bytes.
    #[arg(short = 's', long, default_value_t = 20)]
    size: usize,
    /// Measured seconds.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send text messages instead of binary.
    #[arg(long)]
    text: bool,
    /// Load threads (raw engine), each with its own current-thread runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// PID of the server: its CPU use during the measurement is reported
    /// (CPU time per message is robust to a busy machine).
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    #[command(flatten)]
    common: Common,
    /// Message size in bytes.
    #[arg(short = 's', long, default_value_t = 32)]
    size: usize,
    /// Measured seconds.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to open and hold.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    connections: usize,
    /// PID of the server, whose resident memory is read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections opened concurrently.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// Connections opened from one source address before moving to the next.
const PORTS_PER_SOURCE: usize = 20_000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A load run that failed, against which server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BenchRunError {
    /// The run against `url` failed.
    #[error("bench against {url}: {source}")]
    Against {
        /// The server's URL (`--url`).
        url: String,
        /// Why.
        source: BoxError,
    },
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let against = |url: String| move |source| BenchRunError::Against { url, source }.into();
    let result = match args.mode {
        Mode::Echo(a) => {
            let url = a.common.url.clone();
            echo(a).await.map_err(against(url))
        }
        Mode::Latency(a) => {
            let url = a.common.url.clone();
            latency(a).await.map_err(against(url))
        }
        Mode::Connect(a) => {
            let url = a.common.url.clone();
            connect(a).await.map_err(against(url))
        }
        Mode::Fanout(a) => fanout::run(a).await.map_err(BoxError::from),
        Mode::Publish(a) => publish::run(a).await.map_err(BoxError::from),
    };
    result.map_err(|e: BoxError| e as Box<dyn std::error::Error>)
}

fn client_config(compression: bool) -> Result<WebSocketConfig, BoxError> {
    let protocol = volley::Config::builder()
        .max_size(256 << 20)
        .deflate(compression.then(|| DeflateConfig::default().threshold(0)))
        .build()?;
    Ok(WebSocketConfig::builder().protocol(protocol).build()?)
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    process_cpu_seconds("self")
}

/// CPU seconds (user + system) of process `pid` ("self" for this one).
fn process_cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident memory of a process in bytes.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn payload(size: usize, text: bool) -> Message {
    let bytes: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    if text {
        Message::text(String::from_utf8(bytes).unwrap_or_default())
    } else {
        Message::binary(bytes)
    }
}

fn emit(common: &Common, line: serde_json::Value) -> Result<(), BoxError> {
    Ok(emit_line(common.json.as_deref(), &line)?)
}

/// Prints a result line, and appends it to the JSON-lines file when there
/// is one.
pub(crate) fn emit_line(
    path: Option<&std::path::Path>,
    line: &serde_json::Value,
) -> std::io::Result<()> {
    println!("{line}");
    if let Some(path) = path {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// Messages counted, seconds measured, CPU seconds used, compression.
type EchoOutcome = (u64, f64, f64, bool);

async fn echo(a: EchoArgs) -> Result<(), BoxError> {
    let server = a.server_pid.map(|p| p.to_string());
    let server_cpu = || server.as_deref().map(process_cpu_seconds);
    let server_cpu0 = server_cpu();
    let (messages, elapsed, cpu, compressed, window_server_cpu) = if a.common.raw() {
        let spec = raw::EchoSpec {
            target: a.common.target()?,
            connections: a.connections,
            in_flight: a.in_flight.max(1),
            size: a.size,
            text: a.text,
            warmup: Duration::from_secs_f64(a.warmup),
            duration: Duration::from_secs_f64(a.duration),
            threads: a.threads,
            progress: show_progress(a.warmup + a.duration),
        };
        let pid = a.server_pid.map(|p| p.to_string());
        let r = tokio::task::spawn_blocking(move || {
            raw::run_echo(&spec, || {
                let server = pid.as_deref().map(process_cpu_seconds).unwrap_or(0.0);
                [cpu_seconds(), server]
            })
        })
        .await??;
        let server = a.server_pid.map(|_| r.server_cpu_seconds);
        (r.messages, r.seconds, r.cpu_seconds, false, server)
    } else {
        let (m, e, c, z) = echo_client(&a).await?;
        (m, e, c, z, None)
    };
    let rate = messages as f64 / elapsed;
    let cpu_percent = 100.0 * cpu / elapsed;
    // The server's CPU over the whole run (warm-up included) per message
    // measured is an upper bound; raw runs measure the window exactly.
    let server_cpu = match (window_server_cpu, server_cpu0, server_cpu()) {
        (Some(window), _, _) => Some(window),
        (None, Some(c0), Some(c1)) => Some(c1 - c0),
        _ => None,
    };
    let server_us_per_msg = server_cpu.map(|c| 1e6 * c / messages.max(1) as f64);
    eprintln!(
        "{:>12} {:>5} conns x {:>8} B, K={:<3} compression={:<5} {:>12.0} msg/s {:>9.1} MiB/s  loadgen CPU {:>5.1}%{}",
        a.common.label,
        a.connections,
        a.size,
        a.in_flight,
        compressed,
        rate,
        rate * a.size as f64 / (1 << 20) as f64,
        cpu_percent,
        server_cpu
            .map(|c| format!(
                "  server CPU {:.1}% ({:.2} us/msg)",
                100.0 * c / elapsed,
                1e6 * c / messages.max(1) as f64
            ))
            .unwrap_or_default()
    );
    emit(
        &a.common,
        serde_json::json!({
            "mode": "echo", "label": a.common.label, "connections": a.connections, "in_flight": a.in_flight,
            "size": a.size, "text": a.text, "compression": compressed, "seconds": elapsed, "messages": messages,
            "messages_per_sec": rate, "loadgen_cpu_percent": cpu_percent,
            "engine": if a.common.raw() { "raw" } else { "client" }, "threads": a.threads,
            "raw_tcp": a.common.raw_tcp,
            "server_cpu_percent": server_cpu.map(|c| 100.0 * c / elapsed),
            "server_us_per_message": server_us_per_msg,
        }),
    )?;
    Ok(())
}

/// What every echo connection of a client-engine run shares.
#[derive(Clone)]
struct Echoing {
    message: Message,
    in_flight: usize,
    counted: Arc<AtomicU64>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Echoing {
    /// One connection: `in_flight` messages out, each echo checked, counted
    /// while measuring and answered with the next until `stop`; then close.
    async fn run<S>(self, mut ws: volley::WebSocket<S>) -> Result<(), BoxError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let message = self.message;
        for _ in 0..self.in_flight {
            ws.feed(message.clone()).await?;
        }
        ws.flush().await?;
        let mut outstanding = self.in_flight;
        while outstanding > 0 {
            let echoed = match ws.recv().await {
                Some(m) => m?,
                None => return Err("server closed".into()),
            };
            if echoed != message {
                return Err("echoed bytes differ from what was sent".into());
            }
            outstanding -= 1;
            if self.measuring.load(Ordering::Relaxed) {
                self.counted.fetch_add(1, Ordering::Relaxed);
            }
            if !self.stop.load(Ordering::Relaxed) {
                ws.send(message.clone()).await?;
                outstanding += 1;
            }
        }
        ws.close(volley::CloseCode::NORMAL, "").await?;
        Ok(())
    }
}

/// The echo run on the volley client (one per connection, or all on one
/// HTTP/2 connection).
async fn echo_client(a: &EchoArgs) -> Result<EchoOutcome, BoxError> {
    let config = client_config(a.common.compression)?;
    let message = payload(a.size, a.text);
    let counted = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(a.connections);
    let mut compressed = false;
    let shared = Echoing {
        message,
        in_flight: a.in_flight,
        counted: counted.clone(),
        measuring: measuring.clone(),
        stop: stop.clone(),
    };
    if a.common.http2 {
        let h2 = ClientBuilder::new(a.common.url.clone())
            .config(config.clone())
            .connect_http2()
            .await?;
        let path = volley::Target::parse(&a.common.url)?.path;
        for _ in 0..a.connections {
            let (ws, _) = h2.websocket(&path).await?;
            compressed |= ws.is_compressed();
            tasks.push(tokio::spawn(shared.clone().run(ws)));
        }
    } else {
        for _ in 0..a.connections {
            let (ws, _) = ClientBuilder::new(a.common.url.clone())
                .config(config.clone())
                .connect()
                .await?;
            compressed |= ws.is_compressed();
            tasks.push(tokio::spawn(shared.clone().run(ws)));
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let (cpu1, elapsed) = (cpu_seconds(), t0.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    let messages = counted.load(Ordering::Relaxed);
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(30), t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(format!("connection failed: {e}").into()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err("a connection did not drain in 30 s".into()),
        }
    }
    Ok((messages, elapsed, cpu1 - cpu0, compressed))
}

async fn latency(a: LatencyArgs) -> Result<(), BoxError> {
    let mut samples = if a.common.raw() {
        let spec = raw::LatencySpec {
            target: a.common.target()?,
            size: a.size,
            warmup: Duration::from_secs_f64(a.warmup),
            duration: Duration::from_secs_f64(a.duration),
        };
        tokio::task::spawn_blocking(move || raw::run_latency(&spec)).await??
    } else {
        latency_client(&a).await?
    };
    if samples.is_empty() {
        return Err("no round trip completed".into());
    }
    samples.sort_unstable();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0
    };
    eprintln!(
        "{:>12} latency {} B: p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  ({} round trips)",
        a.common.label,
        a.size,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        samples.len()
    );
    emit(
        &a.common,
        serde_json::json!({
            "mode": "latency", "label": a.common.label, "size": a.size, "round_trips": samples.len(),
            "p50_us": pct(0.5), "p99_us": pct(0.99), "p999_us": pct(0.999),
            "engine": if a.common.raw() { "raw" } else { "client" }, "raw_tcp": a.common.raw_tcp,
        }),
    )?;
    Ok(())
}

/// Round trips in nanoseconds, on the volley client.
async fn latency_client(a: &LatencyArgs) -> Result<Vec<u64>, BoxError> {
    let config = client_config(a.common.compression)?;
    let (mut ws, _) = ClientBuilder::new(a.common.url.clone())
        .config(config)
        .connect()
        .await?;
    let message = payload(a.size, false);
    let mut samples = Vec::new();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    while Instant::now() < end {
        let t = Instant::now();
        ws.send(message.clone()).await?;
        match ws.recv().await {
            Some(Ok(m)) if m == message => {}
            Some(Ok(_)) => return Err("echoed bytes differ".into()),
            Some(Err(e)) => return Err(e.into()),
            None => return Err("server closed".into()),
        }
        if t >= measure_from {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    ws.close(volley::CloseCode::NORMAL, "").await?;
    Ok(samples)
}

async fn connect(a: ConnectArgs) -> Result<(), BoxError> {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let before = a.server_pid.and_then(rss_bytes);
    let pid = a.server_pid;
    let (held, elapsed, after) = if a.common.raw() {
        let spec = raw::ConnectSpec {
            target: a.common.target()?,
            connections: a.connections,
            concurrency: a.concurrency,
            ports_per_source: PORTS_PER_SOURCE,
            progress: show_progress(a.connections as f64 / 5000.0),
        };
        let r = tokio::task::spawn_blocking(move || {
            raw::run_connect(&spec, || pid.and_then(rss_bytes))
        })
        .await??;
        (r.connections, r.seconds, r.measured)
    } else {
        connect_client(&a).await?
    };
    let per_conn = match (before, after) {
        (Some(b), Some(a2)) => Some((a2.saturating_sub(b)) as f64 / held as f64),
        _ => None,
    };
    eprintln!(
        "{:>12} {} connections in {:.2} s ({:.0}/s); server RSS {} -> {} ({})",
        a.common.label,
        held,
        elapsed,
        held as f64 / elapsed,
        before
            .map(|b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64))
            .unwrap_or("?".into()),
        after
            .map(|b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64))
            .unwrap_or("?".into()),
        per_conn
            .map(|p| format!("{:.2} KiB per connection", p / 1024.0))
            .unwrap_or("no --server-pid".into()),
    );
    emit(
        &a.common,
        serde_json::json!({
            "mode": "connect", "label": a.common.label, "connections": held, "seconds": elapsed,
            "connections_per_sec": held as f64 / elapsed, "server_rss_before": before,
            "server_rss_after": after, "bytes_per_connection": per_conn, "compression": a.common.compression,
            "engine": if a.common.raw() { "raw" } else { "client" },
        }),
    )?;
    Ok(())
}

/// WebSockets per HTTP/2 connection in `bench connect --http2`: under the
/// 200 concurrent streams hyper's server allows by default.
const STREAMS_PER_H2_CONNECTION: usize = 100;

/// `connect_client` over HTTP/2: the WebSockets are streams of HTTP/2
/// connections, [`STREAMS_PER_H2_CONNECTION`] on each, opened `concurrency`
/// at a time.
async fn connect_http2(
    a: &ConnectArgs,
    config: WebSocketConfig,
) -> Result<(usize, f64, Option<u64>), BoxError> {
    let started = Instant::now();
    let path = volley::Target::parse(&a.common.url)?.path;
    let mut connections = Vec::new();
    let mut held = Vec::with_capacity(a.connections);
    while held.len() < a.connections {
        let h2 = ClientBuilder::new(a.common.url.clone())
            .config(config.clone())
            .connect_http2()
            .await?;
        let on_this = STREAMS_PER_H2_CONNECTION.min(a.connections - held.len());
        let mut opened = 0;
        while opened < on_this {
            let batch = a.concurrency.clamp(1, on_this - opened);
            let opening: Vec<_> = (0..batch)
                .map(|_| {
                    let (h2, path) = (h2.clone(), path.clone());
                    tokio::spawn(async move { h2.websocket(&path).await })
                })
                .collect();
            for task in opening {
                held.push(task.await??.0);
            }
            opened += batch;
        }
        connections.push(h2);
    }
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = a.server_pid.and_then(rss_bytes);
    let count = held.len();
    for mut ws in held {
        let _ = ws.close(volley::CloseCode::NORMAL, "").await;
    }
    drop(connections);
    Ok((count, elapsed, after))
}

/// Opens and holds the connections with the volley client; returns how many,
/// the seconds it took, and the server's RSS once they were idle.
async fn connect_client(a: &ConnectArgs) -> Result<(usize, f64, Option<u64>), BoxError> {
    let config = client_config(a.common.compression)?;
    if a.common.http2 {
        return connect_http2(a, config).await;
    }
    let target = volley::Target::parse(&a.common.url)?;
    let server: SocketAddr = format!("{}:{}", target.host, target.port).parse()?;
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let mut tasks = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let permit = semaphore.clone().acquire_owned().await?;
        let (config, url) = (config.clone(), a.common.url.clone());
        tasks.push(tokio::spawn(async move {
            let socket = TcpSocket::new_v4()?;
            // Past the first port range, spread across 127.0.0.x source
            // addresses (binding first costs a port search, so only then).
            if server.ip().is_loopback() && i >= PORTS_PER_SOURCE {
                let source = Ipv4Addr::new(127, 0, 0, 1 + (i / PORTS_PER_SOURCE) as u8);
                socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
            }
            let tcp = socket.connect(server).await?;
            tcp.set_nodelay(true)?;
            let (ws, _) = ClientBuilder::new(url)
                .config(config)
                .connect_on(tcp)
                .await?;
            drop(permit);
            Ok::<_, BoxError>(ws)
        }));
    }
    let mut held = Vec::with_capacity(a.connections);
    for t in tasks {
        held.push(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the server settle its allocations before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = a.server_pid.and_then(rss_bytes);
    let count = held.len();
    // Close properly, so the server closes TCP first and the TIME_WAIT
    // states (and their ports) stay on its side, not on ours.
    let closing: Vec<_> = held
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { ws.close(volley::CloseCode::NORMAL, "").await }))
        .collect();
    for c in closing {
        let _ = c.await;
    }
    Ok((count, elapsed, after))
}
