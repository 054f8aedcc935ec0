//! Keepalive: a ping every interval, the connection failed with 1011 when
//! the pong does not come back within the timeout, and the round trip
//! measured. Its deadlines are the connection's
//! [`poll_timeout`](super::Connection::poll_timeout) while it is open, so a
//! driver keeps one timer per connection.

use std::time::{Duration, Instant};

/// Keepalive pings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between pings.
    pub interval: Duration,
    /// How long to wait for the pong before failing with 1011.
    pub timeout: Duration,
}

/// What a keepalive deadline asks of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing yet.
    Nothing,
    /// Send a ping with this payload.
    Ping([u8; 8]),
    /// The last ping went unanswered for too long.
    TimedOut,
}

/// The keepalive clock of one connection.
#[derive(Clone, Debug)]
pub(crate) struct KeepaliveTimer {
    config: Keepalive,
    next_ping: Instant,
    /// The payload of the unanswered ping and when it was sent.
    outstanding: Option<([u8; 8], Instant)>,
    counter: u64,
    /// When the ping the last pong answered was sent, until measured.
    answered: Option<Instant>,
    rtt: Option<Duration>,
}

impl KeepaliveTimer {
    /// The first ping is due one interval after `now`.
    pub(crate) fn new(config: Keepalive, now: Instant) -> Self {
        Self {
            config,
            next_ping: now + config.interval,
            outstanding: None,
            counter: 0,
            answered: None,
            rtt: None,
        }
    }

    /// The next deadline: the pong's while a ping is unanswered, else the
    /// next ping's.
    pub(crate) fn deadline(&self) -> Instant {
        match self.outstanding {
            Some((_, sent)) => sent + self.config.timeout,
            None => self.next_ping,
        }
    }

    /// What is due at `now`.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Due {
        if now < self.deadline() {
            return Due::Nothing;
        }
        if self.outstanding.is_some() {
            return Due::TimedOut;
        }
        self.counter += 1;
        let payload = self.counter.to_be_bytes();
        self.outstanding = Some((payload, now));
        self.next_ping = now + self.config.interval;
        Due::Ping(payload)
    }

    /// A pong arrived; it answers the outstanding ping if it echoes it.
    pub(crate) fn on_pong(&mut self, payload: &[u8]) {
        if let Some((expected, sent)) = self.outstanding {
            if payload == expected {
                self.outstanding = None;
                self.answered = Some(sent);
            }
        }
    }

    /// Records the round trip of the answered ping as of `now`.
    pub(crate) fn measure(&mut self, now: Instant) {
        if let Some(sent) = self.answered.take() {
            self.rtt = Some(now.saturating_duration_since(sent));
        }
    }

    /// The last measured round trip.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }
}
