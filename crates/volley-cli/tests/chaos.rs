//! A bounded chaos test of `volley serve`, black box: 200 clients on 20
//! channels, a publisher at 2,000 publications/s through the HTTP API for 30 s,
//! clients disconnected at random (by the server through the HTTP
//! `disconnect` method, and by dropping their own TCP connection), each
//! reconnecting and resubscribing with recovery. At the end every client must
//! have, per channel, offsets 1..=N exactly once and in order, with the data
//! that was published; the test prints the counts.
//!
//! It needs the hub built with optimisations, so it is ignored by a plain
//! `cargo test`; run it with
//!
//! ```sh
//! cargo test --release -p volley-cli --test chaos -- --ignored --nocapture
//! ```
//!
//! Knobs (environment): `CHAOS_SECS` (publishing time, default 30),
//! `CHAOS_RATE` (publications per second, default 2000), `CHAOS_CLIENTS`
//! (default 200), `CHAOS_CHANNELS` (default 20), `CHAOS_SEED`,
//! `CHAOS_VOLLEY_BIN` (another `volley` binary to test), `CHAOS_HISTORY_SIZE`
//! (default 10000; a small one must make the test fail with `recovered:
//! false`, which shows that it can).
//!
//! A small version (40 clients, 8 channels, 200/s for 4 s) runs in every
//! `cargo test`.
//!
//! The cluster version (`cluster_chaos_*`, ignored too; it needs Redis,
//! Sentinel and HAProxy) runs the same clients against three nodes on the
//! Redis engine behind HAProxy, started by `scripts/cluster.sh` (two Redis
//! shards, shard 1 behind a Sentinel): 300 clients on 30 channels, 2,000
//! publications/s for 60 s (`CHAOS_SECS`), and while publishing one node is
//! killed with SIGKILL and started again, shard 0's Redis is killed and
//! started again, and a Sentinel failover is forced on shard 1. There a
//! client may be told that it missed publications (a subscribe answered
//! `recovered: false`, after an `unsubscribe` push with code 2000 or a
//! reconnect); those are counted and allowed, nothing else is: every other
//! publication exactly once, in order. With shard 0 persisted (AOF) only
//! shard 1's channels may be told so; without persistence
//! (`cluster_chaos_without_persistence`) shard 0's channels must be.
//!
//! `CHAOS_SWALLOW_GAP=1` makes one client drop one publication without a
//! word, to show that the checker fails on a silent gap; a short run of the
//! small version does so in every `cargo test` and must fail.
//!
//! Written from docs/protocol.md and the `volley serve` contract only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use volley::{ClientBuilder, CloseCode, Message, WebSocketConfig};

/// Subscriptions per client.
const CHANNELS_PER_CLIENT: usize = 2;
/// Bytes of padding in each publication's data.
const PAD: usize = 64;
/// HTTP connections the publisher spreads its channels over. Each waits for
/// one publish's answer before the next (its channels' order stays known), so
/// the rate one connection holds is bounded by the round trip through the
/// balancer, a node and Redis: with 4, the cluster run held only 1,300 of the
/// 2,000 publications/s asked.
const PUBLISHER_CONNECTIONS: usize = 10;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- a tiny deterministic PRNG (xorshift64*), so no extra dependency -------

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---- the hub process (tests/common) ----------------------------------------------

mod common;

use common::services::{Hub, volley_bin};

fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(42)
}

// ---- the HTTP API ---------------------------------------------------------------

// The client `volley bench fanout` uses; only `post` is needed here.
#[allow(dead_code)]
#[path = "../src/http_api.rs"]
mod http_api;

use http_api::HttpApi;

/// `POST /api/<method>` with a JSON body: the status and the parsed reply.
async fn post(http: &mut HttpApi, method: &str, body: &Value) -> Result<(u16, Value), String> {
    let (status, reply) = http.post(method, &body.to_string()).await?;
    Ok((
        status,
        serde_json::from_slice(&reply).unwrap_or(Value::Null),
    ))
}

// ---- shared bookkeeping --------------------------------------------------------

#[derive(Default)]
struct Counters {
    delivered_push: AtomicU64,
    delivered_recovered: AtomicU64,
    reconnects: AtomicU64,
    recovering_subscribes: AtomicU64,
    recovered_subscribes: AtomicU64,
    own_drops: AtomicU64,
    connect_failures: AtomicU64,
    http_disconnects_sent: AtomicU64,
    http_disconnects_effective: AtomicU64,
    /// Subscribes answered `recovered: false` (allowed in the cluster runs).
    told_gaps: AtomicU64,
    /// Publications the clients were told they missed.
    told_missed: AtomicU64,
    /// Publications whose publish failed ambiguously and that never came.
    maybe_absent: AtomicU64,
    /// `unsubscribe` pushes with `resubscribe: true`.
    resubscribe_pushes: AtomicU64,
    /// Subscribes refused with a temporary error (Redis unreachable), retried.
    subscribe_refusals: AtomicU64,
    /// Publishes refused with 503 and error 100, retried.
    publish_refusals: AtomicU64,
    /// HTTP disconnects refused with 503 and error 100, retried.
    disconnect_refusals: AtomicU64,
    close_codes: Mutex<BTreeMap<u16, u64>>,
    errors: Mutex<Vec<String>>,
    error_count: AtomicU64,
}

impl Counters {
    fn error(&self, e: String) {
        self.error_count.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(e);
        }
    }
    fn close_code(&self, code: u16) {
        *self.close_codes.lock().unwrap().entry(code).or_default() += 1;
    }
}

