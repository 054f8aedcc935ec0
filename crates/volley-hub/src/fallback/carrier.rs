//! A fallback session's carrier, as its session task sees it: the commands
//! posted come in, the messages go to the [`Link`] for the SSE stream or the
//! polls to take.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;
use volley::{Message, PreparedFrame};

use super::link::Link;
use crate::outbox::OutFrame;
use crate::transport::{Gone, Transport};

/// The session task's side of a [`Link`]. Dropping it (the session ended)
/// ends the stream, or the polls once the client has everything.
#[derive(Debug)]
pub(crate) struct Carrier {
    link: Arc<Link>,
    idle: Pin<Box<Sleep>>,
    session_timeout: Duration,
}

impl Carrier {
    /// The carrier of a session; a long-poll session whose client does not
    /// poll for `session_timeout` is over.
    pub(crate) fn new(link: Arc<Link>, session_timeout: Duration) -> Self {
        Self {
            link,
            idle: Box::pin(tokio::time::sleep(session_timeout)),
            session_timeout,
        }
    }

    /// Whether the client is still there (a long-poll client that stopped
    /// polling is taken as gone).
    fn poll_alive(&mut self, cx: &mut Context<'_>) -> Result<(), Gone> {
        if self
            .link
            .poll_idle(cx, &mut self.idle, self.session_timeout)
            .is_ready()
        {
            self.link.client_gone();
        }
        if self.link.is_gone() {
            return Err(Gone::Fallback);
        }
        Ok(())
    }
}

impl Carrier {
    /// Sends a message's payload (the link frames it as an event or a
    /// poll's line).
    fn send(&self, frame: &PreparedFrame) {
        let header = frame.len() - frame.payload().len();
        self.link.send(frame.bytes().slice(header..));
    }
}

impl Transport for Carrier {
    const HAS_CLOSE_CODE: bool = false;

    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Gone>>> {
        if self.poll_alive(cx).is_err() {
            return Poll::Ready(None);
        }
        self.link
            .poll_command(cx)
            .map(|text| text.map(|t| Ok(Message::text(t))))
    }

    fn buffered_amount(&self) -> usize {
        self.link.unsent_bytes()
    }

    fn queue(&mut self, frame: &OutFrame) -> Result<(), Gone> {
        match frame {
            OutFrame::One(frame) => self.send(frame),
            OutFrame::Joined(frames) => frames.iter().for_each(|frame| self.send(&frame)),
        }
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        self.poll_alive(cx)?;
        self.link.poll_sent(cx).map(Ok)
    }

    async fn close(&mut self, _code: u16, _reason: &str) {
        // The `disconnect` push, when there is one, is the last message; the
        // stream ends (or polls get 404) after it.
        self.link.finish();
    }
}

impl Drop for Carrier {
    fn drop(&mut self) {
        self.link.finish();
    }
}
