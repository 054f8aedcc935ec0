//! A hub on a free port, `volley.v1` clients and a minimal HTTP client, over
//! real sockets.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use volley::{ClientBuilder, MaybeTlsStream, Message, WebSocket};
use volley_hub::{DrainReport, Hub, HubConfig, NamespaceOptions, Server};

pub mod fallback;
pub mod haproxy;
pub mod redis;

pub const SECRET: &str = "test-secret-0123456789abcdef0123";
pub const API_KEY: &str = "test-api-key";
/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A hub configuration serving TLS with a fresh self-signed certificate for
/// `localhost`, written to a temporary directory named after `tag`. Returns
/// the configuration, the certificate (to trust it) and the directory (for
/// the test to remove).
pub fn tls_config(tag: &str) -> (HubConfig, rcgen::CertifiedKey, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("volley-hub-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut cfg = config();
    cfg.tls = Some(volley_hub::TlsConfig {
        cert: cert_path,
        key: key_path,
    });
    (cfg, cert, dir)
}

/// The configuration the tests start from.
pub fn config() -> HubConfig {
    let mut c = HubConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_anonymous: true,
        api_key: Some(API_KEY.into()),
        admin_key: Some("admin".into()),
        ..HubConfig::default()
    };
    c.auth.hmac_secret = Some(SECRET.into());
    c.default_namespace.allow_anonymous = true;
    c.namespaces.insert(
        "chat".into(),
        NamespaceOptions {
            presence: true,
            join_leave: true,
            history_size: 100,
            history_ttl: 300,
            allow_publish: true,
            allow_anonymous: true,
        },
    );
    c.namespaces.insert(
        "feed".into(),
        NamespaceOptions {
            history_size: 3,
            history_ttl: 300,
            allow_anonymous: true,
            ..Default::default()
        },
    );
    c.namespaces.insert(
        "plain".into(),
        NamespaceOptions {
            allow_publish: true,
            allow_anonymous: true,
            ..Default::default()
        },
    );
    c.namespaces.insert(
        "members".into(),
        NamespaceOptions {
            presence: true,
            ..Default::default()
        },
    );
    c
}

/// A running hub.
pub struct TestHub {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<DrainReport>,
}

impl TestHub {
    pub async fn start(config: HubConfig) -> Self {
        Self::serve(Server::bind(config).await.unwrap())
    }

    /// Runs a bound server (e.g. one composed with `with_demo`).
    pub fn serve(server: Server) -> Self {
        let addr = server.local_addr().unwrap();
        let hub = server.hub().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            hub,
            stop: Some(stop),
            task,
        }
    }

    /// Sends the shutdown signal (the drain starts).
    pub fn signal(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `run` to return.
    pub async fn finished(self) -> DrainReport {
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the drain ends")
            .unwrap()
    }

    pub fn url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    /// `POST /api/<method>` with the API key; (status, body).
    pub async fn api(&self, method: &str, params: Value) -> (u16, Value) {
        http(
            self.addr,
            "POST",
            &format!("/api/{method}"),
            &[("Authorization", &format!("apikey {API_KEY}"))],
            &params.to_string(),
        )
        .await
    }

    /// `publish` through the API; the result.
    pub async fn publish(&self, channel: &str, data: Value) -> Value {
        let (status, body) = self
            .api("publish", json!({"channel": channel, "data": data}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["result"].clone()
    }

    /// Publishes `0..n` to `channel` from this task without yielding to the
    /// runtime in between, so that the hub's connection thread (this
    /// runtime's, in a hub with one thread) takes them all at once: it
    /// queues them to each subscriber together, joined into one entry.
    pub async fn burst(&self, channel: &str, n: u64) {
        for i in 0..n {
            let data = serde_json::value::RawValue::from_string(i.to_string()).unwrap();
            self.hub.publish(channel, data).await.unwrap();
        }
    }
}

/// A minimal HTTP/1.1 request; (status, JSON body or the text as a string).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, _, value) = http_with_head(addr, method, path, headers, body).await;
    (status, value)
}

/// [`http`], with the response head (status line and headers) too.
pub async fn http_with_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    // The hub's API answers with Content-Length; chunked bodies are not expected.
    assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
    let value = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, head.to_string(), value)
}

/// A `volley.v1` client over any transport: replies picked out from the
/// pushes, which are kept for later.
#[allow(async_fn_in_trait)]
pub trait Volley {
    /// The next message from the server, or `None` when the session ends.
    async fn read_message(&mut self) -> Option<Value>;
    /// Sends a command without waiting; returns its id.
    async fn send_command(&mut self, method: &str, params: Value) -> u64;
    /// The pushes read while waiting for replies.
    fn pushes(&mut self) -> &mut VecDeque<Value>;

