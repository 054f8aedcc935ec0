//! Several hubs on one real Redis (started by each test on a free port):
//! publications cross nodes in order, presence and history are the same from
//! every node, a client recovers on another node, the HTTP API acts on the
//! whole cluster, and Redis restarts, outages and a stream that went back
//! are detected and signalled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::redis::{Persistence, RedisServer};
use common::{Client, TestHub, error_code, token};
use serde_json::{Value, json};
use volley_hub::EngineKind;

fn node_config(redis: &[&RedisServer]) -> volley_hub::HubConfig {
    let mut c = common::config();
    c.engine = EngineKind::Redis;
    c.redis_url = volley_hub::RedisUrls(redis.iter().map(|r| r.url()).collect());
    c.redis.node_heartbeat_ms = 200;
    c.redis.presence_ttl_ms = 1_500;
    c
}

async fn nodes(redis: &[&RedisServer], n: usize) -> Vec<TestHub> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TestHub::start(node_config(redis)).await);
    }
    // As a load balancer would: use a node once it is ready (its pub/sub
    // connections are up, so it receives control messages).
    for hub in &out {
        eventually("the node is ready", || async {
            common::http(hub.addr, "GET", "/health/ready", &[], "")
                .await
                .0
                == 200
        })
        .await;
    }
    out
}

