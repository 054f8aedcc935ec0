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

/// The keepalive clock of one connection. Boxed in every connection that
/// keeps alive, so kept small (80 bytes): the ping's payload is its number,
/// and the last ping's send time serves the next ping's deadline, the
/// pong's and the round trip alike.
#[derive(Clone, Debug)]
pub(crate) struct KeepaliveTimer {
    config: Keepalive,
    /// When the last ping was sent; when keepalive started, before the
    /// first. The next ping is due one interval after it.
    sent: Instant,
    ping: Ping,
    /// The number of the last ping sent; its payload is this, big-endian.
    counter: u64,
    rtt: Option<Duration>,
}

/// Where the last ping stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ping {
    /// None sent yet, or the last was answered and measured.
    Idle,
    /// Sent at `sent`; its pong has not come.
    Outstanding,
    /// Answered; its round trip is not measured yet.
    Answered,
}

impl KeepaliveTimer {
    /// The first ping is due one interval after `now`.
    pub(crate) fn new(config: Keepalive, now: Instant) -> Self {
        Self {
            config,
            sent: now,
            ping: Ping::Idle,
            counter: 0,
            rtt: None,
        }
    }

    /// The next deadline: the pong's while a ping is unanswered, else the
    /// next ping's.
    pub(crate) fn deadline(&self) -> Instant {
        match self.ping {
            Ping::Outstanding => self.sent + self.config.timeout,
            Ping::Idle | Ping::Answered => self.sent + self.config.interval,
        }
    }

    /// What is due at `now`.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Due {
        if now < self.deadline() {
            return Due::Nothing;
        }
        if self.ping == Ping::Outstanding {
            return Due::TimedOut;
        }
        self.counter += 1;
        self.sent = now;
        self.ping = Ping::Outstanding;
        Due::Ping(self.counter.to_be_bytes())
    }

    /// A pong arrived; it answers the outstanding ping if it echoes it.
    pub(crate) fn on_pong(&mut self, payload: &[u8]) {
        if self.ping == Ping::Outstanding && payload == self.counter.to_be_bytes() {
            self.ping = Ping::Answered;
        }
    }

    /// Records the round trip of the answered ping as of `now`.
    pub(crate) fn measure(&mut self, now: Instant) {
        if self.ping == Ping::Answered {
            self.ping = Ping::Idle;
            self.rtt = Some(now.saturating_duration_since(self.sent));
        }
    }

    /// The last measured round trip.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }
}
