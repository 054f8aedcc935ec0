//! The opening handshake (RFC 6455 §4): parse, validate and build the HTTP
//! request and response, for both roles.
//!
//! Parsing is push-style: give the bytes read so far, get `Ok(None)` until the
//! head is complete. A [`HeadScanner`] finds the end of the head in linear
//! time however the bytes are split, and enforces the size limit before any
//! header is parsed.

mod client;
mod server;

pub use client::{ClientHandshake, ClientResponse, MAX_REFUSAL_BODY, ResponseError, is_tls_record};
pub use server::{
    Accept, Rejection, RequestError, ServerAccepted, ServerRequest, accept_response, append_header,
    reject_response,
};

pub(crate) use crate::headers::header_has_token;
pub use crate::headers::{Extension, MalformedHeader, parse_extensions, parse_protocols};

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
}
