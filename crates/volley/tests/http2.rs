//! WebSocket over HTTP/2 (RFC 8441) end to end: volley's `h2::Client`
//! against `volley::upgrade` on a hyper HTTP/2 server, over TLS (ALPN h2)
//! and h2c; many WebSockets on one connection; closing one; subprotocols;
//! permessage-deflate; a server without extended CONNECT.
#![cfg(feature = "http2")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use volley::{
    Accept, ClientBuilder, CloseCode, DeflateConfig, Message, WebSocket, WebSocketConfig,
};

/// How the test server is reached.
#[derive(Clone, Copy)]
enum Transport {
    /// HTTP/2 over TLS, ALPN h2.
    Tls,
    /// HTTP/2 with prior knowledge, no TLS.
    H2c,
}

/// A hyper server (HTTP/1.1 and HTTP/2, extended CONNECT on unless
/// `extended` is false) whose WebSockets echo, and pick the subprotocol
/// "chat" when offered. Returns its address and, for TLS, the client
/// configuration trusting its certificate.
async fn echo_server(
    transport: Transport,
    config: WebSocketConfig,
    extended: bool,
) -> (SocketAddr, Option<Arc<rustls::ClientConfig>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (acceptor, client_tls) = match transport {
        Transport::Tls => {
            let (acceptor, client) = test_tls();
            (Some(acceptor), Some(client))
        }
        Transport::H2c => (None, None),
    };
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let config = config.clone();
            tokio::spawn(async move {
                let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let config = config.clone();
                    async move {
                        let upgraded = volley::upgrade(&mut req, config, |r| {
                            Ok(match r.protocols.iter().any(|p| p == "chat") {
                                true => Accept::new().protocol("chat"),
                                false => Accept::new(),
                            })
                        });
                        let response = match upgraded {
                            Ok((response, upgrading)) => {
                                tokio::spawn(async move {
                                    if let Ok(ws) = upgrading.await {
                                        echo(ws).await;
                                    }
                                });
                                response.map(Either::Left)
                            }
                            Err(rejection) => {
                                rejection.map(|b| Either::Right(Full::new(Bytes::from(b))))
                            }
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                if extended {
                    builder.http2().enable_connect_protocol();
                }
                let _ = match acceptor {
                    Some(acceptor) => {
                        let tls = acceptor.accept(tcp).await.unwrap();
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), service)
                            .await
                    }
                    None => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                            .await
                    }
                };
            });
        }
    });
    (addr, client_tls)
}

async fn echo<S>(mut ws: WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(m)) = ws.recv().await {
        if ws.send(m).await.is_err() {
            break;
        }
    }
}

/// A self-signed certificate for "localhost": the server's acceptor (ALPN
/// h2 and http/1.1) and a client configuration that trusts it.
fn test_tls() -> (tokio_rustls::TlsAcceptor, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let provider = volley::crypto_provider();
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        Arc::new(client),
    )
}

async fn h2_client(
    transport: Transport,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    config: WebSocketConfig,
) -> volley::Result<volley::h2::Client> {
    let url = match transport {
        Transport::Tls => format!("https://localhost:{}", addr.port()),
        Transport::H2c => format!("http://{addr}"),
    };
    let mut builder = ClientBuilder::new(url).config(config);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    builder.connect_http2().await
}

/// Message `i` of WebSocket `ws`: text or binary, of varied sizes (up to
/// 70 KB, past the HTTP/2 default stream window), content tied to both.
fn message(ws: usize, i: usize) -> Message {
    let len = match i % 10 {
        _ if i % 100 == 0 => 70_000,
        1 => 0,
        _ => (i * 37 + ws) % 600,
    };
    let bytes: Vec<u8> = (0..len)
        .map(|k| ((k * 31 + i * 7 + ws) % 251) as u8)
        .collect();
    if i % 2 == 0 {
        Message::binary(bytes)
    } else {
        let text: String = bytes.iter().map(|b| char::from(b'a' + b % 26)).collect();
        Message::text(text)
    }
}

/// Echoes in flight per WebSocket. h2 closes a connection with
/// ENHANCE_YOUR_CALM when the small DATA frames it buffers unread cost more
/// than half its connection window (each frame under 256 bytes costs at most
/// 256; docs/limits.md), so a sender that runs a whole window of tiny frames
/// ahead of a slower reader is cut off. With 8 in flight on each of 100
/// WebSockets the server holds at most 800 messages, 1,600 DATA frames even
/// if each were split in two, a cost of at most 409,600 against hyper's
/// 1 MiB window's budget of 524,288.
const IN_FLIGHT: usize = 8;

