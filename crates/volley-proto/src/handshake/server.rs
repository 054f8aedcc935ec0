//! Server side of the opening handshake: validate the client's request,
//! decide the subprotocol and permessage-deflate once, and give the 101
//! response with a configured [`Connection`] (or a rejection). Both of the
//! `volley` crate's server paths (its own accept loop and the hyper upgrade)
//! call [`ServerRequest::accept`].
//!
//! The same request arrives over HTTP/2 as an extended CONNECT (RFC 8441):
//! [`ServerRequest::validate_extended_connect`] checks it, and the response
//! of [`ServerAccepted::into_parts`] is then a `200` without the HTTP/1.1
//! upgrade headers.

use std::fmt::Write as _;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use super::{
    Extension, HeadTooLarge, MalformedHeader, accept_key, header_has_token, parse_extensions,
    parse_protocols,
};
use crate::config::{Config, HeadLimits};
use crate::conn::{Connection, Role};
use crate::deflate::DeflateParams;

/// A validated WebSocket upgrade request.
#[derive(Debug)]
pub struct ServerRequest {
    /// Method, target, version and headers, as received.
    pub request: Request<()>,
    /// `Sec-WebSocket-Key`; `None` over HTTP/2 (RFC 8441 has no key).
    pub key: Option<String>,
    /// Subprotocols offered by the client, in its order of preference.
    pub protocols: Vec<String>,
    /// Extensions offered by the client, in order.
    pub extensions: Vec<Extension>,
}

/// Why a request is not an acceptable WebSocket upgrade. Each variant maps
/// to the HTTP status it is answered with ([`status`](Self::status)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The head is not valid HTTP/1.1.
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// The head exceeds the size limit.
    #[error(transparent)]
    HeadTooLarge(#[from] HeadTooLarge),
    /// More header fields than allowed.
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// Not a GET.
    #[error("method {0} is not GET")]
    NotGet(String),
    /// HTTP/1.0 or older.
    #[error("HTTP/1.1 or later is required")]
    OldHttpVersion,
    /// No Host header.
    #[error("missing Host header")]
    MissingHost,
    /// No `Upgrade: websocket`.
    #[error("missing or wrong Upgrade header")]
    MissingUpgrade,
    /// No `Connection: Upgrade`.
    #[error("missing Upgrade in the Connection header")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` absent or not 16 base64-encoded bytes.
    #[error("missing or invalid Sec-WebSocket-Key")]
    InvalidKey,
    /// No `Sec-WebSocket-Version`.
    #[error("missing Sec-WebSocket-Version")]
    MissingVersion,
    /// A version other than 13.
    #[error("unsupported Sec-WebSocket-Version {0:?}")]
    UnsupportedVersion(String),
    /// A malformed protocol or extension list.
    #[error(transparent)]
    MalformedHeader(#[from] MalformedHeader),
    /// An HTTP/2 request that is not an extended CONNECT with
    /// `:protocol = websocket` (RFC 8441).
    #[error(
        "not an extended CONNECT with :protocol websocket (got {method} with :protocol {protocol:?})"
    )]
    NotExtendedConnect {
        /// The request's method.
        method: String,
        /// Its `:protocol` pseudo-header, if any.
        protocol: Option<String>,
    },
}

impl RequestError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::HeadTooLarge(_) | Self::TooManyHeaders(_) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UnsupportedVersion(_) => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The rejection response for this error.
    pub fn rejection(&self) -> Rejection {
        let mut r = Rejection::new(self.status()).body(self.to_string());
        if matches!(self, Self::UnsupportedVersion(_)) {
            r = r.header("Sec-WebSocket-Version", "13");
        }
        r
    }
}

