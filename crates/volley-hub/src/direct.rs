//! Direct writes: a connection thread's fan-out writing a publication to a
//! subscriber's socket itself, instead of waking the subscriber's task to
//! write it.
//!
//! A task wake-up, the task's poll and its copy of the frame cost more than
//! the rest of a delivery's user-space work together (about 10 % of a hub
//! fanning out to 10,000 subscribers on one core, whose every delivery is
//! one `send(2)`). So a plain TCP connection's socket is shared ([`Socket`])
//! between its WebSocket (through [`Io`]) and its outbox, and while the
//! connection's task is *parked* (its WebSocket is open, it has written
//! everything and waits: `Outbox::poll_take` with `park`) the fan-out writes
//! queued frames to the socket from the outbox directly
//! (`Outbox::write_direct`). A write the socket takes only in
//! part leaves the rest of its frame here ([`Socket`]'s `rest`), which the
//! WebSocket writes before anything else, and wakes the task.
//!
//! Only a plain TCP connection (HTTP/1.1, no TLS) shares its socket; over
//! TLS or HTTP/2 the bytes on the wire are not the frame's, and the task
//! writes every delivery.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::proxy_protocol::Rewind;

/// A connection's TCP socket, shared by its WebSocket and its outbox.
#[derive(Debug)]
pub(crate) struct Socket {
    tcp: TcpStream,
    /// What is left of a frame the fan-out wrote in part: written before
    /// anything else. Boxed, as it is rare: with it the socket fits
    /// jemalloc's 80-byte class (an unboxed `Bytes` made it 96).
    rest: Mutex<Option<Box<Bytes>>>,
}

impl Socket {
    /// Shares `tcp`.
    pub(crate) fn new(tcp: TcpStream) -> Arc<Self> {
        Arc::new(Self {
            tcp,
            rest: Mutex::new(None),
        })
    }

    /// Writes `buf` without waiting. Returns how many bytes the socket
    /// took: all, fewer when its buffer filled up, or 0 when it took none
    /// or failed (the connection's task finds the error itself when it
    /// writes).
    pub(crate) fn send_now(&self, buf: &[u8]) -> usize {
        // Straight to send(2), not through tokio's readiness check (a cache
        // miss per socket, 6 % of a 10,000-subscriber fan-out): the socket is
        // non-blocking, and a write that would block leaves tokio's
        // readiness set, which the task's next write clears (it finds the
        // socket full too) before it waits.
        socket2::SockRef::from(&self.tcp).send(buf).unwrap_or(0)
    }

    /// Keeps what is left of a frame the fan-out wrote in part: the
    /// connection's task writes it before anything else.
    pub(crate) fn keep_rest(&self, rest: Bytes) {
        *crate::sync::lock(&self.rest) = (!rest.is_empty()).then(|| Box::new(rest));
    }

    /// Bytes of a frame the fan-out wrote in part, not written yet.
    pub(crate) fn unsent(&self) -> usize {
        crate::sync::lock(&self.rest)
            .as_ref()
            .map_or(0, |r| r.len())
    }

    /// The task's write (`send`), after the rest of a frame the fan-out
    /// wrote in part; waits while the socket is full.
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        mut send: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_write_rest(cx))?;
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match send(&self.tcp) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    /// Writes the rest of a frame the fan-out wrote in part, if any.
    fn poll_write_rest(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut slot = crate::sync::lock(&self.rest);
        while let Some(rest) = slot.as_mut() {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write(rest) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) if n == rest.len() => *slot = None,
                Ok(n) => rest.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// What a server WebSocket of the hub runs on: a plain TCP socket it shares
/// with its outbox, or hyper's upgraded connection (TLS, HTTP/2, or a
/// stream that was not ours to take back).
#[derive(Debug)]
pub(crate) enum Io {
    /// A plain TCP connection's socket.
    Shared(Arc<Socket>),
    /// Anything else, through hyper.
    Upgraded(TokioIo<Upgraded>),
}

impl Io {
    /// The transport for hyper's upgraded connection, and the bytes hyper
    /// read past the request: the socket itself when it is a plain TCP
    /// connection as the hub's listener made it (`Rewind<TcpStream>`).
    pub(crate) fn from_upgraded(upgraded: Upgraded) -> (Self, Bytes) {
        match upgraded.downcast::<TokioIo<Rewind<TcpStream>>>() {
            Ok(parts) => {
                let (unread, tcp) = parts.io.into_inner().into_parts();
                // Hyper read its bytes before the ones it left unread.
                let leftover = match unread {
                    None => parts.read_buf,
                    Some(unread) if parts.read_buf.is_empty() => unread,
                    Some(unread) => [&parts.read_buf[..], &unread[..]].concat().into(),
                };
                (Self::Shared(Socket::new(tcp)), leftover)
            }
            Err(upgraded) => (Self::Upgraded(TokioIo::new(upgraded)), Bytes::new()),
        }
    }

    /// The shared socket, on a plain TCP connection.
    pub(crate) fn socket(&self) -> Option<&Arc<Socket>> {
        match self {
            Self::Shared(socket) => Some(socket),
            Self::Upgraded(_) => None,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Shared(s) => loop {
                ready!(s.tcp.poll_read_ready(cx))?;
                // Into the unfilled part as it is (a large message's payload
                // is read in place, into memory not initialized yet).
                match s.tcp.try_read_buf(buf) {
                    Ok(_) => return Poll::Ready(Ok(())),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
            Self::Upgraded(u) => Pin::new(u).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Shared(s) => s.poll_send(cx, |tcp| tcp.try_write(buf)),
            Self::Upgraded(u) => Pin::new(u).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Shared(s) => s.poll_send(cx, |tcp| tcp.try_write_vectored(bufs)),
            Self::Upgraded(u) => Pin::new(u).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Shared(_) => true,
            Self::Upgraded(u) => u.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Shared(s) => s.poll_write_rest(cx),
            Self::Upgraded(u) => Pin::new(u).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Shared(s) => {
                ready!(s.poll_write_rest(cx))?;
                Poll::Ready(socket2::SockRef::from(&s.tcp).shutdown(std::net::Shutdown::Write))
            }
            Self::Upgraded(u) => Pin::new(u).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every plain connection has one, shared by an `Arc` (two counts):
    /// jemalloc's 80-byte class (a `TcpStream` is 40 bytes).
    #[test]
    fn a_socket_fits_an_80_byte_allocation() {
        assert!(std::mem::size_of::<Socket>() + 16 <= 80);
    }
}