struct Shared {
    url: String,
    channels: Vec<String>,
    /// Whether a subscribe may answer `recovered: false` (the cluster runs).
    allow_told_gaps: bool,
    /// Per channel, the publications whose publish failed without a clear
    /// answer (a node or Redis died during it): published or not.
    maybe: Mutex<Vec<BTreeSet<u64>>>,
    /// Per channel, the subscribes answered `recovered: false`.
    told_gaps_per_channel: Mutex<Vec<u64>>,
    /// `CHAOS_SWALLOW_GAP=1`: drop one publication silently (the checker must fail).
    swallow_gap: AtomicBool,
    counters: Counters,
    /// The current client id of each client, while connected.
    client_ids: Mutex<Vec<Option<String>>>,
    /// Set once every client has its first subscriptions.
    subscribed: AtomicU64,
}

/// The channels of client `i`: `CHANNELS_PER_CLIENT` distinct ones, spread
/// so that every channel has the same number of subscribers.
fn client_channels(i: usize, n_channels: usize) -> Vec<usize> {
    let step = (n_channels / CHANNELS_PER_CLIENT).max(1);
    let mut chans: Vec<usize> = (0..CHANNELS_PER_CLIENT)
        .map(|j| (i + j * (step + 1)) % n_channels)
        .collect();
    chans.sort_unstable();
    chans.dedup();
    chans
}

fn expected_data(channel: usize, k: u64) -> Value {
    json!({"c": channel, "k": k, "p": "x".repeat(PAD)})
}

// ---- one client ------------------------------------------------------------------

struct Sub {
    channel: usize,
    epoch: Option<String>,
    /// The last offset delivered (0 before the first).
    pos: u64,
    /// The publisher's number (`k` in the data) of the last publication
    /// delivered, counted across epochs (0 before the first).
    last_k: u64,
    /// Told that publications were missed (`recovered: false`) and not yet
    /// past the gap: the next publication may skip numbers.
    gap_told: bool,
    /// Subscribe reply seen on the current connection.
    live: bool,
    /// Temporary subscribe refusals in a row (the backoff's attempt).
    refusals: u32,
    /// When to subscribe again after a temporary refusal.
    retry_at: Option<tokio::time::Instant>,
}

/// The SDK's backoff (clients/js `backoffDelay`, docs/protocol.md §14.1):
/// a random delay below `min(20 s, 500 ms * 2^attempt)`.
fn backoff(attempt: u32, rng: &mut Rng) -> Duration {
    let ceiling = (500u64 << attempt.min(20)).min(20_000);
    Duration::from_millis(rng.below(ceiling))
}

/// Whether a failed reply may succeed when sent again (the SDK's
/// `isTemporary`, docs/protocol.md §12).
fn temporary(error: &Value) -> bool {
    matches!(error["code"].as_u64(), Some(100 | 106 | 110)) || error["temporary"] == json!(true)
}

/// The subscribe command for `s`: with `recover` from its position once it
/// has one.
fn subscribe_command(shared: &Shared, s: &Sub, id: u64) -> Value {
    let mut params = json!({"channel": shared.channels[s.channel]});
    if let Some(epoch) = &s.epoch {
        params["recover"] = json!(true);
        params["epoch"] = json!(epoch);
        params["offset"] = json!(s.pos);
        shared
            .counters
            .recovering_subscribes
            .fetch_add(1, Ordering::Relaxed);
    }
    json!({"id": id, "method": "subscribe", "params": params})
}

enum End {
    /// Every channel complete after the publisher finished.
    Done,
    /// The connection ended (by the server, or dropped by us): reconnect.
    Lost,
    /// A failure that reconnecting would only repeat (recorded as an error).
    Fatal,
}