impl ServerRequest {
    /// Parses and validates a complete request head (as found by
    /// [`HeadScanner`](super::HeadScanner)).
    pub fn parse(head: &[u8], limits: &HeadLimits) -> Result<Self, RequestError> {
        if head.len() > limits.max_head_size {
            return Err(HeadTooLarge {
                max: limits.max_head_size,
            }
            .into());
        }
        let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(RequestError::Malformed("incomplete head".into()));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(RequestError::TooManyHeaders(limits.max_headers));
            }
            Err(e) => return Err(RequestError::Malformed(e.to_string())),
        }
        let method = req.method.unwrap_or_default();
        let mut builder = Request::builder()
            .method(
                Method::from_bytes(method.as_bytes())
                    .map_err(|e| RequestError::Malformed(e.to_string()))?,
            )
            .uri(req.path.unwrap_or("/"))
            .version(if req.version == Some(0) {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            });
        let headers = builder
            .headers_mut()
            .ok_or_else(|| RequestError::Malformed("invalid request target".into()))?;
        for h in req.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| RequestError::Malformed(e.to_string()))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|e| RequestError::Malformed(e.to_string()))?;
            headers.append(name, value);
        }
        let request = builder
            .body(())
            .map_err(|e| RequestError::Malformed(e.to_string()))?;
        Self::validate(request)
    }

    /// Validates a request that another HTTP stack already parsed (hyper, axum).
    pub fn validate(request: Request<()>) -> Result<Self, RequestError> {
        if request.method() != Method::GET {
            return Err(RequestError::NotGet(request.method().to_string()));
        }
        if request.version() < http::Version::HTTP_11 {
            return Err(RequestError::OldHttpVersion);
        }
        let h = request.headers();
        if !h.contains_key(http::header::HOST) {
            return Err(RequestError::MissingHost);
        }
        if !h
            .get_all(http::header::UPGRADE)
            .iter()
            .any(|v| header_has_token(v.as_bytes(), "websocket"))
        {
            return Err(RequestError::MissingUpgrade);
        }
        if !h
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| header_has_token(v.as_bytes(), "upgrade"))
        {
            return Err(RequestError::MissingConnectionUpgrade);
        }
        check_version(h)?;
        let mut keys = h.get_all(http::header::SEC_WEBSOCKET_KEY).iter();
        let key = match (keys.next(), keys.next()) {
            (Some(k), None) => k
                .to_str()
                .map_err(|_| RequestError::InvalidKey)?
                .trim()
                .to_owned(),
            _ => return Err(RequestError::InvalidKey),
        };
        match base64::engine::general_purpose::STANDARD.decode(&key) {
            Ok(nonce) if nonce.len() == 16 => {}
            _ => return Err(RequestError::InvalidKey),
        }
        let (protocols, extensions) = offers(h)?;
        Ok(Self {
            request,
            key: Some(key),
            protocols,
            extensions,
        })
    }

    /// Validates a WebSocket request made over HTTP/2 (RFC 8441): a CONNECT
    /// whose `:protocol` pseudo-header (`protocol`, which the HTTP/2 stack
    /// parsed) is `websocket`, with `Sec-WebSocket-Version: 13` and the same
    /// subprotocol and extension headers as over HTTP/1.1, but no key and no
    /// `Upgrade`/`Connection` headers.
    pub fn validate_extended_connect(
        request: Request<()>,
        protocol: Option<&str>,
    ) -> Result<Self, RequestError> {
        if request.method() != Method::CONNECT
            || !protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket"))
        {
            return Err(RequestError::NotExtendedConnect {
                method: request.method().to_string(),
                protocol: protocol.map(str::to_owned),
            });
        }
        let h = request.headers();
        check_version(h)?;
        let (protocols, extensions) = offers(h)?;
        Ok(Self {
            request,
            key: None,
            protocols,
            extensions,
        })
    }

    /// The request target's path.
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// The request target's query, if any.
    pub fn query(&self) -> Option<&str> {
        self.request.uri().query()
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.header_str(http::header::HOST)
    }

    /// The `Origin` header (sent by browsers).
    pub fn origin(&self) -> Option<&str> {
        self.header_str(http::header::ORIGIN)
    }

    /// The value of a cookie sent in `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.request
            .headers()
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        self.request.headers()
    }

    fn header_str(&self, name: HeaderName) -> Option<&str> {
        self.request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }
}

/// How the application accepts an upgrade: the subprotocol it picks and
/// headers to add to the 101 response.
#[derive(Clone, Debug, Default)]
pub struct Accept {
    protocol: Option<String>,
    headers: HeaderMap,
}

impl Accept {
    /// Accepts with no subprotocol and no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks a subprotocol; it must be one the client offered
    /// ([`ServerRequest::protocols`]), or it is not sent.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Adds a response header; invalid names or values are ignored.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        append_header(&mut self.headers, name, value);
        self
    }

    /// The subprotocol picked, if any.
    pub fn picked_protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

/// The server's side of a handshake, decided: what the 101 response says and
/// the protocol core configured with what was negotiated.
#[derive(Debug)]
pub struct ServerAccepted {
    key: Option<String>,
    protocol: Option<String>,
    deflate: Option<DeflateParams>,
    headers: HeaderMap,
    connection: Connection,
}

