//! The hub's API shape and the protocol promises of docs/protocol.md and
//! docs/http-api.md that an embedding application and the CLI rely on, over
//! real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use volley_hub::{HubConfig, Server};

fn demo_config() -> HubConfig {
    let mut c = HubConfig::demo();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.auth.hmac_secret = Some(SECRET.into());
    c
}

/// The library runs the demo only when the application adds it, as
/// `volley serve` does.
#[tokio::test]
async fn the_demo_runs_only_when_composed() {
    let plain = TestHub::start(demo_config()).await;
    let (status, _) = http(plain.addr, "GET", "/demo/token?name=Ada", &[], "").await;
    assert_eq!(status, 404, "no demo routes unless added");
    let (status, body) = http(plain.addr, "GET", "/", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.as_str().unwrap().starts_with("Volley hub"), "{body}");

    let server = Server::bind(demo_config()).await.unwrap().with_demo();
    let demo = TestHub::serve(server);
    let (status, body) = http(demo.addr, "GET", "/demo/token?name=Ada", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string(), "{body}");
    let (status, body) = http(demo.addr, "GET", "/", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.as_str().unwrap().contains("<html"), "the demo page");
    // The ticker publishes.
    let mut c = Client::anonymous(&demo).await;
    let reply = c.subscribe(json!({"channel": "ticker:demo"})).await;
    assert!(reply["result"].is_object(), "{reply}");
    let push = c.push().await;
    assert_eq!(push["push"], "publication", "{push}");
    assert_eq!(push["channel"], "ticker:demo");
}

/// `unsubscribe` through the API ends the subscription on every connection
/// of the user with the §7.4 push (2500, stay unsubscribed); nothing of the
/// channel follows it, and the connection may subscribe again.
#[tokio::test]
async fn api_unsubscribe_ends_every_subscription_of_the_user() {
    let hub = TestHub::start(config()).await;
    let t42 = token(json!({"sub": "42"}));
    let mut a = Client::with_token(&hub, Some(&t42)).await;
    let mut b = Client::with_token(&hub, Some(&t42)).await;
    let mut other = Client::with_token(&hub, Some(&token(json!({"sub": "7"})))).await;
    for c in [&mut a, &mut b, &mut other] {
        let r = c.subscribe(json!({"channel": "plain:room"})).await;
        assert!(r["result"].is_object(), "{r}");
    }
    let (status, body) = hub
        .api(
            "unsubscribe",
            json!({"user": "42", "channel": "plain:room"}),
        )
        .await;
    assert_eq!(
        (status, &body["result"]),
        (200, &json!({"unsubscribed": 2})),
        "{body}"
    );
    hub.publish("plain:room", json!("after")).await;
    for c in [&mut a, &mut b] {
        let push = c.push().await;
        assert_eq!(
            push,
            json!({"push": "unsubscribe", "channel": "plain:room", "code": 2500,
                   "reason": "unsubscribed by server", "resubscribe": false})
        );
        // Nothing of the channel after the push: the ping's reply comes next.
        let id = c.send("ping", json!({})).await;
        let next = c.read().await.unwrap();
        assert_eq!(next["id"], id, "{next}");
        let r = c
            .call("unsubscribe", json!({"channel": "plain:room"}))
            .await;
        assert_eq!(error_code(&r), Some(111), "the connection forgot it: {r}");
        let r = c.subscribe(json!({"channel": "plain:room"})).await;
        assert!(r["result"].is_object(), "subscribes again: {r}");
    }
    let push = other.push().await;
    assert_eq!(
        (&push["push"], &push["data"]),
        (&json!("publication"), &json!("after"))
    );
    let (status, body) = hub
        .api("unsubscribe", json!({"user": "42", "channel": "nowhere:x"}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!(102)),
        "{body}"
    );
    let (_, body) = hub.api("info", json!({})).await;
    assert_eq!(body["result"]["num_subscriptions"], 3, "{body}");
}

/// `disconnect` through the API carries the application's reason in the
/// push and the close frame.
#[tokio::test]
async fn api_disconnect_with_a_custom_reason() {
    let hub = TestHub::start(config()).await;
    let mut c = Client::with_token(&hub, Some(&token(json!({"sub": "42"})))).await;
    let long = "x".repeat(124);
    let (status, body) = hub
        .api("disconnect", json!({"user": "42", "reason": long}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!(107)),
        "{body}"
    );
    let (status, body) = hub
        .api(
            "disconnect",
            json!({"user": "42", "reconnect": false, "reason": "account closed"}),
        )
        .await;
    assert_eq!(
        (status, &body["result"]["disconnected"]),
        (200, &json!(1)),
        "{body}"
    );
    let (pushes, code) = c.until_closed().await;
    assert_eq!(
        pushes,
        vec![
            json!({"push": "disconnect", "code": 4501, "reason": "account closed", "reconnect": false})
        ]
    );
    assert_eq!(code, Some(4501));
    assert_eq!(c.ws.close_frame().unwrap().reason, "account closed");
}