async fn client(
    index: usize,
    shared: Arc<Shared>,
    mut drop_rx: mpsc::UnboundedReceiver<()>,
    mut final_rx: watch::Receiver<Option<Arc<Vec<u64>>>>,
    seed: u64,
) {
    let mut subs: Vec<Sub> = client_channels(index, shared.channels.len())
        .into_iter()
        .map(|channel| Sub {
            channel,
            epoch: None,
            pos: 0,
            last_k: 0,
            gap_told: false,
            live: false,
            refusals: 0,
            retry_at: None,
        })
        .collect();
    let mut rng = Rng::new(seed);
    let config = WebSocketConfig::builder()
        .protocol(
            volley::Config::builder()
                .max_size(64 << 20)
                .deflate(None)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut first = true;
    let c = &shared.counters;
    let give_up = Instant::now() + Duration::from_secs(300);
    loop {
        if Instant::now() > give_up {
            c.error(format!("client {index}: still not done after 300 s"));
            return;
        }
        if !first {
            // Reconnect with a small jittered delay (the §14.1 backoff, attempt 0).
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
            c.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let connected = ClientBuilder::new(shared.url.clone())
            .protocol("volley.v1")
            .config(config.clone())
            .connect()
            .await;
        let mut ws = match connected {
            Ok((ws, _)) => ws,
            Err(_) => {
                c.connect_failures.fetch_add(1, Ordering::Relaxed);
                first = false;
                continue;
            }
        };
        // Drain stale drop requests: a drop is meant for the connection that existed.
        while drop_rx.try_recv().is_ok() {}
        let end = session(
            index,
            &shared,
            &mut ws,
            &mut subs,
            &mut drop_rx,
            &mut final_rx,
            first,
            &mut rng,
        )
        .await;
        shared.client_ids.lock().unwrap()[index] = None;
        first = false;
        match end {
            End::Done => {
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    ws.close(CloseCode::NORMAL, "done"),
                )
                .await;
                return;
            }
            End::Fatal => return,
            End::Lost => {
                // Dropping `ws` drops the TCP connection (for an own drop, without a close frame).
                drop(ws);
            }
        }
    }
}

fn complete(subs: &[Sub], fin: &Option<Arc<Vec<u64>>>) -> bool {
    match fin {
        Some(tops) => subs.iter().all(|s| s.live && s.last_k == tops[s.channel]),
        None => false,
    }
}

/// Sends the subscribe commands of `which` (indices into `subs`) back to
/// back, remembering their ids in `pending`; false when the connection is
/// gone.
async fn send_subscribes<S>(
    ws: &mut volley::WebSocket<S>,
    shared: &Shared,
    subs: &[Sub],
    which: &[usize],
    next_id: &mut u64,
    pending: &mut BTreeMap<u64, usize>,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for &i in which {
        let cmd = subscribe_command(shared, &subs[i], *next_id);
        pending.insert(*next_id, i);
        *next_id += 1;
        if ws.feed(Message::text(cmd.to_string())).await.is_err() {
            return false;
        }
    }
    ws.flush().await.is_ok()
}

/// One connection's life: connect, (re)subscribe with recovery, then check
/// every publication until the connection ends or the client is complete.
/// A subscribe refused with a temporary error is sent again after the SDK's
/// backoff, on the same connection, as the SDK does.
#[allow(clippy::too_many_arguments)]
async fn session<S>(
    index: usize,
    shared: &Shared,
    ws: &mut volley::WebSocket<S>,
    subs: &mut [Sub],
    drop_rx: &mut mpsc::UnboundedReceiver<()>,
    final_rx: &mut watch::Receiver<Option<Arc<Vec<u64>>>>,
    first: bool,
    rng: &mut Rng,
) -> End
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let c = &shared.counters;
    let err = |e: String| c.error(format!("client {index}: {e}"));
    // connect, then wait for its reply before anything else (§5).
    let connect =
        json!({"id": 1, "method": "connect", "params": {"name": "chaos", "version": "1"}});
    if ws.send(Message::text(connect.to_string())).await.is_err() {
        return End::Lost;
    }
    let mut next_id = 2u64;
    let mut pending: BTreeMap<u64, usize> = BTreeMap::new(); // subscribe id -> index in subs
    let mut connected = false;
    let mut fin = final_rx.borrow().clone();
    for s in subs.iter_mut() {
        s.live = false;
        // The connect reply resubscribes every channel.
        s.retry_at = None;
    }
    loop {
        let next_retry = subs.iter().filter_map(|s| s.retry_at).min();
        let message = tokio::select! {
            m = ws.recv() => m,
            () = tokio::time::sleep_until(next_retry.unwrap_or_else(tokio::time::Instant::now)),
                if next_retry.is_some() =>
            {
                let now = tokio::time::Instant::now();
                let due: Vec<usize> = (0..subs.len())
                    .filter(|i| subs[*i].retry_at.is_some_and(|t| t <= now))
                    .collect();
                for i in &due {
                    subs[*i].retry_at = None;
                }
                if !send_subscribes(ws, shared, subs, &due, &mut next_id, &mut pending).await {
                    return End::Lost;
                }
                continue;
            }
            Some(()) = drop_rx.recv() => {
                c.own_drops.fetch_add(1, Ordering::Relaxed);
                return End::Lost;
            }
            changed = final_rx.changed() , if fin.is_none() => {
                if changed.is_ok() {
                    fin = final_rx.borrow().clone();
                    if complete(subs, &fin) {
                        return End::Done;
                    }
                }
                continue;
            }
        };
        let text = match message {
            Some(Ok(m)) => match m.as_text() {
                Some(t) => t.to_owned(),
                None => {
                    err("binary message from the server".into());
                    continue;
                }
            },
            Some(Err(_)) | None => {
                let code = ws.close_frame().map(|f| u16::from(f.code)).unwrap_or(1006);
                c.close_code(code);
                // 4005: insufficient state (a node lost Redis for a while).
                if code != 4000 && code != 4002 && code != 1006 && code != 4005 {
                    err(format!("connection closed with unexpected code {code}"));
                }
                return End::Lost;
            }
        };
        let msg: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                err(format!("invalid JSON from the server: {e}: {text:.200}"));
                continue;
            }
        };
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            if id == 1 {
                let Some(result) = msg.get("result") else {
                    err(format!("connect failed: {msg}"));
                    return End::Fatal;
                };
                connected = true;
                let cid = result
                    .get("client")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                shared.client_ids.lock().unwrap()[index] = Some(cid);
                // Resubscribe every channel, back to back, with recovery where we have a position.
                let all: Vec<usize> = (0..subs.len()).collect();
                if !send_subscribes(ws, shared, subs, &all, &mut next_id, &mut pending).await {
                    return End::Lost;
                }
                continue;
            }
            let Some(i) = pending.remove(&id) else {
                err(format!("reply to an unknown id: {text:.200}"));
                continue;
            };
            let s = &mut subs[i];
            let Some(r) = msg.get("result") else {
                if temporary(&msg["error"]) {
                    // Refused for now (Redis unreachable): again after the
                    // SDK's backoff, per channel.
                    c.subscribe_refusals.fetch_add(1, Ordering::Relaxed);
                    s.retry_at = Some(tokio::time::Instant::now() + backoff(s.refusals, rng));
                    s.refusals += 1;
                    continue;
                }
                err(format!("subscribe failed: {msg}"));
                return End::Fatal;
            };
            s.refusals = 0;
            let epoch = r.get("epoch").and_then(Value::as_str).map(str::to_owned);
            let offset = r.get("offset").and_then(Value::as_u64);
            let (Some(epoch), Some(offset)) = (epoch, offset) else {
                err(format!("subscribe reply without epoch/offset: {r}"));
                return End::Fatal;
            };
            if let Some(old) = s.epoch.clone() {
                let pubs = r
                    .get("publications")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if r.get("recovered") != Some(&json!(true)) {
                    if !shared.allow_told_gaps {
                        err(format!(
                            "recovery of {} from {old}/{} failed: {r:.300}",
                            shared.channels[s.channel], s.pos
                        ));
                        return End::Fatal;
                    }
                    // An explicit gap: what follows may skip publications.
                    c.told_gaps.fetch_add(1, Ordering::Relaxed);
                    shared.told_gaps_per_channel.lock().unwrap()[s.channel] += 1;
                    s.gap_told = true;
                    s.epoch = Some(epoch.clone());
                    s.pos = pubs
                        .first()
                        .and_then(|p| p.get("offset"))
                        .and_then(Value::as_u64)
                        .map_or(offset, |o| o.saturating_sub(1));
                } else {
                    if old != epoch {
                        err(format!(
                            "epoch changed from {old} to {epoch} with recovered true"
                        ));
                    }
                    c.recovered_subscribes.fetch_add(1, Ordering::Relaxed);
                }
                for p in &pubs {
                    if let Err(e) = accept(s, p, shared, "recovered") {
                        err(e);
                    } else {
                        c.delivered_recovered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if offset != s.pos {
                    err(format!(
                        "recovered reply offset {offset} but publications end at {}",
                        s.pos
                    ));
                    s.pos = offset;
                }
            } else {
                if first && offset != 0 {
                    err(format!(
                        "first subscribe at offset {offset}, want 0 (subscribed before any publication)"
                    ));
                }
                s.pos = offset;
                s.epoch = Some(epoch);
                shared.subscribed.fetch_add(1, Ordering::Relaxed);
            }
            s.live = true;
            if complete(subs, &fin) {
                return End::Done;
            }
            continue;
        }
        if !connected {
            err(format!("push before the connect reply: {text:.200}"));
            continue;
        }
        match msg.get("push").and_then(Value::as_str) {
            Some("publication") => {
                let channel = msg
                    .get("channel")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(s) = subs
                    .iter_mut()
                    .find(|s| shared.channels[s.channel] == channel)
                else {
                    err(format!(
                        "publication for a channel not subscribed: {channel}"
                    ));
                    continue;
                };
                if !s.live {
                    if s.epoch.is_some() {
                        // Resubscribing after an `unsubscribe` push: the
                        // reply's recovery brings this one.
                        continue;
                    }
                    err(format!(
                        "publication in {channel} before its subscribe reply"
                    ));
                    continue;
                }
                if shared.swallow_gap.swap(false, Ordering::Relaxed) {
                    // The test-only silent gap: drop it without a word.
                    continue;
                }
                match accept(s, &msg, shared, "pushed") {
                    Ok(()) => {
                        c.delivered_push.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => err(e),
                }
                if complete(subs, &fin) {
                    return End::Done;
                }
            }
            Some("disconnect") => {
                // The close frame with the same code follows; counted there.
            }
            Some("unsubscribe") if msg.get("resubscribe") == Some(&json!(true)) => {
                // Insufficient state (code 2000-2499): subscribe again at
                // once, recovering from the last position (§7.4).
                let channel = msg
                    .get("channel")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(i) = subs
                    .iter()
                    .position(|s| shared.channels[s.channel] == channel)
                else {
                    err(format!(
                        "unsubscribe push for a channel not subscribed: {channel}"
                    ));
                    continue;
                };
                c.resubscribe_pushes.fetch_add(1, Ordering::Relaxed);
                let s = &mut subs[i];
                if !s.live {
                    continue; // a resubscribe is already on its way (or due)
                }
                s.live = false;
                let cmd = subscribe_command(shared, s, next_id);
                pending.insert(next_id, i);
                next_id += 1;
                if ws.send(Message::text(cmd.to_string())).await.is_err() {
                    return End::Lost;
                }
            }
            Some("join" | "leave" | "message") => {}
            other => err(format!("unexpected push {other:?}")),
        }
    }
}

