//! `volley serve`: the realtime hub.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use volley_hub::{DrainConfig, TlsConfig};
use volley_hub::{HubConfig, Server};

/// Arguments of `volley serve`. Flags override the configuration file.
#[derive(Debug, Args)]
#[command(after_help = "\
With no --config, the hub runs the demo: anonymous clients, the `chat` and `ticker`
namespaces, a ticker publishing to ticker:demo, and random API and admin keys
(printed at start). Open the printed URL in a browser.

Examples:
  volley serve                                   # the demo at http://127.0.0.1:8000/
  volley serve --listen 8001                     # the demo at http://127.0.0.1:8001/
  volley serve --listen localhost:8000
  volley serve --config volley.toml              # see docs/volley.example.toml
  volley serve --listen 0.0.0.0:443 --tls-cert cert.pem --tls-key key.pem

SIGTERM or SIGINT drains: new upgrades get 503, clients are told to reconnect
within drain.spread_ms, the rest are closed with 1001 after drain.grace_ms.
A second SIGINT or SIGTERM during the drain exits at once.

Keys are printed only when the demo generates them; keys given by flag,
environment or file are not echoed.")]
pub(crate) struct ServeArgs {
    /// A TOML configuration file (every key optional; see docs/volley.example.toml).
    #[arg(long, env = "VOLLEY_CONFIG")]
    config: Option<PathBuf>,
    /// The address to listen on: host:port (a name is resolved), :port or a
    /// bare port (both on 127.0.0.1) [default: 127.0.0.1:8000, or `listen` in
    /// the file].
    #[arg(long, env = "VOLLEY_LISTEN", value_parser = crate::listen::parse)]
    listen: Option<SocketAddr>,
    /// Connections the kernel queues before they are accepted [default: 1024,
    /// or `limits.listen_backlog` in the file].
    #[arg(long, env = "VOLLEY_BACKLOG")]
    backlog: Option<u32>,
    /// Push bytes queued for all clients together; past three quarters of it
    /// the clients with the largest backlogs are disconnected with 4002
    /// [default: a quarter of the memory this process may use, or
    /// `limits.outbound_budget_bytes` in the file].
    #[arg(long, env = "VOLLEY_OUTBOUND_BUDGET", value_name = "BYTES")]
    outbound_budget: Option<usize>,
    /// The HTTP API key (`Authorization: apikey KEY`) [default: random in the demo].
    #[arg(long, env = "VOLLEY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The admin page key [default: random in the demo].
    #[arg(long, env = "VOLLEY_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// The HS256 secret of connection and subscription tokens.
    #[arg(long, env = "VOLLEY_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// An Origin allowed to open WebSockets (repeatable; none given: any origin).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// A load balancer or proxy (CIDR, e.g. 10.0.0.0/8) trusted with the
    /// client's address: its PROXY protocol header and X-Forwarded-For
    /// (repeatable; replaces `trusted_proxies` of the file).
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = "VOLLEY_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxy: Vec<ipnet::IpNet>,
    /// The TLS certificate chain (PEM); with --tls-key, serves https:// and wss://.
    #[arg(long, requires = "tls_key", env = "VOLLEY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long, requires = "tls_cert", env = "VOLLEY_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Without TLS, also accept HTTP/2 with prior knowledge (h2c): WebSockets by
    /// extended CONNECT (RFC 8441) from a proxy or CDN speaking HTTP/2 to the origin.
    #[arg(long, env = "VOLLEY_H2C")]
    h2c: bool,
    /// The engine: `memory` (one process) or `redis` (many nodes; see docs/cluster.md)
    /// [default: memory, or `engine` in the file].
    #[arg(long, env = "VOLLEY_ENGINE", value_parser = ["memory", "redis"])]
    engine: Option<String>,
    /// A Redis URL of the redis engine (repeatable: one per shard); `redis://host:port`,
    /// `rediss://`, or `redis+sentinel://host:port[,host:port]/master_name`.
    #[arg(long = "redis-url", env = "VOLLEY_REDIS_URL")]
    redis_url: Vec<String>,
    /// Connection threads: each runs its own share of the connections and
    /// the fan-out to them, so a publication reaches every share in
    /// parallel; 1 runs everything on one thread [default: the CPUs this
    /// process may run on].
    #[arg(long)]
    pub(crate) threads: Option<usize>,
}

