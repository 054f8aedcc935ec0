//! What carries a session's messages: the WebSocket, or a fallback
//! (Server-Sent Events or long-polling, with commands by HTTP POST,
//! `crate::fallback`).
//!
//! The session (`crate::session`) runs its command loop over this trait:
//! command texts come in, frames from the connection's outbox go out. A
//! carrier buffers what it was given until its peer has it; the session
//! stops taking from the outbox while that buffer is over the write
//! high-water mark, so pushes accumulate in the outbox and its bound (and
//! slow-consumer policy) applies on every carrier alike.

use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use volley::{CloseCode, Message, WebSocket};

use crate::direct::{Io, Socket};
use crate::outbox::OutFrame;

/// Why a carrier can no longer be used: the peer went away or the
/// connection failed (the session ends as after close 1006).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Gone {
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] volley::Error),
    /// The fallback session's client went away (its stream ended, it closed
    /// the session, or it stopped polling).
    #[error("the client went away")]
    Fallback,
}

/// One session's carrier.
pub(crate) trait Transport {
    /// Whether the carrier has a close code of its own (a WebSocket's Close
    /// frame). A carrier without one (a fallback) gets a `disconnect` push
    /// for every code the session ends with, so its client learns the code.
    const HAS_CLOSE_CODE: bool;

    /// The next message from the client; `None` when the carrier ended.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Gone>>>;

    /// Bytes given to [`Transport::queue`] that the peer does not have yet
    /// (with what is left of a frame the fan-out wrote in part).
    fn buffered_amount(&self) -> usize;

    /// The socket, on a plain TCP connection: the fan-out writes to it
    /// directly while the session waits (`crate::direct`).
    fn socket(&self) -> Option<Arc<Socket>> {
        None
    }

    /// Whether the carrier may still send messages: once a WebSocket's
    /// Close is under way (ours sent, or the peer's received), nothing may
    /// follow it, so the fan-out must not write to the socket either.
    fn open(&self) -> bool {
        true
    }

    /// Queues server messages (text frames, one or several joined) for the
    /// client.
    fn queue(&mut self, frame: &OutFrame) -> Result<(), Gone>;

    /// Ready once everything queued reached the peer (or its side of the
    /// carrier); until then, registers the waker.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>>;

    /// Ends the carrier with a close code (what is queued still goes out).
    async fn close(&mut self, code: u16, reason: &str);
}

/// What a session's WebSocket runs on.
pub(crate) trait WsStream: AsyncRead + AsyncWrite + Unpin {
    /// The socket the fan-out may write to directly.
    fn socket(&self) -> Option<&Arc<Socket>> {
        None
    }
}

impl WsStream for Io {
    fn socket(&self) -> Option<&Arc<Socket>> {
        Io::socket(self)
    }
}

/// The tests' in-memory connections.
#[cfg(test)]
impl WsStream for tokio::io::DuplexStream {}

impl<S: WsStream> Transport for WebSocket<S> {
    const HAS_CLOSE_CODE: bool = true;

    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Gone>>> {
        Pin::new(self)
            .poll_next(cx)
            .map(|m| m.map(|r| r.map_err(Gone::from)))
    }

    fn buffered_amount(&self) -> usize {
        // With what is left of a frame the fan-out wrote in part.
        let unsent = WsStream::socket(self.get_ref()).map_or(0, |s| s.unsent());
        WebSocket::buffered_amount(self) + unsent
    }

    fn socket(&self) -> Option<Arc<Socket>> {
        WsStream::socket(self.get_ref()).cloned()
    }

    fn open(&self) -> bool {
        self.state().can_send()
    }

    fn queue(&mut self, frame: &OutFrame) -> Result<(), Gone> {
        match frame {
            OutFrame::One(frame) => self.queue_prepared(frame)?,
            OutFrame::Joined(frames) => self.queue_prepared_frames(frames)?,
        }
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Sink::<Message>::poll_flush(Pin::new(self), cx).map_err(Gone::from)
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let _ = WebSocket::close(self, CloseCode(code), reason).await;
    }
}
