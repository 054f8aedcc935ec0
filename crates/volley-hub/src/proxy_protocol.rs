//! The PROXY protocol (HAProxy's, v1 text and v2 binary) at the start of a
//! connection: a load balancer in TCP mode says which client it relays.
//!
//! Every connection's first bytes are looked at before TLS and HTTP: a
//! connection that starts with a PROXY signature is accepted only from a
//! trusted proxy (`trusted_proxies`), and closed otherwise, so a client
//! cannot claim another address. From a trusted proxy the header is
//! optional (a balancer in HTTP mode sends `X-Forwarded-For` instead). The
//! read is bounded in bytes (`limits.proxy_header_max_bytes`) and in time
//! (`limits.handshake_timeout_ms`); the bytes read past the header go on to
//! TLS or HTTP through [`Rewind`].
//!
//! [`parse`] is sans-IO (the `ppp` crate parses the header itself);
//! [`read_header`] drives it over a socket.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use ppp::v2;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The v1 signature.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (the specification's 107 bytes).
const V1_MAX_LEN: usize = 107;
/// The v2 signature.
const V2_SIGNATURE: &[u8] = v2::PROTOCOL_PREFIX;

/// What the first bytes of a connection are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not a PROXY header: HTTP or TLS begins here.
    Absent,
    /// A prefix of a PROXY header: more bytes are needed.
    Partial,
    /// A PROXY signature (v1 or v2); the header is not parsed yet.
    Signature,
    /// A complete header of `len` bytes. `source` is the client's address,
    /// `None` when the proxy speaks for itself (v2 `LOCAL`, v1 `UNKNOWN`, a
    /// UNIX socket).
    Header {
        /// The header's length.
        len: usize,
        /// The relayed client's address.
        source: Option<SocketAddr>,
    },
    /// A PROXY signature followed by something that is not a valid header.
    Invalid,
}

/// Looks at the first bytes only: is this a PROXY header?
pub(crate) fn sniff(input: &[u8]) -> Parsed {
    for signature in [V1_SIGNATURE, V2_SIGNATURE] {
        let n = input.len().min(signature.len());
        if input[..n] == signature[..n] {
            return if n == signature.len() {
                Parsed::Signature
            } else {
                Parsed::Partial
            };
        }
    }
    Parsed::Absent
}

/// Parses a PROXY header at the start of `input`.
pub(crate) fn parse(input: &[u8]) -> Parsed {
    match sniff(input) {
        Parsed::Signature => {}
        other => return other,
    }
    use ppp::PartialResult;
    if input.starts_with(V1_SIGNATURE) {
        // A v1 header is one line: judge it once the line has ended (`ppp`
        // would call a complete but short line "incomplete").
        let line_end = input.iter().position(|&b| b == b'\n');
        return match line_end {
            None if input.len() < V1_MAX_LEN => Parsed::Partial,
            None => Parsed::Invalid,
            Some(end) => match ppp::v1::Header::try_from(&input[..=end]) {
                Ok(header) => Parsed::Header {
                    len: end + 1,
                    source: match header.addresses {
                        ppp::v1::Addresses::Tcp4(a) => {
                            Some(SocketAddr::from((a.source_address, a.source_port)))
                        }
                        ppp::v1::Addresses::Tcp6(a) => {
                            Some(SocketAddr::from((a.source_address, a.source_port)))
                        }
                        ppp::v1::Addresses::Unknown => None,
                    },
                },
                Err(_) => Parsed::Invalid,
            },
        };
    }
    match v2::Header::try_from(input) {
        result if result.is_incomplete() => Parsed::Partial,
        Ok(header) => Parsed::Header {
            len: header.len(),
            source: match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            },
        },
        Err(_) => Parsed::Invalid,
    }
}

/// Why a connection was closed before HTTP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ProxyHeaderError {
    /// A PROXY header from a peer outside `trusted_proxies`.
    #[error("PROXY protocol header from {peer}, which is not a trusted proxy")]
    Untrusted {
        /// The peer.
        peer: SocketAddr,
    },
    /// A PROXY signature followed by an invalid header.
    #[error("invalid PROXY protocol header from {peer}")]
    Invalid {
        /// The peer.
        peer: SocketAddr,
    },
    /// The header did not end within `limits.proxy_header_max_bytes`.
    #[error("PROXY protocol header from {peer} longer than {limit} bytes")]
    TooLong {
        /// The peer.
        peer: SocketAddr,
        /// The limit.
        limit: usize,
    },
    /// Nothing decisive arrived within `limits.handshake_timeout_ms`.
    #[error("no request from {peer} within {0:?}", .timeout)]
    Timeout {
        /// The peer.
        peer: SocketAddr,
        /// The time allowed.
        timeout: Duration,
    },
    /// The peer closed the connection, or the socket failed.
    #[error("reading from {peer}: {source}")]
    Io {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

impl ProxyHeaderError {
    /// The `reason` label of `volley_handshakes_rejected_total`, for the
    /// refusals worth counting (a timeout or a reset is not one).
    pub(crate) fn reject_reason(&self) -> Option<&'static str> {
        match self {
            Self::Untrusted { .. } => Some("proxy_untrusted"),
            Self::Invalid { .. } | Self::TooLong { .. } => Some("proxy_invalid"),
            Self::Timeout { .. } | Self::Io { .. } => None,
        }
    }
}

