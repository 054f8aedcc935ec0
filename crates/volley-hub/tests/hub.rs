//! The hub over real sockets: every command, permissions, tokens, presence,
//! history, recovery, the slow-consumer policy, limits, Origin and the drain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use volley::ClientBuilder;

#[tokio::test]
async fn connect_ping_and_envelope_errors() {
    let hub = TestHub::start(config()).await;
    let mut c = Client::anonymous(&hub).await;
    assert_eq!(c.info["user"], "");
    assert_eq!(c.info["max_message_size"], 65536);
    assert_eq!(c.info["ping_interval_ms"], 20000);
    assert_eq!(c.client_id().len(), 36);
    assert_eq!(
        c.call("ping", json!({})).await,
        json!({"id": 2, "result": {}})
    );
    assert_eq!(error_code(&c.call("nope", json!({})).await), Some(104));
    c.send_text(r#"{"id": 50, "method": 7}"#).await;
    assert_eq!(error_code(&c.reply(50).await), Some(107));
    // A second connect breaks the protocol.
    c.send("connect", json!({})).await;
    let (seen, code) = c.until_closed().await;
    assert_eq!(code, Some(4500));
    assert_eq!(seen.last().unwrap()["push"], "disconnect");
    assert_eq!(seen.last().unwrap()["reconnect"], false);

    // No valid id: disconnect 4500.
    let mut c = Client::anonymous(&hub).await;
    c.send_text(r#"{"method": "ping"}"#).await;
    assert_eq!(c.until_closed().await.1, Some(4500));
    // A binary message: 4500.
    let mut c = Client::anonymous(&hub).await;
    c.ws.send(volley::Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(c.until_closed().await.1, Some(4500));
    // A command before connect: 4500.
    let mut c = Client::open(&hub).await;
    c.send("ping", json!({})).await;
    assert_eq!(c.until_closed().await.1, Some(4500));
}

#[tokio::test]
async fn connect_tokens_anonymous_and_expiry() {
    let mut cfg = config();
    cfg.allow_anonymous = false;
    let hub = TestHub::start(cfg).await;

    let mut c = Client::open(&hub).await;
    assert_eq!(error_code(&c.call("connect", json!({})).await), Some(101));
    let (seen, code) = c.until_closed().await;
    assert!(seen.is_empty(), "no disconnect push after a failed connect");
    assert_eq!(code, Some(4401));

    let mut c = Client::open(&hub).await;
    let bad = token(json!({"sub": "42", "exp": now_s() - 10}));
    assert_eq!(
        error_code(&c.call("connect", json!({"token": bad})).await),
        Some(109)
    );
    assert_eq!(c.until_closed().await.1, Some(4400));

    let mut c = Client::open(&hub).await;
    let forged =
        volley_hub::sign_hs256("another-secret-of-32-bytes-12345", &json!({"sub": "42"})).unwrap();
    assert_eq!(
        error_code(&c.call("connect", json!({"token": forged})).await),
        Some(101)
    );
    assert_eq!(c.until_closed().await.1, Some(4401));

    let mut c = Client::open(&hub).await;
    assert_eq!(
        error_code(&c.call("connect", json!({"token": 5})).await),
        Some(107)
    );
    assert_eq!(c.until_closed().await.1, Some(4500));

    // A session that expires: refresh works, then a wrong refresh fails and
    // the expiry disconnects with 4400.
    let t = token(json!({"sub": "42", "exp": now_s() + 2, "info": {"name": "Ada"}}));
    let mut c = Client::with_token(&hub, Some(&t)).await;
    assert_eq!(c.info["user"], "42");
    let left = c.info["expires_in_ms"].as_u64().unwrap();
    assert!(left <= 2000, "{left}");
    let other = token(json!({"sub": "7", "exp": now_s() + 3600}));
    assert_eq!(
        error_code(&c.call("refresh", json!({"token": other})).await),
        Some(101)
    );
    let expired = token(json!({"sub": "42", "exp": now_s() - 1}));
    assert_eq!(
        error_code(&c.call("refresh", json!({"token": expired})).await),
        Some(109)
    );
    let (seen, code) = c.until_closed().await;
    assert_eq!(code, Some(4400));
    assert_eq!(seen.last().unwrap()["code"], 4400);
    assert_eq!(seen.last().unwrap()["reconnect"], true);

    let t = token(json!({"sub": "42", "exp": now_s() + 2}));
    let mut c = Client::with_token(&hub, Some(&t)).await;
    let fresh = token(json!({"sub": "42", "exp": now_s() + 3600}));
    let r = c.call("refresh", json!({"token": fresh})).await;
    assert!(
        r["result"]["expires_in_ms"].as_u64().unwrap() > 3_000_000,
        "{r}"
    );
    // Past the first token's expiry the connection still works.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(c.call("ping", json!({})).await["result"].is_object());
}

#[tokio::test]
async fn subscribe_permissions_and_errors() {
    let hub = TestHub::start(config()).await;
    let mut anon = Client::anonymous(&hub).await;
    let cases = [
        (json!({"channel": "bad channel"}), 107),
        (json!({}), 107),
        (json!({"channel": "nope:x"}), 102),
        (json!({"channel": "members:x"}), 103), // anonymous not allowed there
        (json!({"channel": "$chat:secret"}), 103), // private, no token
        (json!({"channel": "chat:a", "recover": true}), 107),
    ];
    for (params, code) in cases {
        assert_eq!(
            error_code(&anon.subscribe(params.clone()).await),
            Some(code),
            "{params}"
        );
    }
    assert!(anon.subscribe(json!({"channel": "news"})).await["result"].is_object());
    assert_eq!(
        error_code(&anon.subscribe(json!({"channel": "news"})).await),
        Some(105)
    );

    // Subscription tokens bind user and channel; expired ones say 109.
    let mut ada = Client::with_token(&hub, Some(&token(json!({"sub": "42"})))).await;
    let wrong_channel = token(json!({"sub": "42", "channel": "$chat:other"}));
    let wrong_user = token(json!({"sub": "7", "channel": "$chat:secret"}));
    let expired = token(json!({"sub": "42", "channel": "$chat:secret", "exp": now_s() - 1}));
    for (t, code) in [(wrong_channel, 101), (wrong_user, 101), (expired, 109)] {
        let r = ada
            .subscribe(json!({"channel": "$chat:secret", "token": t}))
            .await;
        assert_eq!(error_code(&r), Some(code), "{r}");
    }
    let good = token(json!({"sub": "42", "channel": "$chat:secret", "info": {"role": "owner"}}));
    let r = ada
        .subscribe(json!({"channel": "$chat:secret", "token": good, "presence": true}))
        .await;
    assert_eq!(
        r["result"]["presence"][0]["chan_info"],
        json!({"role": "owner"}),
        "{r}"
    );
    assert!(ada.subscribe(json!({"channel": "members:x"})).await["result"].is_object());

    // The channels claim restricts and grants private channels.
    let t = token(json!({"sub": "9", "channels": ["$chat:vip", "chat:lobby"]}));
    let mut vip = Client::with_token(&hub, Some(&t)).await;
    assert!(vip.subscribe(json!({"channel": "$chat:vip"})).await["result"].is_object());
    assert_eq!(
        error_code(&vip.subscribe(json!({"channel": "chat:other"})).await),
        Some(103)
    );

    // Too many channels.
    let mut cfg = config();
    cfg.limits.max_channels_per_connection = 2;
    let small = TestHub::start(cfg).await;
    let mut c = Client::anonymous(&small).await;
    assert!(c.subscribe(json!({"channel": "a"})).await["result"].is_object());
    assert!(c.subscribe(json!({"channel": "b"})).await["result"].is_object());
    assert_eq!(
        error_code(&c.subscribe(json!({"channel": "c"})).await),
        Some(112)
    );
    // Unsubscribing frees a slot; unsubscribing twice is 111.
    assert_eq!(
        c.call("unsubscribe", json!({"channel": "a"})).await["result"],
        json!({})
    );
    assert_eq!(
        error_code(&c.call("unsubscribe", json!({"channel": "a"})).await),
        Some(111)
    );
    assert!(c.subscribe(json!({"channel": "c"})).await["result"].is_object());
}

#[tokio::test]
async fn publish_presence_join_and_leave() {
    let hub = TestHub::start(config()).await;
    let ada_t = token(json!({"sub": "42", "info": {"name": "Ada"}}));
    let mut ada = Client::with_token(&hub, Some(&ada_t)).await;
    let mut bob = Client::anonymous(&hub).await;

    let r = ada
        .subscribe(json!({"channel": "chat:lobby", "presence": true}))
        .await;
    let res = &r["result"];
    assert_eq!(res["recoverable"], true);
    assert_eq!(res["offset"], 0);
    assert_eq!(res["recovered"], false);
    assert_eq!(res["join_leave"], true);
    assert_eq!(res["presence"].as_array().unwrap().len(), 1);
    // Its own join comes after the reply.
    assert_eq!(ada.push().await["push"], "join");

    assert_eq!(
        error_code(
            &bob.call("publish", json!({"channel": "chat:lobby", "data": 1}))
                .await
        ),
        Some(111)
    );
    bob.subscribe(json!({"channel": "chat:lobby"})).await;
    let join = ada.push().await;
    assert_eq!(join["push"], "join");
    assert_eq!(join["info"]["client"], bob.client_id());
    assert_eq!(bob.push().await["push"], "join");

    let r = bob
        .call(
            "publish",
            json!({"channel": "chat:lobby", "data": {"text": "hi"}}),
        )
        .await;
    assert_eq!(r["result"]["offset"], 1, "{r}");
    for c in [&mut ada, &mut bob] {
        let p = c.push().await;
        assert_eq!(p["push"], "publication");
        assert_eq!(p["offset"], 1);
        assert_eq!(p["data"], json!({"text": "hi"}));
        assert_eq!(p["info"]["user"], "");
    }
    // The API publishes without info.
    hub.publish("chat:lobby", json!({"text": "from the backend"}))
        .await;
    let p = ada.push().await;
    assert_eq!(p["offset"], 2);
    assert!(p.get("info").is_none());
    bob.push().await;

    let r = ada.call("presence", json!({"channel": "chat:lobby"})).await;
    let clients = r["result"]["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2);
    assert!(
        clients
            .iter()
            .any(|c| c["conn_info"] == json!({"name": "Ada"}))
    );
    let r = ada
        .call("presence_stats", json!({"channel": "chat:lobby"}))
        .await;
    assert_eq!(r["result"], json!({"num_clients": 2, "num_users": 2}));

    // Publishing is not allowed in feed; presence is not on in plain.
    ada.subscribe(json!({"channel": "feed:x"})).await;
    assert_eq!(
        error_code(
            &ada.call("publish", json!({"channel": "feed:x", "data": 1}))
                .await
        ),
        Some(103)
    );
    ada.subscribe(json!({"channel": "plain:x"})).await;
    assert_eq!(
        error_code(&ada.call("presence", json!({"channel": "plain:x"})).await),
        Some(108)
    );
    assert_eq!(
        error_code(&ada.call("history", json!({"channel": "plain:x"})).await),
        Some(108)
    );
    assert_eq!(
        error_code(&ada.call("publish", json!({"channel": "plain:x"})).await),
        Some(107)
    );
    let r = ada
        .call("publish", json!({"channel": "plain:x", "data": null}))
        .await;
    assert_eq!(r["result"], json!({}), "no offsets without history");
    let p = ada.push().await;
    assert_eq!(p["data"], Value::Null);
    assert!(p.get("offset").is_none());

    // Leave on unsubscribe and on disconnect.
    bob.call("unsubscribe", json!({"channel": "chat:lobby"}))
        .await;
    let leave = ada.push().await;
    assert_eq!(leave["push"], "leave");
    assert_eq!(leave["info"]["client"], bob.client_id());
    bob.subscribe(json!({"channel": "chat:lobby"})).await;
    assert_eq!(ada.push().await["push"], "join");
    let bob_id = bob.client_id();
    bob.ws.close(volley::CloseCode::NORMAL, "").await.unwrap();
    let leave = ada.push().await;
    assert_eq!(
        (leave["push"].as_str(), leave["info"]["client"].as_str()),
        (Some("leave"), Some(bob_id.as_str()))
    );
}

#[tokio::test]
async fn history_trimming_and_paging() {
    let hub = TestHub::start(config()).await;
    let mut c = Client::anonymous(&hub).await;
    c.subscribe(json!({"channel": "feed:h"})).await;
    for i in 1..=5 {
        assert_eq!(hub.publish("feed:h", json!(i)).await["offset"], i);
    }
    let r = c.call("history", json!({"channel": "feed:h"})).await;
    let res = &r["result"];
    assert_eq!(
        offsets(&res["publications"]),
        [3, 4, 5],
        "history_size is 3"
    );
    assert_eq!(res["offset"], 5);
    let epoch = res["epoch"].as_str().unwrap().to_string();
    let r = c
        .call(
            "history",
            json!({"channel": "feed:h", "reverse": true, "limit": 2}),
        )
        .await;
    assert_eq!(offsets(&r["result"]["publications"]), [5, 4]);
    let r = c
        .call("history", json!({"channel": "feed:h", "limit": 0}))
        .await;
    assert_eq!(offsets(&r["result"]["publications"]), Vec::<u64>::new());
    let since = |o: u64| json!({"channel": "feed:h", "since": {"epoch": epoch, "offset": o}});
    assert_eq!(
        offsets(&c.call("history", since(3)).await["result"]["publications"]),
        [4, 5]
    );
    assert_eq!(
        offsets(&c.call("history", since(2)).await["result"]["publications"]),
        [3, 4, 5]
    );
    assert_eq!(
        error_code(&c.call("history", since(1)).await),
        Some(113),
        "offset 2 is trimmed"
    );
    assert_eq!(
        error_code(&c.call("history", since(6)).await),
        Some(113),
        "above the top"
    );
    let r = c
        .call(
            "history",
            json!({"channel": "feed:h", "since": {"epoch": "other", "offset": 4}}),
        )
        .await;
    assert_eq!(error_code(&r), Some(113));
    let r = c
        .call(
            "history",
            json!({"channel": "feed:h", "reverse": true, "since": {"epoch": epoch, "offset": 5}}),
        )
        .await;
    assert_eq!(offsets(&r["result"]["publications"]), [4, 3]);
    assert_eq!(
        error_code(&c.call("history", json!({"channel": "feed:other"})).await),
        Some(111)
    );

    // TTL: entries older than history_ttl are dropped.
    let mut cfg = config();
    cfg.namespaces.get_mut("feed").unwrap().history_ttl = 1;
    let short = TestHub::start(cfg).await;
    let mut c = Client::anonymous(&short).await;
    c.subscribe(json!({"channel": "feed:t"})).await;
    short.publish("feed:t", json!("old")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    short.publish("feed:t", json!("new")).await;
    let r = c.call("history", json!({"channel": "feed:t"})).await;
    assert_eq!(offsets(&r["result"]["publications"]), [2]);
}

#[tokio::test]
async fn recovery_exact_or_reported() {
    let hub = TestHub::start(config()).await;
    let mut c = Client::anonymous(&hub).await;
    let r = c.subscribe(json!({"channel": "chat:r"})).await;
    let epoch = r["result"]["epoch"].as_str().unwrap().to_string();
    c.push().await; // own join
    hub.publish("chat:r", json!("a")).await;
    assert_eq!(c.push().await["offset"], 1);
    drop(c);
    for d in ["b", "c", "d"] {
        hub.publish("chat:r", json!(d)).await;
    }
    let mut c = Client::anonymous(&hub).await;
    let r = c
        .subscribe(json!({"channel": "chat:r", "recover": true, "epoch": epoch, "offset": 1}))
        .await;
    let res = &r["result"];
    assert_eq!(res["recovered"], true, "{r}");
    assert_eq!(offsets(&res["publications"]), [2, 3, 4]);
    let data: Vec<_> = res["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].clone())
        .collect();
    assert_eq!(data, [json!("b"), json!("c"), json!("d")]);
    assert_eq!(res["offset"], 4);
    // Live from there: the next push is offset 5.
    c.push().await; // join
    hub.publish("chat:r", json!("e")).await;
    assert_eq!(c.push().await["offset"], 5);

    // Nothing missed.
    let mut d = Client::anonymous(&hub).await;
    let r = d
        .subscribe(json!({"channel": "chat:r", "recover": true, "epoch": epoch, "offset": 5}))
        .await;
    assert_eq!(
        (
            r["result"]["recovered"].clone(),
            r["result"]["publications"].clone()
        ),
        (json!(true), json!([]))
    );

    // A gap the history no longer covers, a wrong epoch, a future offset.
    let mut f = Client::anonymous(&hub).await;
    let r = f.subscribe(json!({"channel": "feed:g"})).await;
    let fe = r["result"]["epoch"].as_str().unwrap().to_string();
    drop(f);
    for i in 0..5 {
        hub.publish("feed:g", json!(i)).await;
    }
    for (epoch, offset) in [(fe.as_str(), 0), ("stale", 5), (fe.as_str(), 9)] {
        let mut f = Client::anonymous(&hub).await;
        let r = f
            .subscribe(
                json!({"channel": "feed:g", "recover": true, "epoch": epoch, "offset": offset}),
            )
            .await;
        let res = &r["result"];
        assert_eq!(res["recovered"], false, "{r}");
        assert_eq!(res["publications"], json!([]), "never a partial list");
        assert_eq!(res["offset"], 5);
        assert_eq!(res["epoch"], fe.as_str());
    }
}

#[tokio::test]
async fn slow_consumer_is_disconnected_and_recovers_everything() {
    let mut cfg = config();
    cfg.limits.outbound_queue_bytes = 64 * 1024;
    cfg.namespaces.get_mut("feed").unwrap().history_size = 10_000;
    let hub = TestHub::start(cfg).await;
    let mut c = Client::anonymous(&hub).await;
    let r = c.subscribe(json!({"channel": "feed:slow"})).await;
    let epoch = r["result"]["epoch"].as_str().unwrap().to_string();
    // The client reads nothing while the backend publishes until the hub
    // gives up on it.
    let blob = "x".repeat(16 * 1024);
    let mut published = 0u64;
    while hub.hub.metrics().slow_consumer_disconnects.get() == 0 {
        published += 1;
        assert!(published < 5000, "the queue limit never triggered");
        hub.publish("feed:slow", json!({"n": published, "blob": blob}))
            .await;
    }
    // A few more while it is away.
    for _ in 0..10 {
        published += 1;
        hub.publish("feed:slow", json!({"n": published, "blob": blob}))
            .await;
    }
    let (seen, code) = c.until_closed().await;
    assert_eq!(code, Some(4002));
    let disconnect = seen.last().unwrap();
    assert_eq!(
        (disconnect["push"].as_str(), disconnect["code"].as_u64()),
        (Some("disconnect"), Some(4002))
    );
    let got: Vec<u64> = seen
        .iter()
        .filter(|p| p["push"] == "publication")
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    let last = got.last().copied().unwrap_or(0);
    assert_eq!(got, (1..=last).collect::<Vec<_>>(), "in order, no gap");
    assert!(last < published);

    let mut c = Client::anonymous(&hub).await;
    let r = c
        .subscribe(json!({"channel": "feed:slow", "recover": true, "epoch": epoch, "offset": last}))
        .await;
    assert_eq!(r["result"]["recovered"], true);
    let rest = offsets(&r["result"]["publications"]);
    assert_eq!(
        rest,
        (last + 1..=published).collect::<Vec<_>>(),
        "exactly what was missed"
    );
    let n: Vec<u64> = r["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(n, rest);
    println!(
        "slow consumer: read {last} of {published} before 4002, recovered {}",
        rest.len()
    );
}

#[tokio::test]
async fn command_rate_limit() {
    let mut cfg = config();
    cfg.limits.commands_per_second = 10;
    let hub = TestHub::start(cfg).await;
    let mut c = Client::anonymous(&hub).await;
    let ids: Vec<u64> = {
        let mut ids = Vec::new();
        for _ in 0..15 {
            ids.push(c.send("ping", json!({})).await);
        }
        ids
    };
    let mut limited = 0;
    for id in ids {
        let r = c.reply(id).await;
        if error_code(&r) == Some(110) {
            assert_eq!(r["error"]["temporary"], true);
            limited += 1;
        }
    }
    assert!(
        (4..=5).contains(&limited),
        "a burst of 10 passes, then 110: {limited}"
    );
    // Carrying on past a second's worth of refusals ends the connection.
    for _ in 0..40 {
        c.send("ping", json!({})).await;
    }
    let (seen, code) = c.until_closed().await;
    assert_eq!(code, Some(4007));
    let d = seen.last().unwrap();
    assert_eq!(d["code"], 4007);
    assert!(d["reconnect_after_ms"].as_u64().is_some());
}

#[tokio::test]
async fn handshake_checks_origin_subprotocol_and_limits() {
    let mut cfg = config();
    cfg.allowed_origins = vec!["https://app.example".into()];
    cfg.limits.max_connections_per_ip = 2;
    let hub = TestHub::start(cfg).await;
    let status = handshake_status;
    let with_origin = |o: &str| {
        ClientBuilder::new(hub.url())
            .protocol("volley.v1")
            .header("Origin", o)
            .unwrap()
    };
    assert_eq!(
        status(
            with_origin("https://evil.example")
                .connect()
                .await
                .map(|_| ())
        ),
        403
    );
    // Without the subprotocol: 400, and the client's error carries the
    // hub's explanation.
    let refused = ClientBuilder::new(hub.url()).connect().await.map(|_| ());
    let said = refused.as_ref().err().map(ToString::to_string);
    assert_eq!(status(refused), 400);
    let said = said.unwrap_or_default();
    assert!(
        said.contains("400 Bad Request")
            && said.contains("offer the WebSocket subprotocol volley.v1"),
        "{said}"
    );
    let a = with_origin("https://app.example").connect().await.unwrap();
    let b = Client::anonymous(&hub).await; // no Origin: not a browser
    assert_eq!(
        status(
            with_origin("https://app.example")
                .connect()
                .await
                .map(|_| ())
        ),
        429
    );
    // A plain GET of the WebSocket path (no Upgrade header): 400, counted
    // as a bad request.
    let (plain, _) = http(hub.addr, "GET", "/connection/websocket", &[], "").await;
    assert_eq!(plain, 400);
    let (_, metrics) = http(hub.addr, "GET", "/metrics", &[], "").await;
    let metrics = metrics.as_str().unwrap().to_string();
    for reason in ["origin", "subprotocol", "ip_limit", "bad_request"] {
        assert!(
            metrics.contains(&format!(
                "volley_handshakes_rejected_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {metrics}"
        );
    }
    drop((a, b));
}

#[tokio::test]
async fn http_api_methods() {
    let hub = TestHub::start(config()).await;
    let (status, body) = http(
        hub.addr,
        "POST",
        "/api/info",
        &[("Authorization", "apikey wrong")],
        "{}",
    )
    .await;
    assert_eq!((status, error_code(&body)), (401, Some(101)));
    assert_eq!(hub.api("nope", json!({})).await.0, 404);
    assert_eq!(
        hub.api("publish", json!({"channel": "x:y", "data": 1}))
            .await
            .1["error"]["code"],
        102
    );
    assert_eq!(
        hub.api("publish", json!({"channel": "a b", "data": 1}))
            .await
            .0,
        400
    );

    let t = token(json!({"sub": "42"}));
    let mut ada = Client::with_token(&hub, Some(&t)).await;
    let mut ada2 = Client::with_token(&hub, Some(&t)).await;
    ada.subscribe(json!({"channel": "chat:api"})).await;
    ada.push().await;

    let (s, b) = hub
        .api(
            "broadcast",
            json!({"channels": ["chat:api", "feed:api", "bad:x"], "data": {"k": 1}}),
        )
        .await;
    assert_eq!(s, 200);
    let responses = b["result"]["responses"].as_array().unwrap();
    assert_eq!(responses[0]["result"]["offset"], 1);
    assert_eq!(responses[1]["result"]["offset"], 1);
    assert_eq!(responses[2]["error"]["code"], 102);
    assert_eq!(ada.push().await["data"], json!({"k": 1}));
    // A channel named twice is published twice, in the list's order.
    let (_, b) = hub
        .api(
            "broadcast",
            json!({"channels": ["feed:api", "chat:api", "feed:api"], "data": {"k": 2}}),
        )
        .await;
    let offsets_of: Vec<_> = b["result"]["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets_of, [2, 2, 3]);
    assert_eq!(ada.push().await["data"], json!({"k": 2}));

    let (_, b) = hub.api("presence", json!({"channel": "chat:api"})).await;
    assert_eq!(b["result"]["clients"][0]["user"], "42");
    let (_, b) = hub
        .api("presence_stats", json!({"channel": "chat:api"}))
        .await;
    assert_eq!(b["result"], json!({"num_clients": 1, "num_users": 1}));
    let (_, b) = hub.api("history", json!({"channel": "chat:api"})).await;
    assert_eq!(offsets(&b["result"]["publications"]), [1, 2]);
    let (_, b) = hub.api("channels", json!({})).await;
    let names: Vec<_> = b["result"]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["chat:api", "feed:api"]);
    let (_, b) = hub.api("info", json!({})).await;
    assert_eq!(b["result"]["num_connections"], 2);
    assert_eq!(b["result"]["num_users"], 1);

    let (_, b) = hub
        .api("send", json!({"user": "42", "data": {"note": "hello"}}))
        .await;
    assert_eq!(b["result"]["delivered"], 2);
    for c in [&mut ada, &mut ada2] {
        assert_eq!(
            c.push().await,
            json!({"push": "message", "data": {"note": "hello"}})
        );
    }

    let (_, b) = hub
        .api(
            "disconnect",
            json!({"client": ada2.client_id(), "reconnect": false}),
        )
        .await;
    assert_eq!(b["result"]["disconnected"], 1);
    assert_eq!(ada2.until_closed().await.1, Some(4501));
    let (_, b) = hub.api("disconnect", json!({"user": "42"})).await;
    assert_eq!(b["result"]["disconnected"], 1);
    let (seen, code) = ada.until_closed().await;
    assert_eq!(code, Some(4000));
    assert_eq!(seen.last().unwrap()["reconnect"], true);
    assert_eq!(hub.api("disconnect", json!({})).await.0, 400);

    let (s, b) = http(hub.addr, "GET", "/health/live", &[], "").await;
    assert_eq!((s, b), (200, json!("ok\n")));
    let (s, b) = http(
        hub.addr,
        "GET",
        "/admin/api/stats",
        &[("Authorization", "Bearer admin")],
        "",
    )
    .await;
    assert_eq!(s, 200);
    assert!(b["messages_in_per_s"].is_number(), "{b}");
    assert_eq!(
        http(hub.addr, "GET", "/admin/api/stats", &[], "").await.0,
        401
    );
}

#[tokio::test]
async fn drain_tells_clients_then_closes_with_1001() {
    let mut cfg = config();
    cfg.drain.grace_ms = 1500;
    cfg.drain.spread_ms = 400;
    let mut hub = TestHub::start(cfg).await;
    let mut stays = Client::anonymous(&hub).await;
    let mut leaves = Client::anonymous(&hub).await;
    stays.subscribe(json!({"channel": "news"})).await;
    hub.signal();
    for c in [&mut stays, &mut leaves] {
        let p = c.push().await;
        assert_eq!(
            (p["push"].as_str(), p["code"].as_u64()),
            (Some("disconnect"), Some(4001))
        );
        assert!(p["reconnect_after_ms"].as_u64().unwrap() < 400);
    }
    // The connection keeps working during the grace period.
    assert!(stays.call("ping", json!({})).await["result"].is_object());
    // New upgrades are refused and readiness is off.
    let refused = ClientBuilder::new(hub.url())
        .protocol("volley.v1")
        .connect()
        .await;
    assert_eq!(handshake_status(refused), 503);
    assert_eq!(http(hub.addr, "GET", "/health/ready", &[], "").await.0, 503);
    // One client leaves as told; the other is closed at the deadline.
    leaves
        .ws
        .close(volley::CloseCode::NORMAL, "")
        .await
        .unwrap();
    assert_eq!(stays.until_closed().await.1, Some(1001));
    let report = hub.finished().await;
    assert_eq!(report.connections_at_start, 2);
    assert_eq!(report.closed_at_deadline, 1);
}

#[tokio::test]
async fn connect_timeout_closes_4003() {
    let mut cfg = config();
    cfg.limits.connect_timeout_ms = 200;
    let hub = TestHub::start(cfg).await;
    let mut c = Client::open(&hub).await;
    let (seen, code) = c.until_closed().await;
    assert_eq!(code, Some(4003));
    assert_eq!(seen.last().unwrap()["code"], 4003);
}

#[tokio::test]
async fn a_burst_of_pipelined_commands_is_answered_in_full() {
    let hub = TestHub::start(config()).await;
    let mut c = Client::anonymous(&hub).await;
    c.subscribe(json!({"channel": "plain:burst"})).await;
    // More than one read's worth, sent without waiting: every one is answered.
    // All in one write, so that the hub reads them in one go.
    let ids: Vec<u64> = (0..300u64).map(|i| 100 + i).collect();
    for (i, id) in ids.iter().enumerate() {
        let cmd =
            json!({"id": id, "method": "publish", "params": {"channel": "plain:burst", "data": i}});
        c.ws.feed(volley::Message::text(cmd.to_string()))
            .await
            .unwrap();
    }
    c.ws.flush().await.unwrap();
    let mut replies = 0;
    let mut data = Vec::new();
    while replies < ids.len() || data.len() < ids.len() {
        let v = c.read().await.expect("the connection stays open");
        if v.get("id").is_some() {
            assert_eq!(v["result"], json!({}), "{v}");
            replies += 1;
        } else {
            data.push(v["data"].as_u64().unwrap());
        }
    }
    assert_eq!(
        data,
        (0..300).collect::<Vec<_>>(),
        "publications in command order"
    );
}

#[tokio::test]
async fn a_client_that_asks_without_reading_is_held_back_not_buffered() {
    let mut cfg = config();
    cfg.limits.outbound_queue_bytes = 256 * 1024;
    cfg.namespaces.get_mut("feed").unwrap().history_size = 100;
    let hub = TestHub::start(cfg).await;
    let blob = "y".repeat(16 * 1024);
    for _ in 0..50 {
        hub.publish("feed:big", json!(blob)).await;
    }
    let mut c = Client::anonymous(&hub).await;
    c.subscribe(json!({"channel": "feed:big"})).await;
    let read_before = hub.hub.metrics().messages_in.get();
    // Each reply is about 800 KiB; the client reads none of them for a while.
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(c.send("history", json!({"channel": "feed:big"})).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let read = hub.hub.metrics().messages_in.get() - read_before;
    assert!(
        read < 40,
        "the hub stopped reading commands: {read} of 40 read"
    );
    // Then it reads: every reply arrives, complete and in order.
    for id in ids {
        let r = c.reply(id).await;
        assert_eq!(r["result"]["publications"].as_array().unwrap().len(), 50);
    }
    println!("held back: {read} of 40 commands read while the client did not read");
}

#[tokio::test]
async fn recoveries_larger_than_the_queue_limit_arrive_back_to_back() {
    let mut cfg = config();
    cfg.limits.outbound_queue_bytes = 256 * 1024;
    cfg.namespaces.get_mut("chat").unwrap().history_size = 1000;
    let hub = TestHub::start(cfg).await;
    let blob = "z".repeat(16 * 1024);
    let mut epochs = Vec::new();
    for ch in ["chat:r1", "chat:r2"] {
        let mut f = Client::anonymous(&hub).await;
        let r = f.subscribe(json!({"channel": ch})).await;
        epochs.push(r["result"]["epoch"].as_str().unwrap().to_string());
        for _ in 0..40 {
            hub.publish(ch, json!(blob)).await;
        }
    }
    // Two 640 KiB recoveries, each followed by the client's own join push.
    let mut c = Client::anonymous(&hub).await;
    let a = c
        .send(
            "subscribe",
            json!({"channel": "chat:r1", "recover": true, "epoch": epochs[0], "offset": 0}),
        )
        .await;
    let b = c
        .send(
            "subscribe",
            json!({"channel": "chat:r2", "recover": true, "epoch": epochs[1], "offset": 0}),
        )
        .await;
    for id in [a, b] {
        let r = c.reply(id).await;
        assert_eq!(r["result"]["recovered"], true, "{}", r["error"]);
        assert_eq!(
            offsets(&r["result"]["publications"]),
            (1..=40).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn history_and_recovery_replies_are_bounded_by_the_hub_budget() {
    let mut cfg = config();
    // Three quarters of it (48 KiB) is what one reply may take.
    cfg.limits.outbound_budget_bytes = Some(64 * 1024);
    cfg.namespaces.get_mut("chat").unwrap().history_size = 1000;
    let hub = TestHub::start(cfg).await;
    let mut c = Client::anonymous(&hub).await;
    let r = c.subscribe(json!({"channel": "chat:big"})).await;
    let epoch = r["result"]["epoch"].as_str().unwrap().to_string();
    let blob = "z".repeat(1024);
    for _ in 0..100 {
        hub.publish("chat:big", json!(blob)).await;
    }
    // About 100 KiB of publications: more than a reply may ever take.
    let id = c.send("history", json!({"channel": "chat:big"})).await;
    let r = c.reply(id).await;
    assert_eq!(r["error"]["code"], 106, "{r}");
    assert_eq!(r["error"]["temporary"], true, "{r}");
    let id = c
        .send("history", json!({"channel": "chat:big", "limit": 10}))
        .await;
    let r = c.reply(id).await;
    assert_eq!(
        r["result"]["publications"].as_array().unwrap().len(),
        10,
        "{r}"
    );
    // A recovery that could never fit fails as when history runs out.
    let mut late = Client::anonymous(&hub).await;
    let r = late
        .subscribe(json!({"channel": "chat:big", "recover": true, "epoch": epoch, "offset": 0}))
        .await;
    assert_eq!(r["result"]["recovered"], false, "{r}");
    assert_eq!(r["result"]["publications"], json!([]), "{r}");
    assert_eq!(r["result"]["offset"], 100, "{r}");
    // One that fits is recovered exactly.
    let mut near = Client::anonymous(&hub).await;
    let r = near
        .subscribe(json!({"channel": "chat:big", "recover": true, "epoch": epoch, "offset": 90}))
        .await;
    assert_eq!(r["result"]["recovered"], true, "{r}");
    assert_eq!(
        offsets(&r["result"]["publications"]),
        (91..=100).collect::<Vec<_>>()
    );
}

/// A client that compresses is asked not to keep its compression context
/// between messages (the hub then keeps no decompressor between them), and
/// compressed commands still work; `limits.client_compression_context`
/// lets it keep the context.
#[tokio::test]
async fn compressing_clients_are_asked_for_no_context_takeover() {
    for (keep, asked) in [(false, true), (true, false)] {
        let mut cfg = config();
        cfg.limits.client_compression_context = keep;
        let hub = TestHub::start(cfg).await;
        let (ws, response) = ClientBuilder::new(hub.url())
            .protocol("volley.v1")
            .connect()
            .await
            .unwrap();
        let extensions = response
            .headers()
            .get("sec-websocket-extensions")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(extensions.starts_with("permessage-deflate"), "{extensions}");
        assert_eq!(
            extensions.contains("client_no_context_takeover"),
            asked,
            "{extensions}"
        );
        let mut c = Client::over(ws);
        let r = c.call("connect", json!({})).await;
        assert!(r["result"].is_object(), "{r}");
        // Commands long enough to be compressed, several in a row.
        for i in 0..3 {
            let channel = format!("plain:compressed-{i}-{}", "x".repeat(100));
            let r = c.subscribe(json!({ "channel": channel })).await;
            assert!(r["result"].is_object(), "{r}");
        }
    }
}

/// A WebSocket client over a bare socket that never answers a ping: it
/// reads the server's frames as they come (unmasked, unfragmented).
struct BareClient {
    tcp: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl BareClient {
    async fn open(hub: &TestHub) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
        tcp.write_all(
            b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: volley.v1\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        assert!(
            buf.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        buf.drain(..end);
        Self { tcp, buf }
    }

    /// Sends a command as a masked text frame.
    async fn send(&mut self, command: Value) {
        use tokio::io::AsyncWriteExt;
        let payload = command.to_string().into_bytes();
        assert!(payload.len() < 126);
        let mask = [7u8, 1, 9, 3];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// The next frame (opcode, payload), or `None` at the end of the stream.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), self.tcp.read(&mut chunk))
                .await
                .expect("a frame or the end within 30 s")
                .unwrap_or(0);
            if n == 0 {
                assert!(self.buf.is_empty(), "the stream ended inside a frame");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Nothing follows a Close: once a keepalive left unanswered has made the
/// hub close with 1011, a publication to the connection is not written
/// behind the Close (the connection thread writes to idle connections'
/// sockets itself, and must not to this one).
#[tokio::test]
async fn nothing_follows_the_close_of_an_unanswered_keepalive() {
    let mut cfg = config();
    cfg.limits.ping_interval_ms = 100;
    cfg.limits.pong_timeout_ms = 100;
    let hub = TestHub::start(cfg).await;
    let mut c = BareClient::open(&hub).await;
    c.send(json!({"id": 1, "method": "connect", "params": {}}))
        .await;
    c.send(json!({"id": 2, "method": "subscribe", "params": {"channel": "plain:after-close"}}))
        .await;
    // Read, never answering a ping, until the Close.
    let mut replies = 0;
    loop {
        let (opcode, payload) = c.frame().await.expect("the hub's Close");
        match opcode {
            0x1 => replies += 1,
            0x9 => {}
            0x8 => {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1011);
                break;
            }
            other => panic!("opcode {other}"),
        }
    }
    assert_eq!(replies, 2, "the connect and subscribe replies");
    // The hub waits for our Close now (until its close timeout): a
    // publication meanwhile must not be written after its Close.
    hub.publish("plain:after-close", json!({"after": "close"}))
        .await;
    if let Some((opcode, payload)) = c.frame().await {
        panic!(
            "a frame after the Close: opcode {opcode}, {}",
            String::from_utf8_lossy(&payload)
        );
    }
}

/// A large command (a 48 KiB publication, in one frame) is read whole over
/// the hub's shared plain-TCP socket, whose large payloads are read in place,
/// and reaches a subscriber intact.
#[tokio::test]
async fn a_large_command_is_read_whole() {
    let hub = TestHub::start(config()).await;
    let mut reader = Client::anonymous(&hub).await;
    reader.subscribe(json!({"channel": "plain:large"})).await;
    let mut writer = Client::anonymous(&hub).await;
    writer.subscribe(json!({"channel": "plain:large"})).await;
    let blob: String = (0..48 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let reply = writer
        .call(
            "publish",
            json!({"channel": "plain:large", "data": {"blob": blob}}),
        )
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    let p = reader.push().await;
    assert_eq!(p["push"], "publication", "{}", p["push"]);
    let got = p["data"]["blob"].as_str().unwrap_or_default();
    assert!(
        got == blob,
        "{} bytes arrived, {} sent",
        got.len(),
        blob.len()
    );
}
