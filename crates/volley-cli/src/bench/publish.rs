//! `volley bench publish`: publications per second through the hub's HTTP
//! API, black box. C kept-alive HTTP connections, spread over the given
//! nodes, each sends `broadcast` requests of one event to B channels at a
//! time, round-robin over N channels, for D seconds. Every answer is checked:
//! each channel's entry must be a result with an offset, else the run fails;
//! at the end each channel's offsets, gathered from all connections, must be
//! consecutive with no duplicate and one epoch, and the channel's top (read
//! back with `history`) must be the highest of them: no publication lost,
//! doubled or made behind the benchmark's back. Prints one JSON line:
//! publications per second and the request latency (p50, p99). With the Redis engine this measures a node's publish path
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
    /// Per channel index: the epoch and the offsets it was given, in order.
    streams: Vec<(String, Vec<u64>)>,
    /// Request latencies, microseconds.
    latencies: Vec<u64>,
    /// The first failure, if any.
    failure: Option<String>,
}

async fn connection(a: &PublishArgs, index: usize, until: Instant) -> Tally {
    let mut http = HttpApi::new(&a.addr[index % a.addr.len()], &a.api_key);
    let mut tally = Tally {
        streams: vec![(String::new(), Vec::new()); a.channels],
        ..Tally::default()
    };
    let pad = "x".repeat(a.size);
    let mut next = index * a.batch;
    while Instant::now() < until {
        let indices: Vec<usize> = (0..a.batch).map(|i| (next + i) % a.channels).collect();
        let channels: Vec<String> = indices.iter().map(|i| format!("{}{i}", a.prefix)).collect();
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
        if entries.len() != indices.len() {
            tally.failure = Some(format!(
                "{} responses to a broadcast to {} channels",
                entries.len(),
                indices.len()
            ));
            return tally;
        }
        for (entry, &index) in entries.iter().zip(&indices) {
            let (Some(offset), Some(epoch)) = (
                entry["result"]["offset"].as_u64(),
                entry["result"]["epoch"].as_str(),
            ) else {
                tally.failure = Some(format!("a channel not published: {entry}"));
                return tally;
            };
            if let Err(e) = record(&mut tally.streams[index], epoch, offset) {
                tally.failure = Some(format!("{}{index}: {e}", a.prefix));
                return tally;
            }
        }
        tally.publications += entries.len() as u64;
    }
    tally
}

/// Adds an offset to what one connection saw of a channel: the epoch must
/// not change and offsets must grow (one connection's publishes are in
/// order).
fn record(stream: &mut (String, Vec<u64>), epoch: &str, offset: u64) -> Result<(), String> {
    if stream.0.is_empty() {
        stream.0 = epoch.to_owned();
    } else if stream.0 != epoch {
        return Err(format!("epoch {epoch} after {}", stream.0));
    }
    if let Some(&last) = stream.1.last()
        && offset <= last
    {
        return Err(format!("offset {offset} after {last} on one connection"));
    }
    stream.1.push(offset);
    Ok(())
}

/// Checks one channel's offsets from every connection: one epoch, each
/// offset once, no hole between the lowest and the highest. Returns the
/// epoch and the highest offset, if any.
fn check_stream(seen: &[&(String, Vec<u64>)]) -> Result<Option<(String, u64)>, String> {
    let mut epoch: Option<&str> = None;
    let mut offsets = Vec::new();
    for (e, o) in seen {
        if o.is_empty() {
            continue;
        }
        match epoch {
            Some(first) if first != e => return Err(format!("epochs {first} and {e}")),
            _ => epoch = Some(e),
        }
        offsets.extend_from_slice(o);
    }
    offsets.sort_unstable();
    for w in offsets.windows(2) {
        if w[1] == w[0] {
            return Err(format!("offset {} given twice", w[0]));
        }
        if w[1] != w[0] + 1 {
            return Err(format!("offsets {} to {} never given", w[0] + 1, w[1] - 1));
        }
    }
    Ok(epoch.zip(offsets.last()).map(|(e, &o)| (e.to_owned(), o)))
}

/// Checks every channel's offsets, then reads each channel's top back with
/// `history`: it must be the highest offset the benchmark was given.
async fn check_streams(a: &PublishArgs, tallies: &[Tally]) -> Result<usize, String> {
    let mut http = HttpApi::new(&a.addr[0], &a.api_key);
    let mut checked = 0;
    for index in 0..a.channels {
        let channel = format!("{}{index}", a.prefix);
        let seen: Vec<_> = tallies.iter().map(|t| &t.streams[index]).collect();
        let Some((epoch, top)) = check_stream(&seen).map_err(|e| format!("{channel}: {e}"))? else {
            continue;
        };
        let body = json!({"channel": channel, "limit": 0}).to_string();
        let reply = match http.post("history", &body).await {
            Ok((200, bytes)) => {
                serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())?
            }
            Ok((status, bytes)) => {
                return Err(format!(
                    "history of {channel}: HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ));
            }
            Err(e) => return Err(format!("history of {channel}: {e}")),
        };
        let result = reply.get("result").unwrap_or(&reply);
        if result["epoch"].as_str() != Some(epoch.as_str())
            || result["offset"].as_u64() != Some(top)
        {
            return Err(format!(
                "{channel}: the benchmark's publications end at {top} in epoch {epoch}, the stream is at {result}"
            ));
        }
        checked += 1;
    }
    Ok(checked)
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
    let mut tallies = Vec::new();
    for task in tasks {
        let mut t = task.await.map_err(|e| e.to_string())?;
        publications += t.publications;
        latencies.append(&mut t.latencies);
        failures.extend(t.failure.take());
        tallies.push(t);
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let checked = if failures.is_empty() {
        match check_streams(&a, &tallies).await {
            Ok(n) => n,
            Err(e) => {
                failures.push(e);
                0
            }
        }
    } else {
        0
    };
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
        "channels_checked": checked,
    });
    println!("{line}");
    match failures.first() {
        Some(f) => Err(format!("{} failures; the first: {f}", failures.len())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(epoch: &str, offsets: &[u64]) -> (String, Vec<u64>) {
        (epoch.to_owned(), offsets.to_vec())
    }

    #[test]
    fn a_channel_s_offsets_from_all_connections_must_be_consecutive_and_once() {
        let (a, b) = (seen("e", &[3, 5, 6]), seen("e", &[4, 7]));
        assert_eq!(check_stream(&[&a, &b]), Ok(Some(("e".into(), 7))));
        let none = seen("", &[]);
        assert_eq!(check_stream(&[&none]), Ok(None));
        let gap = seen("e", &[8, 10]);
        assert!(
            check_stream(&[&a, &b, &gap])
                .unwrap_err()
                .contains("9 to 9")
        );
        let dup = seen("e", &[6]);
        assert!(check_stream(&[&a, &b, &dup]).unwrap_err().contains("twice"));
        let other = seen("f", &[4]);
        assert!(
            check_stream(&[&a, &b, &other])
                .unwrap_err()
                .contains("epochs")
        );
    }

    #[test]
    fn one_connection_s_offsets_must_grow_in_one_epoch() {
        let mut s = (String::new(), Vec::new());
        assert!(record(&mut s, "e", 1).is_ok());
        assert!(record(&mut s, "e", 3).is_ok());
        assert!(record(&mut s, "e", 3).is_err());
        assert!(record(&mut s, "f", 4).is_err());
        assert_eq!(s.1, vec![1, 3]);
    }
}
