//! The handshake rows of the bad-input table, over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use volley::http::StatusCode;
use volley::{Accept, ClientBuilder, Rejection, ServerRequest, WebSocketConfig};

const GOOD: &str = "GET /room?x=1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    Origin: https://good.example\r\nCookie: session=abc\r\n\r\n";

/// A server that accepts with `callback`, echoes, and reports each request it saw.
async fn server<F>(
    config: WebSocketConfig,
    callback: F,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>)
where
    F: Fn(&ServerRequest) -> Result<Accept, Rejection> + Send + Sync + Clone + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (config, callback, tx) = (config.clone(), callback.clone(), tx.clone());
            tokio::spawn(async move {
                let seen = tx.clone();
                let result = volley::accept_with(tcp, config, move |req| {
                    let _ = seen.send(format!(
                        "{} {} {:?} {:?}",
                        req.path(),
                        req.host().unwrap_or(""),
                        req.origin(),
                        req.cookie("session")
                    ));
                    callback(req)
                })
                .await;
                if let Ok(mut ws) = result {
                    while let Some(Ok(m)) = ws.recv().await {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn open(config: WebSocketConfig) -> SocketAddr {
    server(config, |_| Ok(Accept::new())).await.0
}

/// Sends raw bytes and returns everything the server answers before closing.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn not_a_websocket_request_gets_400_with_connection_close() {
    let addr = open(WebSocketConfig::default()).await;
    for (from, to) in [
        ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        ("Upgrade: websocket", "Upgrade: h2c"),
        ("Connection: Upgrade", "Connection: keep-alive"),
        ("GET /room", "POST /room"),
    ] {
        let reply = exchange(addr, GOOD.replacen(from, to, 1).as_bytes()).await;
        assert!(
            reply.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{from}: {reply}"
        );
        assert!(reply.contains("Connection: close\r\n"), "{reply}");
    }
    let reply = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
}

#[tokio::test]
async fn other_versions_get_426_naming_13() {
    let addr = open(WebSocketConfig::default()).await;
    let reply = exchange(addr, GOOD.replace("Version: 13", "Version: 8").as_bytes()).await;
    assert!(
        reply.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{reply}"
    );
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13\r\n"),
        "{reply}"
    );
}

#[tokio::test]
async fn origin_allowlist_rejects_with_403_and_exposes_request_parts() {
    let (addr, mut seen) = server(WebSocketConfig::default(), |req| match req.origin() {
        Some("https://good.example") => Ok(Accept::new()),
        _ => Err(Rejection::new(StatusCode::FORBIDDEN).body("origin not allowed")),
    })
    .await;
    let reply = exchange(
        addr,
        GOOD.replace("good.example", "evil.example").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{reply}");
    assert!(reply.ends_with("origin not allowed\n"));
    assert_eq!(
        seen.recv().await.unwrap(),
        r#"/room localhost Some("https://evil.example") Some("abc")"#
    );
    // The allowed origin is upgraded: read just the response head.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(GOOD.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let addr = open(WebSocketConfig::default()).await;
    let big = GOOD.replacen(
        "\r\n\r\n",
        &format!("\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)),
        1,
    );
    let reply = exchange(addr, big.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let reply = exchange(
        addr,
        GOOD.replacen("\r\n\r\n", &format!("\r\n{many}\r\n"), 1)
            .as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
}

#[tokio::test]
async fn a_slow_handshake_is_cut_off_at_the_timeout() {
    let config = WebSocketConfig::builder()
        .handshake_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let addr = open(config).await;
    // Half a request, then nothing: the server must close on its own.
    let reply = exchange(addr, &GOOD.as_bytes()[..40]).await;
    assert_eq!(reply, "");
}

#[tokio::test]
async fn subprotocol_is_chosen_by_the_callback() {
    let (addr, _) = server(WebSocketConfig::default(), |req| {
        let pick = req
            .protocols
            .iter()
            .find(|p| p.as_str() == "v2.chat")
            .cloned();
        Ok(pick
            .map(|p| Accept::new().protocol(p))
            .unwrap_or_default()
            .header("X-Server", "volley"))
    })
    .await;
    let (ws, response) = ClientBuilder::new(format!("ws://{addr}/"))
        .protocol("v1.chat")
        .protocol("v2.chat")
        .header("Origin", "https://good.example")
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "v2.chat");
    assert_eq!(response.headers()["x-server"], "volley");
    assert!(ws.is_compressed(), "permessage-deflate is on by default");
}

#[tokio::test]
async fn client_reports_a_refused_upgrade_with_its_status() {
    let (addr, _) = server(WebSocketConfig::default(), |_| {
        Err(Rejection::new(StatusCode::UNAUTHORIZED))
    })
    .await;
    let err = volley::connect(&format!("ws://{addr}/")).await.unwrap_err();
    match err {
        volley::Error::Response(volley::proto::handshake::ResponseError::Status {
            status, ..
        }) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_overloaded_server_answers_503_before_upgrading() {
    let (addr, _) = server(WebSocketConfig::default(), |_| {
        Err(Rejection::new(StatusCode::SERVICE_UNAVAILABLE)
            .header("Retry-After", "5")
            .body("draining"))
    })
    .await;
    let reply = exchange(addr, GOOD.as_bytes()).await;
    assert!(
        reply.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{reply}"
    );
    assert!(reply.contains("retry-after: 5\r\n"), "{reply}");
}

#[tokio::test]
async fn malformed_permessage_deflate_offers_get_400() {
    let addr = open(WebSocketConfig::default()).await;
    for offer in [
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
    ] {
        let request = GOOD.replacen(
            "\r\n\r\n",
            &format!("\r\nSec-WebSocket-Extensions: {offer}\r\n\r\n"),
            1,
        );
        let reply = exchange(addr, request.as_bytes()).await;
        assert!(
            reply.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{offer}: {reply}"
        );
    }
}