    /// Waits for the reply to `id`, keeping pushes for later.
    async fn reply(&mut self, id: u64) -> Value {
        loop {
            let v = self.read_message().await.expect("a reply before the end");
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                return v;
            }
            assert!(v.get("push").is_some(), "not a push: {v}");
            self.pushes().push_back(v);
        }
    }

    /// Sends a command and waits for its reply.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_command(method, params).await;
        self.reply(id).await
    }

    /// The next push.
    async fn push(&mut self) -> Value {
        if let Some(p) = self.pushes().pop_front() {
            return p;
        }
        let v = self.read_message().await.expect("a push before the end");
        assert!(v.get("push").is_some(), "not a push: {v}");
        v
    }
}

impl Volley for Client {
    async fn read_message(&mut self) -> Option<Value> {
        self.read().await
    }

    async fn send_command(&mut self, method: &str, params: Value) -> u64 {
        self.send(method, params).await
    }

    fn pushes(&mut self) -> &mut VecDeque<Value> {
        &mut self.pushes
    }
}

/// A `volley.v1` client.
pub struct Client {
    pub ws: WebSocket<MaybeTlsStream>,
    next_id: u64,
    pushes: VecDeque<Value>,
    /// The result of the connect reply.
    pub info: Value,
}

impl Client {
    /// Opens the WebSocket only.
    pub async fn open(hub: &TestHub) -> Self {
        let (ws, _) = ClientBuilder::new(hub.url())
            .protocol("volley.v1")
            .connect()
            .await
            .unwrap();
        Self::over(ws)
    }

    /// A client over an open WebSocket (not connected yet).
    pub fn over(ws: WebSocket<MaybeTlsStream>) -> Self {
        Self {
            ws,
            next_id: 1,
            pushes: VecDeque::new(),
            info: Value::Null,
        }
    }

    /// Opens and connects anonymously.
    pub async fn anonymous(hub: &TestHub) -> Self {
        Self::with_token(hub, None).await
    }

    /// Opens and connects; panics unless the connect succeeds.
    pub async fn with_token(hub: &TestHub, token: Option<&str>) -> Self {
        let mut c = Self::open(hub).await;
        let params = match token {
            Some(t) => json!({"token": t}),
            None => json!({}),
        };
        let reply = c.call("connect", params).await;
        assert!(reply["result"].is_object(), "connect failed: {reply}");
        c.info = reply["result"].clone();
        c
    }

    pub fn client_id(&self) -> String {
        self.info["client"].as_str().unwrap().to_string()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).await.unwrap();
    }

    /// Sends a command without waiting; returns its id.
    pub async fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let cmd = json!({"id": id, "method": method, "params": params});
        self.send_text(&cmd.to_string()).await;
        id
    }

    /// The next message from the server, or `None` when the connection ends.
    pub async fn read(&mut self) -> Option<Value> {
        let m = tokio::time::timeout(WAIT, self.ws.recv())
            .await
            .expect("the server answers in time");
        match m {
            Some(Ok(Message::Text(t))) => Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Binary(_))) => panic!("binary message from the hub"),
            Some(Err(_)) | None => None,
        }
    }

    /// Waits for the reply to `id`, keeping pushes for later.
    pub async fn reply(&mut self, id: u64) -> Value {
        Volley::reply(self, id).await
    }

    /// Sends a command and waits for its reply.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        Volley::call(self, method, params).await
    }

    /// The next push.
    pub async fn push(&mut self) -> Value {
        Volley::push(self).await
    }

    /// Reads to the end: the pushes seen and the close code.
    pub async fn until_closed(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut seen: Vec<Value> = self.pushes.drain(..).collect();
        while let Some(v) = self.read().await {
            seen.push(v);
        }
        (seen, self.ws.close_frame().map(|f| f.code.0))
    }

    pub async fn subscribe(&mut self, params: Value) -> Value {
        self.call("subscribe", params).await
    }
}

/// The offsets of a list of publications.
pub fn offsets(pubs: &Value) -> Vec<u64> {
    pubs.as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect()
}

/// A result's error code, if it is an error reply.
pub fn error_code(reply: &Value) -> Option<u64> {
    reply["error"]["code"].as_u64()
}

/// A signed HS256 token with these claims.
pub fn token(claims: Value) -> String {
    volley_hub::sign_hs256(SECRET, &claims).unwrap()
}

/// The HTTP status of a refused handshake (101 when it succeeded).
pub fn handshake_status<T>(r: volley::Result<T>) -> u16 {
    match r {
        Err(volley::Error::Response(volley::proto::handshake::ResponseError::Status {
            status,
            ..
        })) => status.as_u16(),
        Err(e) => panic!("{e}"),
        Ok(_) => 101,
    }
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