/// Checks one publication against the client's position: exactly the next
/// offset of its epoch, carrying the publisher's next number `k` for the
/// channel with the data published as number `k`. A number may be skipped
/// only when the client was told it missed publications (`gap_told`), or
/// when its publish failed without an answer and it never came (`maybe`).
fn accept(s: &mut Sub, p: &Value, shared: &Shared, how: &str) -> Result<(), String> {
    let channel = &shared.channels[s.channel];
    let offset = p
        .get("offset")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{how} publication without offset in {channel}"))?;
    if offset != s.pos + 1 {
        let what = if offset <= s.pos { "duplicate" } else { "gap" };
        let e = format!(
            "{what}: {how} offset {offset} in {channel}, position {}",
            s.pos
        );
        if offset > s.pos {
            // Resynchronise so that one gap is one error.
            s.pos = offset;
            if let Some(k) = p
                .get("data")
                .and_then(|d| d.get("k"))
                .and_then(Value::as_u64)
            {
                s.last_k = s.last_k.max(k);
            }
        }
        return Err(e);
    }
    s.pos = offset;
    let k = p
        .get("data")
        .and_then(|d| d.get("k"))
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{how} publication {channel}/{offset} without k"))?;
    if p.get("data") != Some(&expected_data(s.channel, k)) {
        return Err(format!(
            "{how} data at {channel}/{offset} differs: {:.200}",
            p.get("data").map(Value::to_string).unwrap_or_default()
        ));
    }
    if k <= s.last_k {
        return Err(format!(
            "duplicate: {how} publication #{k} in {channel} after #{}",
            s.last_k
        ));
    }
    let skipped = s.last_k + 1..k;
    let c = &shared.counters;
    if !skipped.is_empty() {
        if s.gap_told {
            c.told_missed.fetch_add(k - s.last_k - 1, Ordering::Relaxed);
        } else {
            let maybe = shared.maybe.lock().unwrap();
            if let Some(lost) = skipped.clone().find(|j| !maybe[s.channel].contains(j)) {
                s.last_k = k;
                return Err(format!(
                    "silent loss: {how} publication #{k} in {channel} after #{}: #{lost} never came and nobody said so",
                    skipped.start - 1
                ));
            }
            c.maybe_absent
                .fetch_add(k - s.last_k - 1, Ordering::Relaxed);
        }
    }
    s.gap_told = false;
    s.last_k = k;
    Ok(())
}

