//! Token keys from a JWKS URL (`auth.jwks_url`), the way identity providers
//! publish them: fetched at start and every `auth.jwks_refresh_s`, and again
//! (at most every `auth.jwks_min_refetch_ms`) when a token names an unknown
//! `kid`, so a rotated key works at once. Each fetch is bounded in time
//! (`auth.jwks_timeout_ms`, connect to last byte) and size
//! (`auth.jwks_max_bytes`); a failed fetch keeps the keys of the last good
//! one.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::auth::Key;
use crate::config::{AuthConfig, ConfigError};

/// Why a JWKS fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum JwksError {
    /// Connecting, TLS or the HTTP exchange failed.
    #[error("{url}: {source}")]
    Io {
        /// The JWKS URL.
        url: Uri,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("{url}: {source}")]
    Http {
        /// The JWKS URL.
        url: Uri,
        /// Why.
        source: hyper::Error,
    },
    /// The whole fetch took longer than `auth.jwks_timeout_ms`.
    #[error("{url}: no complete answer within {timeout:?}")]
    Timeout {
        /// The JWKS URL.
        url: Uri,
        /// The limit.
        timeout: Duration,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The JWKS URL.
        url: Uri,
        /// The status.
        status: u16,
    },
    /// The document is larger than `auth.jwks_max_bytes`.
    #[error("{url}: the document exceeds {max} bytes")]
    TooLarge {
        /// The JWKS URL.
        url: Uri,
        /// The limit.
        max: usize,
    },
    /// The document is not a JWK set.
    #[error("{url}: not a JWK set: {source}")]
    Json {
        /// The JWKS URL.
        url: Uri,
        /// Why.
        source: serde_json::Error,
    },
}

