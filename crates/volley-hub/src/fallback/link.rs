//! The state a fallback session shares between its session task and the
//! HTTP requests that carry it: commands posted and not yet read by the
//! session, and the server's messages, numbered, until the client has them.
//!
//! The session task sees it through [`super::carrier::Carrier`] (a
//! `Transport`); the SSE
//! stream takes messages as it writes them; a long-poll takes them without
//! removing them, and the next poll's `ack` drops them, so that a poll whose
//! response was lost is answered again.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

/// How the server's messages reach the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One Server-Sent Events stream for the session's life.
    Sse,
    /// Polls, each answered with what is waiting.
    LongPoll,
}

impl Kind {
    /// The `transport` label of `volley_connections_by_transport`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Sse => "sse",
            Kind::LongPoll => "long-poll",
        }
    }
}

/// A server message and its sequence number (1, 2, ...).
#[derive(Clone, Debug)]
pub(crate) struct Numbered {
    pub(crate) seq: u64,
    pub(crate) json: Bytes,
}

#[derive(Debug)]
struct State {
    /// Command texts posted, not yet read by the session.
    commands: VecDeque<String>,
    /// Messages the client does not have yet.
    out: VecDeque<Numbered>,
    /// Their bytes.
    out_bytes: usize,
    /// The last sequence number given to a message.
    last_seq: u64,
    /// Long-poll: the highest sequence number a poll response carried.
    sent_through: u64,
    /// Long-poll: the highest `ack` received.
    acked: u64,
    /// The session ended: no message follows those in `out`.
    finished: bool,
    /// The client went away: its stream ended, it closed the session, or
    /// it stopped polling.
    gone: bool,
    /// Long-poll: a poll is being answered.
    polling: bool,
    /// Long-poll: when the last poll ended (or the session began).
    idle_since: Instant,
    /// The session task (or its lingering end), waiting for commands, for
    /// the client to take messages, or for polls to end.
    session: Option<Waker>,
    /// The stream or the poll waiting for messages.
    consumer: Option<Waker>,
    /// The POST waiting for the session to read its commands.
    intake: Option<Waker>,
}

/// What a POST to `/connection/send` came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intake {
    /// The next request: its commands were read by the session, in order.
    Accepted,
    /// The request accepted last, again (its response was lost): ignored.
    Replayed,
    /// Neither: not processed.
    OutOfOrder,
    /// The session has ended.
    Ended,
}

/// Why a poll is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PollRefusal {
    /// Another poll of the session is under way (409).
    Busy,
    /// The `ack` is past the last message sent, or behind one acknowledged
    /// before (400).
    BadAck,
}

