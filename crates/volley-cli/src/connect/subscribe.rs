//! `volley subscribe URL CHANNEL...`: a `volley.v1` client (docs/protocol.md)
//! that prints publications as JSON lines, reconnecting and recovering as
//! the SDK does (§14): full-jitter backoff, resubscription with `recover`
//! from the last position, duplicates dropped by offset.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use volley::{CloseCode, Message};

use super::exit::Ending;
use super::options::ClientArgs;
use super::session::Backoff;

/// Arguments of `volley subscribe`.
#[derive(Debug, Args)]
pub(crate) struct SubscribeArgs {
    /// The hub: ws://HOST:PORT (the path defaults to /connection/websocket).
    /// Example: ws://127.0.0.1:8000
    pub(crate) url: String,
    /// Channels to subscribe to. Example: chat:lobby news
    #[arg(required = true)]
    pub(crate) channels: Vec<String>,
    /// Starts from a stream position, EPOCH:OFFSET (as printed in the
    /// publications' and the subscribed lines): the first subscription
    /// recovers what was published after it. Example: --since f3Kq9w:12
    #[arg(long, value_name = "EPOCH:OFFSET")]
    pub(crate) since: Option<String>,
    /// A connection token (JWT) for the `connect` command.
    /// Example: --token "$(cat token.jwt)"
    #[arg(long, env = "VOLLEY_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// A channel's position {epoch, offset} (protocol.md §10.2).
#[derive(Clone, Debug, PartialEq)]
struct Position {
    epoch: String,
    offset: u64,
}

/// Why one connection ended.
enum End {
    /// Reconnect and recover, not before this delay.
    Reconnect { at_least: Duration, why: String },
    /// Stop with this ending.
    Stop(Ending, String),
}

/// Runs `volley subscribe`.
pub(crate) async fn run(args: SubscribeArgs) -> Ending {
    let url = match hub_url(&args.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("volley: {e}");
            return Ending::Failure;
        }
    };
    let mut positions: BTreeMap<String, Option<Position>> =
        args.channels.iter().map(|c| (c.clone(), None)).collect();
    if let Some(since) = &args.since {
        let Some((epoch, offset)) = since.rsplit_once(':') else {
            eprintln!("volley: --since: expected EPOCH:OFFSET");
            return Ending::Failure;
        };
        let Ok(offset) = offset.parse() else {
            eprintln!("volley: --since: {offset:?} is not an offset");
            return Ending::Failure;
        };
        for p in positions.values_mut() {
            *p = Some(Position {
                epoch: epoch.to_owned(),
                offset,
            });
        }
    }
    let backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(20),
    };
    let mut attempt = 0u32;
    loop {
        let end = tokio::select! {
            end = session(&args, &url, &mut positions, &mut attempt) => end,
            _ = tokio::signal::ctrl_c() => return Ending::Interrupted,
        };
        match end {
            End::Stop(ending, why) => {
                eprintln!("volley: {why}");
                return ending;
            }
            End::Reconnect { at_least, why } => {
                let delay = backoff.delay(attempt).max(at_least);
                attempt += 1;
                eprintln!(
                    "volley: {why}; reconnecting (attempt {attempt}) in {} ms",
                    delay.as_millis()
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = tokio::signal::ctrl_c() => return Ending::Interrupted,
                }
            }
        }
    }
}

/// The WebSocket endpoint: the path defaults to `/connection/websocket`,
/// http(s) becomes ws(s).
fn hub_url(url: &str) -> Result<String, String> {
    let target = volley::Target::parse(url).map_err(|e| e.to_string())?;
    let scheme = if target.tls { "wss" } else { "ws" };
    let path = if target.path == "/" {
        "/connection/websocket"
    } else {
        target.path.as_str()
    };
    Ok(format!("{scheme}://{}{path}", target.host_header))
}

