//! The listener: TCP (optionally TLS), HTTP/1.1 with upgrades and HTTP/2
//! with extended CONNECT (over TLS by ALPN `h2`, or h2c when configured),
//! background tasks, and the graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::client_ip::TrustedProxies;
use crate::config::{ConfigError, HubConfig, TlsConfig};
use crate::http::{RemoteIp, router};
use crate::hub::Hub;
use crate::lane::Lanes;
use crate::proxy_protocol::{self, Rewind};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// A connection thread could not be started.
    #[error("cannot start connection thread {thread}: {source}")]
    Thread {
        /// The thread (1 or more; 0 is the caller's runtime).
        thread: usize,
        /// Why.
        source: std::io::Error,
    },
}

/// Why the TLS certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The key file holds no private key.
    #[error("{}: no private key found", path.display())]
    NoKey {
        /// The file.
        path: std::path::PathBuf,
    },
    /// rustls refused the certificate and key (they do not match, or the key
    /// type is not supported).
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// A bound hub, ready to run.
pub struct Server {
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    demo: bool,
    lanes: Option<Lanes>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("threads", &self.lanes.as_ref().map_or(1, Lanes::count))
            .finish_non_exhaustive()
    }
}

/// How the drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections open when the drain started.
    pub connections_at_start: usize,
    /// Connections closed with 1001 at the end of the grace period.
    pub closed_at_deadline: usize,
}

impl Server {
    /// Validates the configuration, loads keys and binds the listener.
    pub async fn bind(config: HubConfig) -> Result<Self, ServeError> {
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let addr = config.listen;
        let hub = Hub::new(config)?;
        let listener = listen(addr, hub.config().limits.listen_backlog)
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Self {
            hub,
            listener,
            tls,
            demo: false,
            lanes: None,
        })
    }

    /// Serves connections on `threads` threads: the runtime that calls
    /// [`Server::run`] and `threads - 1` more, each a current-thread runtime
    /// of its own. Accepted connections are dealt to them in turn; each
    /// thread runs its connections and the fan-out to them, so a publication
    /// reaches every thread's share of the subscribers in parallel. With 1
    /// (the default) everything runs on the caller's runtime. Starts the
    /// threads; they stop when the server is dropped or `run` returns.
    pub fn with_threads(mut self, threads: usize) -> Result<Self, ServeError> {
        self.lanes = None;
        if threads > 1 {
            let lanes = Lanes::start(&self.hub, threads)
                .map_err(|(thread, source)| ServeError::Thread { thread, source })?;
            self.lanes = Some(lanes);
        }
        Ok(self)
    }

    /// Adds the demo: the dashboard and chat page at `/`, `/demo/token`
    /// (needs `auth.hmac_secret`), and a ticker publishing to `ticker:demo`
    /// twice a second. The configuration should have the demo namespaces
    /// ([`HubConfig::demo`], [`HubConfig::add_demo_namespaces`]).
    pub fn with_demo(mut self) -> Self {
        self.demo = true;
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes, then drains: new upgrades get 503,
    /// clients are told to reconnect (4001, jittered), and those still open
    /// after the grace period are closed with 1001.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> DrainReport {
        let Self {
            hub,
            listener,
            tls,
            demo,
            mut lanes,
        } = self;
        if lanes.is_none() {
            // One thread: its fan-out task still wakes subscribers in turns
            // (crate::lane). Starting one lane starts no thread, so it
            // cannot fail.
            lanes = Lanes::start(&hub, 1).ok();
        }
        if let Some(lanes) = &mut lanes {
            lanes.run_first();
        }
        let app = router(hub.clone(), demo.then(crate::demo::routes));
        let mut background = tokio::task::JoinSet::new();
        background.spawn(hub.clone().background());
        if let Some(jwks) = hub.verifier().jwks() {
            background.spawn(jwks.clone().run());
        }
        if demo {
            background.spawn(crate::demo::ticker(hub.clone()));
        }
        let trusted = Arc::new(TrustedProxies::new(&hub.config().trusted_proxies));
        let mut next_lane = 0usize;
        let mut accept = |stream: TcpStream, peer: SocketAddr| {
            let app = app.clone();
            let tls = tls.clone();
            let hub = hub.clone();
            let trusted = trusted.clone();
            let limits = &hub.config().limits;
            let timeout = Duration::from_millis(limits.handshake_timeout_ms);
            let max_header = limits.proxy_header_max_bytes;
            let head_limit = limits.max_request_head_bytes;
            let h2c = hub.config().h2c;
            let serve = async move |mut stream: TcpStream| {
                let _ = stream.set_nodelay(true);
                // A PROXY header first (before TLS), from trusted proxies only.
                let prelude = match proxy_protocol::read_header(
                    &mut stream,
                    peer,
                    trusted.contains(peer.ip()),
                    max_header,
                    timeout,
                )
                .await
                {
                    Ok(prelude) => prelude,
                    Err(e) => {
                        if let Some(reason) = e.reject_reason() {
                            hub.metrics().rejected(reason);
                            tracing::warn!("closing the connection: {e}");
                        } else {
                            tracing::debug!("closing the connection: {e}");
                        }
                        return;
                    }
                };
                let connection = prelude.source.map_or(peer.ip(), |s| s.ip());
                let stream = Rewind::new(prelude.rest, stream);
                let service = hyper::service::service_fn(move |mut req| {
                    let client = trusted.client(connection, req.headers());
                    req.extensions_mut().insert(RemoteIp(client));
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
                // HTTP/1.1, and HTTP/2 (told apart by its preface) where it
                // may arrive: over TLS, or in clear text when h2c is on.
                let mut http = auto::Builder::new(TokioExecutor::new());
                http.http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(timeout)
                    .max_buf_size(head_limit);
                http.http2()
                    .timer(TokioTimer::new())
                    .enable_connect_protocol()
                    .max_header_list_size(u32::try_from(head_limit).unwrap_or(u32::MAX));
                let result = match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => {
                                http.serve_connection_with_upgrades(TokioIo::new(s), service)
                                    .await
                            }
                            _ => return,
                        }
                    }
                    None if h2c => {
                        http.serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                    }
                    // HTTP/1.1 only (the auto builder cannot be restricted
                    // when it serves upgrades).
                    None => {
                        let mut http1 = hyper::server::conn::http1::Builder::new();
                        http1
                            .timer(TokioTimer::new())
                            .header_read_timeout(timeout)
                            .max_buf_size(head_limit);
                        http1
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await
                            .map_err(Into::into)
                    }
                };
                if let Err(e) = result {
                    tracing::debug!("http connection from {peer} (client {connection}): {e}");
                }
            };
            // Connections are dealt to the threads in turn.
            let lane = lanes.as_ref().map_or(0, |l| {
                next_lane = (next_lane + 1) % l.count();
                next_lane
            });
            match lanes.as_ref().and_then(|l| l.handle(lane)) {
                None => {
                    tokio::spawn(serve(stream));
                }
                Some(runtime) => match stream.into_std() {
                    // Registered again with the lane's own reactor.
                    Ok(stream) => {
                        runtime.spawn(async move {
                            match TcpStream::from_std(stream) {
                                Ok(stream) => serve(stream).await,
                                Err(e) => tracing::warn!("connection from {peer}: {e}"),
                            }
                        });
                    }
                    Err(e) => tracing::warn!("connection from {peer}: {e}"),
                },
            }
        };
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => accept(stream, peer),
                    Err(e) => {
                        // Out of file descriptors and the like: back off a little.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        let connections_at_start = hub.connection_count();
        tracing::info!(
            "draining: {connections_at_start} connections, grace {} ms",
            hub.config().drain.grace_ms
        );
        hub.start_drain();
        let grace = Duration::from_millis(hub.config().drain.grace_ms);
        let deadline = tokio::time::Instant::now() + grace;
        // Keep answering (503 to upgrades, /health/ready 503) during the
        // grace period, until every client has left.
        let idle = hub.wait_idle(grace);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, peer)) = accepted {
                        accept(stream, peer);
                    }
                }
                _ = &mut idle => break,
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        drop(listener);
        let closed_at_deadline = hub.connection_count();
        hub.close_all();
        let left = hub.wait_idle(Duration::from_secs(5)).await;
        if left > 0 {
            tracing::warn!("{left} connections did not finish closing");
        }
        background.abort_all();
        DrainReport {
            connections_at_start,
            closed_at_deadline,
        }
    }
}