impl ServerRequest {
    /// Decides the handshake: the subprotocol `accept` picked if the client
    /// offered it (otherwise none is sent), permessage-deflate when
    /// `config` enables it and an offer can be honoured, and a server
    /// [`Connection`] with `config` and the negotiated parameters.
    ///
    /// A malformed permessage-deflate offer is rejected with 400.
    pub fn accept(&self, accept: Accept, config: &Config) -> Result<ServerAccepted, Rejection> {
        let deflate = match config.deflate() {
            Some(d) => d
                .accept_offers(&self.extensions)
                .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST).body(e.to_string()))?,
            None => None,
        };
        let protocol = accept.protocol.filter(|p| self.protocols.contains(p));
        Ok(ServerAccepted {
            key: self.key.clone(),
            protocol,
            deflate,
            headers: accept.headers,
            connection: Connection::new(Role::Server, config.clone(), deflate),
        })
    }
}

impl ServerAccepted {
    /// The subprotocol sent in the response, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The negotiated permessage-deflate parameters, if any.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }

    /// Appends the `101 Switching Protocols` response head to `out` (for an
    /// HTTP/1.1 request; an HTTP/2 one is answered by its HTTP/2 stack with
    /// [`into_parts`](Self::into_parts)).
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let extensions = self.deflate.map(|d| d.response_header());
        accept_response(
            out,
            self.key.as_deref().unwrap_or_default(),
            self.protocol.as_deref(),
            extensions.as_deref(),
            &self.headers,
        );
    }

    /// The response as an [`http::Response`] (for an HTTP stack that writes
    /// it, such as hyper), and the connection: `101 Switching Protocols`
    /// over HTTP/1.1, `200` over HTTP/2 (RFC 8441).
    pub fn into_parts(self) -> (Response<()>, Connection) {
        let mut response = Response::new(());
        let h = response.headers_mut();
        if self.key.is_some() {
            h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("Upgrade"),
            );
        }
        // The accept key is base64, a protocol the client offered is a token
        // and the extension header is ours: all valid header values.
        let values = [
            (
                http::header::SEC_WEBSOCKET_ACCEPT,
                self.key.as_deref().map(|k| accept_key(k.as_bytes())),
            ),
            (http::header::SEC_WEBSOCKET_PROTOCOL, self.protocol),
            (
                http::header::SEC_WEBSOCKET_EXTENSIONS,
                self.deflate.map(|d| d.response_header()),
            ),
        ];
        for (name, value) in values {
            if let Some(v) = value.and_then(|v| HeaderValue::try_from(v).ok()) {
                h.insert(name, v);
            }
        }
        h.extend(self.headers);
        *response.status_mut() = if self.key.is_some() {
            StatusCode::SWITCHING_PROTOCOLS
        } else {
            StatusCode::OK
        };
        (response, self.connection)
    }

    /// The connection alone, once the response is written.
    pub fn into_connection(self) -> Connection {
        self.connection
    }
}

/// Checks `Sec-WebSocket-Version: 13`.
fn check_version(h: &HeaderMap) -> Result<(), RequestError> {
    let version = h
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .ok_or(RequestError::MissingVersion)?;
    if version.as_bytes().trim_ascii() != b"13" {
        return Err(RequestError::UnsupportedVersion(
            String::from_utf8_lossy(version.as_bytes()).into_owned(),
        ));
    }
    Ok(())
}

/// The subprotocols and extensions a request offers.
fn offers(h: &HeaderMap) -> Result<(Vec<String>, Vec<Extension>), RequestError> {
    let protocols = parse_protocols(&header_strs(
        h,
        http::header::SEC_WEBSOCKET_PROTOCOL,
        "Sec-WebSocket-Protocol",
    )?)?;
    let extensions = parse_extensions(&header_strs(
        h,
        http::header::SEC_WEBSOCKET_EXTENSIONS,
        "Sec-WebSocket-Extensions",
    )?)?;
    Ok((protocols, extensions))
}

fn header_strs<'a>(
    h: &'a HeaderMap,
    name: HeaderName,
    label: &'static str,
) -> Result<Vec<&'a str>, MalformedHeader> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().map_err(|_| MalformedHeader { header: label }))
        .collect()
}

