//! A keep-alive client for the hub's HTTP API (`POST /api/<method>` with
//! `Authorization: apikey`, and plain `GET`s such as `/metrics`), on hyper's
//! HTTP/1.1 client connection. Used by `volley bench fanout` and by the
//! chaos test (`tests/chaos.rs` includes this file).

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One kept-alive connection to the hub, opened on first use and again
/// after the hub closed it.
pub(crate) struct HttpApi {
    addr: String,
    authorization: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpApi {
    /// A client of the hub at `addr` (`host:port`) with the API key `key`.
    pub(crate) fn new(addr: &str, key: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            authorization: format!("apikey {key}"),
            sender: None,
        }
    }

    /// `POST /api/<method>` with a JSON `body`: the status and the body.
    pub(crate) async fn post(&mut self, method: &str, body: &str) -> Result<(u16, Bytes), String> {
        let body = Bytes::copy_from_slice(body.as_bytes());
        let path = format!("/api/{method}");
        self.send(|host, authorization| {
            Request::post(path.as_str())
                .header(HOST, host)
                .header(AUTHORIZATION, authorization)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
        })
        .await
    }

    /// `GET <path>`: the status and the body.
    pub(crate) async fn get(&mut self, path: &str) -> Result<(u16, Bytes), String> {
        self.send(|host, _| Request::get(path).header(HOST, host).body(Full::default()))
            .await
    }

    /// Sends the request `make` builds; once more on a fresh connection if
    /// the kept-alive one turns out to be closed.
    async fn send(
        &mut self,
        make: impl Fn(&str, &str) -> Result<Request<Full<Bytes>>, hyper::http::Error>,
    ) -> Result<(u16, Bytes), String> {
        let mut last_error = String::new();
        for _ in 0..2 {
            let request = make(&self.addr, &self.authorization).map_err(|e| e.to_string())?;
            let sender = match &mut self.sender {
                Some(sender) if !sender.is_closed() => sender,
                _ => {
                    let sender = connect(&self.addr).await?;
                    self.sender.insert(sender)
                }
            };
            let sent = match sender.ready().await {
                Ok(()) => sender.send_request(request).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| format!("reading the response: {e}"))?
                        .to_bytes();
                    return Ok((status, body));
                }
                Err(e) => {
                    self.sender = None;
                    last_error = e.to_string();
                }
            }
        }
        Err(last_error)
    }
}

/// Opens a connection and drives it on a task of its own.
async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        // Ends when the hub or the client closes the connection; a request
        // in flight then fails and is retried on a new one.
        let _ = connection.await;
    });
    Ok(sender)
}
