//! `volley serve`: the realtime hub.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use volley_hub::TlsConfig;
use volley_hub::{HubConfig, Server};

/// Arguments of `volley serve`. Flags override the configuration file.
#[derive(Debug, Args)]
#[command(after_help = "\
With no --config, the hub runs the demo: anonymous clients, the `chat` and `ticker`
namespaces, a ticker publishing to ticker:demo, and random API and admin keys
(printed at start). Open the printed URL in a browser.

Examples:
  volley serve                                   # the demo at http://127.0.0.1:8000/
  volley serve --config volley.toml              # see docs/volley.example.toml
  volley serve --listen 0.0.0.0:443 --tls-cert cert.pem --tls-key key.pem

SIGTERM or SIGINT drains: new upgrades get 503, clients are told to reconnect
within drain.spread_ms, the rest are closed with 1001 after drain.grace_ms.")]
pub(crate) struct ServeArgs {
    /// A TOML configuration file (every key optional; see docs/volley.example.toml).
    #[arg(long, env = "VOLLEY_CONFIG")]
    config: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8000, or `listen` in the file].
    #[arg(long, env = "VOLLEY_LISTEN")]
    listen: Option<SocketAddr>,
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
    /// The TLS certificate chain (PEM); with --tls-key, serves https:// and wss://.
    #[arg(long, requires = "tls_key", env = "VOLLEY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long, requires = "tls_cert", env = "VOLLEY_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Runtime worker threads [default: one per core].
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

/// Builds the configuration from the file (or the demo) and the flags.
fn configure(args: ServeArgs) -> Result<HubConfig, String> {
    let mut config = match &args.config {
        Some(path) => HubConfig::from_file(path).map_err(|e| e.to_string())?,
        None => HubConfig::demo(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
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
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsConfig { cert, key });
    }
    if config.demo {
        config.add_demo_namespaces();
        config.api_key.get_or_insert_with(random_key);
        config.admin_key.get_or_insert_with(random_key);
        config.auth.hmac_secret.get_or_insert_with(random_key);
    }
    Ok(config)
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), String> {
    let config = configure(args)?;
    // Every connection is a file descriptor: allow as many as the hard limit.
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_err() {
            tracing::warn!("cannot raise the open-files limit from {soft} to {hard}");
        }
    }
    let demo = config.demo;
    let mut server = Server::bind(config).await.map_err(|e| e.to_string())?;
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
    if let Some(key) = &config.admin_key {
        println!("  admin:     {http}://{addr}/admin#key={key}");
    }
    if let Some(key) = &config.api_key {
        println!("  HTTP API:  {http}://{addr}/api/<method>  (Authorization: apikey {key})");
    }
    println!("  metrics:   {http}://{addr}/metrics");
    let report = server.run(shutdown_signal()).await;
    println!(
        "volley serve drained: {} connections at the signal, {} closed with 1001 at the deadline",
        report.connections_at_start, report.closed_at_deadline
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
