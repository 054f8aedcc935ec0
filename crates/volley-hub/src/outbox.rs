//! One client's outbound queue: every frame the hub sends to a connection
//! (replies and pushes alike) goes through it, in order.
//!
//! Publishers push shared, pre-encoded frames without waiting; the
//! connection's task moves them to its socket. The queue is bounded in bytes:
//! a client that does not read is marked slow, its queue is dropped, and its
//! task disconnects it with 4002 so that it reconnects and recovers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use volley::PreparedFrame;

use crate::protocol::DisconnectCode;

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
    /// Bytes of replies queued.
    reply_bytes: usize,
    waker: Option<Waker>,
    directive: Option<Directive>,
    /// Channels the server unsubscribed this connection from, not yet seen
    /// by its task.
    unsubscribed: Vec<Box<str>>,
}

/// The queue (shared by the connection's task and everyone who sends to it).
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    limit: usize,
}

impl Outbox {
    /// An empty queue that holds at most `limit` bytes of pushes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    /// Queues a push. Returns `false` when the client is being disconnected
    /// (the frame is dropped); over the byte limit, the client is marked slow.
    pub fn push(&self, frame: &PreparedFrame, published: Option<Instant>) -> bool {
        let mut inner = self.lock();
        if inner.directive.is_some() {
            return false;
        }
        if inner.bytes + frame.len() > self.limit {
            Self::overflow(&mut inner);
            return false;
        }
        Self::enqueue(&mut inner, frame.clone(), published, false);
        true
    }

    /// Queues a reply. Replies are not limited here: the client asked for
    /// them, and the connection stops reading commands while more than the
    /// limit of replies waits ([`Outbox::reply_backlog`]), so a client that
    /// asks without reading is held back by TCP, not by memory.
    pub fn reply(&self, frame: PreparedFrame) {
        let mut inner = self.lock();
        if inner.directive.is_none() {
            Self::enqueue(&mut inner, frame, None, true);
        }
    }

    /// Queues the `unsubscribe` push of a subscription the server ended (the
    /// engine has stopped delivering to it, so nothing of the channel follows)
    /// and tells the connection's task, which forgets the subscription before
    /// its next command. Like a reply, it is never dropped by the limit.
    pub(crate) fn unsubscribed(&self, channel: &str, frame: PreparedFrame) {
        let mut inner = self.lock();
        if inner.directive.is_none() {
            inner.unsubscribed.push(channel.into());
            Self::enqueue(&mut inner, frame, None, true);
        }
    }

    /// The channels the server unsubscribed this connection from since the
    /// last call.
    pub(crate) fn take_unsubscribed(&self) -> Vec<Box<str>> {
        std::mem::take(&mut self.lock().unsubscribed)
    }

    /// Whether the replies waiting exceed the limit (then the connection
    /// reads no more commands until they are written).
    pub fn reply_backlog(&self) -> bool {
        self.lock().reply_bytes > self.limit
    }

    fn overflow(inner: &mut Inner) {
        inner.frames = VecDeque::new();
        inner.bytes = 0;
        inner.reply_bytes = 0;
        inner.directive = Some(Directive::Disconnect(
            DisconnectCode::SlowConsumer,
            None,
            None,
        ));
        wake(inner);
    }

    fn enqueue(inner: &mut Inner, frame: PreparedFrame, published: Option<Instant>, reply: bool) {
        if reply {
            inner.reply_bytes += frame.len();
        } else {
            inner.bytes += frame.len();
        }
        inner.frames.push_back(Queued {
            frame,
            published,
            reply,
        });
        wake(inner);
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
    /// directive; registers the waker when there is nothing.
    pub fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Queued>,
        max_bytes: usize,
    ) -> Poll<Directive> {
        let mut inner = self.lock();
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
                if q.reply {
                    inner.reply_bytes -= q.frame.len();
                } else {
                    inner.bytes -= q.frame.len();
                }
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
        out.extend(inner.frames.drain(..));
        inner.bytes = 0;
        inner.reply_bytes = 0;
    }

    /// Bytes of pushes queued (what the limit applies to).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
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

    #[test]
    fn overflow_marks_the_client_slow_and_drops_the_queue() {
        let outbox = Outbox::new(1000);
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
            outbox.poll_take(&mut cx, &mut out, usize::MAX),
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
        let outbox = Outbox::new(100);
        outbox.reply(frame(500));
        assert!(outbox.reply_backlog());
        assert!(
            outbox.push(&frame(10), None),
            "pushes have their own budget"
        );
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out, 100),
            Poll::Ready(Directive::None)
        );
        assert_eq!(out.len(), 1, "one frame even when it is over the budget");
        assert!(!outbox.reply_backlog());
        assert_eq!(outbox.queued_bytes(), 12);
        out.clear();
        assert!(outbox.push(&frame(10), None));
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out, 12),
            Poll::Ready(Directive::None)
        );
        assert_eq!(out.len(), 1, "the budget stops the second");
    }
}
