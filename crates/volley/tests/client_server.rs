//! The tokio layer end to end over real sockets: messages, fragments, pings,
//! close, split halves, backpressure, keepalive, hyper upgrade and TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use volley::{ClientBuilder, CloseCode, Message, WebSocket, WebSocketConfig};

/// An echo server on a free port.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut ws = volley::accept(tcp).await.unwrap();
                while let Some(Ok(m)) = ws.recv().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn client_with(
    addr: SocketAddr,
    config: WebSocketConfig,
) -> WebSocket<volley::MaybeTlsStream> {
    ClientBuilder::new(format!("ws://{addr}/"))
        .config(config)
        .connect()
        .await
        .unwrap()
        .0
}

/// A server for one connection that sends "last words" and then closes first
/// with `code` and `reason`.
async fn server_closing_first(code: CloseCode, reason: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = volley::accept(tcp).await.unwrap();
        ws.send("last words").await.unwrap();
        ws.close(code, reason).await.unwrap();
    });
    addr
}

async fn client(addr: SocketAddr) -> WebSocket<volley::MaybeTlsStream> {
    volley::connect(&format!("ws://{addr}/")).await.unwrap().0
}

#[tokio::test]
async fn text_binary_large_and_fragmented_round_trip() {
    let addr = echo_server().await;
    let mut ws = client(addr).await;
    ws.send("héllo 🌍").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("héllo 🌍"));
    ws.send(vec![0u8, 1, 2, 3]).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 3])
    );
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    ws.send(big.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_bytes(), &big[..]);
    ws.send_fragmented("fragmented text, κόσμε", 3)
        .await
        .unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("fragmented text, κόσμε")
    );
    ws.close(CloseCode(4000), "bye").await.unwrap();
    let echoed = ws.close_frame().unwrap();
    assert_eq!(echoed.code, CloseCode(4000));
    assert!(ws.recv().await.is_none());
}

#[tokio::test]
async fn server_close_reaches_the_client_as_none_with_the_frame() {
    let addr = server_closing_first(CloseCode::GOING_AWAY, "restarting").await;
    let mut ws = client(addr).await;
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("last words")
    );
    assert!(ws.recv().await.is_none());
    let frame = ws.close_frame().unwrap();
    assert_eq!(
        (frame.code, frame.reason.as_str()),
        (CloseCode::GOING_AWAY, "restarting")
    );
}

#[tokio::test]
async fn split_halves_work_from_different_tasks() {
    let addr = echo_server().await;
    let (mut rx, mut tx) = client(addr).await.split();
    const N: usize = 2000;
    let writer = tokio::spawn(async move {
        for i in 0..N {
            tx.feed(format!("message {i}")).await.unwrap();
        }
        tx.flush().await.unwrap();
        tx
    });
    for i in 0..N {
        let m = rx.recv().await.unwrap().unwrap();
        assert_eq!(m.as_text().unwrap(), format!("message {i}"));
    }
    let mut tx = writer.await.unwrap();
    tx.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(rx.recv().await.is_none());
    assert!(rx.unsplit(tx).is_some());
}

#[tokio::test]
async fn stream_and_sink() {
    let addr = echo_server().await;
    let mut ws = client(addr).await;
    ws.feed("a").await.unwrap();
    SinkExt::send(&mut ws, Message::text("b")).await.unwrap();
    let got: Vec<Message> = ws.by_ref().take(2).map(Result::unwrap).collect().await;
    assert_eq!(got, [Message::text("a"), Message::text("b")]);
}

