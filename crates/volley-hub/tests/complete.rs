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
