//! The connection state and every transition of it (RFC 6455 §7).
//!
//! ```text
//!              send Close                     receive Close
//!   Open ─────────────────────▶ CloseSent ─────────────────────▶ Closed
//!     │                             │
//!     │ receive Close               │ close timeout / fail / EOF
//!     │ (our reply is queued)       ▼
//!     ├───────────────────────────▶ Closed
//!     │ fail (our Close with the error code is queued)
//!     ├───────────────────────────▶ Closed
//!     │ transport EOF
//!     └───────────────────────────▶ Closed
//! ```
//!
//! A peer's Close is answered as soon as it is read, so "close received, not
//! yet sent" is never observable. Once `Closed`, input is ignored and the
//! transport should be shut down after the queued bytes are written: at once
//! by a server; a client first waits (bounded by the close timeout) for the
//! server to close the TCP connection, as RFC 6455 §7.1.1 asks.

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a Close frame and wait for the peer's; incoming messages are
    /// still delivered, nothing new may be sent.
    CloseSent,
    /// The closing handshake is over, or the connection failed.
    Closed,
}

/// What the connection must do after a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseAction {
    /// Queue a Close frame (the reply, or our own).
    SendClose,
    /// Nothing to send.
    Nothing,
}

impl State {
    /// Data and pings may be sent only while open.
    pub fn can_send(self) -> bool {
        self == Self::Open
    }

    /// Input is parsed until closed.
    pub fn can_receive(self) -> bool {
        self != Self::Closed
    }

    /// We start the closing handshake.
    pub(crate) fn on_close_initiated(&mut self) -> CloseAction {
        match self {
            Self::Open => {
                *self = Self::CloseSent;
                CloseAction::SendClose
            }
            Self::CloseSent | Self::Closed => CloseAction::Nothing,
        }
    }

    /// The peer's Close frame arrived.
    pub(crate) fn on_close_received(&mut self) -> CloseAction {
        let action = match self {
            Self::Open => CloseAction::SendClose,
            Self::CloseSent | Self::Closed => CloseAction::Nothing,
        };
        *self = Self::Closed;
        action
    }

    /// The connection fails (protocol error, limit, timeout, EOF).
    /// A Close frame is sent only if none was sent yet.
    pub(crate) fn on_failure(&mut self) -> CloseAction {
        let action = match self {
            Self::Open => CloseAction::SendClose,
            Self::CloseSent | Self::Closed => CloseAction::Nothing,
        };
        *self = Self::Closed;
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition() {
        let mut s = State::Open;
        assert_eq!(s.on_close_initiated(), CloseAction::SendClose);
        assert_eq!(s, State::CloseSent);
        assert!(!s.can_send() && s.can_receive());
        assert_eq!(s.on_close_initiated(), CloseAction::Nothing);
        assert_eq!(s.on_close_received(), CloseAction::Nothing);
        assert_eq!(s, State::Closed);
        assert!(!s.can_receive());

        let mut s = State::Open;
        assert_eq!(s.on_close_received(), CloseAction::SendClose);
        assert_eq!(s, State::Closed);

        let mut s = State::Open;
        assert_eq!(s.on_failure(), CloseAction::SendClose);
        assert_eq!(s.on_failure(), CloseAction::Nothing);

        let mut s = State::CloseSent;
        assert_eq!(s.on_failure(), CloseAction::Nothing);
        assert_eq!(s, State::Closed);
    }
}
