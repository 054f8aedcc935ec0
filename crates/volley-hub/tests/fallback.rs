//! The fallback transports (docs/protocol.md §2.5) over real HTTP against a
//! real hub: Server-Sent Events and long-polling with commands by POST,
//! beside WebSocket clients, with recovery, presence, limits, the bad inputs
//! and the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::fallback::{Fallback, fetch, request};
use common::{Client, TestHub, Volley, WAIT, config, offsets};
use serde_json::{Value, json};
use volley_hub::HubConfig;

/// The tests' configuration: pings (and SSE comments) often, so that a
/// dropped stream is noticed at once; polls held for 2 s at most.
fn fallback_config() -> HubConfig {
    let mut c = config();
    c.limits.ping_interval_ms = 200;
    c.limits.poll_timeout_ms = 2_000;
    c
}

/// The `volley_connections_by_transport` gauge for `transport`.
async fn open_by_transport(hub: &TestHub, transport: &str) -> u64 {
    let (_, metrics) = fetch(hub.addr, "GET", "/metrics", &[], Vec::new()).await;
    by_transport(&metrics, transport)
}

/// The `volley_connections_by_transport` gauge for `transport` in `metrics`.
fn by_transport(metrics: &str, transport: &str) -> u64 {
    let prefix = format!("volley_connections_by_transport{{transport=\"{transport}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Waits (bounded) until the gauge shows `n` (it moves when a session's task
/// ends, just after its presence left).
async fn wait_open(hub: &TestHub, transport: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while open_by_transport(hub, transport).await != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{transport} never showed {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_session_connects_subscribes_publishes_and_receives(sse: bool) {
    let hub = TestHub::start(fallback_config()).await;
    let mut c = Fallback::connected(&hub, sse).await;
    assert_eq!(c.info["max_message_size"], 65536);
    let r = c.call("subscribe", json!({"channel": "chat:lobby"})).await;
    assert_eq!(r["result"]["recoverable"], true, "{r}");
    assert_eq!(c.push().await["push"], "join");
    let r = c
        .call(
            "publish",
            json!({"channel": "chat:lobby", "data": {"text": "hi\nthere"}}),
        )
        .await;
    assert_eq!(r["result"]["offset"], 1, "{r}");
    let p = c.push().await;
    assert_eq!(p["push"], "publication");
    assert_eq!(p["data"], json!({"text": "hi\nthere"}));
    // An empty POST is a request with no command.
    c.send_lines(&[]).await;
    // Two commands in one POST, run in order.
    let id = c.seq + 100;
    c.send_lines(&[
        json!({"id": id, "method": "publish", "params": {"channel": "chat:lobby", "data": "a"}}),
        json!({"id": id + 1, "method": "publish", "params": {"channel": "chat:lobby", "data": "b"}}),
    ])
    .await;
    assert_eq!(c.reply(id).await["result"]["offset"], 2);
    assert_eq!(c.reply(id + 1).await["result"]["offset"], 3);
    assert_eq!(c.push().await["data"], "a");
    assert_eq!(c.push().await["data"], "b");
    // A publisher's JSON with line breaks between its tokens (the API keeps
    // it as sent) still arrives whole.
    let headers = [("Authorization", "apikey test-api-key")];
    let raw = "{\"channel\":\"chat:lobby\",\"data\":{\"a\":\r\n1}}";
    let (status, _) = common::http(hub.addr, "POST", "/api/publish", &headers, raw).await;
    assert_eq!(status, 200);
    assert_eq!(c.push().await["data"], json!({"a": 1}));
    hub.publish("chat:lobby", json!("from the backend")).await;
    assert_eq!(c.push().await["data"], "from the backend");
    let label = if sse { "sse" } else { "long-poll" };
    assert_eq!(open_by_transport(&hub, label).await, 1);
    if sse {
        // Every message is one event, numbered from 1 without a gap.
        let n = c.event_ids.len() as u64;
        assert_eq!(c.event_ids, (1..=n).collect::<Vec<_>>());
        assert!(n >= 10, "{:?}", c.event_ids);
    }
    assert_eq!(c.close().await, 204);
    wait_open(&hub, label, 0).await;
    assert_eq!(c.close().await, 404, "the session is gone");
}

#[tokio::test]
async fn an_sse_session_connects_subscribes_publishes_and_receives() {
    a_session_connects_subscribes_publishes_and_receives(true).await;
}

#[tokio::test]
async fn a_long_poll_session_connects_subscribes_publishes_and_receives() {
    a_session_connects_subscribes_publishes_and_receives(false).await;
}

/// A WebSocket, an SSE and a long-poll client publish in turn to one
/// channel: each receives every publication, in the same order, intact.
#[tokio::test]
async fn publications_cross_between_websocket_sse_and_long_poll() {
    let hub = TestHub::start(fallback_config()).await;
    let (mut ws, mut sse, mut lp) = one_of_each(&hub, "plain:mix").await;
    let mut sent = Vec::new();
    for round in 0..3 {
        for who in ["ws", "sse", "lp"] {
            let data = json!({"from": who, "round": round});
            let params = json!({"channel": "plain:mix", "data": data});
            let r = match who {
                "ws" => ws.call("publish", params).await,
                "sse" => sse.call("publish", params).await,
                _ => lp.call("publish", params).await,
            };
            assert_eq!(r["result"], json!({}), "{r}");
            sent.push(data);
        }
    }
    each_receives(&mut ws, &mut sse, &mut lp, &sent).await;
}

/// A WebSocket, an SSE and a long-poll client, each subscribed to `channel`.
async fn one_of_each(hub: &TestHub, channel: &str) -> (Client, Fallback, Fallback) {
    let mut ws = Client::anonymous(hub).await;
    let mut sse = Fallback::connected(hub, true).await;
    let mut lp = Fallback::connected(hub, false).await;
    let ch = json!({"channel": channel});
    ws.subscribe(ch.clone()).await;
    sse.call("subscribe", ch.clone()).await;
    lp.call("subscribe", ch).await;
    (ws, sse, lp)
}

/// Each of the three receives the publications of `sent`, in order.
async fn each_receives(ws: &mut Client, sse: &mut Fallback, lp: &mut Fallback, sent: &[Value]) {
    let mut got: [Vec<Value>; 3] = Default::default();
    for _ in 0..sent.len() {
        got[0].push(ws.push().await["data"].clone());
        got[1].push(sse.push().await["data"].clone());
        got[2].push(lp.push().await["data"].clone());
    }
    for g in &got {
        assert_eq!(g, sent);
    }
}

/// Publications that reach the hub's connection thread together are queued
/// to each subscriber as one entry, their frames joined: the WebSocket
/// client (written to directly) and the SSE and long-poll clients (whose
/// carriers split the entry into messages again) each get every one, in
/// order, once.
#[tokio::test]
async fn a_burst_of_publications_reaches_websocket_sse_and_long_poll_in_order() {
    let hub = TestHub::start(fallback_config()).await;
    let (mut ws, mut sse, mut lp) = one_of_each(&hub, "plain:burst").await;
    hub.burst("plain:burst", 50).await;
    let sent: Vec<Value> = (0..50).map(|i| json!(i)).collect();
    each_receives(&mut ws, &mut sse, &mut lp, &sent).await;
    let n = sse.event_ids.len() as u64;
    assert_eq!(
        sse.event_ids,
        (1..=n).collect::<Vec<_>>(),
        "one event per message"
    );
}

/// A WebSocket client watching `chat:r`'s presence sees `client` leave.
async fn sees_leave(watcher: &mut Client, client: &str) {
    loop {
        let p = watcher.push().await;
        if p["push"] == "leave" && p["info"]["client"] == client {
            return;
        }
    }
}

/// A session is lost (its SSE stream drops, or its long-poll client stops
/// polling and the session expires); a new one recovers exactly what it
/// missed.
async fn recovery_after_losing_the_session(sse: bool) {
    let mut cfg = fallback_config();
    cfg.limits.session_timeout_ms = 500;
    let hub = TestHub::start(cfg).await;
    let mut watcher = Client::anonymous(&hub).await;
    watcher.subscribe(json!({"channel": "chat:r"})).await;
    let mut c = Fallback::connected(&hub, sse).await;
    let r = c.call("subscribe", json!({"channel": "chat:r"})).await;
    let epoch = r["result"]["epoch"].clone();
    hub.publish("chat:r", json!(1)).await;
    loop {
        let p = c.push().await;
        if p["push"] == "publication" {
            assert_eq!(p["offset"], 1);
            break;
        }
    }
    if sse {
        c.drop_stream();
    }
    sees_leave(&mut watcher, &c.client_id()).await;
    let status = if sse {
        c.post(c.seq + 1, "{\"id\":9,\"method\":\"ping\"}").await
    } else {
        c.poll_once(0).await.0
    };
    assert_eq!(status, 404, "the lost session is gone");
    for i in 2..=4 {
        hub.publish("chat:r", json!(i)).await;
    }
    let mut again = Fallback::connected(&hub, sse).await;
    let r = again
        .call(
            "subscribe",
            json!({"channel": "chat:r", "recover": true, "epoch": epoch, "offset": 1}),
        )
        .await;
    assert_eq!(r["result"]["recovered"], true, "{r}");
    let publications = &r["result"]["publications"];
    assert_eq!(offsets(publications), vec![2, 3, 4]);
    let data: Vec<_> = publications
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].clone())
        .collect();
    assert_eq!(data, vec![json!(2), json!(3), json!(4)]);
    wait_open(&hub, if sse { "sse" } else { "long-poll" }, 1).await;
}

#[tokio::test]
async fn recovery_after_a_dropped_sse_stream_returns_exactly_the_missed_publications() {
    recovery_after_losing_the_session(true).await;
}

#[tokio::test]
async fn recovery_after_an_expired_long_poll_session_returns_exactly_the_missed_publications() {
    recovery_after_losing_the_session(false).await;
}

#[tokio::test]
async fn a_lost_poll_response_is_delivered_again_until_acknowledged() {
    let hub = TestHub::start(fallback_config()).await;
    let mut c = Fallback::long_poll(&hub).await;
    c.send_lines(&[json!({"id": 1, "method": "connect", "params": {}})])
        .await;
    let (status, first) = c.poll_once(0).await;
    assert_eq!(status, 200);
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["last"], 1);
    assert_eq!(first["messages"][0]["id"], 1);
    // The response was "lost": the same ack gets the same message again.
    c.send_lines(&[json!({"id": 2, "method": "ping", "params": {}})])
        .await;
    let (_, again) = c.poll_once(0).await;
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["last"], 2, "{again}");
    assert_eq!(again["messages"][0], first["messages"][0]);
    assert_eq!(again["messages"][1]["id"], 2);
    let (status, body) = c.poll_once(3).await;
    assert_eq!(status, 400, "ack past the last message sent: {body}");
    // Acknowledged: they are gone, the next ones follow.
    c.send_lines(&[json!({"id": 3, "method": "ping", "params": {}})])
        .await;
    let (_, next) = c.poll_once(2).await;
    let next: Value = serde_json::from_str(&next).unwrap();
    assert_eq!(next["last"], 3);
    assert_eq!(next["messages"].as_array().unwrap().len(), 1);
    assert_eq!(next["messages"][0]["id"], 3);
    let (status, body) = c.poll_once(1).await;
    assert_eq!(status, 400, "ack behind an earlier one: {body}");
    // No cache may keep a poll's answer.
    let path = format!("/connection/poll?session={}&ack=2", c.session);
    let r = request(hub.addr, "GET", &path, &[], Vec::new()).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    // Nothing waiting: the poll is held, then answers empty.
    let (status, empty) = c.poll_once(3).await;
    assert_eq!(
        (status, empty.trim()),
        (200, "{\"messages\":[],\"last\":3}")
    );
}