// ---- the test --------------------------------------------------------------------

/// The issue's scenario: 200 clients on 20 channels, 2,000 publications/s for 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release build: cargo test --release -p volley-cli --test chaos -- --ignored --nocapture"]
async fn chaos_clients_recover_every_publication_exactly_once() {
    run_chaos(
        env_or("CHAOS_SECS", 30.0),
        env_or("CHAOS_RATE", 2000.0),
        env_or("CHAOS_CLIENTS", 200),
        env_or("CHAOS_CHANNELS", 20),
        Mode::Single,
        swallow_gap_from_env(),
    )
    .await;
}

/// The cluster scenario with shard 0 persisted (AOF, fsync always): 3 nodes
/// behind HAProxy, 2 Redis shards, 300 clients on 30 channels, 2,000
/// publications/s for 60 s; a node killed and restarted, shard 0 restarted,
/// a Sentinel failover of shard 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release build, redis-server, redis-sentinel and haproxy: cargo test --release -p volley-cli --test chaos cluster_ -- --ignored --nocapture"]
async fn cluster_chaos_every_publication_exactly_once_or_told_missed() {
    run_chaos(
        env_or("CHAOS_SECS", 60.0),
        env_or("CHAOS_RATE", 2000.0),
        env_or("CHAOS_CLIENTS", 300),
        env_or("CHAOS_CHANNELS", 30),
        Mode::Cluster { shard0_aof: true },
        swallow_gap_from_env(),
    )
    .await;
}

/// The same with shard 0 not persisted: its restart loses its channels'
/// streams, and their subscribers must be told (`recovered: false`). 20 s
/// by default, to keep both runs within CI's few minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release build, redis-server, redis-sentinel and haproxy: cargo test --release -p volley-cli --test chaos cluster_ -- --ignored --nocapture"]
async fn cluster_chaos_without_persistence() {
    run_chaos(
        env_or("CHAOS_NOPERSIST_SECS", 20.0),
        env_or("CHAOS_RATE", 2000.0),
        env_or("CHAOS_CLIENTS", 300),
        env_or("CHAOS_CHANNELS", 30),
        Mode::Cluster { shard0_aof: false },
        swallow_gap_from_env(),
    )
    .await;
}

/// A small version that a debug `cargo test` runs in a few seconds: 40
/// clients on 8 channels, 200 publications/s for 4 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_small_clients_recover_every_publication_exactly_once() {
    run_chaos(4.0, 200.0, 40, 8, Mode::Single, swallow_gap_from_env()).await;
}

/// The checker is not blind: a shorter small run in which one client drops
/// one publication without a word must fail, naming the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "gap: pushed offset")]
async fn chaos_small_fails_when_a_client_swallows_a_publication() {
    run_chaos(2.0, 200.0, 20, 4, Mode::Single, true).await;
}

/// `CHAOS_SWALLOW_GAP=1`: make one client drop one publication silently.
fn swallow_gap_from_env() -> bool {
    std::env::var("CHAOS_SWALLOW_GAP").as_deref() == Ok("1")
}

/// What the clients run against.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// One `volley serve`, memory engine.
    Single,
    /// `scripts/cluster.sh`: 3 nodes on Redis behind HAProxy.
    Cluster {
        /// Shard 0 keeps an append-only file.
        shard0_aof: bool,
    },
}

/// The hub or the cluster under test.
enum Target {
    Single(Hub),
    Cluster(Cluster),
}

impl Target {
    /// Where clients open their WebSockets (HAProxy for the cluster).
    fn ws_url(&self) -> String {
        match self {
            Target::Single(hub) => format!("ws://{}/connection/websocket", hub.addr),
            Target::Cluster(c) => c.get("CLUSTER_WS"),
        }
    }

    /// Where the publisher and the chaos send API calls: node 0, which is
    /// never killed (a publish cut by a dying node would be ambiguous).
    fn api_addr(&self) -> String {
        match self {
            Target::Single(hub) => hub.addr.clone(),
            Target::Cluster(c) => c.node_addr(0),
        }
    }

    fn alive(&mut self) -> bool {
        match self {
            Target::Single(hub) => hub.alive(),
            Target::Cluster(_) => true,
        }
    }

    fn dump_log(&self) {
        match self {
            Target::Single(hub) => hub.dump_log(),
            Target::Cluster(c) => c.dump_logs(),
        }
    }
}

