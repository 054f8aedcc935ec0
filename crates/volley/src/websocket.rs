//! [`WebSocket`]: the protocol core driven over an `AsyncRead + AsyncWrite`.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use volley_proto::{
    CloseCode, CloseFrame, Connection, Event, Message, MessageKind, PreparedFrame, PreparedFrames,
    ProtocolError, Role, SendError, State,
};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::wakers::{Half, WriteWakers};

/// A WebSocket connection over a transport `S` (TCP, TLS, a hyper upgrade).
///
/// Receive with [`recv`](Self::recv) or as a [`Stream`]; send with
/// [`send`](Self::send), [`feed`](Self::feed) + [`flush`](Self::flush), or as a
/// [`Sink`]. Pings are answered and the closing handshake is completed
/// automatically while the connection is being read. [`split`](Self::split)
/// gives halves that can live in different tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> volley::Result<()> {
/// use volley::{CloseCode, Message};
///
/// // An echo server on a free port.
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move {
///     let (tcp, _) = listener.accept().await?;
///     let mut ws = volley::accept(tcp).await?;
///     while let Some(Ok(message)) = ws.recv().await {
///         ws.send(message).await?;
///     }
///     Ok::<(), volley::Error>(())
/// });
///
/// let (mut ws, _response) = volley::connect(&format!("ws://{addr}/")).await?;
/// ws.send("hello").await?;
/// assert_eq!(ws.recv().await.transpose()?, Some(Message::text("hello")));
/// // Closing waits for the server's answer; then `recv` is at its end.
/// ws.close(CloseCode::NORMAL, "bye").await?;
/// assert!(ws.recv().await.is_none());
/// assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
/// # Ok(()) }
/// ```
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    config: WebSocketConfig,
    wbuf: Vec<u8>,
    wpos: usize,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` is armed: its own deadline is the one asked for (a
    /// flag, not a copy of the deadline: 16 bytes less per connection).
    timer_armed: bool,
    /// Bytes went to the transport since it was last flushed: a layer under
    /// us (TLS) may hold them until it is.
    unflushed: bool,
    /// Boxed, as the error below: an idle connection pays a pointer.
    peer_close: Option<Box<CloseFrame>>,
    pending_error: Option<Box<Error>>,
    finish: Finish,
    /// Pong frames received (wrapping).
    pongs: u32,
    write_wakers: Option<Arc<WriteWakers>>,
}

/// Slices handed to one vectored write.
const MAX_WRITE_SLICES: usize = 16;

thread_local! {
    /// The read buffer shared by the connections polled on this thread.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Progress of the end of the connection, once the core is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    /// Not closed yet.
    Running,
    /// A client waits for the server to close TCP (bounded by the close timeout).
    AwaitEof,
    /// Shutting down our write side.
    Shutdown,
    /// Over: `recv` returns `None`.
    Done,
}

/// When a new connection's keepalive starts counting: `now`, moved back by a
/// share of half an interval that differs from one connection to the next.
/// The shares follow the golden-ratio sequence (the n-th is the fractional
/// part of n × 0.618…), which spreads any run of consecutive connections
/// evenly over the half interval; no randomness is needed.
fn keepalive_start(interval: Duration, now: std::time::Instant) -> std::time::Instant {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let share = keepalive_share(NEXT.fetch_add(1, Ordering::Relaxed));
    now.checked_sub(interval.mul_f64(share / 2.0))
        .unwrap_or(now)
}

/// The `n`-th share of the golden-ratio sequence, in [0, 1).
fn keepalive_share(n: u32) -> f64 {
    // 2^32 / φ: the sequence's step, in 32-bit fixed point.
    const STEP: u32 = 2_654_435_769;
    f64::from(n.wrapping_mul(STEP)) / 2f64.powi(32)
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.conn.role())
            .field("state", &self.conn.state())
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport on which the opening handshake is already done.
    /// `leftover` holds bytes read past the handshake (frames the peer sent
    /// right behind it); `conn` is the protocol core built from the handshake.
    /// Keepalive, when configured, starts now: its first ping comes between
    /// half an interval and an interval from now, at a point that differs
    /// from one connection to the next, so that connections opened together
    /// (clients reconnecting after a restart) do not all ping together,
    /// every interval, ever after.
    pub fn from_parts(
        io: S,
        mut conn: Connection,
        config: WebSocketConfig,
        leftover: &[u8],
    ) -> Self {
        if let Some(k) = config.keepalive() {
            conn.set_keepalive(
                Some(k),
                keepalive_start(k.interval, std::time::Instant::now()),
            );
        }
        let mut ws = Self {
            io,
            conn,
            config,
            wbuf: Vec::new(),
            wpos: 0,
            timer: None,
            timer_armed: false,
            unflushed: false,
            peer_close: None,
            pending_error: None,
            finish: Finish::Running,
            pongs: 0,
            write_wakers: None,
        };
        if !leftover.is_empty() {
            ws.conn.receive(leftover);
        }
        ws
    }

    /// Wraps a transport without a handshake (both ends agreed out of band),
    /// with no compression.
    pub fn from_raw_socket(io: S, role: Role, config: WebSocketConfig) -> Self {
        let conn = Connection::new(role, config.protocol().clone(), None);
        Self::from_parts(io, conn, config, &[])
    }

    /// The next message; `None` once the connection has closed cleanly (see
    /// [`close_frame`](Self::close_frame)). After an error, the next call
    /// returns `None`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: all progress is kept in `self`, so `recv` may be used in
    /// `tokio::select!` without losing messages.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.poll_recv(cx, Half::Read)).await
    }

    /// A message that was already read and decoded, if any: no waiting, no
    /// I/O. After [`recv`](Self::recv), drain these with
    /// [`feed`](Self::feed), then [`flush`](Self::flush) once, to answer a
    /// burst of messages with one write.
    pub fn try_recv(&mut self) -> Option<Message> {
        if self.finish == Finish::Done {
            return None;
        }
        self.next_message()
    }

    /// Sends a message and waits until it, and everything queued before it,
    /// is written and flushed.
    ///
    /// # Cancel safety
    ///
    /// The message is queued before the first await; cancelling stops only
    /// the wait, and the bytes are written by later calls.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        self.conn.send(&message.into())?;
        self.flush().await
    }

    /// Sends a message without compression, whatever was negotiated (for
    /// secrets next to attacker-controlled data).
    pub async fn send_uncompressed(&mut self, message: impl Into<Message>) -> Result<()> {
        self.conn.send_uncompressed(&message.into())?;
        self.flush().await
    }

    /// Sends a message as fragments of at most `fragment_size` bytes.
    pub async fn send_fragmented(
        &mut self,
        message: impl Into<Message>,
        fragment_size: usize,
    ) -> Result<()> {
        let message = message.into();
        let kind = if message.is_text() {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        let payload = message.as_bytes();
        let size = fragment_size.max(1);
        let count = payload.len().div_ceil(size).max(1);
        for i in 0..count {
            let piece =
                &payload[(i * size).min(payload.len())..((i + 1) * size).min(payload.len())];
            self.conn.send_fragment(kind, piece, i + 1 == count)?;
            poll_fn(|cx| self.poll_ready_hwm(cx, Half::Write)).await?;
        }
        self.flush().await
    }

    /// Queues a message, waiting only while the write buffer is above the
    /// high-water mark. Call [`flush`](Self::flush) to write the rest; a batch
    /// of `feed`s then one `flush` turns many messages into one write.
    ///
    /// # Cancel safety
    ///
    /// As for [`send`](Self::send).
    pub async fn feed(&mut self, message: impl Into<Message>) -> Result<()> {
        self.conn.send(&message.into())?;
        poll_fn(|cx| self.poll_ready_hwm(cx, Half::Write)).await
    }

    /// Queues a message encoded once (see [`PreparedFrame`]), waiting only
    /// while the write buffer is above the high-water mark, like
    /// [`feed`](Self::feed). A hub encodes a publication once and feeds the
    /// same frame to every subscriber; prepared frames are never compressed.
    ///
    /// # Cancel safety
    ///
    /// As for [`send`](Self::send).
    pub async fn feed_prepared(&mut self, frame: &PreparedFrame) -> Result<()> {
        self.conn.send_prepared(frame)?;
        poll_fn(|cx| self.poll_ready_hwm(cx, Half::Write)).await
    }

    /// Sends a message encoded once (see [`PreparedFrame`]) and flushes.
    ///
    /// # Cancel safety
    ///
    /// As for [`send`](Self::send).
    pub async fn send_prepared(&mut self, frame: &PreparedFrame) -> Result<()> {
        self.conn.send_prepared(frame)?;
        self.flush().await
    }

    /// Queues a prepared frame without waiting, whatever the buffered amount.
    /// For a caller that bounds its own queue (a hub's per-client outbound
    /// limit) and drives writing with [`poll_flush`](futures_sink::Sink::poll_flush).
    pub fn queue_prepared(&mut self, frame: &PreparedFrame) -> Result<()> {
        self.conn.send_prepared(frame).map_err(Error::from)
    }

    /// Queues several messages joined once (see [`PreparedFrames`]) without
    /// waiting, like [`WebSocket::queue_prepared`].
    pub fn queue_prepared_frames(&mut self, frames: &PreparedFrames) -> Result<()> {
        self.conn.send_prepared_frames(frames).map_err(Error::from)
    }

    /// Writes and flushes everything queued.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: unwritten bytes stay queued.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_flush_all(cx, Half::Write)).await
    }

    /// Sends a ping (at most 125 bytes) and flushes it.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.conn.ping(payload)?;
        self.flush().await
    }

    /// Closes the connection: sends a Close frame, then reads until the peer
    /// answers (discarding messages still in flight) or the close timeout
    /// passes, then shuts the transport down.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.start_close(code, reason)?;
        loop {
            match poll_fn(|cx| self.poll_recv(cx, Half::Read)).await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }

    /// Queues a Close frame without waiting.
    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        match self.conn.close(std::time::Instant::now(), code, reason) {
            Ok(()) | Err(SendError::Closed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The peer's Close frame, once received.
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.peer_close.as_deref()
    }

    /// The state of the protocol core.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// Whether permessage-deflate was negotiated.
    pub fn is_compressed(&self) -> bool {
        self.conn.is_compressed()
    }

    /// The last round-trip time measured by keepalive pings.
    pub fn rtt(&self) -> Option<Duration> {
        self.conn.rtt()
    }

    /// How many Pong frames have arrived so far (wrapping). Pongs are
    /// handled inside [`recv`](Self::recv) and never returned; a tool that
    /// shows them (`volley connect -v`) compares this count between reads.
    pub fn pongs_received(&self) -> u32 {
        self.pongs
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The configuration.
    pub fn config(&self) -> &WebSocketConfig {
        &self.config
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.wbuf.len() - self.wpos + self.conn.pending_transmit()
    }

    /// Bytes of write buffer held (their capacity, not what waits): the
    /// core's and this layer's. None once an idle connection has written
    /// everything.
    pub fn write_buffer_capacity(&self) -> usize {
        self.wbuf.capacity() + self.conn.transmit_capacity()
    }

    /// Queues a message (no waiting).
    pub(crate) fn queue(&mut self, message: &Message) -> Result<()> {
        self.conn.send(message).map_err(Error::from)
    }

    /// Writes queued bytes until none are left, then flushes the transport,
    /// or until the transport would block.
    fn poll_write_out(&mut self, cx: &mut Context<'_>, half: Half) -> Poll<io::Result<()>> {
        loop {
            if self.wpos == self.wbuf.len() {
                self.wpos = 0;
                // Everything queued is written: keep no buffer. The core's
                // buffer and this one take turns (`poll_transmit` swaps
                // them), so neither is kept by an idle connection. Keeping
                // up to 16 KiB here cost a server 135 MB once an overload of
                // 10,000 connections had passed (jemalloc's 6–12 KiB size
                // classes, issue 14); a buffer per write round costs far less
                // than the write.
                self.wbuf = Vec::new();
                if self.conn.has_shared_transmit() {
                    // Large payloads are queued by reference: one vectored
                    // write sends headers and payloads without copying them.
                    let waker = self.write_waker(cx, half);
                    let mut wcx = Context::from_waker(&waker);
                    let mut parts: [&[u8]; MAX_WRITE_SLICES] = [&[]; MAX_WRITE_SLICES];
                    let n = self.conn.transmit_chunks(&mut parts);
                    let slices: [io::IoSlice<'_>; MAX_WRITE_SLICES] =
                        std::array::from_fn(|i| io::IoSlice::new(parts[i]));
                    let written =
                        ready!(Pin::new(&mut self.io).poll_write_vectored(&mut wcx, &slices[..n]))?;
                    if written == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.conn.advance_transmit(written);
                    self.unflushed = true;
                    continue;
                }
                if !self.conn.poll_transmit(&mut self.wbuf) {
                    return self.poll_flush_written(cx, half);
                }
            }
            let waker = self.write_waker(cx, half);
            let mut wcx = Context::from_waker(&waker);
            let n = ready!(Pin::new(&mut self.io).poll_write(&mut wcx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
            self.unflushed = true;
        }
    }

    /// Flushes the transport if bytes went to it since its last flush.
    ///
    /// Everything written is then on its way even when the transport
    /// buffers: rustls takes a write into its own buffer, and when the
    /// socket is full it says the write is done and keeps up to a record's
    /// worth of it. Unflushed, that tail (the last bytes of a large reply,
    /// or a Pong written while reading) waited for the next write, which
    /// could be a keepalive ping 20 s later.
    fn poll_flush_written(&mut self, cx: &mut Context<'_>, half: Half) -> Poll<io::Result<()>> {
        if !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        let waker = self.write_waker(cx, half);
        let mut wcx = Context::from_waker(&waker);
        ready!(Pin::new(&mut self.io).poll_flush(&mut wcx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// In split mode, both halves write: the transport gets a waker that
    /// wakes whichever halves are waiting, so neither wake-up is lost.
    fn write_waker(&self, cx: &Context<'_>, half: Half) -> Waker {
        match &self.write_wakers {
            Some(w) => w.register(half, cx.waker()),
            None => cx.waker().clone(),
        }
    }

    pub(crate) fn poll_flush_all(&mut self, cx: &mut Context<'_>, half: Half) -> Poll<Result<()>> {
        // A flush asked for reaches the transport even when we wrote nothing
        // since the last one: it may hold bytes written around us (the hub's
        // direct writes leave the rest of a frame to it).
        self.unflushed = true;
        match ready!(self.poll_write_out(cx, half)) {
            Ok(()) => Poll::Ready(Ok(())),
            // Once a Close is under way, a peer that has finished its side
            // and asks us to stop sending has ended the connection cleanly;
            // the reading half reports how (its Close frame, or not).
            Err(e) if self.conn.state() != State::Open && peer_finished(&e) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    /// Ready once the buffered bytes are at or below the high-water mark.
    pub(crate) fn poll_ready_hwm(&mut self, cx: &mut Context<'_>, half: Half) -> Poll<Result<()>> {
        if self.buffered_amount() <= self.config.write_high_water_mark() {
            return Poll::Ready(Ok(()));
        }
        match self.poll_write_out(cx, half) {
            Poll::Ready(r) => Poll::Ready(r.map_err(Error::from)),
            Poll::Pending if self.buffered_amount() <= self.config.write_high_water_mark() => {
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Arms the timer for `deadline`; ready when it has passed.
    fn poll_timer(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let armed = self.timer_armed && self.timer_deadline() == Some(deadline);
        if !armed {
            match &mut self.timer {
                Some(t) => t.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.timer_armed = true;
        }
        match &mut self.timer {
            Some(t) => t.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }

    /// Handles the core's pending events up to the next message.
    fn next_message(&mut self) -> Option<Message> {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Message(m) => return Some(m),
                Event::Ping(_) => {}
                Event::Pong(_) => {
                    self.pongs = self.pongs.wrapping_add(1);
                    self.conn.measure_rtt(std::time::Instant::now());
                }
                Event::Close(frame) => self.peer_close = frame.map(Box::new),
                Event::Failed(e) => {
                    if self.pending_error.is_none() {
                        self.pending_error = Some(Box::new(match e {
                            ProtocolError::KeepaliveTimeout => Error::KeepaliveTimeout,
                            e => e.into(),
                        }));
                    }
                }
            }
        }
        None
    }

    /// Reads once from the transport and, if `deliver`, feeds the bytes to
    /// the core. Returns how many bytes were read (0 at EOF).
    ///
    /// The bytes land in a buffer shared by all connections of the thread:
    /// the core copies out what it keeps (a partial header, the message being
    /// assembled), so an idle connection holds no read buffer at all.
    fn poll_read_once(&mut self, cx: &mut Context<'_>, deliver: bool) -> Poll<io::Result<usize>> {
        let size = self.config.read_buffer_size();
        let Self { io, conn, .. } = self;
        let mut read = |buf: &mut Vec<u8>| {
            if buf.len() < size {
                buf.resize(size, 0);
            }
            let mut rb = ReadBuf::new(&mut buf[..size]);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut rb))?;
            let filled = rb.filled();
            if deliver && !filled.is_empty() {
                conn.receive(filled);
            }
            Poll::Ready(Ok(filled.len()))
        };
        READ_BUFFER.with(|shared| match shared.try_borrow_mut() {
            Ok(mut buf) => read(&mut buf),
            // Only if a transport's poll_read re-entered a WebSocket on this
            // thread: fall back to a buffer of our own.
            Err(_) => read(&mut Vec::new()),
        })
    }

    /// Reads payload bytes of the current data frame into the message
    /// buffer itself (no copy out of a read buffer; see
    /// [`Connection::direct_read_buf`]). Returns how many bytes were read.
    fn poll_read_direct(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        use bytes::BufMut as _;
        let Self { io, conn, .. } = self;
        let (buf, room) = conn.direct_read_buf(usize::MAX);
        let mut limited = buf.limit(room);
        let read = {
            let reading = tokio::io::AsyncReadExt::read_buf(io, &mut limited);
            std::pin::pin!(reading).poll(cx)
        };
        // Processes what arrived (nothing if the read would block).
        conn.commit_direct_read();
        read
    }

    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        half: Half,
    ) -> Poll<Option<Result<Message>>> {
        loop {
            if self.finish == Finish::Done {
                return Poll::Ready(self.pending_error.take().map(|e| Err(*e)));
            }
            if let Some(message) = self.next_message() {
                return Poll::Ready(Some(Ok(message)));
            }
            let write = self.poll_write_out(cx, half);
            if let Poll::Ready(Err(e)) = write {
                // The transport is gone: nothing more can be said to the peer.
                self.finish = Finish::Done;
                if self.pending_error.is_none() && self.conn.state() != State::Closed {
                    self.pending_error = Some(Box::new(e.into()));
                }
                continue;
            }
            if self.conn.state() == State::Closed {
                if write.is_pending() {
                    return Poll::Pending;
                }
                ready!(self.poll_finish(cx, half));
                continue;
            }
            if write.is_pending() && self.buffered_amount() > self.config.write_high_water_mark() {
                // Backpressure: the peer is not reading what we owe it.
                return Poll::Pending;
            }
            // One timer per connection: the core's next deadline (keepalive
            // ping or pong while open, the close timeout while closing).
            if let Some(deadline) = self.conn.poll_timeout() {
                if self.poll_timer(cx, Instant::from_std(deadline)).is_ready() {
                    // Never earlier than the deadline, or it would not pass.
                    self.conn
                        .handle_timeout(std::time::Instant::now().max(deadline));
                    continue;
                }
            }
            // A large payload is read straight into its message buffer;
            // anything else lands in the thread's shared read buffer.
            let read = if self.conn.direct_read_len() >= self.config.read_buffer_size() as u64 {
                ready!(self.poll_read_direct(cx))
            } else {
                match self.poll_read_once(cx, true) {
                    Poll::Ready(read) => read,
                    Poll::Pending => {
                        // Idle until the peer sends more: keep no buffer.
                        self.conn.release_idle_buffers();
                        return Poll::Pending;
                    }
                }
            };
            match read {
                Ok(0) => self.conn.receive_eof(),
                Ok(_) => {}
                Err(e) => {
                    self.conn.receive_eof();
                    self.pending_error = Some(Box::new(e.into()));
                }
            }
        }
    }

    /// After the core closed: a client waits for the server's TCP close
    /// (RFC 6455 §7.1.1), bounded by the close timeout; then the transport is
    /// shut down.
    ///
    /// The close timer is armed only once something has to be waited for:
    /// a server's shutdown of a TCP stream completes at once, and arming a
    /// timer earlier than the runtime's next wake-up costs a wake of its
    /// driver (a syscall) per connection.
    fn poll_finish(&mut self, cx: &mut Context<'_>, half: Half) -> Poll<()> {
        if self.finish == Finish::Running {
            self.finish = match self.conn.role() {
                Role::Client => Finish::AwaitEof,
                Role::Server => Finish::Shutdown,
            };
            self.timer_armed = false;
        }
        while self.finish == Finish::AwaitEof {
            match self.poll_read_once(cx, false) {
                Poll::Ready(Ok(0) | Err(_)) => self.finish = Finish::Shutdown,
                // Bytes after the close: keep reading, but not past the
                // deadline (a peer could trickle forever).
                Poll::Ready(Ok(_)) => {
                    if self.poll_close_deadline(cx).is_ready() {
                        self.finish = Finish::Shutdown;
                    }
                }
                Poll::Pending => {
                    if self.poll_close_deadline(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.finish = Finish::Shutdown;
                }
            }
        }
        if self.finish == Finish::Shutdown {
            let waker = self.write_waker(cx, half);
            let mut wcx = Context::from_waker(&waker);
            let shutdown = Pin::new(&mut self.io).poll_shutdown(&mut wcx);
            if shutdown.is_pending() && self.poll_close_deadline(cx).is_pending() {
                return Poll::Pending;
            }
            self.finish = Finish::Done;
        }
        Poll::Ready(())
    }

    /// Ready once the close timeout, counted from the first call after the
    /// core closed, has passed.
    fn poll_close_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = match self.timer_deadline() {
            Some(deadline) if self.timer_armed => deadline,
            _ => Instant::now() + self.config.protocol().close_timeout(),
        };
        self.poll_timer(cx, deadline)
    }

    /// The deadline `timer` was last set to, armed or not.
    fn timer_deadline(&self) -> Option<Instant> {
        self.timer.as_ref().map(|t| t.deadline())
    }
}

/// Whether a write failed because the peer finished its side of the stream
/// and asked us to stop sending, without error. Only HTTP/2 says so
/// ([`crate::h2`]); a TCP stream has no such signal.
fn peer_finished(e: &io::Error) -> bool {
    #[cfg(feature = "http2")]
    return crate::h2::is_no_error_reset(e);
    #[cfg(not(feature = "http2"))]
    {
        let _ = e;
        false
    }
}

impl<S> WebSocket<S> {
    /// From now on the transport is polled with a waker that wakes both
    /// halves (see [`split`](Self::split)).
    pub(crate) fn share_write_wakers(&mut self) {
        self.write_wakers = Some(Arc::new(WriteWakers::default()));
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx, Half::Read)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_ready_hwm(cx, Half::Write)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().queue(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_flush_all(cx, Half::Write)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        this.start_close(CloseCode::NORMAL, "")?;
        this.poll_flush_all(cx, Half::Write)
    }
}

#[cfg(test)]
mod sizes {
    use super::*;

    /// What an idle server connection holds inline (no buffer is allocated
    /// before data arrives). Printed with
    /// `cargo test -p volley --lib sizes -- --nocapture`.
    #[test]
    fn an_idle_websocket_is_small() {
        let parts = [
            (
                "WebSocket<TcpStream>",
                size_of::<WebSocket<tokio::net::TcpStream>>(),
            ),
            ("  TcpStream", size_of::<tokio::net::TcpStream>()),
            ("  Connection", size_of::<Connection>()),
            ("  WebSocketConfig", size_of::<WebSocketConfig>()),
            ("  CloseFrame (boxed)", size_of::<CloseFrame>()),
            ("  Error (boxed)", size_of::<Error>()),
            ("  Option<Instant>", size_of::<Option<Instant>>()),
        ];
        for (name, size) in parts {
            println!("{name:<28} {size:>4} bytes");
        }
        // The boxed echo task of `volley echo` is this and a little more:
        // 384 bytes is one of jemalloc's size classes; growing past it
        // costs every idle connection 64 bytes (measured in BENCHMARKS.md).
        assert!(
            size_of::<WebSocket<tokio::net::TcpStream>>() <= 384,
            "WebSocket<TcpStream> grew to {} bytes",
            size_of::<WebSocket<tokio::net::TcpStream>>()
        );
        assert_eq!(size_of::<WebSocketConfig>(), size_of::<usize>());
    }
}

#[cfg(test)]
mod keepalive_spread {
    use super::*;

    /// Any run of consecutive connections gets first pings spread evenly
    /// over the second half of the interval, none later than one interval.
    #[test]
    fn consecutive_connections_do_not_ping_together() {
        let interval = Duration::from_secs(20);
        for start in [0u32, 7, u32::MAX - 50] {
            let mut first_ping: Vec<f64> = (0..200u32)
                .map(|i| {
                    interval.as_secs_f64() * (1.0 - keepalive_share(start.wrapping_add(i)) / 2.0)
                })
                .collect();
            first_ping.sort_by(f64::total_cmp);
            assert!(
                first_ping[0] > 10.0 && first_ping[199] <= 20.0,
                "{first_ping:?}"
            );
            // 200 points over 10 s: evenly, 50 ms apart; at most 3x that.
            let widest = first_ping
                .windows(2)
                .map(|w| w[1] - w[0])
                .fold(0.0, f64::max);
            assert!(widest < 0.15, "a gap of {widest} s");
            assert!(
                first_ping[0] < 10.2 && first_ping[199] > 19.8,
                "{first_ping:?}"
            );
        }
    }

    #[test]
    fn the_start_is_never_later_than_now() {
        let now = std::time::Instant::now();
        let start = keepalive_start(Duration::from_secs(20), now);
        assert!(start <= now && now - start < Duration::from_secs(10));
    }
}