/// Appends a `101 Switching Protocols` response to `out`.
pub fn accept_response(
    out: &mut Vec<u8>,
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra: &HeaderMap,
) {
    let mut s = String::with_capacity(160);
    s.push_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    s.push_str(&accept_key(key.as_bytes()));
    s.push_str("\r\n");
    if let Some(p) = protocol {
        let _ = write!(s, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    if let Some(e) = extensions {
        let _ = write!(s, "Sec-WebSocket-Extensions: {e}\r\n");
    }
    out.extend_from_slice(s.as_bytes());
    write_headers(out, extra);
    out.extend_from_slice(b"\r\n");
}

/// A refusal to upgrade: an HTTP status, headers and a short body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The status.
    pub status: StatusCode,
    /// Extra headers.
    pub headers: HeaderMap,
    /// The body, sent as `text/plain`.
    pub body: String,
}

impl Rejection {
    /// A rejection with `status` and no body.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: String::new(),
        }
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a header; invalid names or values are ignored.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        append_header(&mut self.headers, name, value);
        self
    }
}

/// Appends the response for `rejection` to `out`, with `Connection: close`.
pub fn reject_response(out: &mut Vec<u8>, rejection: &Rejection) {
    let mut s = String::with_capacity(128 + rejection.body.len());
    let _ = write!(
        s,
        "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        rejection.status.as_u16(),
        rejection.status.canonical_reason().unwrap_or("Error"),
        rejection.body.len() + 1,
    );
    out.extend_from_slice(s.as_bytes());
    write_headers(out, &rejection.headers);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(rejection.body.as_bytes());
    out.push(b'\n');
}