/// The keys of one JWKS URL, shared by the verifier and the refresh task.
pub(crate) struct Jwks {
    url: Uri,
    host: String,
    port: u16,
    tls: Option<TlsConnector>,
    refresh: Duration,
    min_refetch: Duration,
    timeout: Duration,
    max_bytes: usize,
    keys: RwLock<Arc<Vec<Key>>>,
    wanted: tokio::sync::Notify,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Checks the URL (`http://` or `https://`) and the limits.
    pub(crate) fn new(url: &str, config: &AuthConfig) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::Key(format!("auth.jwks_url {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("use http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        for (value, name) in [
            (config.jwks_refresh_s as usize, "jwks_refresh_s"),
            (config.jwks_min_refetch_ms as usize, "jwks_min_refetch_ms"),
            (config.jwks_timeout_ms as usize, "jwks_timeout_ms"),
            (config.jwks_max_bytes, "jwks_max_bytes"),
        ] {
            if value == 0 {
                return Err(ConfigError::Key(format!(
                    "auth.{name} must be greater than 0"
                )));
            }
        }
        let tls = https.then(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = volley::crypto_provider();
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    TlsConnector::from(Arc::new(
                        b.with_root_certificates(roots).with_no_client_auth(),
                    ))
                })
        });
        let tls = tls.transpose().map_err(|e| bad(&format!("TLS: {e}")))?;
        Ok(Self {
            url: uri,
            host,
            port,
            tls,
            refresh: Duration::from_secs(config.jwks_refresh_s),
            min_refetch: Duration::from_millis(config.jwks_min_refetch_ms),
            timeout: Duration::from_millis(config.jwks_timeout_ms),
            max_bytes: config.jwks_max_bytes,
            keys: RwLock::new(Arc::new(Vec::new())),
            wanted: tokio::sync::Notify::new(),
        })
    }

    /// The keys of the last good fetch.
    pub(crate) fn keys(&self) -> Arc<Vec<Key>> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, keys: Vec<Key>) {
        let keys = Arc::new(keys);
        match self.keys.write() {
            Ok(mut slot) => *slot = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    /// A token named a `kid` no key has: fetch again soon.
    pub(crate) fn unknown_kid(&self, kid: &str) {
        tracing::debug!("token key {kid:?} unknown: refreshing the JWKS");
        self.wanted.notify_one();
    }

    /// Fetches now, then every `jwks_refresh_s` (and when asked, at most
    /// every `jwks_min_refetch_ms`), until dropped.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!("JWKS {}: {} keys", self.url, keys.len());
                    self.store(keys);
                }
                Err(e) => tracing::warn!("JWKS fetch failed, keeping the last keys: {e}"),
            }
            let soonest = tokio::time::sleep(self.min_refetch.min(self.refresh));
            tokio::select! {
                () = tokio::time::sleep(self.refresh) => {}
                () = async { self.wanted.notified().await; soonest.await } => {}
            }
        }
    }

    /// One bounded fetch.
    pub(crate) async fn fetch(&self) -> Result<Vec<Key>, JwksError> {
        let body = tokio::time::timeout(self.timeout, self.download())
            .await
            .map_err(|_| JwksError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            })??;
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(&body).map_err(|source| JwksError::Json {
                url: self.url.clone(),
                source,
            })?;
        Ok(set.keys.iter().filter_map(Key::from_jwk).collect())
    }

    async fn download(&self) -> Result<Bytes, JwksError> {
        let io = |source| JwksError::Io {
            url: self.url.clone(),
            source,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(io)?;
        match &self.tls {
            None => self.get(tcp).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
                let stream = tls.connect(name, tcp).await.map_err(io)?;
                self.get(stream).await
            }
        }
    }

    async fn get<S>(&self, stream: S) -> Result<Bytes, JwksError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http = |source| JwksError::Http {
            url: self.url.clone(),
            source,
        };
        let too_large = || JwksError::TooLarge {
            url: self.url.clone(),
            max: self.max_bytes,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let connection = tokio::spawn(connection);
        let path = self
            .url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let authority = self
            .url
            .authority()
            .map_or(self.host.clone(), |a| a.to_string());
        let request = Request::get(path)
            .header(header::HOST, authority)
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new());
        let request = request.map_err(|e| JwksError::Io {
            url: self.url.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        let result = async {
            let response = sender.send_request(request).await.map_err(http)?;
            if !response.status().is_success() {
                return Err(JwksError::Status {
                    url: self.url.clone(),
                    status: response.status().as_u16(),
                });
            }
            let declared = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > self.max_bytes as u64) {
                return Err(too_large());
            }
            match Limited::new(response.into_body(), self.max_bytes)
                .collect()
                .await
            {
                Ok(body) => Ok(body.to_bytes()),
                Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
                Err(e) => match e.downcast::<hyper::Error>() {
                    Ok(e) => Err(http(*e)),
                    Err(e) => Err(JwksError::Io {
                        url: self.url.clone(),
                        source: std::io::Error::other(e),
                    }),
                },
            }
        }
        .await;
        connection.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::auth::{TokenError, TokenVerifier};

    const WAIT: Duration = Duration::from_secs(10);

    /// What the test server answers: a status and a body, or nothing at all.
    #[derive(Clone)]
    enum Answer {
        Json(u16, String),
        Silent,
    }

    /// A local HTTP server answering every request with the current answer;
    /// its address and the number of requests read.
    async fn serve(answer: Arc<Mutex<Answer>>) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let requests = count.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                requests.fetch_add(1, Ordering::SeqCst);
                let answer = answer.lock().unwrap().clone();
                match answer {
                    Answer::Silent => held.push(s),
                    Answer::Json(status, body) => {
                        let response = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = s.write_all(response.as_bytes()).await;
                    }
                }
            }
        });
        (addr, count)
    }

    fn key_file(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(name);
        std::fs::read(path).unwrap()
    }

    fn jwk(key: &DecodingKey, alg: Option<Algorithm>, kid: &str) -> Jwk {
        let mut jwk = Jwk::from_decoding_key(key, alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        jwk
    }

    fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &json!({"sub": "42"}), key).unwrap()
    }

    fn config(addr: SocketAddr) -> AuthConfig {
        AuthConfig {
            jwks_url: Some(format!("http://{addr}/.well-known/jwks.json")),
            jwks_min_refetch_ms: 50,
            jwks_timeout_ms: 300,
            ..AuthConfig::default()
        }
    }

    /// Keys from a JWKS URL verify tokens by `kid`, each only with its own
    /// algorithm (RS256 given by `alg`, ES256 from the EC key's curve), and a
    /// token naming an unknown `kid` makes the hub fetch again, so a key
    /// published later works.
    #[tokio::test]
    async fn keys_from_a_jwks_url_by_kid_and_a_rotation() {
        let rsa_public = DecodingKey::from_rsa_pem(&key_file("rsa.pub.pem")).unwrap();
        let ec_public = DecodingKey::from_ec_pem(&key_file("ec.pub.pem")).unwrap();
        let rsa = EncodingKey::from_rsa_pem(&key_file("rsa.key.pem")).unwrap();
        let ec = EncodingKey::from_ec_pem(&key_file("ec.key.pem")).unwrap();
        let first = JwkSet {
            keys: vec![
                jwk(&rsa_public, Some(Algorithm::RS256), "r1"),
                jwk(&ec_public, None, "e1"),
            ],
        };
        let answer = Arc::new(Mutex::new(Answer::Json(
            200,
            serde_json::to_string(&first).unwrap(),
        )));
        let (addr, requests) = serve(answer.clone()).await;
        let verifier = TokenVerifier::new(&config(addr)).unwrap();
        let jwks = verifier.jwks().unwrap().clone();
        let task = tokio::spawn(jwks.clone().run());
        let deadline = tokio::time::Instant::now() + WAIT;
        while jwks.keys().len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "the first fetch");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let connect = |t: &str| verifier.connect(t).map(|c| c.sub);
        assert_eq!(
            connect(&sign(Algorithm::RS256, &rsa, Some("r1"))),
            Ok("42".into())
        );
        assert_eq!(
            connect(&sign(Algorithm::ES256, &ec, Some("e1"))),
            Ok("42".into())
        );
        assert_eq!(connect(&sign(Algorithm::ES256, &ec, None)), Ok("42".into()));
        // The wrong key for the kid, an algorithm the key is not for.
        assert_eq!(
            connect(&sign(Algorithm::ES256, &ec, Some("r1"))),
            Err(TokenError::Invalid)
        );
        // A new key is published; a token naming it asks for a fetch.
        let newer = rcgen::KeyPair::generate().unwrap();
        let newer_private = EncodingKey::from_ec_pem(newer.serialize_pem().as_bytes()).unwrap();
        let newer_public = DecodingKey::from_ec_pem(newer.public_key_pem().as_bytes()).unwrap();
        let mut second = first.clone();
        second
            .keys
            .push(jwk(&newer_public, Some(Algorithm::ES256), "e2"));
        *answer.lock().unwrap() = Answer::Json(200, serde_json::to_string(&second).unwrap());
        let rotated = sign(Algorithm::ES256, &newer_private, Some("e2"));
        let fetched = requests.load(Ordering::SeqCst);
        assert_eq!(connect(&rotated), Err(TokenError::Invalid));
        while connect(&rotated).is_err() {
            assert!(tokio::time::Instant::now() < deadline, "the refetch");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            requests.load(Ordering::SeqCst),
            fetched + 1,
            "one fetch, asked for"
        );
        task.abort();
    }

    /// A fetch is bounded in size and time, and an error status fails it.
    #[tokio::test]
    async fn a_jwks_fetch_is_bounded() {
        let big = serde_json::to_string(&json!({"keys": [], "pad": "x".repeat(2000)})).unwrap();
        let answer = Arc::new(Mutex::new(Answer::Json(200, big)));
        let (addr, _) = serve(answer.clone()).await;
        let mut c = config(addr);
        c.jwks_max_bytes = 1000;
        let jwks = Jwks::new(c.jwks_url.as_deref().unwrap(), &c).unwrap();
        assert!(matches!(
            jwks.fetch().await,
            Err(JwksError::TooLarge { max: 1000, .. })
        ));
        *answer.lock().unwrap() = Answer::Json(500, "{}".into());
        assert!(matches!(
            jwks.fetch().await,
            Err(JwksError::Status { status: 500, .. })
        ));
        *answer.lock().unwrap() = Answer::Json(200, "not json".into());
        assert!(matches!(jwks.fetch().await, Err(JwksError::Json { .. })));
        *answer.lock().unwrap() = Answer::Silent;
        let started = tokio::time::Instant::now();
        assert!(matches!(jwks.fetch().await, Err(JwksError::Timeout { .. })));
        assert!(started.elapsed() < WAIT);
        *answer.lock().unwrap() = Answer::Json(200, r#"{"keys": []}"#.into());
        assert_eq!(jwks.fetch().await.unwrap().len(), 0);
    }
}
