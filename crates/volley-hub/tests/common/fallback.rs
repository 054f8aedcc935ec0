//! A plain HTTP client of the fallback transports (docs/protocol.md §2.5):
//! an SSE stream or long-polls for the server's messages, POSTs for the
//! commands, on hyper's HTTP/1.1 client over real sockets.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::{TestHub, Volley, WAIT};

/// One HTTP/1.1 request on a new connection; the response with its body
/// still to read.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> hyper::Response<Incoming> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("the hub answers in time")
        .unwrap()
}

/// A request's status and whole body as text.
pub async fn fetch(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let response = request(addr, method, path, headers, body).await;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("the body arrives in time")
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Where the server's messages come from.
enum Downlink {
    /// The event stream and what was read of it, not yet parsed.
    Sse { body: Incoming, buf: String },
    /// Long-polls; the last sequence number received.
    Poll { ack: u64 },
    /// The stream was dropped.
    Dropped,
}

/// A `volley.v1` client on a fallback transport.
pub struct Fallback {
    pub addr: SocketAddr,
    pub session: String,
    down: Downlink,
    /// The last POST's `seq`.
    pub seq: u64,
    next_id: u64,
    /// Messages received and not yet read.
    messages: VecDeque<Value>,
    pushes: VecDeque<Value>,
    /// SSE: the `id` of each event received, in order.
    pub event_ids: Vec<u64>,
    /// The result of the connect reply.
    pub info: Value,
}

impl Fallback {
    fn new(addr: SocketAddr, session: String, down: Downlink) -> Self {
        Self {
            addr,
            session,
            down,
            seq: 0,
            next_id: 1,
            messages: VecDeque::new(),
            pushes: VecDeque::new(),
            event_ids: Vec::new(),
            info: Value::Null,
        }
    }

    /// Opens an SSE session (status 200 expected).
    pub async fn sse(hub: &TestHub) -> Self {
        let response = request(hub.addr, "GET", "/connection/sse", &[], Vec::new()).await;
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-accel-buffering"], "no");
        let mut c = Self::new(
            hub.addr,
            String::new(),
            Downlink::Sse {
                body: response.into_body(),
                buf: String::new(),
            },
        );
        let (name, data) = c.event().await.expect("the session event");
        assert_eq!(name.as_deref(), Some("session"));
        let v: Value = serde_json::from_str(&data).unwrap();
        c.session = v["session"].as_str().unwrap().to_string();
        assert_eq!(c.session.len(), 22, "128 bits in URL-safe base64");
        c
    }

    /// Opens a long-poll session.
    pub async fn long_poll(hub: &TestHub) -> Self {
        let (status, body) = fetch(hub.addr, "POST", "/connection/poll", &[], Vec::new()).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let session = v["session"].as_str().unwrap().to_string();
        Self::new(hub.addr, session, Downlink::Poll { ack: 0 })
    }

    /// Opens either and connects anonymously.
    pub async fn connected(hub: &TestHub, sse: bool) -> Self {
        let mut c = if sse {
            Self::sse(hub).await
        } else {
            Self::long_poll(hub).await
        };
        let reply = c.call("connect", json!({})).await;
        assert!(reply["result"].is_object(), "connect failed: {reply}");
        c.info = reply["result"].clone();
        c
    }

    pub fn client_id(&self) -> String {
        self.info["client"].as_str().unwrap().to_string()
    }

    /// SSE: the next event (its name and data), skipping comments; `None`
    /// at the end of the stream. The event must come within `WAIT`: the
    /// comments a live stream sends every ping interval do not count.
    async fn event(&mut self) -> Option<(Option<String>, String)> {
        let Downlink::Sse { body, buf } = &mut self.down else {
            panic!("not an SSE session");
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut name, mut data, mut id) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        assert!(data.is_none(), "one data line per event: {block}");
                        data = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse::<u64>().unwrap());
                    } else {
                        assert!(
                            line.is_empty() || line.starts_with(':'),
                            "unexpected line {line:?}"
                        );
                    }
                }
                if let Some(id) = id {
                    self.event_ids.push(id);
                }
                match data {
                    Some(data) => return Some((name, data)),
                    None => continue,
                }
            }
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .expect("the next event arrives in time");
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// One long-poll with the current `ack`: (status, body).
    pub async fn poll_once(&mut self, ack: u64) -> (u16, String) {
        let path = format!("/connection/poll?session={}&ack={ack}", self.session);
        fetch(self.addr, "GET", &path, &[], Vec::new()).await
    }

    /// The next message from the server, or `None` when the session ended.
    pub async fn read(&mut self) -> Option<Value> {
        loop {
            if let Some(v) = self.messages.pop_front() {
                return Some(v);
            }
            match &mut self.down {
                Downlink::Sse { .. } => {
                    let (_, data) = self.event().await?;
                    self.messages
                        .push_back(serde_json::from_str(&data).unwrap());
                }
                Downlink::Poll { ack } => {
                    let ack = *ack;
                    let (status, body) = self.poll_once(ack).await;
                    if status == 404 {
                        return None;
                    }
                    assert_eq!(status, 200, "{body}");
                    let v: Value = serde_json::from_str(&body).unwrap();
                    let messages = v["messages"].as_array().unwrap();
                    let last = v["last"].as_u64().unwrap();
                    assert_eq!(last, ack + messages.len() as u64, "{body}");
                    self.messages.extend(messages.iter().cloned());
                    self.down = Downlink::Poll { ack: last };
                }
                Downlink::Dropped => return None,
            }
        }
    }

    /// POSTs `body` as request number `seq`; the status.
    pub async fn post(&mut self, seq: u64, body: &str) -> u16 {
        let path = format!("/connection/send?session={}&seq={seq}", self.session);
        let headers = [("content-type", "text/plain")];
        fetch(self.addr, "POST", &path, &headers, body.as_bytes().to_vec())
            .await
            .0
    }

    /// Sends commands in one POST (the next `seq`), expecting 204.
    pub async fn send_lines(&mut self, lines: &[Value]) {
        self.seq += 1;
        let body: Vec<String> = lines.iter().map(Value::to_string).collect();
        let status = self.post(self.seq, &body.join("\n")).await;
        assert_eq!(status, 204);
    }

    /// Sends a command without waiting for its reply; returns its id.
    pub async fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_lines(&[json!({"id": id, "method": method, "params": params})])
            .await;
        id
    }

    /// `DELETE /connection/session`: the status.
    pub async fn close(&self) -> u16 {
        let path = format!("/connection/session?session={}", self.session);
        fetch(self.addr, "DELETE", &path, &[], Vec::new()).await.0
    }

    /// Drops the SSE stream (the client goes away).
    pub fn drop_stream(&mut self) {
        self.down = Downlink::Dropped;
    }
}

impl Volley for Fallback {
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
