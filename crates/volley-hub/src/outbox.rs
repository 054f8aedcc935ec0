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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use volley::PreparedFrame;

use crate::budget::QueueBudget;
use crate::protocol::DisconnectCode;

/// What a queued push costs the budget besides its frame bytes: its entry.
const ENTRY: usize = std::mem::size_of::<Queued>();

/// A frame waiting to be written, with the time its publication was made
/// (for the publish-to-delivery histogram).
#[derive(Debug)]
pub struct Queued {
    /// The frame.
    pub frame: PreparedFrame,
    /// When the publication entered the hub; `None` for other frames.
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
    /// by its task. A boxed slice (two words, not a `Vec`'s three): with
    /// it the outbox and its `Arc` fit jemalloc's 192-byte class, not 224.
    unsubscribed: Box<[Box<str>]>,
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
        let (queued, waker) = self.push_quietly(frame, published);
        if let Some(w) = waker {
            w.wake();
        }
        queued
    }

    /// Queues a push like [`Outbox::push`], but hands back the task's waker
    /// (when the task is waiting) instead of waking it: the fan-out wakes
    /// its subscribers' tasks in turns, so that other tasks of the thread
    /// get a turn between them. The caller must wake it.
    pub(crate) fn push_quietly(
        &self,
        frame: &PreparedFrame,
        published: Option<Instant>,
    ) -> (bool, Option<Waker>) {
        let mut inner = self.lock();
        if inner.directive.is_some() {
            return (false, None);
        }
        if inner.bytes + frame.len() > self.limit {
            self.overflow(&mut inner);
            return (false, None);
        }
        if !self.budget.try_charge(frame.len() + ENTRY) {
            self.budget.disconnected(1);
            self.overflow(&mut inner);
            return (false, None);
        }
        inner.charged += frame.len() + ENTRY;
        Self::add(&mut inner, frame.clone(), published, false, true);
        (true, inner.waker.take())
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
            let mut channels = std::mem::take(&mut inner.unsubscribed).into_vec();
            channels.push(channel.into());
            inner.unsubscribed = channels.into_boxed_slice();
            Self::enqueue(&mut inner, frame, None, true, false);
        }
    }

    /// The channels the server unsubscribed this connection from since the
    /// last call.
    pub(crate) fn take_unsubscribed(&self) -> Vec<Box<str>> {
        std::mem::take(&mut self.lock().unsubscribed).into_vec()
    }

    /// Whether the replies waiting exceed the limit (then the connection
    /// reads no more commands until they are written).
    pub fn reply_backlog(&self) -> bool {
        self.lock().reply_bytes > self.limit
    }

    fn overflow(&self, inner: &mut Inner) {
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
        Self::add(inner, frame, published, reply, charged);
        wake(inner);
    }

    /// Adds a frame to the queue (without waking the task).
    fn add(
        inner: &mut Inner,
        frame: PreparedFrame,
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
            inner.directive = Some(directive);
            wake(&mut inner);
        }
    }

    /// Takes up to `max_bytes` of frames (at least one) into `out`, or the
    /// directive; registers the waker when there is nothing. `buffered` is
    /// what the connection's socket still buffers: pushes taken before are
    /// released from the budget down to that amount (the buffer may also
    /// hold replies, so this keeps at most what it holds).
    pub fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Queued>,
        max_bytes: usize,
        buffered: usize,
    ) -> Poll<Directive> {
        let mut inner = self.lock();
        if inner.in_flight > buffered {
            self.budget.release(inner.in_flight - buffered);
            inner.in_flight = buffered;
        }
        if let Some(d) = &inner.directive {
            return Poll::Ready(d.clone());
        }
        let mut taken = 0;
        while let Some(q) = inner.frames.front() {
            if taken > 0 && taken + q.frame.len() > max_bytes {
                break;
            }
            taken += q.frame.len();
            if let Some(q) = inner.frames.pop_front() {
                self.taken(&mut inner, &q);
                out.push(q);
            }
        }
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
        for q in frames {
            self.taken(&mut inner, &q);
            out.push(q);
        }
    }

    /// Accounts for a frame leaving the queue for the socket: a charged
    /// frame's bytes stay charged (in flight), its entry is released.
    fn taken(&self, inner: &mut Inner, q: &Queued) {
        let len = q.frame.len();
        if q.reply {
            inner.reply_bytes -= len;
        } else {
            inner.bytes -= len;
        }
        if q.charged {
            inner.charged -= len + ENTRY;
            inner.in_flight += len;
            self.budget.release(ENTRY);
        }
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
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0);
        assert_eq!(budget.queued(), 304, "in the socket's buffer: its bytes");
        assert_eq!(outbox.backlog(), 304);
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 100);
        assert_eq!(budget.queued(), 100, "what the socket still buffers");
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0);
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
            b.poll_take(&mut cx, &mut Vec::new(), usize::MAX, 0),
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
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0);
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
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0);
        assert_eq!(budget.queued(), 504, "in the socket's buffer: its bytes");
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0);
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
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out, usize::MAX, 0),
            Poll::Ready(Directive::Disconnect(
                DisconnectCode::SlowConsumer,
                None,
                None
            ))
        );
        assert!(out.is_empty());
        assert!(!outbox.push(&f, None), "nothing is queued after that");
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
            outbox.poll_take(&mut cx, &mut out, 100, 0),
            Poll::Ready(Directive::None)
        );
        assert_eq!(out.len(), 1, "one frame even when it is over the budget");
        assert!(!outbox.reply_backlog());
        assert_eq!(outbox.queued_bytes(), 12);
        out.clear();
        assert!(outbox.push(&frame(10), None));
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out, 12, 0),
            Poll::Ready(Directive::None)
        );
        assert_eq!(out.len(), 1, "the budget stops the second");
    }
}
