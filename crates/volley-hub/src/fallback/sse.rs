//! The body of an SSE session's response (`text/event-stream`): the
//! session's id first, then each server message as an event numbered by its
//! sequence number, and a comment every ping interval so that proxies keep
//! the stream open and the client sees it is alive.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use hyper::body::Frame;
use tokio::time::{Instant, Interval};

use super::link::{Link, Numbered};

/// The event stream of one session. Dropping it (the client went away, or
/// the connection failed) ends the session like a closed WebSocket.
#[derive(Debug)]
pub(crate) struct EventStream {
    link: Arc<Link>,
    /// The first event, until sent.
    hello: Option<Bytes>,
    ping: Interval,
}

impl EventStream {
    pub(crate) fn new(link: Arc<Link>, id: &str, ping_every: Duration) -> Self {
        let hello = format!("event: session\ndata: {{\"session\":\"{id}\"}}\n\n");
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            link,
            hello: Some(Bytes::from(hello)),
            ping,
        }
    }
}

/// Appends one message as an event. The hub's JSON is compact, but the
/// `data` of a publication is the publisher's JSON as it was sent, which may
/// hold line breaks; outside strings (the only place JSON allows them) they
/// are whitespace, so they become spaces and the event keeps one `data`
/// line.
fn event(buf: &mut Vec<u8>, m: &Numbered) {
    buf.extend_from_slice(b"id: ");
    buf.extend_from_slice(m.seq.to_string().as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    let start = buf.len();
    buf.extend_from_slice(&m.json);
    for b in &mut buf[start..] {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    buf.extend_from_slice(b"\n\n");
}

impl Stream for EventStream {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(hello) = self.hello.take() {
            return Poll::Ready(Some(Ok(Frame::data(hello))));
        }
        let mut buf = Vec::new();
        match self.link.poll_stream(cx, |m| event(&mut buf, m)) {
            Poll::Ready(Some(())) => return Poll::Ready(Some(Ok(Frame::data(buf.into())))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if self.ping.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": ping\n\n")))));
        }
        Poll::Pending
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.link.client_gone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_in_a_message_become_spaces() {
        let mut buf = Vec::new();
        let m = Numbered {
            seq: 7,
            json: Bytes::from_static(b"{\"data\":{\r\n\"a\":\n1}}"),
        };
        event(&mut buf, &m);
        assert_eq!(buf, b"id: 7\ndata: {\"data\":{  \"a\": 1}}\n\n");
    }
}