/// Appends a header to `headers`; returns false (and adds nothing) when the
/// name or value is not valid HTTP.
pub fn append_header(headers: &mut HeaderMap, name: &str, value: &str) -> bool {
    match (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        (Ok(n), Ok(v)) => {
            headers.append(n, v);
            true
        }
        _ => false,
    }
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\nCookie: a=1; session=xyz\r\n\r\n";

    fn parse(s: &str) -> Result<ServerRequest, RequestError> {
        ServerRequest::parse(s.as_bytes(), &HeadLimits::default())
    }

    #[test]
    fn accepts_the_rfc_request_and_exposes_its_parts() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.query(), Some("room=1"));
        assert_eq!(r.host(), Some("server.example.com"));
        assert_eq!(r.origin(), Some("http://example.com"));
        assert_eq!(r.protocols, ["chat", "superchat"]);
        assert_eq!(r.cookie("session"), Some("xyz"));
        let mut out = Vec::new();
        accept_response(
            &mut out,
            r.key.as_deref().unwrap(),
            Some("chat"),
            None,
            &HeaderMap::new(),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn each_bad_request_gets_its_status() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET /chat", "POST /chat", 400),
            ("Upgrade: websocket", "Upgrade: h2c", 400),
            ("keep-alive, Upgrade", "keep-alive", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=", 400),
            ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426),
            ("Sec-WebSocket-Version: 13\r\n", "", 400),
            ("Host: server.example.com\r\n", "", 400),
            ("HTTP/1.1", "HTTP/1.0", 400),
            ("chat, superchat", "chat superchat", 400),
        ];
        for (from, to, status) in cases {
            let req = GOOD.replacen(from, to, 1);
            let err = parse(&req).unwrap_err();
            assert_eq!(err.status().as_u16(), *status, "{from} -> {to}: {err}");
        }
        assert_eq!(parse("garbage\r\n\r\n").unwrap_err().status().as_u16(), 400);
    }

    #[test]
    fn version_rejection_names_the_supported_version() {
        let err = parse(&GOOD.replace("Version: 13", "Version: 7")).unwrap_err();
        let mut out = Vec::new();
        reject_response(&mut out, &err.rejection());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("sec-websocket-version: 13\r\n"));
        assert!(text.contains("Connection: close\r\n"));
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = HeadLimits {
            max_head_size: 1 << 20,
            max_headers: 128,
        };
        let mut req = GOOD.trim_end_matches("\r\n").to_owned();
        for i in 0..130 {
            req.push_str(&format!("\r\nX-{i}: v"));
        }
        req.push_str("\r\n\r\n");
        let err = ServerRequest::parse(req.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.status().as_u16(), 431);
    }

    fn offer(extra: &str) -> ServerRequest {
        parse(&GOOD.replace(
            "Sec-WebSocket-Version: 13\r\n",
            &format!("Sec-WebSocket-Version: 13\r\n{extra}"),
        ))
        .unwrap()
    }

    fn deflate_config() -> Config {
        Config::builder()
            .deflate(Some(crate::DeflateConfig::default()))
            .build()
            .unwrap()
    }

    #[test]
    fn accept_sends_only_an_offered_subprotocol() {
        let r = parse(GOOD).unwrap();
        let accepted = r
            .accept(Accept::new().protocol("superchat"), &Config::default())
            .unwrap();
        assert_eq!(accepted.protocol(), Some("superchat"));
        let mut out = Vec::new();
        accepted.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Sec-WebSocket-Protocol: superchat\r\n"),
            "{text}"
        );
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));

        let accepted = r
            .accept(Accept::new().protocol("not-offered"), &Config::default())
            .unwrap();
        assert_eq!(accepted.protocol(), None);
        let (response, conn) = accepted.into_parts();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(!response.headers().contains_key("sec-websocket-protocol"));
        assert_eq!(conn.role(), Role::Server);
    }

    #[test]
    fn accept_negotiates_deflate_only_when_configured_and_offered() {
        let offered =
            offer("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
        // Configured and offered: negotiated, in the response and the core.
        let accepted = offered.accept(Accept::new(), &deflate_config()).unwrap();
        assert!(accepted.deflate().is_some());
        let mut out = Vec::new();
        accepted.write_response(&mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("Sec-WebSocket-Extensions: permessage-deflate")
        );
        let (response, conn) = accepted.into_parts();
        assert!(response.headers().contains_key("sec-websocket-extensions"));
        assert!(conn.is_compressed());
        // Offered but switched off: declined.
        let off = Config::builder().deflate(None).build().unwrap();
        let accepted = offered.accept(Accept::new(), &off).unwrap();
        assert!(accepted.deflate().is_none());
        assert!(!accepted.into_connection().is_compressed());
        // Configured but not offered: declined.
        let accepted = parse(GOOD)
            .unwrap()
            .accept(Accept::new(), &deflate_config())
            .unwrap();
        assert!(accepted.deflate().is_none());
        // A malformed offer: 400.
        let bad =
            offer("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n");
        let rejection = bad.accept(Accept::new(), &deflate_config()).unwrap_err();
        assert_eq!(rejection.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn accept_adds_the_applications_headers() {
        let accepted = parse(GOOD)
            .unwrap()
            .accept(
                Accept::new().header("Set-Cookie", "a=1"),
                &Config::default(),
            )
            .unwrap();
        let mut out = Vec::new();
        accepted.write_response(&mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("set-cookie: a=1\r\n")
        );
        let (response, _) = accepted.into_parts();
        assert_eq!(response.headers()["set-cookie"], "a=1");
    }

    fn extended_connect(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .method(Method::CONNECT)
            .uri("https://server.example.com/chat?room=1")
            .version(http::Version::HTTP_2);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn extended_connect_negotiates_like_an_upgrade_and_answers_200() {
        let request = extended_connect(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ]);
        let r = ServerRequest::validate_extended_connect(request, Some("websocket")).unwrap();
        assert_eq!(r.key, None);
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.protocols, ["chat", "superchat"]);
        let accepted = r
            .accept(Accept::new().protocol("chat"), &deflate_config())
            .unwrap();
        let (response, conn) = accepted.into_parts();
        assert_eq!(response.status(), StatusCode::OK);
        let h = response.headers();
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert!(h.contains_key("sec-websocket-extensions"));
        for absent in ["upgrade", "connection", "sec-websocket-accept"] {
            assert!(!h.contains_key(absent), "{absent} in an HTTP/2 response");
        }
        assert!(conn.is_compressed());
    }

    #[test]
    fn extended_connect_needs_connect_websocket_and_version_13() {
        let ok = [("sec-websocket-version", "13")];
        let err = |req, proto| ServerRequest::validate_extended_connect(req, proto).unwrap_err();
        assert!(matches!(
            err(extended_connect(&ok), None),
            RequestError::NotExtendedConnect { .. }
        ));
        assert!(matches!(
            err(extended_connect(&ok), Some("webtransport")),
            RequestError::NotExtendedConnect { .. }
        ));
        let mut get = extended_connect(&ok);
        *get.method_mut() = Method::GET;
        assert_eq!(
            err(get, Some("websocket")).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            err(extended_connect(&[]), Some("websocket")),
            RequestError::MissingVersion
        );
        let v8 = extended_connect(&[("sec-websocket-version", "8")]);
        assert_eq!(
            err(v8, Some("websocket")).status(),
            StatusCode::UPGRADE_REQUIRED
        );
    }
}