#[tokio::test]
async fn feed_waits_past_the_high_water_mark() {
    // A peer that completes the handshake and then never reads.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ws = volley::accept(tcp).await.unwrap();
        let _ = hold_rx.await;
    });
    let hwm = 64 << 10;
    let config = WebSocketConfig::builder()
        .write_high_water_mark(hwm)
        .build()
        .unwrap();
    let mut ws = client_with(addr, config).await;
    let chunk = vec![1u8; 16 << 10];
    let mut sent = 0usize;
    let blocked = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            ws.feed(volley::proto::Message::binary(chunk.clone()))
                .await
                .unwrap();
            sent += chunk.len();
        }
    })
    .await;
    assert!(blocked.is_err(), "feed never waited");
    // What is buffered on our side stays bounded by the mark plus one message.
    assert!(
        ws.buffered_amount() <= hwm + chunk.len() + 64,
        "buffered {}",
        ws.buffered_amount()
    );
    assert!(sent > hwm, "the kernel's buffers took {sent} bytes first");
    drop(hold_tx);
}

#[tokio::test]
async fn keepalive_measures_rtt() {
    let addr = echo_server().await;
    let config = WebSocketConfig::builder()
        .keepalive(Duration::from_millis(50), Duration::from_secs(5))
        .build()
        .unwrap();
    let mut ws = client_with(addr, config).await;
    // Keep reading (which drives keepalive) until a round trip was measured.
    let measured = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if ws.rtt().is_some() {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), ws.recv()).await;
        }
    })
    .await;
    assert!(measured.is_ok());
}

#[tokio::test]
async fn keepalive_closes_1011_when_pongs_stop() {
    // A server that upgrades, then goes silent and records what it receives.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tcp.read(&mut buf).await.unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).into_owned();
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = volley::proto::handshake::accept_key(key.as_bytes());
        tcp.write_all(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").as_bytes()).await.unwrap();
        let mut received = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut received)).await;
        received
    });
    let config = WebSocketConfig::builder()
        .keepalive(Duration::from_millis(50), Duration::from_millis(100))
        .protocol(
            volley::Config::builder()
                .close_timeout(Duration::from_millis(200))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut ws = client_with(addr, config).await;
    let result = tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .unwrap();
    assert!(
        matches!(result, Some(Err(volley::Error::KeepaliveTimeout))),
        "{result:?}"
    );
    drop(ws);
    // The client sent a ping, then a masked close frame with code 1011.
    let received = server.await.unwrap();
    let mut core =
        volley::proto::Connection::new(volley::Role::Server, volley::Config::default(), None);
    core.receive(&received);
    let events: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(
        matches!(events.first(), Some(volley::proto::Event::Ping(_))),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, volley::proto::Event::Close(Some(f)) if f.code == CloseCode::INTERNAL_ERROR)),
        "{events:?}"
    );
}

#[tokio::test]
async fn hyper_upgrade() {
    use http_body_util::{Either, Empty, Full};
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(
                    |mut req: hyper::Request<hyper::body::Incoming>| async move {
                        let response =
                            match volley::upgrade(&mut req, WebSocketConfig::default(), |_| {
                                Ok(volley::Accept::new())
                            }) {
                                Ok((response, upgrading)) => {
                                    tokio::spawn(async move {
                                        let mut ws = upgrading.await.unwrap();
                                        while let Some(Ok(m)) = ws.recv().await {
                                            ws.send(m).await.unwrap();
                                        }
                                    });
                                    response.map(Either::Left)
                                }
                                Err(rejection) => {
                                    rejection.map(|b| Either::Right(Full::new(Bytes::from(b))))
                                }
                            };
                        Ok::<_, std::convert::Infallible>(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
                let _: Option<Empty<Bytes>> = None;
            });
        }
    });
    let mut ws = client(addr).await;
    ws.send("through hyper").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("through hyper")
    );
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"));
}