/// One connection: connect, subscribe to every channel (recovering), print
/// publications until it ends.
async fn session(
    args: &SubscribeArgs,
    url: &str,
    positions: &mut BTreeMap<String, Option<Position>>,
    attempt: &mut u32,
) -> End {
    let reconnect = |why: String| End::Reconnect {
        at_least: Duration::ZERO,
        why,
    };
    let builder = match args.client.builder(url, &["volley.v1"]) {
        Ok(b) => b,
        Err(e) => return End::Stop(Ending::Failure, e.to_string()),
    };
    let (mut ws, _) = match builder.connect().await {
        Ok(c) => c,
        Err(e) => {
            let ending = Ending::of_connect_error(&e);
            // Bad flags and proxy credentials do not get better by retrying.
            return match ending {
                Ending::Failure | Ending::ProxyAuth => End::Stop(ending, e.to_string()),
                _ => reconnect(format!("cannot connect: {e}")),
            };
        }
    };
    let mut connect = json!({"name": "volley-cli", "version": env!("CARGO_PKG_VERSION")});
    if let Some(token) = &args.token {
        connect["token"] = json!(token);
    }
    let mut next_id = 1u64;
    let connect_id = match command(&mut ws, &mut next_id, "connect", connect).await {
        Ok(id) => id,
        Err(e) => return reconnect(e.to_string()),
    };
    // Subscribe ids → channel.
    let mut pending: BTreeMap<u64, String> = BTreeMap::new();
    let mut reconnect_after = Duration::ZERO;
    loop {
        let message = match ws.recv().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => continue,
            Some(Err(e)) => {
                return End::Reconnect {
                    at_least: reconnect_after,
                    why: format!("connection lost: {e}"),
                };
            }
            None => {
                let (code, reason) = ws
                    .close_frame()
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                let why = format!("closed {code} {reason}");
                return match code {
                    1002 | 1003 | 1007 | 4400..=4999 => End::Stop(Ending::ClosedWithError, why),
                    _ => End::Reconnect {
                        at_least: reconnect_after,
                        why,
                    },
                };
            }
        };
        let Ok(value) = serde_json::from_str::<Value>(message.as_str()) else {
            continue;
        };
        if let Some(id) = value.get("id").and_then(Value::as_u64) {
            if let Some(error) = value.get("error") {
                let temporary = error.get("temporary").and_then(Value::as_bool) == Some(true);
                let why = format!(
                    "{} failed: {error}",
                    if id == connect_id {
                        "connect"
                    } else {
                        "subscribe"
                    }
                );
                if temporary {
                    return reconnect(why);
                }
                return End::Stop(Ending::Failure, why);
            }
            let result = value.get("result").cloned().unwrap_or(Value::Null);
            if id == connect_id {
                *attempt = 0;
                for (channel, position) in positions.iter() {
                    let mut params = json!({"channel": channel});
                    if let Some(p) = position {
                        params["recover"] = json!(true);
                        params["epoch"] = json!(p.epoch);
                        params["offset"] = json!(p.offset);
                    }
                    match command(&mut ws, &mut next_id, "subscribe", params).await {
                        Ok(id) => {
                            pending.insert(id, channel.clone());
                        }
                        Err(e) => return reconnect(e.to_string()),
                    }
                }
            } else if let Some(channel) = pending.remove(&id) {
                let asked = positions.get(&channel).is_some_and(Option::is_some);
                let recovered = result.get("recovered").and_then(Value::as_bool) == Some(true);
                for publication in result
                    .get("publications")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    deliver(&channel, publication, positions);
                }
                let epoch = result.get("epoch").and_then(Value::as_str);
                let offset = result.get("offset").and_then(Value::as_u64);
                if let (Some(epoch), Some(offset)) = (epoch, offset) {
                    positions.insert(
                        channel.clone(),
                        Some(Position {
                            epoch: epoch.to_owned(),
                            offset,
                        }),
                    );
                }
                eprintln!(
                    "volley: subscribed to {channel} at {}:{}{}",
                    epoch.unwrap_or("-"),
                    offset.map_or("-".into(), |o| o.to_string()),
                    match (asked, recovered) {
                        (true, true) => " (recovered)",
                        (true, false) => " (NOT recovered: publications may have been missed)",
                        _ => "",
                    }
                );
            }
            continue;
        }
        match value.get("push").and_then(Value::as_str) {
            Some("publication") => {
                let Some(channel) = value.get("channel").and_then(Value::as_str) else {
                    continue;
                };
                let channel = channel.to_owned();
                if let Some(gap) = deliver(&channel, &value, positions) {
                    // A gap: recover it on a fresh connection (§14.4).
                    let _ = ws.close(CloseCode::from(1000), "").await;
                    return reconnect(gap);
                }
            }
            Some("unsubscribe") => {
                let channel = value.get("channel").and_then(Value::as_str).unwrap_or("");
                if value.get("resubscribe").and_then(Value::as_bool) == Some(true) {
                    let _ = ws.close(CloseCode::from(1000), "").await;
                    return reconnect(format!("unsubscribed from {channel}; resubscribing"));
                }
                return End::Stop(
                    Ending::Failure,
                    format!("unsubscribed from {channel}: {value}"),
                );
            }
            Some("disconnect") => {
                if let Some(ms) = value.get("reconnect_after_ms").and_then(Value::as_u64) {
                    reconnect_after = Duration::from_millis(ms);
                }
                if value.get("code").and_then(Value::as_u64) == Some(4001) {
                    // Drain: leave once the advised time has passed.
                    tokio::time::sleep(reconnect_after).await;
                    let _ = ws.close(CloseCode::from(1000), "").await;
                    return reconnect("the server is draining".into());
                }
            }
            _ => {}
        }
    }
}

/// Sends a command with the next id; returns the id.
async fn command(
    ws: &mut volley::WebSocket<volley::MaybeTlsStream>,
    next_id: &mut u64,
    method: &str,
    params: Value,
) -> volley::Result<u64> {
    let id = *next_id;
    *next_id += 1;
    let command = json!({"id": id, "method": method, "params": params}).to_string();
    ws.send(Message::text(command)).await.map(|()| id)
}

/// Prints a publication unless it is a duplicate; Some(why) on a gap.
fn deliver(
    channel: &str,
    publication: &Value,
    positions: &mut BTreeMap<String, Option<Position>>,
) -> Option<String> {
    let offset = publication.get("offset").and_then(Value::as_u64);
    let position = positions.get_mut(channel)?;
    if let (Some(offset), Some(p)) = (offset, position.as_mut()) {
        if offset <= p.offset {
            return None;
        }
        if offset > p.offset + 1 {
            return Some(format!(
                "gap in {channel}: offset {offset} after {}",
                p.offset
            ));
        }
        p.offset = offset;
    }
    let mut line = json!({"channel": channel, "data": publication.get("data").cloned().unwrap_or(Value::Null)});
    if let Some(offset) = offset {
        line["offset"] = json!(offset);
    }
    if let Some(Some(p)) = positions.get(channel) {
        line["epoch"] = json!(p.epoch);
    }
    if let Some(info) = publication.get("info") {
        line["info"] = info.clone();
    }
    println!("{line}");
    None
}