/// What came before HTTP on a connection.
#[derive(Debug)]
pub(crate) struct Prelude {
    /// The client a trusted proxy relays, when it said so.
    pub(crate) source: Option<SocketAddr>,
    /// The bytes read past the header: the start of TLS or HTTP.
    pub(crate) rest: Bytes,
}

/// Reads the first bytes of a connection from `peer`: a PROXY header when one
/// is there and `trusted`, refused when one is there and not `trusted`.
pub(crate) async fn read_header<S>(
    stream: &mut S,
    peer: SocketAddr,
    trusted: bool,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Prelude, ProxyHeaderError>
where
    S: AsyncRead + Unpin,
{
    let work = async {
        let mut buf = vec![0u8; max_bytes];
        let mut filled = 0;
        loop {
            let input = &buf[..filled];
            let parsed = if trusted { parse(input) } else { sniff(input) };
            match parsed {
                Parsed::Absent => {
                    return Ok(Prelude {
                        source: None,
                        rest: Bytes::copy_from_slice(input),
                    });
                }
                Parsed::Signature | Parsed::Header { .. } | Parsed::Invalid if !trusted => {
                    return Err(ProxyHeaderError::Untrusted { peer });
                }
                Parsed::Header { len, source } => {
                    return Ok(Prelude {
                        source,
                        rest: Bytes::copy_from_slice(&input[len..]),
                    });
                }
                Parsed::Invalid => return Err(ProxyHeaderError::Invalid { peer }),
                Parsed::Partial | Parsed::Signature => {}
            }
            if filled == buf.len() {
                return Err(ProxyHeaderError::TooLong {
                    peer,
                    limit: max_bytes,
                });
            }
            match stream.read(&mut buf[filled..]).await {
                Ok(0) => {
                    return Err(ProxyHeaderError::Io {
                        peer,
                        source: io::ErrorKind::UnexpectedEof.into(),
                    });
                }
                Ok(n) => filled += n,
                Err(source) => return Err(ProxyHeaderError::Io { peer, source }),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProxyHeaderError::Timeout { peer, timeout })?
}

/// A stream that first yields bytes already read from it. It lives as long
/// as the connection (inside the upgraded WebSocket's I/O, boxed by hyper),
/// so the prefix is boxed (one word, not a `Bytes`' four) and dropped once
/// read.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Option<Box<Bytes>>,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, with `prefix` put back in front of it.
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then(|| Box::new(prefix)),
            inner,
        }
    }

    /// The bytes of the prefix not read yet, and the stream.
    pub(crate) fn into_parts(self) -> (Option<Bytes>, S) {
        (self.prefix.map(|p| *p), self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(prefix) = &mut this.prefix {
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix[..n]);
            prefix.advance(n);
            if prefix.is_empty() {
                // An emptied `Bytes` still holds its allocation (the
                // request head, ~200 bytes).
                this.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &[u8] = b"PROXY TCP4 203.0.113.9 10.0.0.1 4711 443\r\n";

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    fn v2_tcp4() -> Vec<u8> {
        // 203.0.113.9:4711 -> 10.0.0.1:443, and a NOOP TLV of 3 bytes.
        let mut a = vec![203, 0, 113, 9, 10, 0, 0, 1];
        a.extend_from_slice(&4711u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        a.extend_from_slice(&[0x04, 0, 0]);
        v2(1, 0x11, &a)
    }

    fn header(len: usize, source: &str) -> Parsed {
        Parsed::Header {
            len,
            source: Some(source.parse().unwrap()),
        }
    }

    #[test]
    fn http_and_tls_are_not_headers() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Absent);
        assert_eq!(parse(&[0x16, 0x03, 0x01]), Parsed::Absent);
        assert_eq!(parse(b"PROX\r\n"), Parsed::Absent);
        assert_eq!(parse(b"\r\nGET"), Parsed::Absent);
    }

    #[test]
    fn v1_parses_at_every_split() {
        let mut input = V1.to_vec();
        input.extend_from_slice(b"GET /");
        assert_eq!(parse(&input), header(V1.len(), "203.0.113.9:4711"));
        for cut in 0..V1.len() {
            assert_eq!(parse(&V1[..cut]), Parsed::Partial, "cut at {cut}");
        }
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n";
        assert_eq!(parse(v6), header(v6.len(), "[2001:db8::1]:4711"));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                len: 15,
                source: None
            }
        );
    }

    #[test]
    fn v2_parses_at_every_split() {
        let h = v2_tcp4();
        let mut input = h.clone();
        input.extend_from_slice(b"GET /");
        assert_eq!(parse(&input), header(h.len(), "203.0.113.9:4711"));
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut]), Parsed::Partial, "cut at {cut}");
        }
        let mut a6 = Vec::new();
        a6.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a6.extend_from_slice(&[0; 16]);
        a6.extend_from_slice(&[0x12, 0x67, 0x01, 0xbb]);
        assert_eq!(parse(&v2(1, 0x21, &a6)), header(52, "[2001:db8::1]:4711"));
    }

    #[test]
    fn v2_local_speaks_for_the_proxy_itself() {
        assert_eq!(
            parse(&v2(0, 0x00, &[])),
            Parsed::Header {
                len: 16,
                source: None
            }
        );
    }

    #[test]
    fn broken_headers_are_invalid() {
        assert_eq!(parse(b"PROXY TCP4 nonsense\r\n"), Parsed::Invalid);
        assert_eq!(
            parse(b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"),
            Parsed::Invalid
        );
        // Version 3 does not exist.
        let mut h = v2_tcp4();
        h[12] = 0x31;
        assert_eq!(parse(&h), Parsed::Invalid);
        // A v1 line that never ends.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(200, b'1');
        assert_eq!(parse(&long), Parsed::Invalid);
    }

    async fn read(input: &[u8], trusted: bool, max: usize) -> Result<Prelude, ProxyHeaderError> {
        let (mut client, mut server) = tokio::io::duplex(64);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // One byte at a time: the reader must wait for the rest.
            for b in input {
                if client.write_all(&[b]).await.is_err() {
                    break;
                }
            }
            client
        });
        let peer = "127.0.0.1:1".parse().unwrap();
        let out = read_header(&mut server, peer, trusted, max, Duration::from_secs(5)).await;
        drop(server);
        let _ = writer.await;
        out
    }

    #[tokio::test]
    async fn a_trusted_header_is_consumed_and_the_rest_kept() {
        for h in [V1.to_vec(), v2_tcp4()] {
            let mut input = h.clone();
            input.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let out = read(&input, true, 4096).await.unwrap();
            assert_eq!(out.source, Some("203.0.113.9:4711".parse().unwrap()));
            // Bytes that arrived with the header's end are kept for HTTP.
            assert!(b"GET / HTTP/1.1\r\n".starts_with(&out.rest));
        }
    }

    #[tokio::test]
    async fn an_untrusted_header_is_refused_at_its_signature() {
        for h in [V1.to_vec(), v2_tcp4()] {
            assert!(matches!(
                read(&h, false, 4096).await,
                Err(ProxyHeaderError::Untrusted { .. })
            ));
        }
        let request = b"GET / HTTP/1.1\r\n";
        let out = read(request, false, 4096).await.unwrap();
        assert_eq!(out.source, None);
        assert!(!out.rest.is_empty() && request.starts_with(&out.rest));
    }

    #[tokio::test]
    async fn reads_are_bounded_in_bytes_and_time() {
        assert!(matches!(
            read(&v2_tcp4(), true, 20).await,
            Err(ProxyHeaderError::TooLong { limit: 20, .. })
        ));
        let (_client, mut server) = tokio::io::duplex(64);
        let peer = "127.0.0.1:1".parse().unwrap();
        let silent = read_header(&mut server, peer, true, 64, Duration::from_millis(50)).await;
        assert!(matches!(silent, Err(ProxyHeaderError::Timeout { .. })));
    }

    #[tokio::test]
    async fn rewind_yields_the_prefix_first() {
        let (mut client, server) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut s = Rewind::new(Bytes::from_static(b"hello"), server);
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    /// An idle connection keeps no copy of its request head: the prefix's
    /// buffer is freed once it has been read; and the stream is one word
    /// larger than the one it wraps (hyper boxes it for the connection's
    /// life; a `Bytes` beside the TCP stream was four words).
    #[test]
    fn rewind_is_one_word_over_its_stream() {
        use tokio::net::TcpStream;
        assert!(size_of::<Rewind<TcpStream>>() <= size_of::<TcpStream>() + 8);
    }

    /// An idle connection keeps no copy of its request head: the prefix's
    /// buffer is freed once it has been read.
    #[tokio::test]
    async fn rewind_frees_the_prefix_once_read() {
        use std::sync::Arc;
        struct Head(Vec<u8>, #[allow(dead_code)] Arc<()>);
        impl AsRef<[u8]> for Head {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        let held = Arc::new(());
        let prefix = Bytes::from_owner(Head(b"GET / HTTP/1.1\r\n".to_vec(), held.clone()));
        let (client, server) = tokio::io::duplex(64);
        let mut s = Rewind::new(prefix, server);
        let mut out = [0u8; 64];
        let n = s.read(&mut out).await.unwrap();
        assert_eq!(&out[..n], b"GET / HTTP/1.1\r\n");
        assert_eq!(Arc::strong_count(&held), 1, "the prefix's buffer is freed");
        drop(client);
        assert_eq!(s.read(&mut out).await.unwrap(), 0);
    }
}
