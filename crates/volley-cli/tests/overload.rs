//! The hub-wide budget of queued outbound bytes (issue 14), black box: a
//! `volley serve` with a small budget, subscribers of which some never read
//! (their sockets' receive buffers shrunk so that the backlog builds in the
//! hub, not in the kernel), publications through the HTTP API at a steady
//! rate well past what the stalled subscribers take. Checked:
//!
//! - `volley_outbound_queued_bytes` (scraped from /metrics all along) never
//!   exceeds the budget, and the budget disconnected someone
//!   (`volley_budget_disconnects_total` > 0);
//! - the hub's VmRSS grows by less than the budget plus what the channel's
//!   history retains plus a fixed allowance (allocator and reconnections);
//! - every reader gets every publication exactly once, in order, and (in
//!   the small run, where readers keep up) is never disconnected; in the
//!   full-scale run, where the hub itself is overloaded, a reader that falls
//!   behind may be disconnected and must recover like the stalled ones;
//! - every stalled subscriber either got everything too or, once it reads,
//!   finds its connection ended (the `disconnect` push 4002 with
//!   `reconnect: true`, or the close alone) and, reconnecting with recovery,
//!   gets exactly the publications it missed or `recovered: false` (a
//!   recovery refused for now, error 106, is asked again after a backoff).
//!
//! The small version runs in `cargo test` (a debug build); the full one of
//! the issue (10,000 subscribers of which 1,000 never read, 60 s) runs with
//! `OVERLOAD_FULL=1 cargo test --release -p volley-cli --test overload --
//! --ignored` (results in BENCHMARKS.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

// The client `volley bench fanout` and the chaos test use.
#[allow(dead_code)]
#[path = "../src/http_api.rs"]
mod http_api;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Volley;
use http_api::HttpApi;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use volley::{ClientBuilder, Message, WebSocket};

const CHANNEL: &str = "load:x";

