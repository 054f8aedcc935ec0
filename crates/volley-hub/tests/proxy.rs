//! Behind a load balancer: a real HAProxy sends the PROXY protocol v2, and
//! the per-IP limit applies to the clients' own addresses; untrusted peers
//! cannot send a PROXY header nor choose their address with
//! `X-Forwarded-For`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::haproxy::Haproxy;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use volley::{ClientBuilder, WebSocket};

/// A hub that trusts 127.0.0.1 (where HAProxy connects from) and allows two
/// connections per client address.
async fn hub_behind_proxy() -> TestHub {
    let mut c = config();
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    c.limits.max_connections_per_ip = 2;
    TestHub::start(c).await
}

/// A TCP connection to `to` from the local address `from` (any of
/// 127.0.0.0/8 is local).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Opens a `volley.v1` WebSocket from `from` through `to`; the HTTP status
/// (101 on success) and the socket, kept open while the caller holds it.
async fn websocket(
    from: &str,
    to: SocketAddr,
    forwarded_for: Option<&str>,
) -> (u16, Option<WebSocket<TcpStream>>) {
    let stream = connect_from(from, to).await;
    let mut builder =
        ClientBuilder::new(format!("ws://{to}/connection/websocket")).protocol("volley.v1");
    if let Some(xff) = forwarded_for {
        builder = builder.header("X-Forwarded-For", xff).unwrap();
    }
    match builder.connect_on(stream).await {
        Ok((ws, _)) => (101, Some(ws)),
        Err(e) => (handshake_status::<()>(Err(e)), None),
    }
}

fn rejected(metrics: &str, reason: &str) -> u64 {
    let key = format!("volley_handshakes_rejected_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn the_per_ip_limit_applies_to_the_clients_behind_haproxy() {
    let hub = hub_behind_proxy().await;
    let haproxy = Haproxy::start(&[hub.addr]).await;
    let mut open = Vec::new();
    // Two clients from 127.0.0.2 fill its quota; HAProxy's own address
    // (127.0.0.1, the TCP peer of every connection) is not what counts.
    for _ in 0..2 {
        let (status, ws) = websocket("127.0.0.2", haproxy.addr, None).await;
        assert_eq!(status, 101, "{}", haproxy.log());
        open.push(ws);
    }
    let (status, _) = websocket("127.0.0.2", haproxy.addr, None).await;
    assert_eq!(
        status, 429,
        "the third client from 127.0.0.2 is over its limit"
    );
    // Other addresses have their own quota.
    for from in ["127.0.0.3", "127.0.0.3", "127.0.0.4"] {
        let (status, ws) = websocket(from, haproxy.addr, None).await;
        assert_eq!(status, 101, "a client from {from}");
        open.push(ws);
    }
    let (status, _) = websocket("127.0.0.3", haproxy.addr, None).await;
    assert_eq!(status, 429);
    // A client behind HAProxy cannot pick another address with a header:
    // its own address (from the PROXY header) is not a trusted proxy.
    let (status, _) = websocket("127.0.0.2", haproxy.addr, Some("203.0.113.50")).await;
    assert_eq!(status, 429);
    assert_eq!(hub.hub.connection_count(), 5);
    let (_, metrics) = http(hub.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(rejected(metrics.as_str().unwrap(), "ip_limit"), 3);
    drop(open);
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_peer_closes_the_connection() {
    let hub = hub_behind_proxy().await;
    let headers: [&[u8]; 2] = [
        b"PROXY TCP4 203.0.113.9 127.0.0.1 4711 80\r\nGET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        // v2, PROXY, TCP over IPv4, 12 address bytes.
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x09\x7f\x00\x00\x01\x12\x67\x00\x50",
    ];
    for header in headers {
        let mut s = connect_from("127.0.0.2", hub.addr).await;
        s.write_all(header).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
        assert!(read.expect("closed in time").is_ok() || out.is_empty());
        assert!(out.is_empty(), "no answer, just the close: {out:?}");
    }
    // From the trusted address the same v1 header is accepted.
    let mut s = connect_from("127.0.0.1", hub.addr).await;
    s.write_all(headers[0]).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let (_, metrics) = http(hub.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(rejected(metrics.as_str().unwrap(), "proxy_untrusted"), 2);
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let hub = hub_behind_proxy().await;
    let mut open = Vec::new();
    // From the trusted 127.0.0.1 (an HTTP-mode balancer), each forwarded
    // address has its own quota.
    for xff in ["203.0.113.7", "203.0.113.7", "203.0.113.8"] {
        let (status, ws) = websocket("127.0.0.1", hub.addr, Some(xff)).await;
        assert_eq!(status, 101, "for {xff}");
        open.push(ws);
    }
    let (status, _) = websocket("127.0.0.1", hub.addr, Some("203.0.113.7")).await;
    assert_eq!(status, 429);
    // From an untrusted peer the header is ignored: 127.0.0.5 is counted.
    for xff in ["198.51.100.1", "198.51.100.2"] {
        let (status, ws) = websocket("127.0.0.5", hub.addr, Some(xff)).await;
        assert_eq!(status, 101);
        open.push(ws);
    }
    let (status, _) = websocket("127.0.0.5", hub.addr, Some("198.51.100.3")).await;
    assert_eq!(status, 429, "the forged addresses did not escape the limit");
    drop(open);
}

#[test]
fn docs_cluster_md_shows_the_haproxy_configuration_the_tests_use() {
    let doc = include_str!("../../../docs/cluster.md");
    assert!(
        doc.contains(common::haproxy::TEMPLATE),
        "docs/cluster.md must include tests/lib/haproxy.cfg verbatim"
    );
}