/// Opens a listening TCP socket on `addr` whose kernel queue holds `backlog`
/// connections not yet accepted (tokio's `TcpListener::bind` uses 128, which a
/// burst of connects overflows). Must be called inside a tokio runtime.
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Restart at once on the same port, as `TcpListener::bind` does.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

fn load_tls(config: &TlsConfig) -> Result<TlsAcceptor, ServeError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(&config.cert)?;
    let key_pem = read(&config.key)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: config.cert.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: config.cert.clone(),
        }
        .into());
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: config.key.clone(),
        },
        source => TlsError::Pem {
            path: config.key.clone(),
            source,
        },
    })?;
    let provider = volley::crypto_provider();
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::from)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 300 connects to a listener that accepts nothing all complete: the
    /// kernel queues them (with tokio's 128 the 130th SYN is dropped and its
    /// connect hangs).
    #[tokio::test]
    async fn the_default_backlog_holds_a_burst_of_connects() {
        let listener = listen(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            crate::config::DEFAULT_LISTEN_BACKLOG,
        )
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for i in 0..300 {
            let connect = TcpStream::connect(addr);
            match tokio::time::timeout(Duration::from_secs(3), connect).await {
                Ok(Ok(stream)) => held.push(stream),
                other => panic!("connect {i} to a listener with backlog 1024: {other:?}"),
            }
        }
        drop(listener);
    }

    /// Each way a certificate or key can be unusable is its own error, naming
    /// the file.
    #[test]
    fn unusable_tls_files_are_named_in_typed_errors() {
        let dir = std::env::temp_dir().join(format!("volley-tls-errors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        let other_key_path = dir.join("other-key.pem");
        let empty_path = dir.join("empty.pem");
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&other_key_path, other.serialize_pem()).unwrap();
        std::fs::write(&empty_path, "").unwrap();
        let load = |cert: &std::path::Path, key: &std::path::Path| {
            load_tls(&TlsConfig {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
            .map(drop)
        };

        assert!(load(&cert_path, &key_path).is_ok());
        let missing = dir.join("missing.pem");
        match load(&missing, &key_path) {
            Err(ServeError::Tls(TlsError::Read { path, .. })) => assert_eq!(path, missing),
            other => panic!("missing certificate: {other:?}"),
        }
        match load(&empty_path, &key_path) {
            Err(ServeError::Tls(TlsError::NoCertificate { path })) => assert_eq!(path, empty_path),
            other => panic!("empty certificate file: {other:?}"),
        }
        match load(&cert_path, &empty_path) {
            Err(ServeError::Tls(TlsError::NoKey { path })) => assert_eq!(path, empty_path),
            other => panic!("empty key file: {other:?}"),
        }
        match load(&cert_path, &other_key_path) {
            Err(ServeError::Tls(TlsError::Rustls(_))) => {}
            other => panic!("a key that does not match the certificate: {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
