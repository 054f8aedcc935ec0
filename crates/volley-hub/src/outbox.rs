//! One client's outbound queue: every frame the hub sends to a connection
//! (replies and pushes alike) goes through it, in order.
//!
//! Publishers push shared, pre-encoded frames without waiting; the
//! connection's task moves them to its socket. The queue is bounded in bytes:
//! a client that does not read is marked slow, its queue is dropped, and its
//! task disconnects it with 4002 so that it reconnects and recovers.
//!
//! Every push is also charged to the hub-wide [`QueueBudget`] while it is
//! held: in the queue (its frame bytes and its entry), then in the socket's
//! write buffer (its frame bytes) until the connection's task reports them
//! written (the `buffered` argument of [`Outbox::poll_take`]). So is a reply
//! charged beforehand with [`Outbox::charge_reply`] (a recovery).
//!
//! On a plain TCP connection the outbox also holds the connection's socket
//! (`crate::direct`): while the task is parked ([`Outbox::poll_take`] with
//! `park`), the fan-out of the connection's thread writes what it queued
//! itself ([`Outbox::write_direct`]) instead of waking the task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use bytes::Bytes;
use volley::{PreparedFrame, PreparedFrames};

use crate::budget::QueueBudget;
use crate::direct::Socket;
use crate::protocol::DisconnectCode;
use crate::session::WRITE_BUDGET;

/// What a queued push costs the budget besides its frame bytes: its entry.
const ENTRY: usize = std::mem::size_of::<Queued>();

/// What a queue entry sends: one message's frame, or several messages'
/// frames joined once (a lane's waiting publications of a channel, queued
/// to each of its subscribers as one entry and written in one piece).
#[derive(Clone, Debug)]
pub enum OutFrame {
    /// One message.
    One(PreparedFrame),
    /// Several messages, back to back.
    Joined(PreparedFrames),
}

impl OutFrame {
    /// The bytes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::One(f) => f.as_bytes(),
            Self::Joined(f) => f.as_bytes(),
        }
    }

    /// The bytes on the wire, shared.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Self::One(f) => f.bytes(),
            Self::Joined(f) => f.bytes(),
        }
    }

    /// Their length.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Never true: a frame has at least a two-byte header, and frames are
    /// joined only when there are some.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// How many messages it holds.
    pub fn messages(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Joined(f) => f.count(),
        }
    }
}

/// A frame to push, borrowed ([`Outbox::push_many_quietly`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum FrameRef<'a> {
    /// One message.
    One(&'a PreparedFrame),
    /// Several, joined.
    Joined(&'a PreparedFrames),
}

impl FrameRef<'_> {
    fn len(self) -> usize {
        match self {
            Self::One(f) => f.len(),
            Self::Joined(f) => f.len(),
        }
    }

    fn to_owned(self) -> OutFrame {
        match self {
            Self::One(f) => OutFrame::One(f.clone()),
            Self::Joined(f) => OutFrame::Joined(f.clone()),
        }
    }
}

/// A frame waiting to be written, with the time its publication was made
/// (for the publish-to-delivery histogram).
#[derive(Debug)]
pub struct Queued {
    /// The frame (or frames).
    pub frame: OutFrame,
    /// When the publication entered the hub (the oldest's, for joined
    /// frames); `None` for other frames.
    pub published: Option<Instant>,
    /// A reply (not counted against the push limit).
    reply: bool,
    /// Charged to the budget: every push, and a reply charged beforehand.
    charged: bool,
}

/// What the connection's task must do besides writing frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Directive {
    /// Keep going.
    None,
    /// Send a `disconnect` push with this code (and reconnect advice, and a
    /// reason other than the code's name), then close with the code.
    Disconnect(DisconnectCode, Option<u64>, Option<Arc<str>>),
    /// Close with 1001 "going away" (end of the drain grace period).
    GoingAway,
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Queued>,
    /// Bytes of pushes queued: what the limit applies to.
    bytes: usize,
    /// Bytes of the queued pushes charged to the budget (their frames and
    /// entries).
    charged: usize,
    /// Bytes of pushes taken for the socket and still charged (until
    /// [`Outbox::poll_take`] hears that the socket took them).
    in_flight: usize,
    /// Bytes of replies queued.
    reply_bytes: usize,
    /// Charged by [`Outbox::charge_reply`] for the next reply (its frame and
    /// entry; included in `charged`).
    reply_charge: usize,
    waker: Option<Waker>,
    directive: Option<Directive>,
    /// Channels the server unsubscribed this connection from, not yet seen
    /// by its task. Boxed (one word, not a `Vec`'s three; rarely any): with
    /// it the outbox and its `Arc` fit jemalloc's 192-byte class, not 224.
    #[allow(clippy::box_collection)] // one word, not three
    unsubscribed: Option<Box<Vec<Box<str>>>>,
    /// The connection's socket, on a plain TCP connection, until the client
    /// is disconnected.
    socket: Option<Arc<Socket>>,
}

