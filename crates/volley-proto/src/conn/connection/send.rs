//! The send path: messages, fragments, prepared frames, control frames and
//! our Close, encoded into the transmit buffer.

use std::time::Instant;

use bytes::Bytes;

use super::super::assembler::MessageKind;
use super::super::state::CloseAction;
use super::{Connection, Role, SHARE_PAYLOAD_FROM};
use crate::error::SendError;
use crate::frame::utf8::Utf8Validator;
use crate::frame::{CloseCode, FrameHeader, OpCode, PreparedFrame, PreparedFrames, encode_frame};
use crate::message::Message;

impl Connection {
    /// Queues a whole message, compressed when permessage-deflate was
    /// negotiated and the message reaches the size threshold.
    pub fn send(&mut self, message: &Message) -> Result<(), SendError> {
        self.send_message(message, true)
    }

    /// Queues a whole message, never compressed (for secrets: compression
    /// next to attacker-controlled data leaks them, as in CRIME and BREACH).
    pub fn send_uncompressed(&mut self, message: &Message) -> Result<(), SendError> {
        self.send_message(message, false)
    }

    pub(super) fn send_message(
        &mut self,
        message: &Message,
        allow_compression: bool,
    ) -> Result<(), SendError> {
        if !self.state.can_send() {
            return Err(SendError::Closed);
        }
        if self.sending_fragments {
            return Err(SendError::Fragmentation(
                "a fragmented message is in progress",
            ));
        }
        let (opcode, payload) = match message {
            Message::Text(t) => (OpCode::Text, t.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, &b[..]),
        };
        let mask = self.mask_key();
        match &mut self.deflate {
            Some(d) if allow_compression && d.compress && payload.len() >= d.threshold => {
                d.scratch.clear();
                d.deflater.compress(payload, &mut d.scratch);
                encode_frame(&mut self.tx.out, opcode, true, true, mask, &d.scratch);
            }
            _ if mask.is_none() && payload.len() >= SHARE_PAYLOAD_FROM => {
                // Zero copy: the header here, the payload by reference.
                let header = FrameHeader {
                    fin: true,
                    rsv1: false,
                    rsv2: false,
                    rsv3: false,
                    opcode,
                    mask: None,
                    payload_len: payload.len() as u64,
                };
                header.write_to(&mut self.tx.out);
                self.tx.push_shared(message.clone().into_bytes());
            }
            _ => encode_frame(&mut self.tx.out, opcode, true, false, mask, payload),
        }
        Ok(())
    }

    /// Queues a message encoded once by [`PreparedFrame::new`], never
    /// compressed. On a server connection the frame's bytes are copied as
    /// they are; a client must mask every frame with a fresh key, so there
    /// the payload is encoded again.
    pub fn send_prepared(&mut self, frame: &PreparedFrame) -> Result<(), SendError> {
        self.check_prepared()?;
        match self.mask_key() {
            None => self.push_encoded(frame.bytes()),
            mask => encode_frame(
                &mut self.tx.out,
                frame.opcode(),
                true,
                false,
                mask,
                frame.payload(),
            ),
        }
        Ok(())
    }

    /// Queues several messages joined once (see [`PreparedFrames`]), in
    /// order: on a server connection their bytes as they are, on a client
    /// connection each frame masked (encoded again).
    pub fn send_prepared_frames(&mut self, frames: &PreparedFrames) -> Result<(), SendError> {
        if matches!(self.role, Role::Client) {
            for frame in frames.iter() {
                self.send_prepared(&frame)?;
            }
            return Ok(());
        }
        self.check_prepared()?;
        self.push_encoded(frames.bytes());
        Ok(())
    }

    /// Whether a whole prepared message may be queued now.
    fn check_prepared(&self) -> Result<(), SendError> {
        if !self.state.can_send() {
            return Err(SendError::Closed);
        }
        if self.sending_fragments {
            return Err(SendError::Fragmentation(
                "a fragmented message is in progress",
            ));
        }
        Ok(())
    }

    /// Queues unmasked frames as they are: shared when large, else copied.
    fn push_encoded(&mut self, bytes: &Bytes) {
        if bytes.len() >= SHARE_PAYLOAD_FROM {
            self.tx.push_shared(bytes.clone());
        } else {
            self.tx.out.extend_from_slice(bytes);
        }
    }

    /// Queues one frame of a fragmented message (never compressed). The first
    /// call sets the kind; `fin` ends the message. Text is checked to be UTF-8
    /// across fragments.
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        if !self.state.can_send() {
            return Err(SendError::Closed);
        }
        let opcode = if self.sending_fragments {
            OpCode::Continuation
        } else {
            self.send_utf8 = Utf8Validator::new();
            match kind {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            }
        };
        let text = if self.sending_fragments {
            self.fragment_text
        } else {
            kind == MessageKind::Text
        };
        if text {
            self.send_utf8
                .feed(payload)
                .map_err(|_| SendError::InvalidUtf8)?;
            if fin {
                self.send_utf8
                    .finish()
                    .map_err(|_| SendError::InvalidUtf8)?;
            }
        }
        self.fragment_text = text;
        let mask = self.mask_key();
        encode_frame(&mut self.tx.out, opcode, fin, false, mask, payload);
        self.sending_fragments = !fin;
        Ok(())
    }

    /// Queues a ping.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited pong (a heartbeat that expects no answer).
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    pub(super) fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if !self.state.can_send() {
            return Err(SendError::Closed);
        }
        if payload.len() > 125 {
            return Err(SendError::ControlTooLong(payload.len()));
        }
        let mask = self.mask_key();
        encode_frame(&mut self.tx.out, opcode, true, false, mask, payload);
        Ok(())
    }

    /// Starts the closing handshake. The peer has until `now` plus the close
    /// timeout to answer.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if !code.is_allowed_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > 123 {
            return Err(SendError::ReasonTooLong(reason.len()));
        }
        match self.state.on_close_initiated() {
            CloseAction::SendClose => {
                self.write_close(Some(code), reason);
                self.close_deadline = Some(now + self.config.close_timeout());
                Ok(())
            }
            CloseAction::Nothing => Err(SendError::Closed),
        }
    }

    pub(super) fn mask_key(&self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(rand::random()),
            Role::Server => None,
        }
    }

    pub(super) fn write_close(&mut self, code: Option<CloseCode>, reason: &str) {
        let mut payload = [0u8; 125];
        let len = match code {
            Some(code) => {
                payload[..2].copy_from_slice(&code.0.to_be_bytes());
                let reason = truncate_utf8(reason, 123);
                payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                2 + reason.len()
            }
            None => 0,
        };
        let mask = self.mask_key();
        encode_frame(
            &mut self.tx.out,
            OpCode::Close,
            true,
            false,
            mask,
            &payload[..len],
        );
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
