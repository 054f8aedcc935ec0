//! Client side of the opening handshake: build the request, validate the
//! server's response. Over HTTP/1.1 ([`ClientHandshake::start`],
//! [`finish`](ClientHandshake::finish)) or as an HTTP/2 extended CONNECT of
//! RFC 8441 ([`ClientHandshake::extended_connect`],
//! [`finish_extended_connect`](ClientHandshake::finish_extended_connect)),
//! whose request and response an HTTP/2 stack carries.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::{MalformedHeader, accept_key, generate_key, header_has_token, parse_extensions};
use crate::config::HeadLimits;
use crate::deflate::{DeflateConfig, DeflateParams, NegotiationError};

/// A client's opening handshake in progress: the request it sent, and what
/// the response must match.
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    key: String,
    protocols: Vec<String>,
    deflate: Option<DeflateConfig>,
}

/// A validated `101 Switching Protocols` response.
#[derive(Debug)]
pub struct ClientResponse {
    /// Status and headers, as received.
    pub response: Response<()>,
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// permessage-deflate parameters, if negotiated.
    pub deflate: Option<DeflateParams>,
}

/// Why the server's response does not complete the handshake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The head is not valid HTTP.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The server answered with a status other than 101. The body, which
    /// usually says why, is kept up to [`MAX_REFUSAL_BODY`] bytes when the
    /// caller reads it ([`ResponseError::body_missing`], [`ResponseError::with_body`]).
    #[error(
        "server answered {status} instead of 101 Switching Protocols{}",
        RefusalBody(body)
    )]
    Status {
        /// The status.
        status: StatusCode,
        /// The response head.
        response: Box<Response<()>>,
        /// The start of the response body (at most [`MAX_REFUSAL_BODY`] bytes;
        /// empty until the caller attaches it).
        body: Bytes,
    },
    /// `Upgrade: websocket` missing.
    #[error("missing Upgrade: websocket in the response")]
    MissingUpgrade,
    /// `Connection: Upgrade` missing.
    #[error("missing Connection: Upgrade in the response")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` missing or wrong.
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    /// The server chose a subprotocol that was not offered.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnexpectedProtocol(String),
    /// The server answered with an extension that was not offered.
    #[error("server answered with extension {0:?}, which was not offered")]
    UnexpectedExtension(String),
    /// A malformed extension or protocol header.
    #[error(transparent)]
    MalformedHeader(#[from] MalformedHeader),
    /// The permessage-deflate response does not fit the offer.
    #[error("permessage-deflate negotiation failed: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The server answered with a TLS record, not HTTP: it expects TLS.
    #[error("the server answered with TLS, not HTTP: use wss:// for this server")]
    TlsAnswer,
    /// The connection ended before a complete response head.
    #[error("the server closed the connection before answering the opening handshake")]
    Closed,
}

/// Whether `bytes` (the start of what a server sent) is a TLS record rather
/// than HTTP: a content type from 20 to 23 (change cipher spec, alert,
/// handshake, application data) followed by protocol version 3.x.
pub fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [20..=23, 3, 0..=4, ..])
}

/// The most of a refused handshake's response body kept in
/// [`ResponseError::Status`]: enough for the server's explanation, bounded so
/// that a refusal costs little.
pub const MAX_REFUSAL_BODY: usize = 1024;

/// A refusal's body as shown in the error: `: ` and the text, trimmed, with
/// control characters as spaces; nothing when empty.
struct RefusalBody<'a>(&'a Bytes);