/// The queue (shared by the connection's task and everyone who sends to it).
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    limit: usize,
    budget: Arc<QueueBudget>,
    /// Whether the connection's read side woke the task since its last
    /// read: the outbox is also the waker the task polls its read side with
    /// (see [`Outbox::take_read_ready`]).
    read_ready: AtomicBool,
    /// Whether the task is parked: it has written everything and waits, so
    /// the fan-out may write to the socket itself. Set and cleared under the
    /// lock (read without it by the task, which alone sets it).
    parked: AtomicBool,
    /// Whether a fan-out has this outbox on its list to write directly
    /// (once is enough: it writes everything queued). Changed only under
    /// the lock.
    direct_queued: AtomicBool,
}

/// What the fan-out must do after [`Outbox::push_quietly`].
#[derive(Debug)]
pub(crate) enum Next {
    /// Nothing: the task is awake, or the fan-out will write already.
    Nothing,
    /// Wake the task.
    Wake(Waker),
    /// Write directly ([`Outbox::write_direct`]): the task is parked.
    WriteDirect,
}

/// What direct writes handed to sockets, for the hub's metrics.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// Writes (the frames queued to one socket, in one send or more).
    pub(crate) writes: u64,
    /// Frames.
    pub(crate) frames: u64,
    /// Their bytes.
    pub(crate) bytes: u64,
    /// When the oldest publication among them entered the hub.
    pub(crate) oldest: Option<Instant>,
}