async fn run_chaos(
    secs: f64,
    rate: f64,
    n_clients: usize,
    n_channels: usize,
    mode: Mode,
    swallow_gap: bool,
) {
    let seed: u64 = env_or("CHAOS_SEED", seed_from_clock());
    let history_size: u64 = env_or("CHAOS_HISTORY_SIZE", 10_000);
    let test_start = Instant::now();
    println!(
        "chaos: {n_clients} clients x {CHANNELS_PER_CLIENT} of {n_channels} channels, {rate} publications/s for {secs} s, seed {seed}"
    );

    let api_key = format!("chaos-{seed:x}");
    let config = format!(
        r#"api_key = "{api_key}"
allow_anonymous = true

[limits]
max_connections_per_ip = 100000
commands_per_second = 100000

[namespaces.chaos]
history_size = {history_size}
history_ttl = 600
allow_anonymous = true
"#
    );
    let mut hub = match mode {
        Mode::Single => Target::Single(Hub::start(&config)),
        Mode::Cluster { shard0_aof } => {
            Target::Cluster(Cluster::start(&config, &api_key, shard0_aof))
        }
    };
    println!(
        "chaos: {mode:?}, clients to {}, API calls to {}",
        hub.ws_url(),
        hub.api_addr()
    );
    let cluster = matches!(mode, Mode::Cluster { .. });

    let shared = Arc::new(Shared {
        url: hub.ws_url(),
        channels: (0..n_channels).map(|i| format!("chaos:ch{i}")).collect(),
        allow_told_gaps: cluster,
        maybe: Mutex::new(vec![BTreeSet::new(); n_channels]),
        told_gaps_per_channel: Mutex::new(vec![0; n_channels]),
        swallow_gap: AtomicBool::new(swallow_gap),
        counters: Counters::default(),
        client_ids: Mutex::new(vec![None; n_clients]),
        subscribed: AtomicU64::new(0),
    });
    let (final_tx, final_rx) = watch::channel(None::<Arc<Vec<u64>>>);
    let mut rng = Rng::new(seed);
    let mut droppers = Vec::new();
    let mut clients = Vec::new();
    for i in 0..n_clients {
        let (tx, rx) = mpsc::unbounded_channel();
        droppers.push(tx);
        clients.push(tokio::spawn(client(
            i,
            shared.clone(),
            rx,
            final_rx.clone(),
            rng.next(),
        )));
    }
    // Every client subscribed before the first publication.
    let want_subs = (0..n_clients)
        .map(|i| client_channels(i, n_channels).len() as u64)
        .sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.subscribed.load(Ordering::Relaxed) < want_subs {
        assert!(
            Instant::now() < deadline,
            "only {} of {want_subs} first subscriptions in 60 s; errors: {:?}",
            shared.subscribed.load(Ordering::Relaxed),
            shared.counters.errors.lock().unwrap()
        );
        assert!(hub.alive(), "the hub died");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "chaos: {want_subs} subscriptions ready after {:.1} s",
        test_start.elapsed().as_secs_f64()
    );

    // The publisher: each HTTP connection owns n_channels / PUBLISHER_CONNECTIONS
    // channels and publishes to them round-robin at its share of the rate.
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let publish_start = Instant::now();
    let publish_end = publish_start + Duration::from_secs_f64(secs);
    let mut publishers = Vec::new();
    for p in 0..PUBLISHER_CONNECTIONS.min(n_channels) {
        let mine: Vec<usize> = (0..n_channels)
            .filter(|c| c % PUBLISHER_CONNECTIONS == p)
            .collect();
        let share = rate * mine.len() as f64 / n_channels as f64;
        let (addr, key, channels) = (hub.api_addr(), api_key.clone(), shared.channels.clone());
        let shared = shared.clone();
        publishers.push(tokio::spawn(async move {
            let mut http = HttpApi::new(&addr, &key);
            // Per channel: the last number tried, and the last one published.
            let mut tried = vec![0u64; channels.len()];
            let mut counts = vec![0u64; channels.len()];
            let mut errors = Vec::new();
            let start = tokio::time::Instant::now();
            let mut g: u64 = 0;
            // After the time is up, one more publication per channel, so
            // that each channel's last number is one known to be published.
            let mut closing: Option<Vec<usize>> = None;
            loop {
                if closing.is_none() && Instant::now() >= publish_end {
                    closing = Some(mine.clone());
                }
                let ch = match &closing {
                    None => {
                        tokio::time::sleep_until(start + Duration::from_secs_f64(g as f64 / share))
                            .await;
                        mine[(g % mine.len() as u64) as usize]
                    }
                    Some(left) => match left.first() {
                        Some(ch) => *ch,
                        None => break,
                    },
                };
                g += 1;
                let k = tried[ch] + 1;
                tried[ch] = k;
                let body = json!({"channel": channels[ch], "data": expected_data(ch, k)});
                // A temporary refusal (Redis unreachable, code 100) is retried
                // with the same number; bounded.
                let give_up = Instant::now() + Duration::from_secs(30);
                loop {
                    match post(&mut http, "publish", &body).await {
                        Ok((200, v)) if v["result"].is_object() => {
                            if !cluster && v["result"]["offset"].as_u64() != Some(k) {
                                errors.push(format!("publish {} #{k}: offset {v}", channels[ch]));
                            }
                            counts[ch] = k;
                            if let Some(left) = &mut closing {
                                left.retain(|c| *c != ch);
                            }
                            break;
                        }
                        Ok((503, v))
                            if cluster
                                && v["error"]["code"].as_u64() == Some(100)
                                && Instant::now() < give_up =>
                        {
                            shared
                                .counters
                                .publish_refusals
                                .fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok((status, v)) if !cluster || status < 500 => {
                            errors
                                .push(format!("publish {} #{k}: HTTP {status} {v}", channels[ch]));
                            break;
                        }
                        Err(e) if !cluster => {
                            errors.push(format!("publish {} #{k}: {e}", channels[ch]));
                            break;
                        }
                        Ok(_) | Err(_) => {
                            // The cluster gave no clear answer (a server
                            // error other than the temporary refusal, or
                            // none at all): published or not. Clients may
                            // see it or not, never twice.
                            shared.maybe.lock().unwrap()[ch].insert(k);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            break;
                        }
                    }
                }
                if !errors.is_empty() {
                    break;
                }
            }
            (counts, errors)
        }));
    }

    // Chaos while publishing: every ~40 ms one client is disconnected, at
    // random either by the server (HTTP disconnect by client id, code 4000)
    // or by itself (it drops its TCP connection).
    let chaos = {
        let shared = shared.clone();
        let (addr, key) = (hub.api_addr(), api_key.clone());
        let stop = stop_publishing.clone();
        let mut rng = Rng::new(seed ^ 0xC4A05);
        tokio::spawn(async move {
            let mut http = HttpApi::new(&addr, &key);
            while !stop.load(Ordering::Relaxed) && Instant::now() < publish_end {
                tokio::time::sleep(Duration::from_millis(20 + rng.below(40))).await;
                let victim = rng.below(droppers.len() as u64) as usize;
                if rng.below(2) == 0 {
                    let id = shared.client_ids.lock().unwrap()[victim].clone();
                    let Some(id) = id else { continue };
                    let c = &shared.counters;
                    c.http_disconnects_sent.fetch_add(1, Ordering::Relaxed);
                    // A 503 with error 100 (Redis unreachable: the other
                    // nodes were not told) is repeated; bounded.
                    let give_up = Instant::now() + Duration::from_secs(10);
                    loop {
                        let body = json!({"client": id, "reconnect": true});
                        match post(&mut http, "disconnect", &body).await {
                            Ok((200, v)) => {
                                let n = v["result"]["disconnected"].as_u64().unwrap_or(0);
                                c.http_disconnects_effective.fetch_add(n, Ordering::Relaxed);
                            }
                            Ok((503, v))
                                if v["error"]["code"].as_u64() == Some(100)
                                    && Instant::now() < give_up =>
                            {
                                c.disconnect_refusals.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                            Ok((status, v)) => c.error(format!("HTTP disconnect: {status} {v}")),
                            Err(e) => c.error(format!("HTTP disconnect: {e}")),
                        }
                        break;
                    }
                } else {
                    let _ = droppers[victim].send(());
                }
            }
        })
    };

    // The cluster's events, at fixed points of the publishing time (all
    // over by 60% of it, so that publications follow each of them).
    let events = match &hub {
        Target::Cluster(c) => {
            let commands: Vec<(f64, Vec<String>)> = vec![
                (0.15, vec!["kill-node".into(), "2".into()]),
                (0.25, vec!["start-node".into(), "2".into()]),
                (0.40, vec!["restart-redis".into()]),
                (0.55, vec!["failover".into()]),
            ];
            let (script, dir) = (Cluster::script(), c.dir.clone());
            Some(tokio::task::spawn_blocking(move || {
                let mut log = Vec::new();
                for (at, args) in commands {
                    let when = publish_start + Duration::from_secs_f64(secs * at);
                    std::thread::sleep(when.saturating_duration_since(Instant::now()));
                    let t = publish_start.elapsed().as_secs_f64();
                    let out = cluster_command(&script, &dir, &args);
                    log.push(format!("{t:.1} s: {} -> {out}", args.join(" ")));
                }
                log
            }))
        }
        Target::Single(_) => None,
    };

    let mut tops = vec![0u64; n_channels];
    let mut publish_errors = Vec::new();
    for p in publishers {
        let (counts, errors) = p.await.unwrap();
        for (c, n) in counts.iter().enumerate() {
            tops[c] = tops[c].max(*n);
        }
        publish_errors.extend(errors);
    }
    let publish_secs = publish_start.elapsed().as_secs_f64();
    stop_publishing.store(true, Ordering::Relaxed);
    chaos.await.unwrap();
    let published: u64 = tops.iter().sum();
    println!(
        "chaos: published {published} in {publish_secs:.1} s ({:.0}/s; per channel {}..={})",
        published as f64 / publish_secs,
        tops.iter().min().unwrap(),
        tops.iter().max().unwrap()
    );
    assert!(
        publish_errors.is_empty(),
        "publisher errors: {publish_errors:?}"
    );
    if let Some(events) = events {
        for line in events.await.unwrap() {
            println!("chaos: event at {line}");
        }
    }
    let _ = final_tx.send(Some(Arc::new(tops.clone())));

    // Every client ends complete; bounded.
    let drain_start = Instant::now();
    let mut unfinished = 0;
    for c in clients {
        let left = Duration::from_secs(60).saturating_sub(drain_start.elapsed());
        match tokio::time::timeout(left, c).await {
            Ok(r) => r.unwrap(),
            Err(_) => unfinished += 1,
        }
    }
    let c = &shared.counters;
    let delivered_push = c.delivered_push.load(Ordering::Relaxed);
    let delivered_recovered = c.delivered_recovered.load(Ordering::Relaxed);
    let expected_deliveries: u64 = (0..n_clients)
        .map(|i| {
            client_channels(i, n_channels)
                .iter()
                .map(|ch| tops[*ch])
                .sum::<u64>()
        })
        .sum();
    let told_missed = c.told_missed.load(Ordering::Relaxed);
    let maybe_absent = c.maybe_absent.load(Ordering::Relaxed);
    let maybe_published: usize = shared.maybe.lock().unwrap().iter().map(BTreeSet::len).sum();
    println!(
        "chaos: published {published}, expected deliveries {expected_deliveries}, delivered {} ({delivered_push} pushed + {delivered_recovered} recovered), told missed {told_missed}, ambiguous publishes {maybe_published} (absent at clients {maybe_absent})",
        delivered_push + delivered_recovered
    );
    println!(
        "chaos: subscribes answered recovered:false {}, unsubscribe pushes with resubscribe {}",
        c.told_gaps.load(Ordering::Relaxed),
        c.resubscribe_pushes.load(Ordering::Relaxed),
    );
    println!(
        "chaos: temporary refusals retried: subscribes {}, publishes {}, HTTP disconnects {}",
        c.subscribe_refusals.load(Ordering::Relaxed),
        c.publish_refusals.load(Ordering::Relaxed),
        c.disconnect_refusals.load(Ordering::Relaxed),
    );
    println!(
        "chaos: reconnects {}, recovering subscribes {}, recovered {}, own TCP drops {}, HTTP disconnects {} sent / {} effective, connect failures {}",
        c.reconnects.load(Ordering::Relaxed),
        c.recovering_subscribes.load(Ordering::Relaxed),
        c.recovered_subscribes.load(Ordering::Relaxed),
        c.own_drops.load(Ordering::Relaxed),
        c.http_disconnects_sent.load(Ordering::Relaxed),
        c.http_disconnects_effective.load(Ordering::Relaxed),
        c.connect_failures.load(Ordering::Relaxed),
    );
    println!(
        "chaos: close codes seen {:?}; drain {:.1} s; total {:.1} s",
        c.close_codes.lock().unwrap(),
        drain_start.elapsed().as_secs_f64(),
        test_start.elapsed().as_secs_f64()
    );
    let errors = c.error_count.load(Ordering::Relaxed);
    if errors > 0 || unfinished > 0 || !hub.alive() {
        hub.dump_log();
    }
    assert!(hub.alive(), "the hub died during the test");
    assert_eq!(
        errors,
        0,
        "{errors} errors, first ones: {:#?}",
        c.errors.lock().unwrap()
    );
    assert_eq!(
        unfinished, 0,
        "{unfinished} clients did not complete within 60 s of the last publication"
    );
    assert_eq!(
        delivered_push + delivered_recovered + told_missed + maybe_absent,
        expected_deliveries,
        "deliveries + told missed + ambiguous publishes absent"
    );
    if let (Target::Cluster(cl), Mode::Cluster { shard0_aof }) = (&hub, mode) {
        let told = shared.told_gaps_per_channel.lock().unwrap().clone();
        let on_shard0: Vec<bool> = shared.channels.iter().map(|ch| cl.on_shard0(ch)).collect();
        println!(
            "chaos: recovered:false per channel (shard 0 | shard 1): {:?} | {:?}",
            (0..n_channels)
                .filter(|i| on_shard0[*i])
                .map(|i| told[i])
                .collect::<Vec<_>>(),
            (0..n_channels)
                .filter(|i| !on_shard0[*i])
                .map(|i| told[i])
                .collect::<Vec<_>>(),
        );
        assert!(
            on_shard0.iter().any(|b| *b) && on_shard0.iter().any(|b| !*b),
            "both shards hold channels"
        );
        for (i, ch) in shared.channels.iter().enumerate() {
            if shard0_aof && on_shard0[i] {
                assert_eq!(
                    told[i], 0,
                    "{ch} is on the persisted shard 0, yet clients were told they missed publications"
                );
            } else if on_shard0[i] {
                assert!(
                    told[i] > 0,
                    "{ch} lost its stream with shard 0, yet no client was told"
                );
            }
        }
    }
    assert!(published > 0, "nothing was published");
    assert!(
        c.recovered_subscribes.load(Ordering::Relaxed) > 0
            && c.own_drops.load(Ordering::Relaxed) > 0
            && c.http_disconnects_effective.load(Ordering::Relaxed) > 0,
        "the chaos did not exercise both kinds of disconnect and recovery"
    );
}

// ---- the cluster -------------------------------------------------------------

/// The `volley` binary under test.
/// Runs `scripts/cluster.sh COMMAND DIR ARGS...`; its output, or a panic.
fn cluster_command(script: &std::path::Path, dir: &std::path::Path, args: &[String]) -> String {
    let (command, rest) = args.split_first().expect("a command");
    let out = Command::new("bash")
        .arg(script)
        .arg(command)
        .arg(dir)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/cluster.sh");
    assert!(
        out.status.success(),
        "scripts/cluster.sh {command}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('\n', "; ")
}

/// Three nodes on Redis behind HAProxy, started by `scripts/cluster.sh`;
/// every process stopped by PID on drop.
struct Cluster {
    dir: std::path::PathBuf,
    env: BTreeMap<String, String>,
}

impl Cluster {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh")
    }

    fn start(config: &str, api_key: &str, shard0_aof: bool) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "volley-cluster-chaos-{}-{}",
            std::process::id(),
            seed_from_clock()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("volley.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut cluster = Cluster {
            dir,
            env: BTreeMap::new(),
        };
        let out = Command::new("bash")
            .arg(Self::script())
            .arg("start")
            .arg(&cluster.dir)
            .env("NODES", "3")
            .env("VOLLEY_BIN", volley_bin())
            .env("NODE_CONFIG", &config_path)
            .env("SHARD0_AOF", if shard0_aof { "1" } else { "0" })
            .env("API_KEY", api_key)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/cluster.sh");
        let env = std::fs::read_to_string(cluster.dir.join("cluster.env")).unwrap_or_default();
        cluster.env = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !out.status.success() {
            cluster.dump_logs();
            panic!(
                "scripts/cluster.sh start: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster
    }

    fn get(&self, key: &str) -> String {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in cluster.env"))
            .clone()
    }

    fn node_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.get(&format!("NODE{i}_PORT")))
    }

    /// Whether shard 0 holds keys of `channel` (the engine's keys end with
    /// `.CHANNEL`).
    fn on_shard0(&self, channel: &str) -> bool {
        let out = Command::new("redis-cli")
            .args(["-p", &self.get("SHARD0_PORT"), "--scan", "--pattern"])
            .arg(format!("*.{channel}"))
            .output()
            .expect("redis-cli");
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    }

    fn dump_logs(&self) {
        for name in ["node0.log", "node1.log", "node2.log", "haproxy.log"] {
            let log = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("---- last 20 lines of {name} ----");
            for l in &lines[lines.len().saturating_sub(20)..] {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.dir.join("cluster.env").exists() {
            // Every PID the script started; no panic while unwinding.
            let _ = Command::new("bash")
                .arg(Self::script())
                .arg("stop")
                .arg(&self.dir)
                .stdin(Stdio::null())
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
