//! Client side of the opening handshake: build the request, validate the
//! server's response.

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
    /// The server answered with a status other than 101.
    #[error("server answered {status} instead of 101 Switching Protocols")]
    Status {
        /// The status.
        status: StatusCode,
        /// The response head.
        response: Box<Response<()>>,
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

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
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
        assert_eq!(parsed.key, hs.key());
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
}