fn random_key() -> String {
    use std::fmt::Write;
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The keys the demo generated (printed once at start; keys given by flag,
/// environment or file are never echoed).
#[derive(Debug, Default)]
struct Generated {
    api_key: bool,
    admin_key: bool,
}

/// Builds the configuration from the file (or the demo) and the flags.
fn configure(args: ServeArgs) -> Result<(HubConfig, Generated), String> {
    let mut config = match &args.config {
        Some(path) => HubConfig::from_file(path).map_err(|e| e.to_string())?,
        None => HubConfig::demo(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(backlog) = args.backlog {
        config.limits.listen_backlog = backlog;
    }
    if args.outbound_budget.is_some() {
        config.limits.outbound_budget_bytes = args.outbound_budget;
    }
    if args.api_key.is_some() {
        config.api_key = args.api_key;
    }
    if args.admin_key.is_some() {
        config.admin_key = args.admin_key;
    }
    if args.token_secret.is_some() {
        config.auth.hmac_secret = args.token_secret;
    }
    if !args.allow_origin.is_empty() {
        config.allowed_origins = args.allow_origin;
    }
    if !args.trusted_proxy.is_empty() {
        config.trusted_proxies = args.trusted_proxy;
    }
    match args.engine.as_deref() {
        Some("redis") => config.engine = volley_hub::EngineKind::Redis,
        Some(_) => config.engine = volley_hub::EngineKind::Memory,
        None => {}
    }
    if !args.redis_url.is_empty() {
        config.redis_url = volley_hub::RedisUrls(args.redis_url);
    }
    config.validate().map_err(|e| e.to_string())?;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsConfig { cert, key });
    }
    if args.h2c {
        config.h2c = true;
    }
    let mut generated = Generated::default();
    if config.demo {
        config.add_demo_namespaces();
        generated.api_key = config.api_key.is_none();
        generated.admin_key = config.admin_key.is_none();
        config.api_key.get_or_insert_with(random_key);
        config.admin_key.get_or_insert_with(random_key);
        config.auth.hmac_secret.get_or_insert_with(random_key);
    }
    Ok((config, generated))
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), String> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let (config, generated) = configure(args)?;
    // Every connection is a file descriptor: allow as many as the hard limit.
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_err() {
            tracing::warn!("cannot raise the open-files limit from {soft} to {hard}");
        }
    }
    let demo = config.demo;
    let mut server = Server::bind(config)
        .await
        .and_then(|s| s.with_threads(threads))
        .map_err(|e| e.to_string())?;
    if demo {
        server = server.with_demo();
    }
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let (http, ws) = if server.is_tls() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let config = server.hub().config();
    // The first line is for scripts: the bound address.
    println!("volley serve listening on {http}://{addr}/");
    println!("  WebSocket: {ws}://{addr}/connection/websocket (subprotocol volley.v1)");
    if config.demo {
        println!("  demo:      {http}://{addr}/");
    }
    match &config.admin_key {
        Some(key) if generated.admin_key => {
            println!("  admin:     {http}://{addr}/admin#key={key}");
        }
        Some(_) => println!("  admin:     {http}://{addr}/admin  (the configured admin key)"),
        None => {}
    }
    match &config.api_key {
        Some(key) if generated.api_key => {
            println!("  HTTP API:  {http}://{addr}/api/<method>  (Authorization: apikey {key})");
        }
        Some(_) => println!(
            "  HTTP API:  {http}://{addr}/api/<method>  (Authorization: apikey <the configured API key>)"
        ),
        None => {}
    }
    println!("  metrics:   {http}://{addr}/metrics");
    if config.engine == volley_hub::EngineKind::Redis {
        println!("  engine:    redis, {}", config.redis_url.0.join(", "));
    }
    let hub = server.hub().clone();
    let drain = config.drain.clone();
    let mut signals = Signals::new();
    let (signalled, shutdown) = tokio::sync::oneshot::channel::<()>();
    let mut signalled = Some(signalled);
    let run = server.run(async move {
        let _ = shutdown.await;
    });
    tokio::pin!(run);
    // Progress of the drain, every few seconds once it has begun.
    let mut progress = tokio::time::interval(DRAIN_PROGRESS);
    let mut drain_start = None;
    let report = loop {
        tokio::select! {
            report = &mut run => break report,
            () = signals.next() => match signalled.take() {
                Some(signalled) => {
                    announce_drain(hub.connection_count(), &drain);
                    drain_start = Some(tokio::time::Instant::now());
                    progress.reset();
                    let _ = signalled.send(());
                }
                None => {
                    let left = hub.connection_count();
                    return Err(format!(
                        "second signal during the drain: exiting now, {left} {} dropped",
                        plural(left, "connection")
                    ));
                }
            },
            _ = progress.tick(), if drain_start.is_some() => {
                let elapsed = drain_start.map(|t| t.elapsed()).unwrap_or_default();
                let left = hub.connection_count();
                let deadline = Duration::from_millis(drain.grace_ms).saturating_sub(elapsed);
                eprintln!(
                    "volley serve: draining, {left} {} left; closing them with 1001 in {:.0} s",
                    plural(left, "connection"),
                    deadline.as_secs_f64().ceil()
                );
            }
        }
    };
    if let Some(start) = drain_start {
        eprintln!(
            "volley serve: drain finished after {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    println!(
        "volley serve drained: {} connections at the signal, {} closed with 1001 at the deadline",
        report.connections_at_start, report.closed_at_deadline
    );
    Ok(())
}

/// How often a drain in progress is reported.
const DRAIN_PROGRESS: Duration = Duration::from_secs(5);

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// Says what the drain will do and for how long.
fn announce_drain(connections: usize, drain: &DrainConfig) {
    eprintln!(
        "volley serve: draining {connections} {}: new connections get 503, clients are asked to \
         reconnect within {:.1} s, those left are closed with 1001 after {:.1} s. \
         Press Ctrl-C again to exit now.",
        plural(connections, "connection"),
        drain.spread_ms as f64 / 1000.0,
        drain.grace_ms as f64 / 1000.0,
    );
}

/// SIGINT and SIGTERM, as one stream (the first starts the drain, the second
/// ends the process).
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => {
                    tracing::warn!("cannot listen for SIGTERM; only Ctrl-C drains");
                    None
                }
            };
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.streams {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
