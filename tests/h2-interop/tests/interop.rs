//! volley and yawc over HTTP/2 extended CONNECT (RFC 8441), both directions,
//! over TLS (ALPN h2) and h2c, with and without permessage-deflate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{Either, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use volley::{Accept, ClientBuilder, CloseCode, Message, WebSocketConfig};
use yawc::{Frame, OpCode};

const MESSAGES: usize = 200;

/// WebSockets volley's server accepted with permessage-deflate.
static VOLLEY_COMPRESSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Message `i`: text or binary, 0 to about 20 KB, content tied to `i`.
fn payload(i: usize) -> (bool, Vec<u8>) {
    let len = (i * 997) % 20_000;
    let bytes = (0..len).map(|k| b'a' + ((k + i) % 26) as u8).collect();
    (i % 2 == 0, bytes)
}

#[derive(Clone, Copy)]
enum Server {
    Volley,
    Yawc,
}

/// A self-signed certificate for "localhost": the acceptor (ALPN h2 and
/// http/1.1) and a client configuration trusting it, offering h2.
fn test_tls() -> (tokio_rustls::TlsAcceptor, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        Arc::new(client),
    )
}

type Body = Either<Empty<Bytes>, Full<Bytes>>;

/// Answers one request: a WebSocket (HTTP/1.1 or HTTP/2) that echoes, by
/// volley's or yawc's server side.
async fn handle(
    server: Server,
    mut req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    Ok(match server {
        Server::Volley => {
            match volley::upgrade(&mut req, WebSocketConfig::default(), |_| Ok(Accept::new())) {
                Ok((response, upgrading)) => {
                    tokio::spawn(async move {
                        let Ok(mut ws) = upgrading.await else { return };
                        if ws.is_compressed() {
                            VOLLEY_COMPRESSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        while let Some(Ok(m)) = ws.recv().await {
                            if ws.send(m).await.is_err() {
                                break;
                            }
                        }
                    });
                    response.map(Either::Left)
                }
                Err(rejection) => rejection.map(|b| Either::Right(Full::new(Bytes::from(b)))),
            }
        }
        Server::Yawc => {
            let options = yawc::Options::default().with_low_latency_compression();
            let (response, upgrading) = yawc::WebSocket::upgrade_with_options(&mut req, options)
                .expect("a WebSocket request");
            tokio::spawn(async move {
                let Ok(mut ws) = upgrading.await else { return };
                while let Some(frame) = ws.next().await {
                    let echo = match frame.opcode() {
                        OpCode::Text => Frame::text(frame.into_payload()),
                        OpCode::Binary => Frame::binary(frame.into_payload()),
                        OpCode::Close => {
                            // Answer the closing handshake (an error means
                            // yawc has answered it already).
                            let normal = yawc::close::CloseCode::Normal;
                            let _ = ws.send(Frame::close(normal, b"")).await;
                            break;
                        }
                        _ => continue,
                    };
                    if ws.send(echo).await.is_err() {
                        break;
                    }
                }
            });
            response.map(Either::Left)
        }
    })
}

/// A hyper server with extended CONNECT on a free port; with TLS when
/// `tls` is given.
async fn serve(server: Server, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http2().enable_connect_protocol();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (builder, tls) = (builder.clone(), tls.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(server, req));
                let _ = match tls {
                    Some(tls) => {
                        let Ok(tls) = tls.accept(tcp).await else {
                            return;
                        };
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
    addr
}

/// yawc's client, over HTTP/2, against volley's server: every message comes
/// back byte for byte.
async fn yawc_client_volley_server(tls: bool, compression: bool) {
    let (acceptor, client_tls) = test_tls();
    let addr = serve(Server::Volley, tls.then_some(acceptor)).await;
    let url = match tls {
        true => format!("wss://localhost:{}/yawc", addr.port()),
        false => format!("ws://{addr}/yawc"),
    };
    let mut options = yawc::Options::default();
    if compression {
        options = options.with_low_latency_compression();
    }
    let mut ws = yawc::WebSocket::connect(url.parse().unwrap())
        .with_connector(tokio_rustls::TlsConnector::from(client_tls))
        .with_options(options)
        .http_version(yawc::HttpVersion::Http2)
        .await
        .unwrap();
    for i in 0..MESSAGES {
        let (text, bytes) = payload(i);
        let frame = match text {
            true => Frame::text(bytes.clone()),
            false => Frame::binary(bytes.clone()),
        };
        ws.send(frame).await.unwrap();
        let echo = ws.next().await.unwrap();
        let expected = if text { OpCode::Text } else { OpCode::Binary };
        assert_eq!(echo.opcode(), expected, "message {i}");
        assert_eq!(echo.payload().as_ref(), &bytes[..], "message {i}");
    }
    ws.send(Frame::close(yawc::close::CloseCode::Normal, b"done"))
        .await
        .unwrap();
    if compression {
        let compressed = VOLLEY_COMPRESSED.load(std::sync::atomic::Ordering::SeqCst);
        assert!(compressed >= 1, "permessage-deflate negotiated with yawc");
    }
}

/// volley's `h2::Client` against yawc's server: ten WebSockets on one
/// HTTP/2 connection, every message back byte for byte.
async fn volley_client_yawc_server(tls: bool) {
    let (acceptor, client_tls) = test_tls();
    let addr = serve(Server::Yawc, tls.then_some(acceptor)).await;
    let url = match tls {
        true => format!("https://localhost:{}", addr.port()),
        false => format!("http://{addr}"),
    };
    let client = ClientBuilder::new(url)
        .tls_config(client_tls)
        .connect_http2()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..10 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ws, response) = client.websocket(&format!("/volley/{n}")).await.unwrap();
            assert_eq!(response.status(), 200);
            assert!(ws.is_compressed(), "permessage-deflate with yawc");
            for i in 0..MESSAGES {
                let (text, bytes) = payload(i + n);
                let message = match text {
                    true => Message::text(String::from_utf8(bytes).unwrap()),
                    false => Message::binary(bytes),
                };
                ws.send(message.clone()).await.unwrap();
                assert_eq!(ws.recv().await.unwrap().unwrap(), message, "{n}/{i}");
            }
            ws.close(CloseCode::NORMAL, "done").await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn yawc_client_to_volley_server_tls() {
    yawc_client_volley_server(true, false).await;
}

#[tokio::test]
async fn yawc_client_to_volley_server_h2c_with_deflate() {
    yawc_client_volley_server(false, true).await;
}

#[tokio::test]
async fn volley_client_to_yawc_server_tls() {
    volley_client_yawc_server(true).await;
}

#[tokio::test]
async fn volley_client_to_yawc_server_h2c() {
    volley_client_yawc_server(false).await;
}
