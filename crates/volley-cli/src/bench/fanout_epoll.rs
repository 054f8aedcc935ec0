//! The epoll subscriber engine of `volley bench fanout` (`--engine epoll`):
//! every subscriber read by one OS thread, at close to the cost of a plain
//! C epoll reader (bench/tcp_fanout_floor.c).
//!
//! The subscribers connect and subscribe as the raw engine's do
//! ([`fanout_raw::subscribe`](super::fanout_raw::subscribe)); their sockets
//! then leave tokio and are registered with one [`mio::Poll`] (epoll on
//! Linux, edge-triggered). The thread waits for up to 1024 readiness events
//! at a time and reads each ready socket into one 64 KiB buffer, through the
//! raw engine's [`Reading`] (frames parsed in place, Pings answered with
//! masked Pongs, every publication checked), until the socket is drained.
//!
//! A socket counts as drained when a read returns `WouldBlock` or fewer
//! bytes than the buffer holds: for a stream socket, a short read means the
//! receive queue was empty (epoll(7)), and any byte arriving later raises a
//! new edge. That saves the extra `recv` per readiness that would only say
//! `EAGAIN` (most readiness events carry one delivery). When the event says
//! the peer closed or the socket failed, the socket is read to the end.
//!
//! A subscriber ends after the stop event (with a Close frame), or as a
//! closed subscriber (an error) on a Close, a protocol error or the end of
//! the stream. The thread ends when every subscriber has, or on
//! [`EpollReader`]'s stop flag.

use std::io::{self, ErrorKind, Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::oneshot;

use super::fanout::Tracker;
use super::fanout_raw::{READ_BUFFER, RawSubscriber, Reading};
use super::raw;

/// Readiness events taken per wait (as the C reader's `epoll_wait`).
const EVENTS: usize = 1024;

/// The waker's token; a subscriber's token is its index.
const WAKE: Token = Token(usize::MAX);

/// A subscriber on the reader thread.
struct Subscriber {
    tcp: TcpStream,
    reading: Reading,
}

/// The reader thread. Dropping it raises the stop flag, wakes the thread
/// and waits for it to end.
pub(super) struct EpollReader {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl EpollReader {
    /// Moves the subscribers' sockets out of tokio (call it on the runtime
    /// that connected them) onto a new reader thread; each subscriber reads
    /// from its `next_offset`. The returned receiver resolves when the
    /// thread ends.
    pub(super) fn start(
        subscribers: Vec<(RawSubscriber, u64)>,
        t: Arc<Tracker>,
    ) -> io::Result<(Self, oneshot::Receiver<()>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let mut subs = Vec::with_capacity(subscribers.len());
        for (index, (sub, next_offset)) in subscribers.into_iter().enumerate() {
            let (tcp, reading) = sub.into_parts(next_offset);
            let mut tcp = TcpStream::from_std(tcp.into_std()?);
            poll.registry()
                .register(&mut tcp, Token(index), Interest::READABLE)?;
            subs.push(Some(Subscriber { tcp, reading }));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (done, finished) = oneshot::channel();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fanout-epoll".into())
            .spawn(move || {
                read_all(poll, subs, &t, &flag);
                let _ = done.send(());
            })?;
        let reader = Self {
            stop,
            waker,
            thread: Some(thread),
        };
        Ok((reader, finished))
    }
}

impl Drop for EpollReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A failed wake leaves the thread to notice the flag at its next
        // event; it ends at the latest when its sockets close.
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The reader thread's loop: until every subscriber has ended or `stop`.
fn read_all(mut poll: Poll, mut subs: Vec<Option<Subscriber>>, t: &Tracker, stop: &AtomicBool) {
    let mut events = Events::with_capacity(EVENTS);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut pongs = Vec::new();
    let mut live = subs.len();
    while live > 0 && !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return t.closed(format!(
                "epoll wait failed ({live} subscribers left unread): {e}"
            ));
        }
        // Touch every ready subscriber's state first: independent loads the
        // CPU overlaps, where the loop below would wait for each cache miss
        // in turn (it showed as most of the thread's own time in a profile).
        std::hint::black_box(
            events
                .iter()
                .filter(|e| subs.get(e.token().0).is_some_and(Option::is_some))
                .count(),
        );
        for event in events.iter() {
            let i = event.token().0;
            let Some(Some(sub)) = subs.get_mut(i) else {
                continue; // the waker
            };
            let Some(end) = sub.drain(event, t, &mut buf, &mut pongs) else {
                continue;
            };
            if let Err(detail) = end {
                t.closed(detail);
            }
            let _ = poll.registry().deregister(&mut sub.tcp);
            subs[i] = None;
            live -= 1;
        }
    }
}

impl Subscriber {
    /// Reads the ready socket until it is drained (see the module's docs).
    /// Returns `Some` when the subscriber is over: `Ok` after the stop
    /// event (its Close sent), or why it failed.
    fn drain(
        &mut self,
        event: &Event,
        t: &Tracker,
        buf: &mut [u8],
        pongs: &mut Vec<u8>,
    ) -> Option<Result<(), String>> {
        let to_the_end = event.is_read_closed() || event.is_error();
        loop {
            let n = match self.tcp.read(buf) {
                Ok(0) => return Some(Err("subscriber connection ended without a Close".into())),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(format!("subscriber connection failed: {e}"))),
            };
            let stop = match self.reading.read(t, &buf[..n], Instant::now(), pongs) {
                Ok(stop) => stop,
                Err(detail) => return Some(Err(detail)),
            };
            if !pongs.is_empty() {
                // A few bytes into a send buffer that holds nothing else:
                // not expected to block, and an error if it does.
                let sent = self.tcp.write_all(pongs);
                pongs.clear();
                if let Err(e) = sent {
                    return Some(Err(format!("subscriber Pong failed: {e}")));
                }
            }
            if stop {
                let _ = self.tcp.write_all(&raw::close_frame(self.reading.key()));
                return Some(Ok(()));
            }
            if n < buf.len() && !to_the_end {
                return None;
            }
        }
    }
}