impl std::fmt::Display for RefusalBody<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(self.0);
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        f.write_str(": ")?;
        for c in text.chars() {
            let c = if c.is_control() { ' ' } else { c };
            std::fmt::Write::write_char(f, c)?;
        }
        if self.0.len() >= MAX_REFUSAL_BODY {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl ResponseError {
    /// For a refusal ([`ResponseError::Status`]) whose body has `have` bytes
    /// so far: how many more to read before attaching it. `Content-Length`
    /// bounds it; a chunked body is not de-chunked (what has arrived is
    /// kept); without either, the body ends when the connection closes. Never
    /// more than [`MAX_REFUSAL_BODY`] in all; 0 for other errors.
    pub fn body_missing(&self, have: usize) -> usize {
        let Self::Status { response, .. } = self else {
            return 0;
        };
        let headers = response.headers();
        if headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .any(|v| header_has_token(v.as_bytes(), "chunked"))
        {
            return 0;
        }
        let want = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map_or(MAX_REFUSAL_BODY, |len| len.min(MAX_REFUSAL_BODY));
        want.saturating_sub(have)
    }

    /// Attaches the start of the response body (at most
    /// [`MAX_REFUSAL_BODY`] bytes) to a refusal; other errors are returned
    /// unchanged.
    pub fn with_body(self, body: &[u8]) -> Self {
        match self {
            Self::Status {
                status, response, ..
            } => Self::Status {
                status,
                response,
                body: Bytes::copy_from_slice(&body[..body.len().min(MAX_REFUSAL_BODY)]),
            },
            other => other,
        }
    }
}

impl ClientHandshake {
    /// Starts a handshake: appends the request for `host` (the `Host` header
    /// value, with port if not default) and `target` (path and query) to `out`.
    pub fn start(
        out: &mut Vec<u8>,
        host: &str,
        target: &str,
        protocols: &[String],
        deflate: Option<&DeflateConfig>,
        extra: &HeaderMap,
    ) -> Self {
        let key = generate_key();
        let mut s = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if !protocols.is_empty() {
            s.push_str("Sec-WebSocket-Protocol: ");
            s.push_str(&protocols.join(", "));
            s.push_str("\r\n");
        }
        if let Some(d) = deflate {
            s.push_str("Sec-WebSocket-Extensions: ");
            s.push_str(&d.client_offer());
            s.push_str("\r\n");
        }
        out.extend_from_slice(s.as_bytes());
        for (name, value) in extra {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Self {
            key,
            protocols: protocols.to_vec(),
            deflate: deflate.cloned(),
        }
    }

    /// Starts a handshake over HTTP/2 (RFC 8441): adds
    /// `Sec-WebSocket-Version`, the offered subprotocols and
    /// permessage-deflate to `headers`, the headers of the extended CONNECT
    /// request (whose `:protocol = websocket` the HTTP/2 stack sends).
    pub fn extended_connect(
        headers: &mut HeaderMap,
        protocols: &[String],
        deflate: Option<&DeflateConfig>,
    ) -> Self {
        headers.insert(
            http::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        if !protocols.is_empty() {
            if let Ok(v) = HeaderValue::try_from(protocols.join(", ")) {
                headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
            }
        }
        if let Some(v) = deflate.and_then(|d| HeaderValue::try_from(d.client_offer()).ok()) {
            headers.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
        Self {
            key: String::new(),
            protocols: protocols.to_vec(),
            deflate: deflate.cloned(),
        }
    }

    /// The `Sec-WebSocket-Key` sent (empty over HTTP/2, which has none).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Validates the response to an extended CONNECT: a 2xx (servers send
    /// 200) with a subprotocol and extensions that fit the offer.
    pub fn finish_extended_connect(
        &self,
        response: Response<()>,
    ) -> Result<ClientResponse, ResponseError> {
        let status = response.status();
        if !status.is_success() {
            return Err(ResponseError::Status {
                status,
                response: Box::new(response),
                body: Bytes::new(),
            });
        }
        self.negotiated(response)
    }

    /// Parses and validates a complete response head.
    pub fn finish(
        &self,
        head: &[u8],
        limits: &HeadLimits,
    ) -> Result<ClientResponse, ResponseError> {
        let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut resp = httparse::Response::new(&mut slots);
        match resp.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(ResponseError::Malformed("incomplete head".into()));
            }
            Err(e) => return Err(ResponseError::Malformed(e.to_string())),
        }
        let status = StatusCode::from_u16(resp.code.unwrap_or(0))
            .map_err(|e| ResponseError::Malformed(e.to_string()))?;
        let mut headers = HeaderMap::new();
        for h in resp.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| ResponseError::Malformed(e.to_string()))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|e| ResponseError::Malformed(e.to_string()))?;
            headers.append(name, value);
        }
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        if status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ResponseError::Status {
                status,
                response: Box::new(response),
                body: Bytes::new(),
            });
        }
        let h = response.headers();
        if !h
            .get_all(http::header::UPGRADE)
            .iter()
            .any(|v| header_has_token(v.as_bytes(), "websocket"))
        {
            return Err(ResponseError::MissingUpgrade);
        }
        if !h
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| header_has_token(v.as_bytes(), "upgrade"))
        {
            return Err(ResponseError::MissingConnectionUpgrade);
        }
        let expected = accept_key(self.key.as_bytes());
        match h.get(http::header::SEC_WEBSOCKET_ACCEPT) {
            Some(v) if v.as_bytes().trim_ascii() == expected.as_bytes() => {}
            _ => return Err(ResponseError::BadAccept),
        }
        self.negotiated(response)
    }

    /// The subprotocol and permessage-deflate of an accepting response.
    fn negotiated(&self, response: Response<()>) -> Result<ClientResponse, ResponseError> {
        let h = response.headers();
        let protocol = match h.get(http::header::SEC_WEBSOCKET_PROTOCOL) {
            None => None,
            Some(v) => {
                let p = String::from_utf8_lossy(v.as_bytes()).trim().to_owned();
                if !self.protocols.contains(&p) {
                    return Err(ResponseError::UnexpectedProtocol(p));
                }
                Some(p)
            }
        };
        let values: Vec<&str> = h
            .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .map(|v| {
                v.to_str().map_err(|_| MalformedHeader {
                    header: "Sec-WebSocket-Extensions",
                })
            })
            .collect::<Result<_, _>>()?;
        let extensions = parse_extensions(&values)?;
        if let Some(other) = extensions.iter().find(|e| {
            self.deflate.is_none() || !e.name.eq_ignore_ascii_case(crate::deflate::EXTENSION_NAME)
        }) {
            return Err(ResponseError::UnexpectedExtension(other.name.clone()));
        }
        let deflate = match &self.deflate {
            Some(cfg) => cfg.accept_response(&extensions)?,
            None => None,
        };
        Ok(ClientResponse {
            response,
            protocol,
            deflate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::ServerRequest;

    fn start(protocols: &[&str], deflate: bool) -> (ClientHandshake, Vec<u8>) {
        let mut out = Vec::new();
        let protocols: Vec<String> = protocols.iter().map(|s| s.to_string()).collect();
        let cfg = DeflateConfig::default();
        let hs = ClientHandshake::start(
            &mut out,
            "example.com:8080",
            "/ws?x=1",
            &protocols,
            deflate.then_some(&cfg),
            &HeaderMap::new(),
        );
        (hs, out)
    }

    fn response(accept: &str, extra: &str) -> Vec<u8> {
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n").into_bytes()
    }

    #[test]
    fn request_is_accepted_by_our_server_side() {
        let (hs, req) = start(&["chat"], true);
        let parsed = ServerRequest::parse(&req, &HeadLimits::default()).unwrap();
        assert_eq!(parsed.key.as_deref(), Some(hs.key()));
        assert_eq!(parsed.path(), "/ws");
        assert_eq!(parsed.protocols, ["chat"]);
        assert_eq!(parsed.extensions[0].name, "permessage-deflate");
    }

    #[test]
    fn validates_the_response() {
        let (hs, _) = start(&["chat"], true);
        let accept = accept_key(hs.key().as_bytes());
        let limits = HeadLimits::default();
        let ok = hs.finish(&response(&accept, "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"), &limits).unwrap();
        assert_eq!(ok.protocol.as_deref(), Some("chat"));
        assert!(ok.deflate.is_some());
        assert!(matches!(
            hs.finish(&response("wrong", ""), &limits),
            Err(ResponseError::BadAccept)
        ));
        assert!(matches!(
            hs.finish(
                &response(&accept, "Sec-WebSocket-Protocol: other\r\n"),
                &limits
            ),
            Err(ResponseError::UnexpectedProtocol(_))
        ));
        assert!(matches!(
            hs.finish(
                &response(&accept, "Sec-WebSocket-Extensions: x-foo\r\n"),
                &limits
            ),
            Err(ResponseError::UnexpectedExtension(_))
        ));
        assert!(matches!(
            hs.finish(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                &limits
            ),
            Err(ResponseError::Status {
                status: StatusCode::FORBIDDEN,
                ..
            })
        ));
        let (plain, _) = start(&[], false);
        let accept = accept_key(plain.key().as_bytes());
        assert!(matches!(
            plain.finish(
                &response(&accept, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
                &limits
            ),
            Err(ResponseError::UnexpectedExtension(_))
        ));
    }

    fn refusal(extra: &str) -> ResponseError {
        let (hs, _) = start(&[], false);
        let head = format!("HTTP/1.1 400 Bad Request\r\n{extra}\r\n");
        hs.finish(head.as_bytes(), &HeadLimits::default())
            .unwrap_err()
    }

    #[test]
    fn a_refusal_keeps_a_bounded_body_and_shows_it() {
        let e = refusal("Content-Length: 44\r\n");
        assert_eq!(e.body_missing(0), 44);
        assert_eq!(e.body_missing(10), 34);
        let e = e.with_body(b"offer the WebSocket subprotocol volley.v1\r\n");
        assert_eq!(e.body_missing(44), 0);
        assert_eq!(
            e.to_string(),
            "server answered 400 Bad Request instead of 101 Switching Protocols: \
             offer the WebSocket subprotocol volley.v1"
        );
        // Without Content-Length the body ends with the connection, bounded.
        let e = refusal("");
        assert_eq!(e.body_missing(0), MAX_REFUSAL_BODY);
        let e = e.with_body(&[b'x'; 5000]);
        let ResponseError::Status { body, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(body.len(), MAX_REFUSAL_BODY);
        assert!(e.to_string().ends_with("x…"));
        // Large declared bodies are cut; chunked ones keep what arrived.
        assert_eq!(
            refusal("Content-Length: 99999\r\n").body_missing(0),
            MAX_REFUSAL_BODY
        );
        assert_eq!(refusal("Transfer-Encoding: chunked\r\n").body_missing(0), 0);
        // No body: the message is the status alone; control bytes are spaces.
        assert_eq!(
            refusal("").to_string(),
            "server answered 400 Bad Request instead of 101 Switching Protocols"
        );
        assert!(
            refusal("")
                .with_body(b"a\x1b[31mb")
                .to_string()
                .ends_with(": a [31mb")
        );
        assert_eq!(ResponseError::BadAccept.body_missing(0), 0);
    }

    #[test]
    fn tls_records_are_told_from_http() {
        assert!(is_tls_record(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]));
        assert!(is_tls_record(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(!is_tls_record(b"HTTP/1.1 400 Bad Request\r\n"));
        assert!(!is_tls_record(&[0x15]));
    }

    #[test]
    fn extended_connect_offers_and_validates_the_200() {
        let mut headers = HeaderMap::new();
        let cfg = DeflateConfig::default();
        let hs = ClientHandshake::extended_connect(&mut headers, &["chat".into()], Some(&cfg));
        assert_eq!(headers["sec-websocket-version"], "13");
        assert_eq!(headers["sec-websocket-protocol"], "chat");
        assert!(!headers.contains_key("sec-websocket-key"));
        let ok = Response::builder()
            .status(200)
            .header("sec-websocket-protocol", "chat")
            .header("sec-websocket-extensions", "permessage-deflate")
            .body(())
            .unwrap();
        let ok = hs.finish_extended_connect(ok).unwrap();
        assert_eq!(ok.protocol.as_deref(), Some("chat"));
        assert!(ok.deflate.is_some());
        let refused = Response::builder().status(403).body(()).unwrap();
        assert!(matches!(
            hs.finish_extended_connect(refused),
            Err(ResponseError::Status {
                status: StatusCode::FORBIDDEN,
                ..
            })
        ));
        let other = Response::builder()
            .status(200)
            .header("sec-websocket-protocol", "other")
            .body(())
            .unwrap();
        assert!(matches!(
            hs.finish_extended_connect(other),
            Err(ResponseError::UnexpectedProtocol(_))
        ));
    }
}