/// History of `channel` through the API: the publications' data.
async fn history(hub: &TestHub, channel: &str) -> Vec<Value> {
    let (status, body) = hub.api("history", json!({"channel": channel})).await;
    assert_eq!(status, 200, "{body}");
    body["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].clone())
        .collect()
}

#[tokio::test]
async fn bad_inputs_get_their_answers_and_nothing_is_processed() {
    let hub = TestHub::start(fallback_config()).await;
    let mut c = Fallback::connected(&hub, true).await;
    c.call("subscribe", json!({"channel": "chat:bad"})).await;
    let publish = |data: Value| {
        json!({"id": 50, "method": "publish", "params": {"channel": "chat:bad", "data": data}})
            .to_string()
    };

    // Over max_message_size: 413, and the command in it did not run.
    let big = publish(json!("x".repeat(70 * 1024)));
    assert_eq!(c.post(c.seq + 1, &big).await, 413);
    // The same seq is still the next one.
    c.seq += 1;
    assert_eq!(c.post(c.seq, &publish(json!("once"))).await, 204);
    assert_eq!(c.reply(50).await["result"]["offset"], 1);
    // Sent again (its answer was "lost"): 204, not run again.
    assert_eq!(c.post(c.seq, &publish(json!("once"))).await, 204);
    // Ahead or behind: 409, not run.
    assert_eq!(c.post(c.seq + 2, &publish(json!("ahead"))).await, 409);
    assert_eq!(c.post(c.seq - 1, &publish(json!("behind"))).await, 409);
    let r = c.call("history", json!({"channel": "chat:bad"})).await;
    let data: Vec<_> = r["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].clone())
        .collect();
    assert_eq!(data, vec![json!("once")], "the command ran once");
    assert_eq!(history(&hub, "chat:bad").await, vec![json!("once")]);

    // Unknown sessions: 404 everywhere.
    let nobody = "AAAAAAAAAAAAAAAAAAAAAA";
    for (method, path) in [
        ("POST", format!("/connection/send?session={nobody}&seq=1")),
        ("GET", format!("/connection/poll?session={nobody}&ack=0")),
        ("DELETE", format!("/connection/session?session={nobody}")),
        // An SSE session cannot be polled.
        (
            "GET",
            format!("/connection/poll?session={}&ack=0", c.session),
        ),
    ] {
        let (status, _) = fetch(hub.addr, method, &path, &[], b"{}".to_vec()).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    // Missing parameters: 400.
    let (status, _) = fetch(hub.addr, "POST", "/connection/send?seq=1", &[], Vec::new()).await;
    assert_eq!(status, 400);

    // A line that is not a command: what the WebSocket gets, 4500.
    c.seq += 1;
    assert_eq!(c.post(c.seq, "not json").await, 204);
    let mut last = None;
    while let Some(v) = c.read().await {
        last = Some(v);
    }
    let last = last.expect("a disconnect push");
    assert_eq!(
        (last["push"].as_str(), last["code"].as_u64()),
        (Some("disconnect"), Some(4500))
    );
}

#[tokio::test]
async fn a_second_concurrent_poll_gets_409() {
    let hub = TestHub::start(fallback_config()).await;
    let mut c = Fallback::connected(&hub, false).await;
    let path = format!("/connection/poll?session={}&ack=1", c.session);
    // Two polls at once: one is held (nothing is waiting), the other is
    // refused at once, whichever arrives second.
    let (a, b) = (path.clone(), path.clone());
    let addr = hub.addr;
    let mut first = tokio::spawn(async move { fetch(addr, "GET", &a, &[], Vec::new()).await });
    let mut second = tokio::spawn(async move { fetch(addr, "GET", &b, &[], Vec::new()).await });
    let (refused, held) = tokio::select! {
        r = &mut first => (r.unwrap(), second),
        r = &mut second => (r.unwrap(), first),
    };
    assert_eq!(refused.0, 409, "{}", refused.1);
    // The held one gets the next message.
    c.send_lines(&[json!({"id": 7, "method": "ping", "params": {}})])
        .await;
    let (status, body) = tokio::time::timeout(WAIT, held).await.unwrap().unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["messages"][0]["id"], 7, "{v}");
}

#[tokio::test]
async fn presence_shows_fallback_clients_and_they_leave_when_their_session_ends() {
    let mut cfg = fallback_config();
    cfg.limits.session_timeout_ms = 500;
    let hub = TestHub::start(cfg).await;
    let mut watcher = Client::anonymous(&hub).await;
    watcher.subscribe(json!({"channel": "chat:p"})).await;
    let mut sse = Fallback::connected(&hub, true).await;
    let mut lp = Fallback::connected(&hub, false).await;
    sse.call("subscribe", json!({"channel": "chat:p"})).await;
    lp.call("subscribe", json!({"channel": "chat:p"})).await;
    let r = watcher.call("presence", json!({"channel": "chat:p"})).await;
    let mut ids: Vec<_> = r["result"]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut expected = vec![watcher.client_id(), sse.client_id(), lp.client_id()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(open_by_transport(&hub, "sse").await, 1);
    assert_eq!(open_by_transport(&hub, "long-poll").await, 1);
    assert_eq!(open_by_transport(&hub, "websocket-h1").await, 1);
    // The SSE client closes its session; the long-poll one stops polling.
    assert_eq!(sse.close().await, 204);
    sees_leave(&mut watcher, &sse.client_id()).await;
    sees_leave(&mut watcher, &lp.client_id()).await;
    let r = watcher.call("presence", json!({"channel": "chat:p"})).await;
    assert_eq!(r["result"]["clients"].as_array().unwrap().len(), 1, "{r}");
    wait_open(&hub, "sse", 0).await;
    wait_open(&hub, "long-poll", 0).await;
    assert_eq!(hub.hub.connection_count(), 1);
}

#[tokio::test]
async fn sessions_are_admitted_like_websocket_handshakes() {
    let mut cfg = fallback_config();
    cfg.allowed_origins = vec!["https://good.example".into()];
    cfg.limits.max_connections_per_ip = 1;
    let mut hub = TestHub::start(cfg).await;
    let bad = [("origin", "https://evil.example")];
    let (status, _) = fetch(hub.addr, "GET", "/connection/sse", &bad, Vec::new()).await;
    assert_eq!(status, 403);
    let (status, _) = fetch(hub.addr, "POST", "/connection/poll", &bad, Vec::new()).await;
    assert_eq!(status, 403);
    let mut c = Fallback::connected(&hub, true).await;
    let (status, _) = fetch(hub.addr, "POST", "/connection/poll", &[], Vec::new()).await;
    assert_eq!(status, 429, "one connection per IP");
    // A page of an allowed origin may use the endpoints from there (CORS).
    let good = [("origin", "https://good.example")];
    let path = format!("/connection/session?session={}", c.session);
    let r = request(hub.addr, "OPTIONS", &path, &good, Vec::new()).await;
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://good.example");
    assert_eq!(h["access-control-allow-methods"], "GET, POST, DELETE");
    c.seq += 1;
    let path = format!("/connection/send?session={}&seq={}", c.session, c.seq);
    let body = json!({"id": 99, "method": "ping"}).to_string().into_bytes();
    let r = request(hub.addr, "POST", &path, &good, body).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://good.example"
    );
    assert_eq!(c.reply(99).await["result"], json!({}));
    let r = request(hub.addr, "OPTIONS", &path, &bad, Vec::new()).await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // The drain tells the SSE client to reconnect, and refuses new sessions.
    hub.signal();
    let p = c.push().await;
    assert_eq!(
        (p["push"].as_str(), p["code"].as_u64()),
        (Some("disconnect"), Some(4001))
    );
    let (status, _) = fetch(hub.addr, "POST", "/connection/poll", &[], Vec::new()).await;
    assert_eq!(status, 503);
}

/// A fallback client that stops taking messages while publications pour in
/// is a slow consumer like a WebSocket that stops reading: what it has not
/// taken counts like a socket's write buffer, the rest fills its outbound
/// queue, and past the queue's limit it is disconnected with 4002, the last
/// message it then gets.
async fn a_client_that_stops_reading_is_a_slow_consumer(sse: bool, n: usize, size: usize) {
    let mut cfg = fallback_config();
    cfg.limits.outbound_queue_bytes = 8 * 1024;
    let hub = TestHub::start(cfg).await;
    let mut c = Fallback::connected(&hub, sse).await;
    c.call("subscribe", json!({"channel": "plain:slow"})).await;
    let text = "x".repeat(size);
    // Through the API (the memory engine delivers as it publishes): past
    // the 128 KiB the session hands to its carrier (and, for SSE, past what
    // the sockets buffer: up to 4 MiB on the hub's side here), and past the
    // queue's 8 KiB after that.
    let mut published = 0;
    while published < n && hub.hub.metrics().slow_consumer_disconnects.get() == 0 {
        hub.publish("plain:slow", json!({"i": published, "text": text}))
            .await;
        published += 1;
    }
    let mut received = Vec::new();
    let mut last = None;
    while let Some(v) = c.read().await {
        if v["push"] == "publication" {
            received.push(v["data"]["i"].as_u64().unwrap());
        }
        last = Some(v);
    }
    let last = last.unwrap();
    assert_eq!(
        (last["push"].as_str(), last["code"].as_u64()),
        (Some("disconnect"), Some(4002)),
        "{last}"
    );
    // What it did get is the start of the stream, in order, without a gap.
    assert!(
        !received.is_empty() && received.len() < published,
        "{} of {published}",
        received.len()
    );
    assert_eq!(received, (0..received.len() as u64).collect::<Vec<_>>());
    assert_eq!(hub.hub.metrics().slow_consumer_disconnects.get(), 1);
}

#[tokio::test]
async fn a_long_poll_client_that_stops_polling_is_a_slow_consumer() {
    // Up to 300 KiB.
    a_client_that_stops_reading_is_a_slow_consumer(false, 300, 1024).await;
}

/// The same on an SSE stream the client stops reading: hyper stops taking
/// the body once the socket is full, and the session's queue fills.
#[tokio::test]
async fn an_sse_client_that_stops_reading_is_a_slow_consumer() {
    // Up to 24 MiB (until the hub gives up on it), more than the sockets'
    // buffers, in messages smaller than the queue's limit.
    a_client_that_stops_reading_is_a_slow_consumer(true, 6000, 4 * 1024).await;
}

/// Behind a CDN or on an https page, the stream and the POSTs travel as
/// streams of one HTTP/2 connection (here h2c).
#[tokio::test]
async fn an_sse_session_and_its_posts_share_one_http2_connection() {
    sse_and_posts_on_one_http2_connection(false).await;
}

/// The same over TLS, HTTP/2 chosen by ALPN: how a browser on an https
/// page reaches the hub directly.
#[tokio::test]
async fn an_sse_session_and_its_posts_share_one_http2_connection_over_tls() {
    sse_and_posts_on_one_http2_connection(true).await;
}

async fn sse_and_posts_on_one_http2_connection(tls: bool) {
    use http_body_util::{BodyExt, Full};
    let mut cfg = fallback_config();
    let mut tls_files = None;
    if tls {
        let (with_tls, cert, dir) = common::tls_config("sse-h2");
        cfg.tls = with_tls.tls;
        tls_files = Some((cert, dir));
    } else {
        cfg.h2c = true;
    }
    let hub = TestHub::start(cfg).await;
    let tcp = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let (sender, scheme) = match &tls_files {
        None => (h2_handshake(tcp).await, "http"),
        Some((cert, _)) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.cert.der().clone()).unwrap();
            let mut config = rustls::ClientConfig::builder_with_provider(volley::crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .unwrap();
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            (h2_handshake(stream).await, "https")
        }
    };
    let get = |path: String, method: &str, body: &'static str| {
        let mut sender = sender.clone();
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{scheme}://localhost:{}{path}", hub.addr.port()))
            .header("content-type", "text/plain")
            .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
            .unwrap();
        async move { sender.send_request(req).await.unwrap() }
    };
    let response = get("/connection/sse".into(), "GET", "").await;
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut text = String::new();
    // Reads the stream until `needle` has arrived.
    let mut until = async |needle: &str, text: &mut String| {
        while !text.contains(needle) {
            let frame = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
            let data = frame.unwrap().unwrap().into_data().unwrap();
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    };
    until("\n\n", &mut text).await;
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let session: Value = serde_json::from_str(data).unwrap();
    let session = session["session"].as_str().unwrap().to_string();
    let post = get(
        format!("/connection/send?session={session}&seq=1"),
        "POST",
        "{\"id\":1,\"method\":\"connect\",\"params\":{}}",
    )
    .await;
    assert_eq!(post.status(), 204);
    until("\"id\":1,\"result\"", &mut text).await;
    assert!(
        text.contains("id: 1\ndata: {\"id\":1,\"result\":{"),
        "{text}"
    );
    // (From the hub itself: /metrics is on the TLS port too.)
    assert_eq!(by_transport(&hub.hub.metrics().encode(), "sse"), 1);
    if let Some((_, dir)) = tls_files {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// An HTTP/2 client connection over `io`, driven by its own task.
async fn h2_handshake<T>(
    io: T,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

/// A connect refused with an error reply ends the session. A WebSocket learns
/// the code from its Close frame; a fallback session has none, so the reply
/// is followed by the `disconnect` push with the same code, and then the
/// session is over.
async fn a_refused_connect_is_followed_by_the_disconnect_push(sse: bool) {
    let hub = TestHub::start(fallback_config()).await;
    let mut c = if sse {
        Fallback::sse(&hub).await
    } else {
        Fallback::long_poll(&hub).await
    };
    let reply = c.call("connect", json!({"token": "not-a-token"})).await;
    assert_eq!(reply["error"]["code"], 101, "{reply}");
    let push = c.read().await.expect("the disconnect push");
    assert_eq!(push["push"], "disconnect", "{push}");
    assert_eq!(push["code"], 4401, "{push}");
    // 4401 reconnects, with a new token (§13).
    assert_eq!(push["reconnect"], true, "{push}");
    assert_eq!(c.read().await, None, "nothing after the push");
}

#[tokio::test]
async fn a_refused_connect_on_sse_is_followed_by_the_disconnect_push() {
    a_refused_connect_is_followed_by_the_disconnect_push(true).await;
}

#[tokio::test]
async fn a_refused_connect_on_long_poll_is_followed_by_the_disconnect_push() {
    a_refused_connect_is_followed_by_the_disconnect_push(false).await;
}