/// One run's shape.
struct Load {
    readers: usize,
    stalled: usize,
    budget: usize,
    /// Publications per second (all publishers together), and for how long.
    rate: u32,
    /// Publishers, each on its own HTTP connection and each waiting for its
    /// calls' replies: one alone cannot publish faster than the hub fans out.
    publishers: u32,
    seconds: u64,
    /// Bytes of each publication's data.
    payload: usize,
    history: usize,
    /// The readers read faster than the hub sends: none may be disconnected
    /// (in the full-scale run the hub itself is overloaded, and readers that
    /// fall behind may be; they must recover like the others).
    readers_keep_up: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_bounds_the_hub_and_readers_lose_nothing() {
    overload(Load {
        readers: 20,
        stalled: 10,
        budget: 8 << 20,
        rate: 40,
        publishers: 1,
        seconds: 8,
        // A stalled subscriber's recovery (up to all 321 publications, 5.3
        // MB) fits under three quarters of the budget: it is admitted, not
        // failed (`recovered: false`), once the budget has room.
        payload: 16 * 1024,
        history: 10_000,
        readers_keep_up: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "the issue's full scale: run in release with OVERLOAD_FULL=1"]
async fn full_scale_overload() {
    if std::env::var_os("OVERLOAD_FULL").is_none() {
        eprintln!("OVERLOAD_FULL is not set: skipped");
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    overload(Load {
        readers: env("OVERLOAD_READERS", 9000) as usize,
        stalled: env("OVERLOAD_STALLED", 1000) as usize,
        // Small: what this machine's publishers and clients can make the
        // hub queue (21–46 MB counted at most with a 64 MiB budget) must pass
        // it, so that the budget acts.
        budget: env("OVERLOAD_BUDGET", 16 << 20) as usize,
        rate: env("OVERLOAD_RATE", 500) as u32,
        // Several: one publisher waits for each call's reply, and the hub
        // acknowledges a publish once it is handed to the fan-out.
        publishers: env("OVERLOAD_PUBLISHERS", 4) as u32,
        seconds: env("OVERLOAD_SECONDS", 60),
        payload: env("OVERLOAD_PAYLOAD", 512) as usize,
        history: 100_000,
        readers_keep_up: false,
    })
    .await;
}

/// The shared state of a run.
struct Shared {
    /// The last publication's offset, once publishing is over (0 before).
    last: tokio::sync::watch::Sender<u64>,
    /// Stalled subscribers whose connection had ended when they read.
    ended: AtomicUsize,
    /// Readers disconnected (they could not keep up).
    readers_disconnected: AtomicUsize,
    /// Subscribers told with the `disconnect` push 4002.
    told_4002: AtomicUsize,
    /// Recoveries answered `recovered: true` with exactly what was missed.
    recovered: AtomicUsize,
    /// Recoveries answered `recovered: false`.
    told_missed: AtomicUsize,
    /// Recoveries refused for now (error 106, the budget), then tried again.
    deferred: AtomicUsize,
    /// Recovering subscribers disconnected again (4002) before their reply
    /// was written, which reconnected and recovered again.
    evicted_recovering: AtomicUsize,
}

async fn overload(load: Load) {
    let api_key = "overload-key";
    let dir = common::services::temp_dir("overload");
    let config = dir.join("volley.toml");
    std::fs::write(
        &config,
        format!(
            r#"api_key = "{api_key}"
allow_anonymous = true

[limits]
max_connections_per_ip = 100000
commands_per_second = 100000
# Only the hub-wide budget acts, not each client's own limit.
outbound_queue_bytes = 1073741824

[namespaces.load]
history_size = {history}
history_ttl = 600
allow_anonymous = true
"#,
            history = load.history
        ),
    )
    .unwrap();
    let budget = load.budget.to_string();
    let mut hub = Volley::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
            "--outbound-budget",
            &budget,
        ],
        &[],
    );
    let addr = hub.listening();
    let url = format!("ws://{addr}/connection/websocket");
    let shared = Arc::new(Shared {
        last: tokio::sync::watch::Sender::new(0),
        ended: AtomicUsize::new(0),
        readers_disconnected: AtomicUsize::new(0),
        told_4002: AtomicUsize::new(0),
        recovered: AtomicUsize::new(0),
        told_missed: AtomicUsize::new(0),
        deferred: AtomicUsize::new(0),
        evicted_recovering: AtomicUsize::new(0),
    });

    let mut readers = Vec::new();
    for _ in 0..load.readers {
        let (ws, top) = subscriber(&url, false).await;
        readers.push(tokio::spawn(read_all(url.clone(), ws, top, shared.clone())));
    }
    let mut stalled = Vec::new();
    for _ in 0..load.stalled {
        stalled.push(subscriber(&url, true).await);
    }
    let rss_before = hub.rss_kib();
    println!(
        "overload: {} readers, {} stalled, budget {} KiB, {} publications/s of {} bytes for {} s \
         ({} publishers); hub RSS {rss_before} KiB",
        load.readers,
        load.stalled,
        load.budget / 1024,
        load.rate,
        load.payload,
        load.seconds,
        load.publishers,
    );

    // Publish at the rate; meanwhile, watch the metric and the RSS.
    let publisher = tokio::spawn(publish_all(
        addr.clone(),
        api_key,
        load.rate,
        load.publishers,
        load.seconds,
        load.payload,
    ));
    let mut http = HttpApi::new(&addr, api_key);
    let mut max_queued = 0u64;
    let mut rss_peak = rss_before;
    let mut scrapes = 0;
    while !publisher.is_finished() {
        let (status, body) = http.get("/metrics").await.unwrap();
        assert_eq!(status, 200);
        let metrics = String::from_utf8_lossy(&body).into_owned();
        max_queued = max_queued.max(metric(&metrics, "volley_outbound_queued_bytes"));
        rss_peak = rss_peak.max(hub.rss_kib());
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = publisher.await.unwrap();
    shared.last.send_replace(last);
    let (_, body) = http.get("/metrics").await.unwrap();
    let metrics = String::from_utf8_lossy(&body).into_owned();
    let budget_disconnects = metric(&metrics, "volley_budget_disconnects_total");
    rss_peak = rss_peak.max(hub.rss_kib());
    println!(
        "overload: {last} publications; queued bytes at most {max_queued} of {} ({scrapes} scrapes); \
         {budget_disconnects} budget disconnects; hub RSS {rss_before} -> peak {rss_peak} KiB",
        load.budget
    );

    // Readers: everything, in order, exactly once.
    for reader in readers {
        tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("a reader got everything within 60 s")
            .unwrap();
    }
    // Stalled subscribers read now: everything, or an ended connection and
    // then a recovery.
    let mut tasks = Vec::new();
    for (ws, top) in stalled {
        tasks.push(tokio::spawn(catch_up(url.clone(), ws, top, shared.clone())));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a stalled subscriber caught up within 60 s")
            .unwrap();
    }
    let ended = shared.ended.load(Ordering::Relaxed);
    let readers_disconnected = shared.readers_disconnected.load(Ordering::Relaxed);
    println!(
        "overload: {ended} of {} stalled subscribers and {readers_disconnected} of {} readers disconnected \
         ({} with the 4002 push), {} recovered exactly, {} told recovered: false, \
         {} recoveries refused for now (106) and tried again, {} recovering subscribers \
         disconnected again (4002) and recovered again",
        load.stalled,
        load.readers,
        shared.told_4002.load(Ordering::Relaxed),
        shared.recovered.load(Ordering::Relaxed),
        shared.told_missed.load(Ordering::Relaxed),
        shared.deferred.load(Ordering::Relaxed),
        shared.evicted_recovering.load(Ordering::Relaxed),
    );

    assert!(
        max_queued <= load.budget as u64,
        "queued bytes {max_queued} passed the budget {}",
        load.budget
    );
    assert!(budget_disconnects > 0, "the budget disconnected no one");
    assert!(ended > 0, "no stalled subscriber was disconnected");
    if load.readers_keep_up {
        assert_eq!(
            readers_disconnected, 0,
            "a reader that keeps up is never disconnected"
        );
    }
    assert_eq!(
        ended + readers_disconnected,
        shared.recovered.load(Ordering::Relaxed) + shared.told_missed.load(Ordering::Relaxed),
        "every disconnected subscriber recovered or was told it could not"
    );
    // What the hub may hold besides its queues (the budget, which counts
    // recovery replies too): the channel's history (the publications and
    // their encoded frames) and a fixed allowance for what no count bounds:
    // jemalloc keeps freed pages up to a second (`dirty_decay_ms:1000`,
    // .cargo/config.toml) and caches per thread, and clients reconnecting
    // to recover hold a new connection (its task, WebSocket and a 47.5 KB
    // zlib inflater when they offer permessage-deflate, as this test's
    // client does) while the old one is torn down. Measured (BENCHMARKS.md):
    // at full scale the growth stayed under the budget alone; 16 MiB is the
    // headroom, not a measured need.
    let history = (last as usize).min(load.history) * (load.payload + 256) * 2;
    let allowance = 16 << 20;
    let growth = (rss_peak.saturating_sub(rss_before) * 1024) as usize;
    assert!(
        growth <= load.budget + history + allowance,
        "hub RSS grew by {growth} bytes: more than the budget {} + history {history} + {allowance}",
        load.budget
    );
    drop(hub);
    let _ = std::fs::remove_dir_all(dir);
}

/// A `gauge` or counter's value in the Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or_else(|| panic!("no {name} in /metrics"), |v| v as u64)
}

/// Publishes `rate` publications a second (split between `publishers`)
/// for `seconds`, each with `payload` bytes of data; returns the last
/// offset, checked to be the number of publications (each got its own).
async fn publish_all(
    addr: String,
    key: &'static str,
    rate: u32,
    publishers: u32,
    seconds: u64,
    payload: usize,
) -> u64 {
    let end = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..publishers)
        .map(|_| {
            tokio::spawn(publish(
                addr.clone(),
                key,
                (rate / publishers).max(1),
                end,
                payload,
            ))
        })
        .collect();
    let (mut count, mut last) = (0, 0);
    for task in tasks {
        let (n, top) = task.await.unwrap();
        count += n;
        last = last.max(top);
    }
    assert_eq!(last, count, "every publication got its own offset");
    last
}

/// One publisher: `rate` publications a second until `end`; returns how
/// many, and the last offset (its offsets increase).
async fn publish(addr: String, key: &str, rate: u32, end: Instant, payload: usize) -> (u64, u64) {
    let mut http = HttpApi::new(&addr, key);
    let filler = "x".repeat(payload);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut last = 0;
    let mut seq = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        seq += 1;
        let body = json!({"channel": CHANNEL, "data": {"seq": seq, "p": filler}});
        let (status, reply) = http.post("publish", &body.to_string()).await.unwrap();
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(status, 200, "{reply}");
        let offset = reply["result"]["offset"].as_u64().unwrap();
        assert!(offset > last, "publish #{seq}: {reply}");
        last = offset;
    }
    (seq, last)
}

