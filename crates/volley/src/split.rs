//! Receiving and sending halves of a [`WebSocket`] for different tasks.
//!
//! Both halves share the connection behind a mutex that is held only for
//! the duration of one poll, never across an await. Both may write (the
//! receiving half answers pings and closes), so the transport is given a
//! waker that wakes every half waiting to write.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncWrite};
use volley_proto::{CloseCode, Message};

use crate::error::Result;
use crate::wakers::Half;
use crate::websocket::WebSocket;

impl<S> WebSocket<S> {
    /// Splits into a receiving and a sending half, which may be moved to
    /// different tasks. [`ReadHalf::unsplit`] puts them back together.
    pub fn split(mut self) -> (ReadHalf<S>, WriteHalf<S>) {
        self.share_write_wakers();
        let shared = Arc::new(Mutex::new(self));
        (
            ReadHalf {
                shared: Arc::clone(&shared),
            },
            WriteHalf { shared },
        )
    }
}

fn lock<S>(m: &Mutex<WebSocket<S>>) -> MutexGuard<'_, WebSocket<S>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The receiving half.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> volley::Result<()> {
/// use volley::Message;
///
/// // A server that waits for a message, answers with three and closes.
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move {
///     let (tcp, _) = listener.accept().await?;
///     let mut ws = volley::accept(tcp).await?;
///     let _hi = ws.recv().await;
///     for n in 0..3 {
///         ws.send(format!("tick {n}")).await?;
///     }
///     ws.close(volley::CloseCode::NORMAL, "").await
/// });
///
/// let (ws, _) = volley::connect(&format!("ws://{addr}/")).await?;
/// let (mut read, mut write) = ws.split();
/// // The sending half may live in another task.
/// let writer = tokio::spawn(async move { write.send("hi").await.map(|()| write) });
/// let mut got = Vec::new();
/// while let Some(message) = read.recv().await {
///     got.push(message?);
/// }
/// assert_eq!(got, ["tick 0", "tick 1", "tick 2"].map(Message::text));
/// let write = writer.await.expect("the writer ran")?;
/// assert!(read.unsplit(write).is_some());
/// # Ok(()) }
/// ```
pub struct ReadHalf<S> {
    shared: Arc<Mutex<WebSocket<S>>>,
}

/// The sending half (see [`ReadHalf`] for an example).
pub struct WriteHalf<S> {
    shared: Arc<Mutex<WebSocket<S>>>,
}

impl<S> std::fmt::Debug for ReadHalf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadHalf")
    }
}

impl<S> std::fmt::Debug for WriteHalf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHalf")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    /// The next message, as [`WebSocket::recv`]. Cancel safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| lock(&self.shared).poll_recv(cx, Half::Read)).await
    }

    /// Joins the halves again.
    pub fn unsplit(self, write: WriteHalf<S>) -> Option<WebSocket<S>> {
        if !Arc::ptr_eq(&self.shared, &write.shared) {
            return None;
        }
        drop(write);
        Arc::into_inner(self.shared).map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for ReadHalf<S> {
    type Item = Result<Message>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        lock(&self.shared).poll_recv(cx, Half::Read)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WriteHalf<S> {
    /// Sends a message and flushes, as [`WebSocket::send`].
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        lock(&self.shared).queue(&message.into())?;
        self.flush().await
    }

    /// Queues a message, waiting only above the write high-water mark.
    pub async fn feed(&mut self, message: impl Into<Message>) -> Result<()> {
        lock(&self.shared).queue(&message.into())?;
        poll_fn(|cx| lock(&self.shared).poll_ready_hwm(cx, Half::Write)).await
    }

    /// Writes and flushes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| lock(&self.shared).poll_flush_all(cx, Half::Write)).await
    }

    /// Sends a Close frame and flushes it; the receiving half sees the end of
    /// the connection once the peer answers.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        lock(&self.shared).start_close(code, reason)?;
        self.flush().await
    }
}
