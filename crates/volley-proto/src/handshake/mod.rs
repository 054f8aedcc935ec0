//! The opening handshake (RFC 6455 §4): parse, validate and build the HTTP
//! request and response, for both roles.
//!
//! Parsing is push-style: give the bytes read so far, get `Ok(None)` until the
//! head is complete. A [`HeadScanner`] finds the end of the head in linear
//! time however the bytes are split, and enforces the size limit before any
//! header is parsed.

mod client;
mod server;

pub use client::{ClientHandshake, ClientResponse, ResponseError};
pub use server::{
    Rejection, RequestError, ServerRequest, accept_response, append_header, reject_response,
};

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::config::HeadLimits;

/// The GUID of RFC 6455 §1.3.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A fresh random `Sec-WebSocket-Key`.
pub fn generate_key() -> String {
    let nonce: [u8; 16] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

/// Finds the end of an HTTP head (`\r\n\r\n`) across calls, scanning each
/// byte once, and enforces the head size limit.
#[derive(Clone, Debug, Default)]
pub struct HeadScanner {
    scanned: usize,
}

/// The head exceeds its size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the HTTP head exceeds {max} bytes")]
pub struct HeadTooLarge {
    /// The limit.
    pub max: usize,
}

impl HeadScanner {
    /// A scanner at the start of a head.
    pub fn new() -> Self {
        Self::default()
    }

    /// Given everything received so far, returns the head's length once its
    /// end has arrived.
    pub fn scan(&mut self, buf: &[u8], limits: &HeadLimits) -> Result<Option<usize>, HeadTooLarge> {
        // Resume three bytes back so a terminator split across calls is found.
        let from = self.scanned.saturating_sub(3);
        let window = &buf[from..buf.len().min(limits.max_head_size)];
        if let Some(pos) = window.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(from + pos + 4));
        }
        self.scanned = buf.len();
        if buf.len() >= limits.max_head_size {
            return Err(HeadTooLarge {
                max: limits.max_head_size,
            });
        }
        Ok(None)
    }
}

/// One extension of a `Sec-WebSocket-Extensions` header, with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// The extension token.
    pub name: String,
    /// Parameters in order; quoted values are unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// A `Sec-WebSocket-Extensions` or `Sec-WebSocket-Protocol` header is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {header} header")]
pub struct MalformedHeader {
    /// Which header.
    pub header: &'static str,
}

/// Parses `Sec-WebSocket-Extensions` values (RFC 6455 §9.1): a comma-separated
/// list of `name *(";" param ["=" (token | quoted-string)])`.
pub fn parse_extensions(values: &[&str]) -> Result<Vec<Extension>, MalformedHeader> {
    let bad = MalformedHeader {
        header: "Sec-WebSocket-Extensions",
    };
    let mut out = Vec::new();
    for value in values {
        for item in split_list(value).ok_or(bad.clone())? {
            let mut parts = split_outside_quotes(item, ';')
                .ok_or(bad.clone())?
                .into_iter();
            let name = parts.next().map(str::trim).unwrap_or_default();
            if !is_token(name) {
                return Err(bad);
            }
            let mut params = Vec::new();
            for part in parts {
                let (k, v) = match part.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim())),
                    None => (part.trim(), None),
                };
                if !is_token(k) {
                    return Err(bad);
                }
                let v = match v {
                    None => None,
                    Some(v) => Some(unquote_token(v).ok_or(bad.clone())?),
                };
                params.push((k.to_owned(), v));
            }
            out.push(Extension {
                name: name.to_owned(),
                params,
            });
        }
    }
    Ok(out)
}

/// Parses `Sec-WebSocket-Protocol` values: a comma-separated list of tokens.
pub fn parse_protocols(values: &[&str]) -> Result<Vec<String>, MalformedHeader> {
    let bad = MalformedHeader {
        header: "Sec-WebSocket-Protocol",
    };
    let mut out = Vec::new();
    for value in values {
        for item in value.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if !is_token(item) {
                return Err(bad);
            }
            out.push(item.to_owned());
        }
    }
    Ok(out)
}

/// Whether a comma-separated header value contains `token`, ignoring case.
pub(crate) fn header_has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Splits a list on commas outside quoted strings, dropping empty elements.
fn split_list(value: &str) -> Option<Vec<&str>> {
    Some(
        split_outside_quotes(value, ',')?
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Splits on `sep` outside double quotes; `None` if a quote is unterminated.
fn split_outside_quotes(value: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&value[start..i]);
            start = i + 1;
        }
    }
    if quoted {
        return None;
    }
    parts.push(&value[start..]);
    Some(parts)
}

/// A token, or a quoted string whose content is a token (RFC 6455 §9.1).
fn unquote_token(v: &str) -> Option<String> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => {
            let body = rest.strip_suffix('"')?;
            let mut s = String::with_capacity(body.len());
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                s.push(if c == '\\' { chars.next()? } else { c });
            }
            s
        }
        None => v.to_owned(),
    };
    is_token(&inner).then_some(inner)
}

/// RFC 7230 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn generated_keys_are_16_random_bytes() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(a)
                .unwrap()
                .len(),
            16
        );
    }

    #[test]
    fn scanner_finds_the_end_across_splits_and_enforces_the_limit() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let limits = HeadLimits::default();
        for split in 0..head.len() {
            let mut s = HeadScanner::new();
            let first = s.scan(&head[..split], &limits).unwrap();
            let end = first.or_else(|| s.scan(head, &limits).unwrap());
            assert_eq!(end, Some(head.len() - 4), "split {split}");
        }
        let small = HeadLimits {
            max_head_size: 10,
            max_headers: 4,
        };
        assert_eq!(
            HeadScanner::new().scan(&[b'a'; 10], &small),
            Err(HeadTooLarge { max: 10 })
        );
        // A terminator past the limit is not accepted.
        assert!(
            HeadScanner::new()
                .scan(b"GET / HTTP/1.1\r\n\r\n", &small)
                .is_err()
        );
    }

    #[test]
    fn head_size_limit_at_and_one_past() {
        let limits = HeadLimits {
            max_head_size: 64,
            max_headers: 8,
        };
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(60, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head.len(), 64);
        assert_eq!(HeadScanner::new().scan(&head, &limits), Ok(Some(64)));
        head.insert(20, b'a');
        assert_eq!(
            HeadScanner::new().scan(&head, &limits),
            Err(HeadTooLarge { max: 64 })
        );
    }

    #[test]
    fn extension_grammar() {
        let e = parse_extensions(&[
            "permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", x-foo",
            "bar;a=b",
        ])
        .unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "permessage-deflate");
        assert_eq!(e[0].params[0], ("client_max_window_bits".into(), None));
        assert_eq!(
            e[0].params[1],
            ("server_max_window_bits".into(), Some("10".into()))
        );
        assert_eq!(e[2].params[0], ("a".into(), Some("b".into())));
        for bad in ["; a", "x; =1", "x; a=\"b c\"", "x; a=\"unterminated", "x y"] {
            assert!(parse_extensions(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn protocol_lists() {
        assert_eq!(
            parse_protocols(&["chat, superchat", "v2"]).unwrap(),
            ["chat", "superchat", "v2"]
        );
        assert!(parse_protocols(&["a b"]).is_err());
        assert!(header_has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(!header_has_token(b"keep-alive", "upgrade"));
    }
}