/// Waits (bounded) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next publication push (skipping join/leave).
async fn next_publication(c: &mut Client) -> Value {
    loop {
        let p = c.push().await;
        if p["push"] == "publication" {
            return p;
        }
        assert!(p["push"] == "join" || p["push"] == "leave", "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_on_one_node_reaches_the_others_in_order() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 3).await;
    let mut b = Client::anonymous(&hubs[1]).await;
    let mut c = Client::anonymous(&hubs[2]).await;
    for client in [&mut b, &mut c] {
        let r = client.subscribe(json!({"channel": "feed:x"})).await;
        assert_eq!(r["result"]["recoverable"], true, "{r}");
    }
    // Through the API of A and clients of A, interleaved.
    for i in 1..=50 {
        let r = hubs[0].publish("feed:x", json!({"n": i})).await;
        assert_eq!(r["offset"], i, "{r}");
    }
    for client in [&mut b, &mut c] {
        for i in 1..=50u64 {
            let p = next_publication(client).await;
            assert_eq!(p["offset"], i, "{p}");
            assert_eq!(p["data"]["n"], i, "{p}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_history_are_the_same_from_every_node() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 3).await;
    let mut ann = Client::with_token(&hubs[0], Some(&token(json!({"sub": "ann"})))).await;
    let mut bob = Client::with_token(&hubs[1], Some(&token(json!({"sub": "bob"})))).await;
    ann.subscribe(json!({"channel": "chat:room"})).await;
    let r = bob
        .subscribe(json!({"channel": "chat:room", "presence": true}))
        .await;
    let users: Vec<_> = r["result"]["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users.len(), 2, "{r}");
    // Ann (on node 0) sees her own join, then Bob's (node 1).
    assert_eq!(ann.push().await["info"]["user"], "ann");
    let join = ann.push().await;
    assert_eq!(join["push"], "join", "{join}");
    assert_eq!(join["info"]["user"], "bob", "{join}");
    for i in 0..5 {
        ann.call("publish", json!({"channel": "chat:room", "data": {"i": i}}))
            .await;
    }
    let mut answers = Vec::new();
    for hub in &hubs {
        let (_, presence) = hub
            .api("presence_stats", json!({"channel": "chat:room"}))
            .await;
        let (_, history) = hub.api("history", json!({"channel": "chat:room"})).await;
        answers.push((presence["result"].clone(), history["result"].clone()));
    }
    assert_eq!(answers[0].0, json!({"num_clients": 2, "num_users": 2}));
    assert_eq!(answers[0].1["publications"].as_array().unwrap().len(), 5);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    // Bob leaves: Ann sees it, and presence shrinks everywhere.
    drop(bob);
    let leave = loop {
        let p = ann.push().await;
        if p["push"] != "publication" {
            break p;
        }
    };
    assert_eq!(leave["push"], "leave", "{leave}");
    assert_eq!(leave["info"]["user"], "bob", "{leave}");
    for hub in &hubs {
        let (_, p) = hub
            .api("presence_stats", json!({"channel": "chat:room"}))
            .await;
        assert_eq!(p["result"]["num_clients"], 1, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_on_another_node_exactly_what_it_missed() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 3).await;
    let mut a = Client::anonymous(&hubs[0]).await;
    let r = a.subscribe(json!({"channel": "chat:r"})).await;
    let epoch = r["result"]["epoch"].as_str().unwrap().to_string();
    hubs[1].publish("chat:r", json!(1)).await;
    let p = next_publication(&mut a).await;
    assert_eq!(p["offset"], 1);
    drop(a);
    for i in 2..=6 {
        hubs[1].publish("chat:r", json!(i)).await;
    }
    let mut again = Client::anonymous(&hubs[2]).await;
    let r = again
        .subscribe(json!({"channel": "chat:r", "recover": true, "epoch": epoch, "offset": 1}))
        .await;
    assert_eq!(r["result"]["recovered"], true, "{r}");
    let got: Vec<_> = r["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["offset"].as_u64().unwrap(), p["data"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, (2..=6).map(|i| (i, i)).collect::<Vec<_>>());
    // And it goes on live, in order.
    hubs[0].publish("chat:r", json!(7)).await;
    assert_eq!(next_publication(&mut again).await["offset"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_of_any_node_reaches_users_on_every_node() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 2).await;
    let mut carl = Client::with_token(&hubs[1], Some(&token(json!({"sub": "carl"})))).await;
    let (status, r) = hubs[0]
        .api("send", json!({"user": "carl", "data": {"hi": 1}}))
        .await;
    assert_eq!(status, 200, "{r}");
    let m = carl.push().await;
    assert_eq!(m, json!({"push": "message", "data": {"hi": 1}}));
    // unsubscribe reaches carl's subscription on the other node.
    carl.subscribe(json!({"channel": "feed:u"})).await;
    let (status, r) = hubs[0]
        .api("unsubscribe", json!({"user": "carl", "channel": "feed:u"}))
        .await;
    assert_eq!(status, 200, "{r}");
    let u = carl.push().await;
    assert_eq!(
        (&u["push"], &u["channel"], &u["code"]),
        (&json!("unsubscribe"), &json!("feed:u"), &json!(2500)),
        "{u}"
    );
    hubs[0].publish("feed:u", json!("after")).await;
    let r = carl.call("ping", json!({})).await;
    assert!(
        r["result"].is_object(),
        "no publication after the unsubscribe: {r}"
    );
    let (status, r) = hubs[0]
        .api("disconnect", json!({"user": "carl", "reconnect": false}))
        .await;
    assert_eq!(status, 200, "{r}");
    let (pushes, code) = carl.until_closed().await;
    assert_eq!(code, Some(4501), "{pushes:?}");
    // info lists both nodes with their connections.
    let mut other = Client::anonymous(&hubs[1]).await;
    other.subscribe(json!({"channel": "feed:i"})).await;
    eventually("both nodes in info", || async {
        let (_, info) = hubs[0].api("info", json!({})).await;
        let nodes = info["result"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        nodes.len() == 2 && nodes.iter().any(|n| n["num_connections"] == 1)
    })
    .await;
    // /metrics and the admin stats show the node and the cluster.
    eventually("the cluster in /metrics", || async {
        let (_, m) = common::http(hubs[0].addr, "GET", "/metrics", &[], "").await;
        let m = m.as_str().unwrap_or_default().to_string();
        m.contains("volley_cluster_nodes 2")
            && m.contains("volley_cluster_connections 1")
            && m.contains("volley_engine_ready 1")
    })
    .await;
    let (status, stats) = common::http(
        hubs[1].addr,
        "GET",
        "/admin/api/stats",
        &[("Authorization", "Bearer admin")],
        "",
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["nodes"].as_array().map(Vec::len), Some(2), "{stats}");
    assert_eq!(stats["nodes"][0]["id"], stats["node"], "{stats}");
    // channels counts the other node's subscriber (from its announcement).
    eventually("feed:i in channels", || async {
        let (_, channels) = hubs[0].api("channels", json!({})).await;
        channels["result"]["channels"].as_array().is_some_and(|l| {
            l.iter()
                .any(|c| c["channel"] == "feed:i" && c["num_clients"] == 1)
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_aof_loses_nothing() {
    let Some(mut redis) = RedisServer::start(Persistence::Aof) else {
        return;
    };
    let hubs = nodes(&[&redis], 2).await;
    let mut b = Client::anonymous(&hubs[1]).await;
    let r = b.subscribe(json!({"channel": "feed:aof"})).await;
    let epoch = r["result"]["epoch"].clone();
    for i in 1..=3 {
        hubs[0].publish("feed:aof", json!(i)).await;
        assert_eq!(next_publication(&mut b).await["offset"], i);
    }
    redis.restart();
    eventually("the nodes are ready again", || async {
        let (s0, _) = common::http(hubs[0].addr, "GET", "/health/ready", &[], "").await;
        let (s1, _) = common::http(hubs[1].addr, "GET", "/health/ready", &[], "").await;
        s0 == 200 && s1 == 200
    })
    .await;
    // The first publish after the restart may meet a connection that has
    // not noticed yet (error 100); a bounded retry.
    let deadline = Instant::now() + Duration::from_secs(15);
    let offset = loop {
        let (status, r) = hubs[0]
            .api("publish", json!({"channel": "feed:aof", "data": 4}))
            .await;
        if status == 200 {
            break r["result"]["offset"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(offset, 4, "the stream survived");
    let p = next_publication(&mut b).await;
    assert_eq!(p["offset"], 4, "{p}");
    let (_, h) = hubs[1].api("history", json!({"channel": "feed:aof"})).await;
    assert_eq!(h["result"]["epoch"], epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_without_persistence_tells_subscribers_to_recover() {
    let Some(mut redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 1).await;
    let mut b = Client::anonymous(&hubs[0]).await;
    let r = b.subscribe(json!({"channel": "feed:gone"})).await;
    let epoch = r["result"]["epoch"].as_str().unwrap().to_string();
    hubs[0].publish("feed:gone", json!(1)).await;
    assert_eq!(next_publication(&mut b).await["offset"], 1);
    redis.restart();
    // The node notices the lost stream when its pub/sub reconnects: 4005.
    let (pushes, code) = b.until_closed().await;
    assert_eq!(code, Some(4005), "{pushes:?}");
    let mut again = Client::anonymous(&hubs[0]).await;
    let r = again
        .subscribe(json!({"channel": "feed:gone", "recover": true, "epoch": epoch, "offset": 1}))
        .await;
    assert_eq!(r["result"]["recovered"], false, "{r}");
    assert_ne!(r["result"]["epoch"], json!(epoch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_publishes_fail_with_100_and_the_node_is_not_ready() {
    let Some(mut redis) = RedisServer::start(Persistence::Aof) else {
        return;
    };
    let hubs = nodes(&[&redis], 1).await;
    let mut c = Client::anonymous(&hubs[0]).await;
    c.subscribe(json!({"channel": "plain:x"})).await;
    redis.kill();
    eventually("not ready", || async {
        let (s, _) = common::http(hubs[0].addr, "GET", "/health/ready", &[], "").await;
        s == 503
    })
    .await;
    let r = c
        .call("publish", json!({"channel": "plain:x", "data": 1}))
        .await;
    assert_eq!(error_code(&r), Some(100), "{r}");
    // The API refuses it the same way: 503, error 100, and when to retry.
    let (status, head, body) = common::http_with_head(
        hubs[0].addr,
        "POST",
        "/api/publish",
        &[("Authorization", &format!("apikey {}", common::API_KEY))],
        &json!({"channel": "plain:x", "data": 1}).to_string(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], 100);
    assert_eq!(body["error"]["temporary"], true);
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case("retry-after: 1")),
        "{head}"
    );
    // So does a disconnect, which cannot reach the other nodes.
    let (status, body) = hubs[0].api("disconnect", json!({"user": "nobody"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!(100)),
        "{body}"
    );
    // The connection stays open and answers.
    let r = c.call("ping", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    redis.restart();
    eventually("ready again", || async {
        let (s, _) = common::http(hubs[0].addr, "GET", "/health/ready", &[], "").await;
        s == 200
    })
    .await;
    let r = c
        .call("publish", json!({"channel": "plain:x", "data": 2}))
        .await;
    assert!(r["result"].is_object(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_top_went_back_is_treated_as_lost() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 1).await;
    let mut b = Client::anonymous(&hubs[0]).await;
    let r = b.subscribe(json!({"channel": "feed:fo"})).await;
    let epoch = r["result"]["epoch"].as_str().unwrap().to_string();
    for i in 1..=3 {
        hubs[0].publish("feed:fo", json!(i)).await;
        assert_eq!(next_publication(&mut b).await["offset"], i);
    }
    // What an asynchronous failover does: the new master lacks the last two
    // writes, with the same epoch.
    let reply = redis.command(&["HSET", "volley.s.feed:fo", "o", "1"]);
    assert!(reply.starts_with(':'), "{reply}");
    redis.command(&["LTRIM", "volley.h.feed:fo", "0", "0"]);
    // The next publication reuses offset 2: the node sees its stream go back.
    hubs[0].publish("feed:fo", json!("reused")).await;
    let (pushes, code) = b.until_closed().await;
    assert_eq!(code, Some(4005), "{pushes:?}");
    assert!(
        !pushes.iter().any(|p| p["data"] == "reused"),
        "the reused offset was delivered: {pushes:?}"
    );
    let mut again = Client::anonymous(&hubs[0]).await;
    let r = again
        .subscribe(json!({"channel": "feed:fo", "recover": true, "epoch": epoch, "offset": 3}))
        .await;
    assert_eq!(r["result"]["recovered"], false, "{r}");
    assert_ne!(r["result"]["epoch"], json!(epoch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_two_shards_and_still_cross_nodes() {
    let Some(r1) = RedisServer::start(Persistence::None) else {
        return;
    };
    let Some(r2) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&r1, &r2], 2).await;
    let mut c = Client::anonymous(&hubs[1]).await;
    let channels: Vec<String> = (0..8).map(|i| format!("feed:s{i}")).collect();
    for ch in &channels {
        c.subscribe(json!({"channel": ch})).await;
    }
    for ch in &channels {
        hubs[0].publish(ch, json!(ch)).await;
    }
    for _ in &channels {
        let p = next_publication(&mut c).await;
        assert_eq!(p["offset"], 1, "{p}");
    }
    let keys = |r: &RedisServer| r.command(&["KEYS", "volley.s.*"]);
    assert!(keys(&r1).contains("volley.s.feed"), "{}", keys(&r1));
    assert!(keys(&r2).contains("volley.s.feed"), "{}", keys(&r2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_answer_times_out_is_504_outcome_unknown() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let mut c = node_config(&[&redis]);
    c.redis.command_timeout_ms = 300;
    let hub = TestHub::start(c).await;
    hub.publish("feed:t", json!(1)).await;
    // Redis holds write commands (scripts too) for 1.5 s: the publish is
    // sent, its answer does not come within the timeout.
    redis.command(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    let (status, body) = hub
        .api("publish", json!({"channel": "feed:t", "data": 2}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"], &body["error"]["message"]),
        (
            504,
            &json!(100),
            &json!("engine did not answer, outcome unknown")
        ),
        "{body}"
    );
    // The node goes on once Redis does.
    eventually("a publish after the pause", || async {
        hub.api("publish", json!({"channel": "feed:t", "data": 3}))
            .await
            .0
            == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_publish_waits_for_a_replica_and_fails_without_one() {
    let Some(master) = RedisServer::start(Persistence::None) else {
        return;
    };
    let port = master.port.to_string();
    let Some(mut replica) =
        RedisServer::start_with(Persistence::None, &["--replicaof", "127.0.0.1", &port])
    else {
        return;
    };
    let mut c = node_config(&[&master]);
    c.redis.durable_replicas = 1;
    c.redis.durable_timeout_ms = 300;
    let hub = TestHub::start(c).await;
    // Once the replica is in sync, a publish is acknowledged after it.
    eventually("a publish the replica confirms", || async {
        hub.api("publish", json!({"channel": "feed:d", "data": 1}))
            .await
            .0
            == 200
    })
    .await;
    let key = "volley.s.feed:d";
    assert!(
        replica.command(&["HGET", key, "o"]).contains('1'),
        "replicated"
    );
    replica.kill();
    // Stored on the master, unconfirmed by the replica: published or not
    // (504), not a refusal to repeat (503).
    let (status, body) = hub
        .api("publish", json!({"channel": "feed:d", "data": 2}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (504, &json!(100)),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_behind_sentinel_keeps_working_after_a_failover() {
    use common::redis::Sentinel;
    let Some(master) = RedisServer::start(Persistence::None) else {
        return;
    };
    let port = master.port.to_string();
    let Some(replica) =
        RedisServer::start_with(Persistence::None, &["--replicaof", "127.0.0.1", &port])
    else {
        return;
    };
    let Some(sentinel) = Sentinel::start("shard0", master.port) else {
        return;
    };
    let mut c = common::config();
    c.engine = EngineKind::Redis;
    c.redis_url = volley_hub::RedisUrls(vec![format!(
        "redis+sentinel://127.0.0.1:{}/shard0",
        sentinel.port
    )]);
    let hub = TestHub::start(c).await;
    let mut sub = Client::anonymous(&hub).await;
    sub.subscribe(json!({"channel": "plain:s"})).await;
    hub.publish("plain:s", json!(1)).await;
    assert_eq!(next_publication(&mut sub).await["data"], 1);
    // The replica must know it is one before Sentinel can promote it.
    eventually("the replica in sync", || async {
        replica
            .command(&["INFO", "replication"])
            .contains("master_link_status:up")
    })
    .await;
    let r = sentinel.command(&["SENTINEL", "FAILOVER", "shard0"]);
    assert!(r.starts_with("+OK"), "{r}");
    eventually("the replica promoted", || async {
        replica.command(&["ROLE"]).contains("master")
    })
    .await;
    // The node asks the Sentinel again after its connection fails (a write
    // to the demoted master is READONLY) and publishes to the new master.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, r) = hub
            .api("publish", json!({"channel": "plain:s", "data": 2}))
            .await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(master);
    // A subscriber is served again through the new master once the node's
    // pub/sub reconnects there (until then, subscribe answers 100).
    let mut again = Client::anonymous(&hub).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = again.subscribe(json!({"channel": "plain:t"})).await;
        if r["result"].is_object() {
            break;
        }
        assert_eq!(error_code(&r), Some(100), "{r}");
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = hub
            .api("publish", json!({"channel": "plain:t", "data": 3}))
            .await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(next_publication(&mut again).await["data"], 3);
}

/// What a missed pub/sub message looks like to a node: the stream has a
/// publication the node never received live. `retained` says whether history
/// still holds it. Returns its history entry (`offset time json`).
fn miss_one(redis: &RedisServer, channel: &str, retained: bool) -> String {
    let offset = redis.command(&["HINCRBY", &format!("volley.s.{channel}"), "o", "1"]);
    let offset = offset.trim().trim_start_matches(':').to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let entry = format!("{offset} {now} {{\"data\":\"missed\"}}");
    if retained {
        redis.command(&["RPUSH", &format!("volley.h.{channel}"), &entry]);
    }
    entry
}

/// A subscriber on node 0 (`a`) holds offset 1 of `channel`; offset 2 is in
/// the stream but node 0 has not delivered it yet; `b` subscribes on node 0
/// recovering from 1. Returns both clients and the live message of 2.
async fn recovery_ahead_of_the_node(
    redis: &RedisServer,
    hubs: &[TestHub],
    channel: &str,
) -> (Client, Client, String) {
    let mut a = Client::anonymous(&hubs[0]).await;
    let r = a.subscribe(json!({"channel": channel})).await;
    let epoch = r["result"]["epoch"].as_str().unwrap().to_string();
    hubs[1].publish(channel, json!(1)).await;
    assert_eq!(next_publication(&mut a).await["offset"], 1);
    let entry = miss_one(redis, channel, true);
    let mut b = Client::anonymous(&hubs[0]).await;
    let r = b
        .subscribe(json!({"channel": channel, "recover": true, "epoch": epoch, "offset": 1}))
        .await;
    assert_eq!(r["result"]["recovered"], true, "{r}");
    assert_eq!(r["result"]["offset"], 2, "{r}");
    let recovered: Vec<_> = r["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].clone())
        .collect();
    assert_eq!(recovered, vec![json!(2)], "{r}");
    (a, b, format!("p {epoch} {entry}"))
}

/// `a` gets 2 then 3 as pushes; `b`, whose reply recovered 2, gets 3 only.
async fn each_publication_once(a: &mut Client, b: &mut Client) {
    for expected in [2, 3] {
        assert_eq!(next_publication(a).await["offset"], expected);
    }
    let p = next_publication(b).await;
    assert_eq!(p["offset"], 3, "offset 2 pushed again after the reply: {p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_recovered_ahead_of_the_node_gets_no_duplicate_from_a_fill() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 2).await;
    let (mut a, mut b, _) = recovery_ahead_of_the_node(&redis, &hubs, "feed:df").await;
    // 3 shows node 0 the hole at 2, which it fills from history.
    hubs[1].publish("feed:df", json!(3)).await;
    each_publication_once(&mut a, &mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_recovered_ahead_of_the_node_gets_no_duplicate_from_a_late_message() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 2).await;
    let (mut a, mut b, message) = recovery_ahead_of_the_node(&redis, &hubs, "feed:dl").await;
    // The live message of 2 arrives after b's reply (as pub/sub can: it
    // comes on another connection than the read's).
    redis.command(&["PUBLISH", "volley.c.feed:dl", &message]);
    hubs[1].publish("feed:dl", json!(3)).await;
    each_publication_once(&mut a, &mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_publication_is_filled_from_history_in_order() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 1).await;
    let mut c = Client::anonymous(&hubs[0]).await;
    c.subscribe(json!({"channel": "feed:g"})).await;
    hubs[0].publish("feed:g", json!(1)).await;
    miss_one(&redis, "feed:g", true);
    hubs[0].publish("feed:g", json!(3)).await;
    let got: Vec<_> = [
        next_publication(&mut c).await,
        next_publication(&mut c).await,
        next_publication(&mut c).await,
    ]
    .iter()
    .map(|p| (p["offset"].as_u64().unwrap(), p["data"].clone()))
    .collect();
    assert_eq!(
        got,
        vec![(1, json!(1)), (2, json!("missed")), (3, json!(3))],
        "the hole at 2 is filled before 3"
    );
    let (_, metrics) = common::http(hubs[0].addr, "GET", "/metrics", &[], "").await;
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("volley_stream_holes_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_history_cannot_fill_tells_subscribers_to_recover() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hubs = nodes(&[&redis], 1).await;
    let mut c = Client::anonymous(&hubs[0]).await;
    let r = c.subscribe(json!({"channel": "feed:h"})).await;
    let epoch = r["result"]["epoch"].as_str().unwrap().to_string();
    hubs[0].publish("feed:h", json!(1)).await;
    assert_eq!(next_publication(&mut c).await["offset"], 1);
    miss_one(&redis, "feed:h", false);
    hubs[0].publish("feed:h", json!(3)).await;
    let (pushes, code) = c.until_closed().await;
    assert_eq!(code, Some(4005), "{pushes:?}");
    assert!(
        !pushes.iter().any(|p| p["offset"] == 3),
        "3 was delivered over the hole: {pushes:?}"
    );
    // Recovery from 1 cannot be exact either (2 is not in history).
    let mut again = Client::anonymous(&hubs[0]).await;
    let r = again
        .subscribe(json!({"channel": "feed:h", "recover": true, "epoch": epoch, "offset": 1}))
        .await;
    assert_eq!(r["result"]["recovered"], false, "{r}");
}
