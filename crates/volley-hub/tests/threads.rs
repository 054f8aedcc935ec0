//! A hub serving on several connection threads (`Server::with_threads`):
//! connections are dealt to the threads, each thread delivers to its own
//! share of a channel's subscribers, and every subscriber still gets every
//! publication once, in order; the drain reaches every thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use volley_hub::Server;

const THREADS: usize = 3;
const PER_CHANNEL: usize = 9;
const PUBLISHERS: u64 = 3;
const EACH: u64 = 30;

/// `volley_thread_deliveries_total` by thread, and
/// `volley_direct_writes_total`, from `/metrics`.
async fn deliveries_by_thread(hub: &TestHub) -> (Vec<u64>, u64) {
    let (status, text) = http(hub.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_string();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let by_thread = (0..THREADS)
        .map(|t| {
            value(&format!(
                "volley_thread_deliveries_total{{thread=\"{t}\"}} "
            ))
        })
        .collect();
    (by_thread, value("volley_direct_writes_total "))
}

#[tokio::test]
async fn every_thread_delivers_its_share_in_order_and_drains() {
    let mut cfg = config();
    cfg.drain.grace_ms = 1000;
    cfg.drain.spread_ms = 100;
    let server = Server::bind(cfg)
        .await
        .unwrap()
        .with_threads(THREADS)
        .unwrap();
    let mut hub = TestHub::serve(server);
    let mut history = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..PER_CHANNEL {
        let mut c = Client::anonymous(&hub).await;
        c.subscribe(json!({"channel": "feed:threads"})).await;
        history.push(c);
        let mut c = Client::anonymous(&hub).await;
        c.subscribe(json!({"channel": "plain:threads"})).await;
        plain.push(c);
    }
    // Several publishers at once, to both channels.
    let mut publishers = tokio::task::JoinSet::new();
    for p in 0..PUBLISHERS {
        let addr = hub.addr;
        publishers.spawn(async move {
            for n in 0..EACH {
                for channel in ["feed:threads", "plain:threads"] {
                    let body = json!({"channel": channel, "data": {"p": p, "n": n}});
                    let (status, reply) = http(
                        addr,
                        "POST",
                        "/api/publish",
                        &[("Authorization", &format!("apikey {API_KEY}"))],
                        &body.to_string(),
                    )
                    .await;
                    assert_eq!(status, 200, "{reply}");
                }
            }
        });
    }
    while let Some(done) = publishers.join_next().await {
        done.unwrap();
    }
    let total = PUBLISHERS * EACH;
    // With history: offsets 1..=total, each once, in order.
    for c in &mut history {
        let mut got = Vec::new();
        for _ in 0..total {
            let p = c.push().await;
            assert_eq!(p["push"], "publication", "{p}");
            got.push(p["offset"].as_u64().unwrap());
        }
        assert_eq!(got, (1..=total).collect::<Vec<_>>());
    }
    // Without history: each publisher's publications once, in its order.
    for c in &mut plain {
        let mut next = [0u64; PUBLISHERS as usize];
        for _ in 0..total {
            let p = c.push().await;
            assert_eq!(p["push"], "publication", "{p}");
            let from = p["data"]["p"].as_u64().unwrap() as usize;
            assert_eq!(p["data"]["n"].as_u64().unwrap(), next[from], "{p}");
            next[from] += 1;
        }
        assert_eq!(next, [EACH; PUBLISHERS as usize]);
    }
    // Every thread delivered to its own subscribers; together, to all.
    let (by_thread, direct) = deliveries_by_thread(&hub).await;
    assert!(by_thread.iter().all(|&n| n > 0), "{by_thread:?}");
    assert_eq!(
        by_thread.iter().sum::<u64>(),
        2 * PER_CHANNEL as u64 * total,
        "{by_thread:?}"
    );
    // Mostly written by the threads themselves, to idle connections'
    // sockets (`crate::direct`), not by waking the connections' tasks.
    assert!(direct > 0, "no direct writes");
    // The drain tells the clients on every thread.
    hub.signal();
    for c in history.iter_mut().chain(plain.iter_mut()) {
        let p = c.push().await;
        assert_eq!(
            (p["push"].as_str(), p["code"].as_u64()),
            (Some("disconnect"), Some(4001))
        );
    }
    let report = hub.finished().await;
    assert_eq!(report.connections_at_start, 2 * PER_CHANNEL);
}

/// Clients leaving a channel with join/leave together, on several threads,
/// while it is published to. A leave and a publication take the engine's
/// lock and then the fan-out's; the last subscriber out unsubscribes the
/// node under the fan-out's lock. With the node's subscriptions under the
/// engine's lock too, two threads could each hold one lock and wait for the
/// other forever (found by the drain of tests/hub/run.sh, which closes its
/// two clients at once). A watchdog ends the process if no round finishes
/// for 30 s: a deadlocked thread may be the one this test's timers need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_together_on_several_threads_while_publishing_do_not_deadlock() {
    const ROUNDS: usize = 300;
    let (progress, watched) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        loop {
            match watched.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(()) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!("no round finished within 30 s: the hub is deadlocked");
                    std::process::exit(1);
                }
            }
        }
    });
    let server = Server::bind(config())
        .await
        .unwrap()
        .with_threads(THREADS)
        .unwrap();
    let hub = std::sync::Arc::new(TestHub::serve(server));
    let channel = "chat:leaving";
    // Publications all along, from another task.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (hub, stop) = (hub.clone(), stop.clone());
        async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                hub.publish(channel, json!({"i": i})).await;
                i += 1;
            }
        }
    });
    for _ in 0..ROUNDS {
        // Consecutive connections go to different threads.
        let mut clients = Vec::new();
        for _ in 0..THREADS {
            let mut c = Client::anonymous(&hub).await;
            c.subscribe(json!({"channel": channel})).await;
            clients.push(c);
        }
        // All leave at once: each one's leave, and the last one's
        // unsubscribe of the node, on its own thread.
        for c in clients {
            tokio::spawn(async move { drop(c) });
        }
        // The hub still answers: a subscriber of the same channel.
        let mut c = Client::anonymous(&hub).await;
        c.subscribe(json!({"channel": channel})).await;
        drop(c);
        progress.send(()).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.await.unwrap();
}
