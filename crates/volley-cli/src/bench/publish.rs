//! `volley bench publish`: publications per second through the hub's HTTP
//! API, black box. C kept-alive HTTP connections, spread over the given
//! nodes, each sends `broadcast` requests of one event to B channels at a
//! time, round-robin over N channels, for D seconds. Every answer is checked:
//! each channel's entry must be a result with an offset, else the run fails.
//! Prints one JSON line: publications per second and the request latency
//! (p50, p99). With the Redis engine this measures a node's publish path
//! through Redis, one or several shards (docs/cluster.md, BENCHMARKS.md).

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use crate::http_api::HttpApi;

/// Arguments of `volley bench publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Nodes (host:port, comma-separated); the connections are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8000")]
    addr: Vec<String>,
    /// The hub's HTTP API key.
    #[arg(long, env = "VOLLEY_API_KEY")]
    api_key: String,
    /// Channels, named PREFIX0 .. PREFIX(N-1).
    #[arg(short = 'n', long, default_value_t = 1000)]
    channels: usize,
    /// The channels' name prefix (its namespace must exist).
    #[arg(long, default_value = "bench:c")]
    prefix: String,
    /// Channels per `broadcast` request.
    #[arg(short = 'b', long, default_value_t = 100)]
    batch: usize,
    /// HTTP connections publishing at once.
    #[arg(short = 'c', long, default_value_t = 8)]
    connections: usize,
    /// Seconds of publishing.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    seconds: f64,
    /// Bytes of padding in each event's data.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// A label for the result.
    #[arg(long, default_value = "")]
    label: String,
}

/// What one connection did.
#[derive(Default)]
struct Tally {
    publications: u64,
    /// Request latencies, microseconds.
    latencies: Vec<u64>,
    /// The first failure, if any.
    failure: Option<String>,
}

async fn connection(a: &PublishArgs, index: usize, until: Instant) -> Tally {
    let mut http = HttpApi::new(&a.addr[index % a.addr.len()], &a.api_key);
    let mut tally = Tally::default();
    let pad = "x".repeat(a.size);
    let mut next = index * a.batch;
    while Instant::now() < until {
        let channels: Vec<String> = (0..a.batch)
            .map(|i| format!("{}{}", a.prefix, (next + i) % a.channels))
            .collect();
        next += a.batch * a.connections;
        let body = json!({"channels": channels, "data": {"p": pad}}).to_string();
        let start = Instant::now();
        let reply = http.post("broadcast", &body).await;
        tally.latencies.push(start.elapsed().as_micros() as u64);
        let entries = match reply {
            Ok((200, bytes)) => serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
                v["result"]["responses"]
                    .as_array()
                    .or(v["responses"].as_array())
                    .cloned()
            }),
            Ok((status, bytes)) => {
                tally.failure = Some(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ));
                return tally;
            }
            Err(e) => {
                tally.failure = Some(e);
                return tally;
            }
        };
        let Some(entries) = entries else {
            tally.failure = Some("a broadcast answer without responses".into());
            return tally;
        };
        for entry in &entries {
            if entry["result"]["offset"].as_u64().is_none() {
                tally.failure = Some(format!("a channel not published: {entry}"));
                return tally;
            }
        }
        tally.publications += entries.len() as u64;
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs the benchmark; an error names the first failed request.
pub(crate) async fn run(a: PublishArgs) -> Result<(), String> {
    if a.addr.is_empty() || a.batch == 0 || a.channels == 0 || a.connections == 0 {
        return Err("--addr, --batch, --channels and --connections must not be empty or 0".into());
    }
    let a = std::sync::Arc::new(a);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(a.seconds);
    let tasks: Vec<_> = (0..a.connections)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { connection(&a, i, until).await })
        })
        .collect();
    let mut publications = 0;
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        let t = task.await.map_err(|e| e.to_string())?;
        publications += t.publications;
        latencies.extend(t.latencies);
        failures.extend(t.failure);
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let line = json!({
        "mode": "publish",
        "label": a.label,
        "nodes": a.addr.len(),
        "connections": a.connections,
        "channels": a.channels,
        "batch": a.batch,
        "seconds": secs,
        "publications": publications,
        "publications_per_sec": publications as f64 / secs,
        "request_p50_ms": percentile(&latencies, 0.5),
        "request_p99_ms": percentile(&latencies, 0.99),
    });
    println!("{line}");
    match failures.first() {
        Some(f) => Err(format!(
            "{} connections failed; the first: {f}",
            failures.len()
        )),
        None => Ok(()),
    }
}