/// A stream is kept `history_ttl` after its last publication and is gone
/// after it (not when housekeeping next runs, not prolonged by subscribers
/// who came and went); reading its history then creates nothing.
#[tokio::test]
async fn a_stream_is_gone_history_ttl_after_its_last_publication() {
    let mut c = config();
    c.namespaces.insert(
        "brief".into(),
        volley_hub::NamespaceOptions {
            history_size: 10,
            history_ttl: 1,
            allow_anonymous: true,
            ..Default::default()
        },
    );
    let hub = TestHub::start(c).await;
    let channels = |hub: &TestHub| {
        let addr = hub.addr;
        async move {
            let (_, body) = http(
                addr,
                "POST",
                "/api/channels",
                &[("Authorization", &format!("apikey {API_KEY}"))],
                "{}",
            )
            .await;
            body["result"]["channels"].as_array().unwrap().clone()
        }
    };
    // Taken before the call: the hub's clock for the TTL starts during it.
    let published = std::time::Instant::now();
    let first = hub.publish("brief:x", json!(1)).await;
    let epoch = first["epoch"].as_str().unwrap().to_string();
    // A subscriber that comes and goes does not prolong the stream.
    let mut s = Client::anonymous(&hub).await;
    s.subscribe(json!({"channel": "brief:x"})).await;
    s.call("unsubscribe", json!({"channel": "brief:x"})).await;
    assert_eq!(channels(&hub).await.len(), 1, "kept for the TTL");
    // Gone within the TTL and a margin (housekeeping runs every 5 s).
    while !channels(&hub).await.is_empty() {
        assert!(
            published.elapsed() < std::time::Duration::from_millis(1800),
            "the stream outlived its TTL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(published.elapsed() >= std::time::Duration::from_secs(1));
    // Reading the expired channel's history creates no stream.
    let (status, body) = hub.api("history", json!({"channel": "brief:x"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["offset"], 0);
    assert_eq!(body["result"]["publications"], json!([]));
    let (status, body) = hub
        .api(
            "history",
            json!({"channel": "brief:x", "since": {"epoch": epoch, "offset": 1}}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!(113)),
        "{body}"
    );
    assert!(channels(&hub).await.is_empty(), "history created a stream");
    // The next publication starts a new epoch.
    let next = hub.publish("brief:x", json!(2)).await;
    assert_eq!(next["offset"], 1);
    assert_ne!(next["epoch"], json!(epoch));
}

/// Writes `head` (and nothing more) and reads the response to its end.
async fn raw_exchange(addr: std::net::SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // The hub answers and closes; a read error (a reset after a refused
    // head) still leaves the response read so far.
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("the hub answers and closes in time");
    String::from_utf8_lossy(&out).into_owned()
}

/// The API checks its key from the request head, before reading a byte of
/// the body; a body that does not arrive in time gets 408; a declared body
/// over the limit gets 413 at once.
#[tokio::test]
async fn the_api_checks_the_key_from_the_head_and_bounds_the_body() {
    let mut c = config();
    c.limits.api_body_timeout_ms = 300;
    c.limits.api_max_body_bytes = 1000;
    let hub = TestHub::start(c).await;
    let head = |auth: &str, length: usize| {
        format!("POST /api/info HTTP/1.1\r\nHost: hub\r\n{auth}Content-Length: {length}\r\n\r\n")
    };
    for auth in ["", "Authorization: apikey wrong\r\n"] {
        let response = raw_exchange(hub.addr, &head(auth, 50_000_000)).await;
        assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    }
    let key = format!("Authorization: apikey {API_KEY}\r\n");
    let response = raw_exchange(hub.addr, &head(&key, 50_000_000)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let started = std::time::Instant::now();
    let response = raw_exchange(hub.addr, &head(&key, 100)).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    // A body that arrives is served.
    let (status, body) = hub.api("info", json!({})).await;
    assert_eq!(status, 200, "{body}");
}

/// The request head is limited to `limits.max_request_head_bytes` (16 KiB,
/// as the library's handshake): a 32 KiB header gets 431.
#[tokio::test]
async fn the_request_head_is_limited() {
    let hub = TestHub::start(config()).await;
    let head = |n: usize| {
        format!(
            "GET /health/live HTTP/1.1\r\nHost: hub\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(n)
        )
    };
    let response = raw_exchange(hub.addr, &head(8 * 1024)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let response = raw_exchange(hub.addr, &head(32 * 1024)).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
}

/// `limits.max_connections_per_user`: the next `connect` of that user gets
/// error 106 and close 4006; anonymous connections are not counted.
#[tokio::test]
async fn connections_per_user_are_limited() {
    let mut c = config();
    c.limits.max_connections_per_user = 2;
    let hub = TestHub::start(c).await;
    let t = token(json!({"sub": "42"}));
    let first = Client::with_token(&hub, Some(&t)).await;
    let _second = Client::with_token(&hub, Some(&t)).await;
    let mut third = Client::open(&hub).await;
    let reply = third.call("connect", json!({"token": t})).await;
    assert_eq!(error_code(&reply), Some(106), "{reply}");
    assert_eq!(reply["error"]["temporary"], true);
    let (_, code) = third.until_closed().await;
    assert_eq!(code, Some(4006));
    let _anonymous: Vec<_> = anonymous_clients(&hub, 3).await;
    // A connection that ends makes room.
    drop(first);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut again = Client::open(&hub).await;
        let reply = again.call("connect", json!({"token": t})).await;
        if reply["result"].is_object() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{reply}");
    }
}

async fn anonymous_clients(hub: &TestHub, n: usize) -> Vec<Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Client::anonymous(hub).await);
    }
    out
}
