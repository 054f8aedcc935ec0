//! WebSocket over HTTP/2 (RFC 8441) into the hub: on the TLS port (ALPN h2)
//! and over h2c when configured, counted by transport in /metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{TestHub, WAIT, config, http, tls_config};
use volley::ClientBuilder;

/// Sends `connect` on a fresh session and checks the hub answers it.
async fn connects<S>(ws: &mut volley::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(r#"{"id":1,"method":"connect"}"#).await.unwrap();
    let reply = tokio::time::timeout(WAIT, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(reply.as_bytes()).unwrap();
    assert!(reply["result"]["client"].is_string(), "{reply}");
}

/// The `connections_by_transport` gauge for `transport` in /metrics' text.
fn open(metrics: &str, transport: &str) -> Option<u64> {
    let line = format!("volley_connections_by_transport{{transport=\"{transport}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn h2c_when_configured_carries_many_sessions_on_one_connection() {
    let mut cfg = config();
    cfg.h2c = true;
    let hub = TestHub::start(cfg).await;
    let client = ClientBuilder::new(format!("http://{}", hub.addr))
        .protocol("volley.v1")
        .connect_http2()
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (mut ws, response) = client.websocket("/connection/websocket").await.unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], "volley.v1");
        connects(&mut ws).await;
        sessions.push(ws);
    }
    let (mut h1, _) = ClientBuilder::new(hub.url())
        .protocol("volley.v1")
        .connect()
        .await
        .unwrap();
    connects(&mut h1).await;
    let (status, metrics) = http(hub.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap();
    assert_eq!(open(metrics, "websocket-h2"), Some(3), "{metrics}");
    assert_eq!(open(metrics, "websocket-h1"), Some(1), "{metrics}");
}

#[tokio::test]
async fn no_h2c_unless_configured() {
    let hub = TestHub::start(config()).await;
    let refused = async {
        let client = ClientBuilder::new(format!("http://{}", hub.addr))
            .protocol("volley.v1")
            .connect_http2()
            .await?;
        client.websocket("/connection/websocket").await
    };
    assert!(tokio::time::timeout(WAIT, refused).await.unwrap().is_err());
}

#[tokio::test]
async fn the_tls_port_speaks_http2_by_alpn() {
    let (cfg, cert, dir) = tls_config("h2");
    let hub = TestHub::start(cfg).await;
    let client = ClientBuilder::new(format!("https://localhost:{}", hub.addr.port()))
        .protocol("volley.v1")
        .add_root_certificates_pem(cert.cert.pem().as_bytes())
        .unwrap()
        .connect_http2()
        .await
        .unwrap();
    let (mut ws, _) = client.websocket("/connection/websocket").await.unwrap();
    connects(&mut ws).await;
    let metrics = hub.hub.metrics().encode();
    assert_eq!(open(&metrics, "websocket-h2"), Some(1), "{metrics}");
    drop(ws);
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
}