/// `upgrade_with`: the WebSocket runs on the server's own stream, taken back
/// out of hyper, and first reads what hyper read past the request (a frame
/// the client sent without waiting for the 101).
#[tokio::test]
async fn hyper_upgrade_with_the_servers_own_stream() {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = service_fn(
            |mut req: hyper::Request<hyper::body::Incoming>| async move {
                let (response, upgrading) = volley::upgrade_with(
                    &mut req,
                    WebSocketConfig::default(),
                    |_| Ok(volley::Accept::new()),
                    |upgraded| {
                        let parts = upgraded
                            .downcast::<TokioIo<TcpStream>>()
                            .expect("hyper's connection is the TcpStream it was given");
                        (parts.io.into_inner(), parts.read_buf)
                    },
                )
                .unwrap();
                tokio::spawn(async move {
                    let mut ws: WebSocket<TcpStream> = upgrading.await.unwrap();
                    while let Some(Ok(m)) = ws.recv().await {
                        ws.send(m).await.unwrap();
                    }
                });
                Ok::<_, std::convert::Infallible>(response)
            },
        );
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades()
            .await;
    });
    // The request and a masked "early" text frame in one write.
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    let mask = [1u8, 2, 3, 4];
    request.extend_from_slice(&[0x81, 0x80 | 5]);
    request.extend_from_slice(&mask);
    request.extend(b"early".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&request).await.unwrap();
    // The 101, then the echo.
    let echo = [0x81, 5, b'e', b'a', b'r', b'l', b'y'];
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let mut got = Vec::new();
        while !got.ends_with(&echo) {
            let mut buf = [0u8; 512];
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        got
    })
    .await
    .expect("the early frame was echoed");
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`, and
/// that certificate.
fn tls_acceptor() -> (
    tokio_rustls::TlsAcceptor,
    rustls::pki_types::CertificateDer<'static>,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let provider = volley::crypto_provider();
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(server_config)),
        cert_der,
    )
}

#[tokio::test]
async fn wss_with_rustls() {
    let (acceptor, cert_der) = tls_acceptor();
    let provider = volley::crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut ws = volley::accept(tls).await.unwrap();
        while let Some(Ok(m)) = ws.recv().await {
            ws.send(m).await.unwrap();
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (mut ws, _) = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .tls_config(Arc::new(client_config))
        .connect()
        .await
        .unwrap();
    ws.send("secret").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("secret"));
}

#[tokio::test]
async fn a_connection_keeps_no_write_buffer_once_a_burst_is_written() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let mut server =
        WebSocket::from_raw_socket(b, volley::Role::Server, WebSocketConfig::default());
    let mut client =
        WebSocket::from_raw_socket(a, volley::Role::Client, WebSocketConfig::default());
    // Small frames are copied into the write buffers, which grow with the
    // burst (the copy path: below the size sent by reference).
    for i in 0..500 {
        server.feed(format!("publication {i:0>100}")).await.unwrap();
        assert!(server.write_buffer_capacity() > 0 || i == 0);
    }
    server.flush().await.unwrap();
    assert_eq!(server.write_buffer_capacity(), 0, "released once written");
    for i in 0..500 {
        let m = client.recv().await.unwrap().unwrap();
        assert_eq!(m, Message::text(format!("publication {i:0>100}")));
    }
    // And again after a single message.
    server.send("one more").await.unwrap();
    assert_eq!(server.write_buffer_capacity(), 0);
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::text("one more")
    );
}

/// A transport that keeps what is written until it is flushed, as TLS
/// does with the tail of a write when the socket is full: a Pong written
/// while reading must still reach the peer.
#[tokio::test]
async fn a_pong_written_while_reading_is_flushed_through_a_buffering_transport() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let buffering = tokio::io::BufWriter::with_capacity(1 << 16, b);
    let mut server =
        WebSocket::from_raw_socket(buffering, volley::Role::Server, WebSocketConfig::default());
    let server = tokio::spawn(async move { while let Some(Ok(_)) = server.recv().await {} });
    let mut client =
        WebSocket::from_raw_socket(a, volley::Role::Client, WebSocketConfig::default());
    client.ping(b"are you there").await.unwrap();
    // Read (which handles the Pong) until it came; unflushed, it never does.
    let pong = tokio::time::timeout(
        Duration::from_secs(10),
        std::future::poll_fn(|cx| {
            let _ = client.poll_next_unpin(cx);
            if client.pongs_received() > 0 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        }),
    )
    .await;
    assert!(pong.is_ok(), "the Pong stayed in the transport's buffer");
    server.abort();
}

#[tokio::test]
async fn try_recv_drains_what_one_read_brought() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut client =
        WebSocket::from_raw_socket(a, volley::Role::Client, WebSocketConfig::default());
    let mut server =
        WebSocket::from_raw_socket(b, volley::Role::Server, WebSocketConfig::default());
    assert!(server.try_recv().is_none());
    for i in 0..3 {
        client.feed(format!("m{i}")).await.unwrap();
    }
    client.flush().await.unwrap();
    // One read brings all three; the first comes from recv, the rest without I/O.
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::text("m0"));
    assert_eq!(server.try_recv(), Some(Message::text("m1")));
    assert_eq!(server.try_recv(), Some(Message::text("m2")));
    assert_eq!(server.try_recv(), None);
}

#[tokio::test]
async fn recv_ends_with_none_after_the_server_closes_first() {
    // The server sends one message and closes first; keepalive runs on the
    // client as in examples/interop_client.rs.
    let addr = server_closing_first(CloseCode::NORMAL, "done").await;
    let config = WebSocketConfig::builder()
        .keepalive(Duration::from_millis(20), Duration::from_secs(5))
        .build()
        .unwrap();
    let mut ws = client_with(addr, config).await;
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        let mut received = Vec::new();
        while let Some(m) = ws.recv().await {
            received.push(m.unwrap());
        }
        received
    })
    .await
    .expect("the natural recv loop ends after the server's close");
    assert_eq!(received, [Message::text("last words")]);
    assert_eq!(
        ws.close_frame().map(|f| (f.code, f.reason.to_string())),
        Some((CloseCode::NORMAL, "done".into()))
    );
    // The end of the stream stays the end: None again, and sending fails.
    for _ in 0..3 {
        assert!(ws.recv().await.is_none());
    }
    assert!(ws.send("late").await.is_err());
}

/// Accepts one connection, reads the request head, writes `answer` and
/// keeps the connection open until the client goes.
async fn answering(answer: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = tcp.read(&mut buf).await;
        let _ = tcp.write_all(answer).await;
        // Keep-alive: the body's end comes from Content-Length, not a close.
        let _ = tcp.read(&mut buf).await;
    });
    addr
}

#[tokio::test]
async fn a_refused_handshake_keeps_the_servers_explanation() {
    let addr = answering(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 41\r\n\r\n\
          offer the WebSocket subprotocol volley.v1",
    )
    .await;
    let e = ClientBuilder::new(format!("ws://{addr}/"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "handshake failed: server answered 400 Bad Request instead of 101 Switching \
         Protocols: offer the WebSocket subprotocol volley.v1"
    );
}

#[tokio::test]
async fn wss_to_a_plain_server_says_it_may_not_speak_tls() {
    let addr = answering(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
    let e = ClientBuilder::new(format!("wss://localhost:{}/", addr.port()))
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "TLS handshake with localhost:{} failed",
            addr.port()
        )),
        "{e}"
    );
    assert!(
        e.ends_with("(does the server speak TLS? use ws:// for a plain server)"),
        "{e}"
    );
}

#[tokio::test]
async fn ws_to_a_tls_server_says_to_use_wss() {
    let (acceptor, _) = tls_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let e = ClientBuilder::new(format!("ws://{addr}/"))
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "handshake failed: the server answered with TLS, not HTTP: use wss:// for this server"
    );
}

#[tokio::test]
async fn a_refused_tcp_connect_names_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = ClientBuilder::new(format!("ws://{addr}/"))
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("cannot connect to 127.0.0.1:{}: ", addr.port())),
        "{e}"
    );
}