/// One fallback session's shared state.
#[derive(Debug)]
pub(crate) struct Link {
    kind: Kind,
    state: Mutex<State>,
    /// The `seq` of the last POST accepted; held across a POST so that POSTs
    /// are taken one at a time, in order.
    last_accepted: tokio::sync::Mutex<u64>,
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(w) = slot.take() {
        w.wake();
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

impl Link {
    /// A new session's state.
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            kind,
            state: Mutex::new(State {
                commands: VecDeque::new(),
                out: VecDeque::new(),
                out_bytes: 0,
                last_seq: 0,
                sent_through: 0,
                acked: 0,
                finished: false,
                gone: false,
                polling: false,
                idle_since: Instant::now(),
                session: None,
                consumer: None,
                intake: None,
            }),
            last_accepted: tokio::sync::Mutex::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The carrier.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Takes the commands of POST number `seq` (docs/protocol.md,
    /// "Transports"): the next one is handed to the session, and the call
    /// returns once the session has read them all, so that a session that
    /// reads no more (its replies back up) holds its client's POSTs back.
    pub(crate) async fn post(&self, seq: u64, commands: Vec<String>) -> Intake {
        let mut last = self.last_accepted.lock().await;
        if seq == *last {
            return Intake::Replayed;
        }
        if Some(seq) != last.checked_add(1) {
            return Intake::OutOfOrder;
        }
        {
            let mut s = self.lock();
            if s.finished || s.gone {
                return Intake::Ended;
            }
            s.commands.extend(commands);
            wake(&mut s.session);
        }
        *last = seq;
        poll_fn(|cx| {
            let mut s = self.lock();
            if s.commands.is_empty() || s.finished || s.gone {
                return Poll::Ready(());
            }
            register(&mut s.intake, cx);
            Poll::Pending
        })
        .await;
        Intake::Accepted
    }

    /// The client closed the session, or its stream ended.
    pub(crate) fn client_gone(&self) {
        let mut s = self.lock();
        s.gone = true;
        wake(&mut s.session);
        wake(&mut s.intake);
    }

    /// SSE: hands each waiting message to `each` and drops them;
    /// `None` once the session has ended and everything was taken.
    pub(crate) fn poll_stream(
        &self,
        cx: &mut Context<'_>,
        mut each: impl FnMut(&Numbered),
    ) -> Poll<Option<()>> {
        let mut s = self.lock();
        if !s.out.is_empty() {
            for m in s.out.drain(..) {
                each(&m);
            }
            s.out_bytes = 0;
            wake(&mut s.session);
            return Poll::Ready(Some(()));
        }
        if s.finished {
            return Poll::Ready(None);
        }
        register(&mut s.consumer, cx);
        Poll::Pending
    }

    /// Long-poll: starts a poll that acknowledges every message up to `ack`.
    /// The poll ends when the returned guard is dropped.
    pub(crate) fn begin_poll(&self, ack: u64) -> Result<PollGuard<'_>, PollRefusal> {
        let mut s = self.lock();
        if s.polling {
            return Err(PollRefusal::Busy);
        }
        if ack > s.sent_through || ack < s.acked {
            return Err(PollRefusal::BadAck);
        }
        s.acked = ack;
        while s.out.front().is_some_and(|m| m.seq <= ack) {
            if let Some(m) = s.out.pop_front() {
                s.out_bytes -= m.json.len();
            }
        }
        s.polling = true;
        wake(&mut s.session);
        Ok(PollGuard { link: self })
    }

    /// Long-poll: waits up to `timeout` for messages; returns them (they
    /// stay until acknowledged) with the last one's number, or `None` when
    /// the session has ended and the client has everything.
    pub(crate) async fn wait_messages(
        &self,
        _guard: &PollGuard<'_>,
        ack: u64,
        timeout: Duration,
    ) -> Option<(Vec<Bytes>, u64)> {
        let wait = poll_fn(|cx| {
            let mut s = self.lock();
            if let Some(last) = s.out.back().map(|m| m.seq) {
                s.sent_through = s.sent_through.max(last);
                let messages = s.out.iter().map(|m| m.json.clone()).collect();
                return Poll::Ready(Some((messages, last)));
            }
            if s.finished {
                return Poll::Ready(None);
            }
            register(&mut s.consumer, cx);
            Poll::Pending
        });
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Some((Vec::new(), ack)))
    }

    /// Ready once a long-poll session has had no poll for `timeout` (its
    /// client is taken as gone), registering the waker otherwise. An SSE
    /// session never idles out: its stream's end says when the client left.
    pub(super) fn poll_idle(
        &self,
        cx: &mut Context<'_>,
        sleep: &mut Pin<Box<Sleep>>,
        timeout: Duration,
    ) -> Poll<()> {
        if self.kind != Kind::LongPoll {
            return Poll::Pending;
        }
        let at = {
            let mut s = self.lock();
            register(&mut s.session, cx);
            if s.polling {
                return Poll::Pending;
            }
            s.idle_since + timeout
        };
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        sleep.as_mut().poll(cx)
    }

    /// After the session ended: waits until the client has every message,
    /// or has gone (no poll for `timeout`), so that a long-poll client
    /// still gets the final `disconnect` push.
    pub(crate) async fn linger(&self, timeout: Duration) {
        let mut sleep = Box::pin(tokio::time::sleep(timeout));
        poll_fn(|cx| {
            {
                let mut s = self.lock();
                if s.out.is_empty() || s.gone {
                    return Poll::Ready(());
                }
                register(&mut s.session, cx);
            }
            self.poll_idle(cx, &mut sleep, timeout)
        })
        .await;
    }
}

/// The session task's side (through [`super::carrier::Carrier`]).
impl Link {
    /// The next command posted; `None` once the client has gone.
    pub(super) fn poll_command(&self, cx: &Context<'_>) -> Poll<Option<String>> {
        let mut s = self.lock();
        if s.gone {
            return Poll::Ready(None);
        }
        match s.commands.pop_front() {
            Some(text) => {
                if s.commands.is_empty() {
                    wake(&mut s.intake);
                }
                Poll::Ready(Some(text))
            }
            None => {
                register(&mut s.session, cx);
                Poll::Pending
            }
        }
    }

    /// Bytes of messages the client does not have yet.
    pub(super) fn unsent_bytes(&self) -> usize {
        self.lock().out_bytes
    }

    /// Numbers a message and keeps it for the client.
    pub(super) fn send(&self, json: Bytes) {
        let mut s = self.lock();
        s.last_seq += 1;
        let seq = s.last_seq;
        s.out_bytes += json.len();
        s.out.push_back(Numbered { seq, json });
        wake(&mut s.consumer);
    }

    /// Ready once the client has every message (or has gone).
    pub(super) fn poll_sent(&self, cx: &Context<'_>) -> Poll<()> {
        let mut s = self.lock();
        if s.out_bytes == 0 || s.gone {
            return Poll::Ready(());
        }
        register(&mut s.session, cx);
        Poll::Pending
    }

    /// Whether the client has gone.
    pub(super) fn is_gone(&self) -> bool {
        self.lock().gone
    }

    /// The session ended: no message follows those kept.
    pub(super) fn finish(&self) {
        let mut s = self.lock();
        s.finished = true;
        wake(&mut s.consumer);
        wake(&mut s.intake);
    }
}

/// A long-poll under way; dropping it ends the poll.
#[derive(Debug)]
pub(crate) struct PollGuard<'a> {
    link: &'a Link,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.link.lock();
        s.polling = false;
        s.idle_since = Instant::now();
        wake(&mut s.session);
    }
}