impl Outbox {
    /// An empty queue that holds at most `limit` bytes of pushes, charging
    /// them to `budget`.
    pub fn new(limit: usize, budget: Arc<QueueBudget>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limit,
            budget,
            read_ready: AtomicBool::new(true),
            parked: AtomicBool::new(false),
            direct_queued: AtomicBool::new(false),
        }
    }

    /// Shares the connection's socket (a plain TCP connection's), for the
    /// fan-out's direct writes while the task is parked.
    pub(crate) fn attach(&self, socket: Arc<Socket>) {
        self.lock().socket = Some(socket);
    }

    /// The task is running: until it parks again, nothing but the task
    /// writes to the socket. Takes the lock when the task was parked, so a
    /// direct write under way (on another thread) ends first.
    pub(crate) fn unpark(&self) {
        if self.parked.load(Ordering::Acquire) {
            let _inner = self.lock();
            self.parked.store(false, Ordering::Release);
        }
    }

    /// Whether the read side must be polled (it woke the task, or nothing
    /// was read yet); clears the mark. The task polls its read side with this
    /// outbox as the waker ([`Waker::from`] an `Arc<Outbox>`): such a wake-up
    /// marks the read side before it wakes the task, so that a wake-up by a
    /// push alone (a delivery) does not poll the read side for nothing.
    pub(crate) fn take_read_ready(&self) -> bool {
        self.read_ready.swap(false, Ordering::Acquire)
    }

    /// Whether the read side is marked to be polled.
    pub(crate) fn read_ready(&self) -> bool {
        self.read_ready.load(Ordering::Acquire)
    }

    /// Marks the read side to be polled again (more may be buffered, with
    /// no wake-up to come).
    pub(crate) fn set_read_ready(&self) {
        self.read_ready.store(true, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    /// Queues a push. Returns `false` when the client is being disconnected
    /// (the frame is dropped); over the byte limit, or when the hub's budget
    /// cannot take it, the client is marked slow.
    pub fn push(&self, frame: &PreparedFrame, published: Option<Instant>) -> bool {
        let (queued, next) = self.push_quietly(frame, published, false);
        if let Next::Wake(w) = next {
            w.wake();
        }
        queued
    }

    /// Queues a push like [`Outbox::push`], but says what to do instead of
    /// waking the task: the fan-out wakes its subscribers' tasks in turns,
    /// so that other tasks of the thread get a turn between them. With
    /// `direct` (only the fan-out of the connection's own thread), a parked
    /// task is not woken at all: the caller writes for it
    /// ([`Outbox::write_direct`]).
    pub(crate) fn push_quietly(
        &self,
        frame: &PreparedFrame,
        published: Option<Instant>,
        direct: bool,
    ) -> (bool, Next) {
        self.push_many_quietly(std::iter::once((FrameRef::One(frame), published)), direct)
    }

    /// Queues several pushes like [`Outbox::push_quietly`], in order, under
    /// one lock and one charge to the budget: a lane queues what arrived
    /// for a channel meanwhile to each subscriber at once (as frames joined
    /// once for them all, when it can), so that a subscriber's queue (most
    /// likely out of the CPU's caches, among 10,000) is reached once for
    /// them all. The outcome is that of pushing them one by one: all are
    /// queued, or the client is marked slow (its queue dropped) as soon as
    /// one would not fit.
    pub(crate) fn push_many_quietly<'a>(
        &self,
        frames: impl Iterator<Item = (FrameRef<'a>, Option<Instant>)> + Clone,
        direct: bool,
    ) -> (bool, Next) {
        let (count, bytes) = frames
            .clone()
            .fold((0, 0), |(n, len), (f, _)| (n + 1, len + f.len()));
        if count == 0 {
            return (true, Next::Nothing);
        }
        let mut inner = self.lock();
        if inner.directive.is_some() {
            return (false, Next::Nothing);
        }
        if inner.bytes + bytes > self.limit {
            self.overflow(&mut inner);
            return (false, Next::Nothing);
        }
        let charge = bytes + count * ENTRY;
        if !self.budget.try_charge(charge) {
            self.budget.disconnected(1);
            self.overflow(&mut inner);
            return (false, Next::Nothing);
        }
        inner.charged += charge;
        inner.frames.reserve(count);
        for (frame, published) in frames {
            Self::add(&mut inner, frame.to_owned(), published, false, true);
        }
        if direct && self.parked.load(Ordering::Acquire) {
            // Under the lock, as every change of it: no atomic swap needed
            // (a locked instruction per push, at 4M pushes a second).
            if self.direct_queued.load(Ordering::Relaxed) {
                return (true, Next::Nothing);
            }
            self.direct_queued.store(true, Ordering::Relaxed);
            return (true, Next::WriteDirect);
        }
        (true, inner.waker.take().map_or(Next::Nothing, Next::Wake))
    }

    /// Writes what is queued to the socket while the task is parked, adding
    /// what went out to `written`: one frame as it is, several copied into
    /// `scratch` and sent together (as the task does; a vectored send of
    /// many small frames costs the kernel a copy each). Returns the task's
    /// waker when the task must write instead: it is not parked (any more),
    /// or the socket did not take everything (the task then writes the
    /// rest, and waits for the socket).
    pub(crate) fn write_direct(
        &self,
        written: &mut Written,
        scratch: &mut Vec<u8>,
    ) -> Option<Waker> {
        let mut inner = self.lock();
        self.direct_queued.store(false, Ordering::Relaxed);
        if !self.parked.load(Ordering::Acquire) || inner.directive.is_some() {
            return if inner.frames.is_empty() {
                None
            } else {
                inner.waker.take()
            };
        }
        let Some(socket) = inner.socket.take() else {
            return inner.waker.take();
        };
        let frames_before = written.frames;
        let mut all = true;
        while all && !inner.frames.is_empty() {
            let (mut n, mut len) = (0, 0);
            for q in &inner.frames {
                if n > 0 && len + q.frame.len() > WRITE_BUDGET {
                    break;
                }
                len += q.frame.len();
                n += 1;
            }
            let mut sent = match inner.frames.front() {
                Some(q) if n == 1 => socket.send_now(q.frame.as_bytes()),
                _ => {
                    scratch.clear();
                    for q in inner.frames.iter().take(n) {
                        scratch.extend_from_slice(q.frame.as_bytes());
                    }
                    socket.send_now(scratch)
                }
            };
            all = sent == len;
            // Account for the frames the socket took (all or part of).
            let mut release = 0;
            while sent > 0 {
                let Some(q) = inner.frames.pop_front() else {
                    break;
                };
                release += Self::taken(&mut inner, &q);
                let out = q.frame.len().min(sent);
                sent -= out;
                if out < q.frame.len() {
                    socket.keep_rest(q.frame.bytes().slice(out..));
                }
                if q.charged {
                    // What is left of it (kept by the socket) stays
                    // charged, as a frame in the task's write buffer does.
                    inner.in_flight -= out;
                    release += out;
                }
                written.frames += q.frame.messages() as u64;
                written.bytes += q.frame.len() as u64;
                if let Some(at) = q.published {
                    written.oldest = Some(written.oldest.map_or(at, |o| o.min(at)));
                }
            }
            self.budget.release(release);
        }
        inner.socket = Some(socket);
        if written.frames > frames_before {
            written.writes += 1;
        }
        if inner.frames.is_empty() {
            // An idle client keeps no queue buffer.
            inner.frames = VecDeque::new();
        }
        if all {
            return None;
        }
        // The socket is full: the task writes the rest, and waits for it.
        self.parked.store(false, Ordering::Release);
        inner.waker.take()
    }

    /// Charges the budget for the next reply, of `len` frame bytes, which
    /// [`Outbox::reply`] then accounts for like a push (until the socket took
    /// its bytes). `false` (nothing charged) when the budget cannot take it
    /// without eating into the share kept for live pushes, or when the client
    /// is being disconnected.
    pub(crate) fn charge_reply(&self, len: usize) -> bool {
        let mut inner = self.lock();
        if inner.directive.is_some() || !self.budget.try_charge_reply(len + ENTRY) {
            return false;
        }
        inner.reply_charge += len + ENTRY;
        inner.charged += len + ENTRY;
        true
    }

    /// Whether a reply of `len` frame bytes can ever be charged (when the
    /// budget is otherwise empty).
    pub(crate) fn reply_fits_budget(&self, len: usize) -> bool {
        self.budget.reply_fits(len + ENTRY)
    }

    /// Releases what [`Outbox::charge_reply`] charged when the reply will not
    /// be queued after all.
    pub(crate) fn uncharge_reply(&self) {
        let mut inner = self.lock();
        let charge = std::mem::take(&mut inner.reply_charge);
        inner.charged -= charge;
        self.budget.release(charge);
    }

    /// Disconnects the client as slow (4002) to free the hub's budget, unless
    /// it is being disconnected already. Returns the bytes this frees: its
    /// queue's at once, its socket buffer's when the connection ends.
    pub(crate) fn evict(&self) -> usize {
        let mut inner = self.lock();
        if inner.directive.is_some() {
            return 0;
        }
        let freed = inner.charged + inner.in_flight;
        self.overflow(&mut inner);
        freed
    }

    /// Bytes charged to the budget for this client (queued and in flight).
    pub(crate) fn backlog(&self) -> usize {
        let inner = self.lock();
        if inner.directive.is_some() {
            return 0;
        }
        inner.charged + inner.in_flight
    }

    /// Queues a reply. Replies are not limited here: the client asked for
    /// them, and the connection stops reading commands while more than the
    /// limit of replies waits ([`Outbox::reply_backlog`]), so a client that
    /// asks without reading is held back by TCP, not by memory.
    pub fn reply(&self, frame: PreparedFrame) {
        let mut inner = self.lock();
        let charge = std::mem::take(&mut inner.reply_charge);
        if inner.directive.is_none() {
            // A charge is for this frame's bytes and entry; anything else
            // (not expected) is released, the frame queued uncharged.
            let charged = charge > 0 && charge == frame.len() + ENTRY;
            if charge > 0 && !charged {
                inner.charged -= charge;
                self.budget.release(charge);
            }
            Self::enqueue(&mut inner, frame, None, true, charged);
        } else {
            inner.charged -= charge;
            self.budget.release(charge);
        }
    }

    /// Queues the `unsubscribe` push of a subscription the server ended (the
    /// engine has stopped delivering to it, so nothing of the channel follows)
    /// and tells the connection's task, which forgets the subscription before
    /// its next command. Like a reply, it is never dropped by the limit.
    pub(crate) fn unsubscribed(&self, channel: &str, frame: PreparedFrame) {
        let mut inner = self.lock();
        if inner.directive.is_none() {
            inner
                .unsubscribed
                .get_or_insert_default()
                .push(channel.into());
            Self::enqueue(&mut inner, frame, None, true, false);
        }
    }

    /// The channels the server unsubscribed this connection from since the
    /// last call.
    pub(crate) fn take_unsubscribed(&self) -> Vec<Box<str>> {
        self.lock()
            .unsubscribed
            .take()
            .map(|channels| *channels)
            .unwrap_or_default()
    }

    /// Whether the replies waiting exceed the limit (then the connection
    /// reads no more commands until they are written).
    pub fn reply_backlog(&self) -> bool {
        self.lock().reply_bytes > self.limit
    }

    fn overflow(&self, inner: &mut Inner) {
        inner.socket = None;
        inner.frames = VecDeque::new();
        inner.bytes = 0;
        self.budget.release(std::mem::take(&mut inner.charged));
        inner.reply_charge = 0;
        inner.reply_bytes = 0;
        inner.directive = Some(Directive::Disconnect(
            DisconnectCode::SlowConsumer,
            None,
            None,
        ));
        wake(inner);
    }

    fn enqueue(
        inner: &mut Inner,
        frame: PreparedFrame,
        published: Option<Instant>,
        reply: bool,
        charged: bool,
    ) {
        Self::add(inner, OutFrame::One(frame), published, reply, charged);
        wake(inner);
    }

    /// Adds a frame to the queue (without waking the task).
    fn add(
        inner: &mut Inner,
        frame: OutFrame,
        published: Option<Instant>,
        reply: bool,
        charged: bool,
    ) {
        if reply {
            inner.reply_bytes += frame.len();
        } else {
            inner.bytes += frame.len();
        }
        inner.frames.push_back(Queued {
            frame,
            published,
            reply,
            charged,
        });
    }

    /// Asks the task to disconnect the client (the first request wins).
    pub fn disconnect(&self, directive: Directive) {
        let mut inner = self.lock();
        if inner.directive.is_none() || directive == Directive::GoingAway {
            inner.socket = None;
            inner.directive = Some(directive);
            wake(&mut inner);
        }
    }

    /// Takes up to `max_bytes` of frames (at least one) into `out`, or the
    /// directive; registers the waker when there is nothing. `buffered` is
    /// what the connection's socket still buffers: pushes taken before are
    /// released from the budget down to that amount (the buffer may also
    /// hold replies, so this keeps at most what it holds).
    ///
    /// With `park` (the task has nothing buffered and will wait when this is
    /// pending), a pending take also parks the task: until its next
    /// `Outbox::unpark`, the fan-out may write to its socket directly.
    pub fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Queued>,
        max_bytes: usize,
        buffered: usize,
        park: bool,
    ) -> Poll<Directive> {
        let mut inner = self.lock();
        if inner.in_flight > buffered {
            self.budget.release(inner.in_flight - buffered);
            inner.in_flight = buffered;
        }
        if let Some(d) = &inner.directive {
            return Poll::Ready(d.clone());
        }
        let (mut taken, mut release) = (0, 0);
        while let Some(q) = inner.frames.front() {
            if taken > 0 && taken + q.frame.len() > max_bytes {
                break;
            }
            taken += q.frame.len();
            if let Some(q) = inner.frames.pop_front() {
                release += Self::taken(&mut inner, &q);
                out.push(q);
            }
        }
        self.budget.release(release);
        if inner.frames.is_empty() {
            // An idle client keeps no queue buffer.
            inner.frames = VecDeque::new();
        }
        if out.is_empty() {
            if !inner
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.waker = Some(cx.waker().clone());
            }
            if park && inner.socket.is_some() {
                self.parked.store(true, Ordering::Release);
            }
            Poll::Pending
        } else {
            Poll::Ready(Directive::None)
        }
    }

    /// The directive, if any; otherwise registers the waker (while the
    /// socket backs up, only a directive matters).
    pub fn poll_directive(&self, cx: &mut Context<'_>) -> Poll<Directive> {
        let mut inner = self.lock();
        match &inner.directive {
            Some(d) => Poll::Ready(d.clone()),
            None => {
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Takes every queued frame, whatever the directive (the last replies
    /// before a disconnect).
    pub fn take_all(&self, out: &mut Vec<Queued>) {
        let mut inner = self.lock();
        let frames = std::mem::take(&mut inner.frames);
        let mut release = 0;
        for q in frames {
            release += Self::taken(&mut inner, &q);
            out.push(q);
        }
        self.budget.release(release);
    }

    /// Accounts for a frame leaving the queue for the socket: a charged
    /// frame's bytes stay charged (in flight), its entry is to be released.
    /// Returns what the caller releases from the budget (once for all the
    /// frames it takes: the budget's count is shared by every thread).
    #[must_use]
    fn taken(inner: &mut Inner, q: &Queued) -> usize {
        let len = q.frame.len();
        if q.reply {
            inner.reply_bytes -= len;
        } else {
            inner.bytes -= len;
        }
        if q.charged {
            inner.charged -= len + ENTRY;
            inner.in_flight += len;
            return ENTRY;
        }
        0
    }

    /// Bytes of pushes queued (what the limit applies to).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let inner = self.lock();
        self.budget.release(inner.charged + inner.in_flight);
    }
}

impl Wake for Outbox {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// The read side has something: mark it and wake the task (whose waker
    /// every poll of the task leaves here: `poll_take` or `poll_directive`).
    fn wake_by_ref(self: &Arc<Self>) {
        self.set_read_ready();
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

fn wake(inner: &mut Inner) {
    if let Some(w) = inner.waker.take() {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::Waker;

    use volley::Message;

    use super::*;

    fn frame(n: usize) -> PreparedFrame {
        PreparedFrame::new(&Message::binary(vec![0u8; n]))
    }

    fn budget(limit: usize) -> Arc<QueueBudget> {
        Arc::new(QueueBudget::new(
            limit,
            Default::default(),
            Default::default(),
        ))
    }

    /// Every connection holds one `Arc<Outbox>`: the outbox and the `Arc`'s
    /// two counters stay within jemalloc's 192-byte size class (with 8 bytes
    /// more they took a 224-byte one).
    #[test]
    fn an_outbox_fits_a_192_byte_allocation() {
        assert!(std::mem::size_of::<Outbox>() + 16 <= 192);
    }

    #[test]
    fn a_push_is_charged_until_the_socket_took_it_and_released_after() {
        let budget = budget(1 << 20);
        let outbox = Outbox::new(1 << 20, budget.clone());
        assert!(outbox.push(&frame(300), None));
        assert_eq!(budget.queued(), 304 + ENTRY, "its frame and its entry");
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        assert_eq!(budget.queued(), 304, "in the socket's buffer: its bytes");
        assert_eq!(outbox.backlog(), 304);
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 100, false);
        assert_eq!(budget.queued(), 100, "what the socket still buffers");
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        assert_eq!(budget.queued(), 0);
        assert!(outbox.push(&frame(300), None));
        drop(outbox);
        assert_eq!(budget.queued(), 0, "a dropped outbox releases everything");
    }

    #[test]
    fn a_push_past_the_hub_budget_marks_the_client_slow_and_frees_its_queue() {
        let per_push = 304 + ENTRY;
        let budget = budget(3 * per_push);
        let a = Outbox::new(1 << 20, budget.clone());
        let b = Outbox::new(1 << 20, budget.clone());
        assert!(a.push(&frame(300), None));
        assert!(a.push(&frame(300), None));
        assert!(b.push(&frame(300), None));
        assert_eq!(budget.queued(), 3 * per_push);
        assert!(!b.push(&frame(300), None), "the budget is spent");
        assert_eq!(budget.queued(), 2 * per_push, "b's queue is released");
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(
            b.poll_take(&mut cx, &mut Vec::new(), usize::MAX, 0, false),
            Poll::Ready(Directive::Disconnect(
                DisconnectCode::SlowConsumer,
                None,
                None
            ))
        );
        assert_eq!(a.evict(), 2 * per_push, "eviction frees the largest");
        assert_eq!(budget.queued(), 0);
        assert_eq!(a.evict(), 0, "once");
    }

    #[test]
    fn replies_are_not_charged_and_take_all_keeps_pushes_in_flight() {
        let budget = budget(1 << 20);
        let outbox = Outbox::new(1 << 20, budget.clone());
        outbox.reply(frame(500));
        assert_eq!(budget.queued(), 0);
        assert!(outbox.push(&frame(10), None));
        let mut out = Vec::new();
        outbox.take_all(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(budget.queued(), 12);
        let mut cx = Context::from_waker(Waker::noop());
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        assert_eq!(budget.queued(), 0);
    }

    #[test]
    fn a_charged_reply_is_accounted_like_a_push_until_the_socket_took_it() {
        let budget = budget(4 * 1000);
        let outbox = Outbox::new(1 << 20, budget.clone());
        let reply = frame(500);
        assert!(outbox.charge_reply(reply.len()));
        assert_eq!(budget.queued(), 504 + ENTRY, "charged before it is queued");
        outbox.reply(reply);
        assert_eq!(budget.queued(), 504 + ENTRY);
        assert_eq!(outbox.backlog(), 504 + ENTRY, "eviction sees it");
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        assert_eq!(budget.queued(), 504, "in the socket's buffer: its bytes");
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        assert_eq!(budget.queued(), 0, "written");
        outbox.reply(frame(500));
        assert_eq!(budget.queued(), 0, "a reply not charged beforehand is not");
    }

    #[test]
    fn a_reply_past_three_quarters_of_the_budget_is_refused() {
        let budget = budget(4 * 1000);
        let outbox = Outbox::new(1 << 20, budget.clone());
        assert!(outbox.charge_reply(3000 - ENTRY));
        assert!(!outbox.charge_reply(1), "past the trigger");
        assert_eq!(budget.queued(), 3000);
        outbox.uncharge_reply();
        assert_eq!(budget.queued(), 0, "released when not queued after all");
        assert!(outbox.push(&frame(3000), None), "pushes may use the rest");
        assert!(!outbox.charge_reply(1000), "the budget is full of pushes");
        assert_eq!(budget.queued(), 3004 + ENTRY);
    }

    #[test]
    fn a_charged_reply_is_released_with_the_queue_of_a_disconnected_client() {
        let budget = budget(1 << 20);
        let outbox = Outbox::new(1 << 20, budget.clone());
        assert!(outbox.charge_reply(frame(500).len()));
        outbox.reply(frame(500));
        assert_eq!(outbox.evict(), 504 + ENTRY);
        assert_eq!(budget.queued(), 0, "evicted with its queue");
        assert!(!outbox.charge_reply(10), "nothing is charged after that");
        let other = Outbox::new(1 << 20, budget.clone());
        assert!(other.charge_reply(frame(500).len()));
        other.disconnect(Directive::GoingAway);
        other.reply(frame(500));
        assert_eq!(budget.queued(), 0, "a reply dropped for a directive");
        let third = Outbox::new(1 << 20, budget.clone());
        assert!(third.charge_reply(frame(500).len()));
        drop(third);
        assert_eq!(budget.queued(), 0, "a dropped outbox releases its charge");
    }

    #[test]
    fn overflow_marks_the_client_slow_and_drops_the_queue() {
        let outbox = Outbox::new(1000, budget(1 << 20));
        let f = frame(300); // 304 bytes on the wire
        assert!(outbox.push(&f, None));
        assert!(outbox.push(&f, None));
        assert!(outbox.push(&f, None));
        assert_eq!(outbox.queued_bytes(), 912);
        assert!(!outbox.push(&f, None), "the fourth passes 1000 bytes");
        assert_eq!(outbox.queued_bytes(), 0);
        assert_slow(&outbox);
        assert!(!outbox.push(&f, None), "nothing is queued after that");
    }

    #[test]
    fn frames_pushed_together_are_queued_in_order_under_one_charge_or_not_at_all() {
        let budget = budget(1 << 20);
        let outbox = Outbox::new(1000, budget.clone());
        let (a, b) = (frame(100), frame(200)); // 102 and 204 bytes
        let (queued, _) = outbox.push_many_quietly(
            [(FrameRef::One(&a), None), (FrameRef::One(&b), None)].into_iter(),
            false,
        );
        assert!(queued);
        assert_eq!(outbox.queued_bytes(), 306);
        assert_eq!(budget.queued(), 306 + 2 * ENTRY, "each frame and entry");
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        let lens: Vec<usize> = out.iter().map(|q| q.frame.len()).collect();
        assert_eq!(lens, [102, 204], "in the order given");
        assert_eq!(
            budget.queued(),
            306,
            "the entries released, the bytes in flight"
        );
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        assert_eq!(budget.queued(), 0, "written");

        // Joined, the same frames are one entry, of two messages.
        let joined = PreparedFrames::join([&a, &b]);
        let (queued, _) =
            outbox.push_many_quietly(std::iter::once((FrameRef::Joined(&joined), None)), false);
        assert!(queued);
        assert_eq!(budget.queued(), 306 + ENTRY, "the frames and one entry");
        out.clear();
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].frame.messages(), 2);
        assert_eq!(
            out[0].frame.as_bytes(),
            [a.as_bytes(), b.as_bytes()].concat()
        );
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        assert_eq!(budget.queued(), 0, "written");

        // Four frames that pass the limit together, though the first three
        // fit: as pushed one by one, the client is slow and nothing stays.
        let f = frame(300); // 304 bytes
        let (queued, _) =
            outbox.push_many_quietly(std::iter::repeat_n((FrameRef::One(&f), None), 4), false);
        assert!(!queued);
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(budget.queued(), 0);
        assert_slow(&outbox);
    }

    /// The client is being disconnected as slow, nothing left to take.
    fn assert_slow(outbox: &Outbox) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false),
            Poll::Ready(Directive::Disconnect(
                DisconnectCode::SlowConsumer,
                None,
                None
            ))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn replies_are_not_limited_but_reported_and_take_respects_the_budget() {
        let outbox = Outbox::new(100, budget(1 << 20));
        outbox.reply(frame(500));
        assert!(outbox.reply_backlog());
        assert!(
            outbox.push(&frame(10), None),
            "pushes have their own budget"
        );
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out, 100, 0, false),
            Poll::Ready(Directive::None)
        );
        assert_eq!(out.len(), 1, "one frame even when it is over the budget");
        assert!(!outbox.reply_backlog());
        assert_eq!(outbox.queued_bytes(), 12);
        out.clear();
        assert!(outbox.push(&frame(10), None));
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out, 12, 0, false),
            Poll::Ready(Directive::None)
        );
        assert_eq!(out.len(), 1, "the budget stops the second");
    }

    /// A connected loopback pair: the server side shared as a connection's
    /// socket, the client side to read what it gets.
    async fn socket_pair() -> (Arc<Socket>, crate::direct::Io, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let socket = Socket::new(accepted.unwrap().0);
        (
            socket.clone(),
            crate::direct::Io::Shared(socket),
            client.unwrap(),
        )
    }

    /// A waker that counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn read_exactly(client: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = vec![0; n];
        client.read_exact(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn a_parked_task_is_written_for_not_woken_and_an_awake_one_is_woken() {
        let b = budget(1 << 20);
        let outbox = Outbox::new(1 << 20, b.clone());
        let (socket, _io, mut client) = socket_pair().await;
        outbox.attach(socket);
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // Not parked (a take without `park`): a push wakes the task.
        assert!(
            outbox
                .poll_take(&mut cx, &mut Vec::new(), usize::MAX, 0, false)
                .is_pending()
        );
        let (queued, next) = outbox.push_quietly(&frame(10), None, true);
        assert!(queued);
        let Next::Wake(w) = next else {
            panic!("{next:?}")
        };
        w.wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let mut out = Vec::new();
        assert!(
            outbox
                .poll_take(&mut cx, &mut out, usize::MAX, 0, false)
                .is_ready()
        );
        // Parked: two pushes, one direct write of both, no wake-up.
        assert!(
            outbox
                .poll_take(&mut cx, &mut Vec::new(), usize::MAX, 0, true)
                .is_pending()
        );
        let (first, second) = (frame(20), frame(30));
        assert!(matches!(
            outbox.push_quietly(&first, None, true),
            (true, Next::WriteDirect)
        ));
        assert!(matches!(
            outbox.push_quietly(&second, None, true),
            (true, Next::Nothing)
        ));
        let mut written = Written::default();
        assert!(outbox.write_direct(&mut written, &mut Vec::new()).is_none());
        assert_eq!((written.writes, written.frames), (1, 2));
        let both = [first.as_bytes(), second.as_bytes()].concat();
        assert_eq!(written.bytes, both.len() as u64);
        assert_eq!(read_exactly(&mut client, both.len()).await, both);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "a direct write wakes no one"
        );
        // Everything written: nothing of it is charged any more.
        assert_eq!(b.queued(), 0);
        // Still parked: the next push is written directly too.
        assert!(matches!(
            outbox.push_quietly(&first, None, true),
            (true, Next::WriteDirect)
        ));
        // Not by a push from elsewhere (another thread's), which wakes.
        outbox.unpark();
        assert!(outbox.write_direct(&mut written, &mut Vec::new()).is_some());
        assert_eq!(written.frames, 2, "not parked: nothing written");
    }

    #[tokio::test]
    async fn a_full_socket_leaves_the_rest_to_the_task_in_order() {
        use std::future::poll_fn;
        use tokio::io::AsyncWrite;
        let b = budget(64 << 20);
        let outbox = Outbox::new(64 << 20, b.clone());
        let (socket, mut io, mut client) = socket_pair().await;
        outbox.attach(socket.clone());
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // Frames of distinct bytes, written until the socket (never read
        // meanwhile) takes no more.
        let frames: Vec<PreparedFrame> = (0..4096u32)
            .map(|i| PreparedFrame::new(&Message::text(format!("{i:>6}{}", "x".repeat(4000)))))
            .collect();
        let mut pushed = 0;
        let mut written = Written::default();
        let woken = loop {
            assert!(
                outbox
                    .poll_take(&mut cx, &mut Vec::new(), usize::MAX, 0, true)
                    .is_pending()
            );
            assert!(pushed < frames.len(), "the socket took 16 MB");
            outbox.push_quietly(&frames[pushed], None, true);
            pushed += 1;
            if let Some(w) = outbox.write_direct(&mut written, &mut Vec::new()) {
                break w;
            }
        };
        woken.wake();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "a full socket wakes the task"
        );
        let unsent = socket.unsent();
        // What the task must still write: the rest of a frame, then the queue.
        let mut out = Vec::new();
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, unsent, unsent == 0);
        assert!(unsent > 0 || !out.is_empty(), "the socket took everything");
        assert!(!outbox.parked.load(Ordering::SeqCst));
        let expected: Vec<u8> = frames[..pushed]
            .iter()
            .flat_map(|f| f.as_bytes().to_vec())
            .collect();
        let reader =
            tokio::spawn(
                async move { read_exactly(&mut client, expected.len()).await == expected },
            );
        // The task's writes go after the rest of the frame the fan-out began.
        for q in out {
            let mut at = 0;
            while at < q.frame.len() {
                at += poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &q.frame.as_bytes()[at..]))
                    .await
                    .unwrap();
            }
        }
        poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
            .await
            .unwrap();
        assert_eq!(socket.unsent(), 0);
        assert!(reader.await.unwrap(), "every byte once, in order");
        // Written: the budget holds nothing once the task reports it.
        let _ = outbox.poll_take(&mut cx, &mut Vec::new(), usize::MAX, 0, true);
        assert_eq!(b.queued(), 0);
    }

    #[tokio::test]
    async fn nothing_is_written_directly_once_the_client_is_disconnected() {
        let outbox = Outbox::new(1 << 20, budget(1 << 20));
        let (socket, _io, _client) = socket_pair().await;
        outbox.attach(socket);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            outbox
                .poll_take(&mut cx, &mut Vec::new(), usize::MAX, 0, true)
                .is_pending()
        );
        assert!(matches!(
            outbox.push_quietly(&frame(10), None, true),
            (true, Next::WriteDirect)
        ));
        outbox.disconnect(Directive::GoingAway);
        let mut written = Written::default();
        let _ = outbox.write_direct(&mut written, &mut Vec::new());
        assert_eq!(written.frames, 0);
        let mut out = Vec::new();
        outbox.take_all(&mut out);
        assert_eq!(out.len(), 1, "the frame stays for the task");
    }
}