/// A `volley.v1` WebSocket, connected (`connect` answered). A stalled one's
/// receive buffer is small.
async fn open(url: &str, stalled: bool) -> WebSocket<TcpStream> {
    let target = volley::Target::parse(url).unwrap();
    let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    if stalled {
        socket.set_recv_buffer_size(4096).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    let (mut ws, _) = ClientBuilder::new(url)
        .protocol("volley.v1")
        .connect_on(tcp)
        .await
        .unwrap();
    call(&mut ws, 1, "connect", json!({})).await;
    ws
}

/// A subscriber of `CHANNEL`, with the subscribe reply's epoch and offset.
async fn subscriber(url: &str, stalled: bool) -> (WebSocket<TcpStream>, (String, u64)) {
    let mut ws = open(url, stalled).await;
    let result = call(&mut ws, 2, "subscribe", json!({"channel": CHANNEL})).await;
    let epoch = result["epoch"].as_str().unwrap().to_string();
    let offset = result["offset"].as_u64().unwrap();
    (ws, (epoch, offset))
}

/// Sends a command and reads its reply's result (nothing else comes first).
async fn call(ws: &mut WebSocket<TcpStream>, id: u64, method: &str, params: Value) -> Value {
    let reply = call_reply(ws, id, method, params).await;
    reply
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{method} failed: {reply}"))
}

/// Sends a command and reads its reply (nothing else comes first).
async fn call_reply(ws: &mut WebSocket<TcpStream>, id: u64, method: &str, params: Value) -> Value {
    let command = json!({"id": id, "method": method, "params": params});
    ws.send(Message::text(command.to_string())).await.unwrap();
    let reply = next(ws).await.expect("a reply");
    assert_eq!(reply["id"].as_u64(), Some(id), "{reply}");
    reply
}

/// The next message as JSON; `None` when the connection ended. A
/// publication push's `data` is left out (so that a debug build keeps up).
async fn next(ws: &mut WebSocket<TcpStream>) -> Option<Value> {
    let message = tokio::time::timeout(Duration::from_secs(30), ws.recv())
        .await
        .expect("a message or the end within 30 s");
    let text = match message {
        Some(Ok(m)) => m.as_text().expect("text").to_owned(),
        Some(Err(_)) | None => return None,
    };
    #[derive(serde::Deserialize)]
    struct Head {
        push: Option<String>,
        offset: Option<u64>,
    }
    if text.starts_with(r#"{"push":"publication""#) {
        let head: Head = serde_json::from_str(&text).unwrap();
        return Some(json!({"push": head.push, "offset": head.offset}));
    }
    Some(serde_json::from_str(&text).unwrap())
}

/// A publication push's offset, checked to be `expected`.
fn offset_of(push: &Value, expected: u64) -> u64 {
    assert_eq!(push["push"], "publication", "{push}");
    let offset = push["offset"].as_u64().unwrap();
    assert_eq!(offset, expected, "a gap, duplicate or reordering: {push}");
    offset
}

/// A reader: every publication after `top`, in order, until the last one.
/// Disconnected (only when it could not keep up), it recovers and goes on.
async fn read_all(
    url: String,
    mut ws: WebSocket<TcpStream>,
    (epoch, top): (String, u64),
    shared: Arc<Shared>,
) {
    let mut last = shared.last.subscribe();
    let mut seen = top;
    loop {
        let end = *last.borrow_and_update();
        if end != 0 && seen >= end {
            return;
        }
        tokio::select! {
            message = next(&mut ws) => match message {
                Some(push) if push["push"] == "publication" => seen = offset_of(&push, seen + 1),
                other => {
                    ended(&mut ws, other, &shared).await;
                    shared.readers_disconnected.fetch_add(1, Ordering::Relaxed);
                    match recover(&url, &epoch, seen, &shared).await {
                        Some((again, at)) => (ws, seen) = (again, at),
                        None => return,
                    }
                }
            },
            _ = last.changed(), if end == 0 => {}
        }
    }
}

/// The end of a connection: the `disconnect` push 4002 with `reconnect:
/// true` then the close, or the close alone (with 4002, when its frame came).
async fn ended(ws: &mut WebSocket<TcpStream>, message: Option<Value>, shared: &Shared) {
    if let Some(push) = message {
        assert_eq!(push["push"], "disconnect", "{push}");
        assert_eq!(push["code"], 4002, "{push}");
        assert_eq!(push["reconnect"], true, "{push}");
        shared.told_4002.fetch_add(1, Ordering::Relaxed);
        assert!(next(ws).await.is_none(), "the close follows");
    }
    if let Some(frame) = ws.close_frame() {
        assert_eq!(u16::from(frame.code), 4002, "{frame:?}");
    }
}

/// Reconnects and resubscribes with recovery from `seen`: the new
/// connection and the offset recovered up to, or `None` when told
/// `recovered: false`. A recovery refused for now (error 106, temporary:
/// the hub's budget cannot take its reply) is asked again after a backoff,
/// as the SDK does (docs/protocol.md §14.3), for at most 60 s.
async fn recover(
    url: &str,
    epoch: &str,
    mut seen: u64,
    shared: &Shared,
) -> Option<(WebSocket<TcpStream>, u64)> {
    let mut ws = open(url, false).await;
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut backoff = Duration::from_millis(50);
    let mut id = 2;
    let result = loop {
        let params = json!({"channel": CHANNEL, "recover": true, "epoch": epoch, "offset": seen});
        let command = json!({"id": id, "method": "subscribe", "params": params});
        ws.send(Message::text(command.to_string())).await.unwrap();
        let reply = match next(&mut ws).await {
            Some(reply) if reply["id"].as_u64() == Some(id) => reply,
            other => {
                // The budget disconnected it again (its recovery reply was
                // among the largest backlogs) before the reply was written:
                // reconnect and recover again, as the SDK does.
                assert!(
                    other
                        .as_ref()
                        .is_none_or(|p| p["push"] == "disconnect" && p["code"] == 4002),
                    "{other:?}"
                );
                assert!(Instant::now() < give_up, "recovery disconnected for 60 s");
                shared.evicted_recovering.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                ws = open(url, false).await;
                id += 1;
                continue;
            }
        };
        if let Some(result) = reply.get("result") {
            break result.clone();
        }
        assert_eq!(reply["error"]["code"], 106, "{reply}");
        assert_eq!(reply["error"]["temporary"], true, "{reply}");
        assert!(
            Instant::now() < give_up,
            "recovery refused for 60 s: {reply}"
        );
        shared.deferred.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        id += 1;
    };
    if result["recovered"] != true {
        shared.told_missed.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    for p in result["publications"].as_array().unwrap() {
        seen += 1;
        assert_eq!(p["offset"].as_u64(), Some(seen), "{p}");
    }
    assert_eq!(
        result["offset"].as_u64(),
        Some(seen),
        "recovered up to the top"
    );
    shared.recovered.fetch_add(1, Ordering::Relaxed);
    Some((ws, seen))
}

/// A stalled subscriber reads at last: publications in order, then either
/// the last one or the end of its connection; then it reconnects and
/// recovers from what it saw.
async fn catch_up(
    url: String,
    mut ws: WebSocket<TcpStream>,
    (epoch, top): (String, u64),
    shared: Arc<Shared>,
) {
    let last = *shared.last.borrow();
    let mut seen = top;
    while seen < last {
        match next(&mut ws).await {
            Some(push) if push["push"] == "publication" => seen = offset_of(&push, seen + 1),
            other => {
                ended(&mut ws, other, &shared).await;
                shared.ended.fetch_add(1, Ordering::Relaxed);
                if let Some((_, at)) = recover(&url, &epoch, seen, &shared).await {
                    assert_eq!(at, last, "recovered up to the last publication");
                }
                return;
            }
        }
    }
}
