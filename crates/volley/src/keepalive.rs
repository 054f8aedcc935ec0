//! Keepalive pings: one every interval, a close with 1011 when the pong
//! does not come back within the timeout, and the round-trip time measured.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::config::Keepalive;

/// What the keepalive timer asks for.
pub(crate) enum Action {
    /// Send a ping with this payload.
    Ping([u8; 8]),
    /// The last ping went unanswered for too long.
    TimedOut,
}

pub(crate) struct KeepaliveState {
    config: Keepalive,
    next_ping: Instant,
    outstanding: Option<([u8; 8], Instant)>,
    counter: u64,
    rtt: Option<Duration>,
    sleep: Pin<Box<Sleep>>,
}

impl KeepaliveState {
    pub(crate) fn new(config: Keepalive) -> Self {
        let next_ping = Instant::now() + config.interval;
        Self {
            config,
            next_ping,
            outstanding: None,
            counter: 0,
            rtt: None,
            sleep: Box::pin(tokio::time::sleep_until(next_ping)),
        }
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<Action> {
        loop {
            let deadline = match self.outstanding {
                Some((_, sent)) => sent + self.config.timeout,
                None => self.next_ping,
            };
            if now >= deadline {
                if self.outstanding.is_some() {
                    return Poll::Ready(Action::TimedOut);
                }
                self.counter += 1;
                let payload = self.counter.to_be_bytes();
                self.outstanding = Some((payload, now));
                self.next_ping = now + self.config.interval;
                return Poll::Ready(Action::Ping(payload));
            }
            if self.sleep.deadline() != deadline {
                self.sleep.as_mut().reset(deadline);
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    pub(crate) fn on_pong(&mut self, payload: &[u8], now: Instant) {
        if let Some((expected, sent)) = self.outstanding {
            if payload == expected {
                self.rtt = Some(now - sent);
                self.outstanding = None;
            }
        }
    }
}