/// Sends `count` messages on one WebSocket while reading their echoes
/// (at most [`IN_FLIGHT`] ahead), checking each byte for byte, in order.
async fn echo_round<S>(ws: WebSocket<S>, index: usize, count: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rx, mut tx) = ws.split();
    let window = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let credit = Arc::clone(&window);
    let writer = tokio::spawn(async move {
        for i in 0..count {
            credit.acquire().await.unwrap().forget();
            tx.send(message(index, i)).await.unwrap();
        }
        tx
    });
    for i in 0..count {
        let got = rx.recv().await.unwrap().unwrap();
        assert_eq!(got, message(index, i), "websocket {index}, message {i}");
        window.add_permits(1);
    }
    let mut tx = writer.await.unwrap();
    tx.close(CloseCode::NORMAL, "done").await.unwrap();
    assert!(rx.recv().await.is_none(), "websocket {index}: closed");
}

async fn hundred_websockets_on_one_connection(transport: Transport) {
    let (addr, tls) = echo_server(transport, WebSocketConfig::default(), true).await;
    let client = h2_client(transport, addr, tls, WebSocketConfig::default())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for index in 0..100 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let (ws, response) = client.websocket(&format!("/echo/{index}")).await.unwrap();
            assert_eq!(response.status(), 200);
            echo_round(ws, index, 1_000).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(!client.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_100_websockets_on_one_connection_echo_1000_messages_each() {
    hundred_websockets_on_one_connection(Transport::Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_100_websockets_on_one_connection_echo_1000_messages_each() {
    hundred_websockets_on_one_connection(Transport::H2c).await;
}

#[tokio::test]
async fn closing_or_dropping_one_websocket_leaves_the_others_alone() {
    let (addr, tls) = echo_server(Transport::Tls, WebSocketConfig::default(), true).await;
    let client = h2_client(Transport::Tls, addr, tls, WebSocketConfig::default())
        .await
        .unwrap();
    let mut sockets = Vec::new();
    for i in 0..5 {
        sockets.push(client.websocket(&format!("/{i}")).await.unwrap().0);
    }
    // One closes cleanly, with the closing handshake.
    let mut closed = sockets.remove(1);
    closed
        .close(CloseCode::GOING_AWAY, "leaving")
        .await
        .unwrap();
    assert!(closed.recv().await.is_none());
    assert_eq!(closed.close_frame().unwrap().code, CloseCode::GOING_AWAY);
    // One goes away without a close (its HTTP/2 stream is reset).
    drop(sockets.remove(2));
    for (i, ws) in sockets.iter_mut().enumerate() {
        let text = format!("still here {i}");
        ws.send(text.as_str()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text));
    }
    // A new one opens on the same connection.
    let (mut late, _) = client.websocket("/late").await.unwrap();
    late.send("late").await.unwrap();
    assert_eq!(late.recv().await.unwrap().unwrap(), Message::text("late"));
}

#[tokio::test]
async fn subprotocol_and_permessage_deflate_over_http2() {
    let deflate = WebSocketConfig::builder()
        .protocol(
            volley::Config::builder()
                .deflate(Some(DeflateConfig::default()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (addr, _) = echo_server(Transport::H2c, deflate.clone(), true).await;
    let no_deflate = WebSocketConfig::builder()
        .protocol(volley::Config::builder().deflate(None).build().unwrap())
        .build()
        .unwrap();
    let client = h2_client(Transport::H2c, addr, None, deflate)
        .await
        .unwrap();
    let (mut ws, response) = client
        .websocket_with(
            "/chat",
            &http::HeaderMap::new(),
            &["chat".to_owned(), "other".to_owned()],
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert!(
        response.headers()["sec-websocket-extensions"]
            .to_str()
            .unwrap()
            .starts_with("permessage-deflate")
    );
    assert!(ws.is_compressed());
    let big = "compress me ".repeat(100_000);
    for _ in 0..3 {
        ws.send(big.as_str()).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text(big.as_str())
        );
    }
    // A client without deflate on the same server: not negotiated.
    let plain = h2_client(Transport::H2c, addr, None, no_deflate)
        .await
        .unwrap();
    let (ws, response) = plain.websocket("/plain").await.unwrap();
    assert!(!response.headers().contains_key("sec-websocket-extensions"));
    assert!(!ws.is_compressed());
}

#[tokio::test]
async fn a_server_without_extended_connect_is_refused_before_any_request() {
    let (addr, _) = echo_server(Transport::H2c, WebSocketConfig::default(), false).await;
    let config = WebSocketConfig::builder()
        .handshake_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let client = h2_client(Transport::H2c, addr, None, config).await.unwrap();
    let err = client.websocket("/").await.unwrap_err();
    assert!(
        matches!(err, volley::Error::ExtendedConnectDisabled),
        "{err:?}"
    );
    assert!(!client.is_extended_connect_enabled());
}

#[tokio::test]
async fn http1_upgrades_still_work_on_the_same_server() {
    let (addr, _) = echo_server(Transport::H2c, WebSocketConfig::default(), true).await;
    let (mut ws, _) = volley::connect(&format!("ws://{addr}/h1")).await.unwrap();
    ws.send("over http/1.1").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("over http/1.1")
    );
    let _: Option<Empty<Bytes>> = None;
}
