//! The receive path: bytes from the peer through frame headers, control
//! frames and message assembly to events, including reads straight into the
//! message buffer.

use bytes::Bytes;

use super::super::assembler::MessageKind;
use super::{Connection, DIRECT_READ_GROWTH, Ending, Event, FrameInProgress, Role};
use crate::error::ProtocolError;
use crate::frame::utf8;
use crate::frame::{CloseCode, FrameHeader, OpCode, apply_mask, encode_frame};
use crate::message::{CloseFrame, Utf8Bytes};

impl Connection {
    /// Processes bytes received from the peer.
    ///
    /// Parsing stops at the peer's Close frame or at the first error; the
    /// rest of the input is ignored. Events come out in wire order, and the
    /// close (with its state change and our Close frame) takes effect when
    /// [`poll_event`](Self::poll_event) reaches it: messages read before it
    /// can still be answered, as Autobahn's strict cases expect.
    pub fn receive(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.reading() {
            if let Err(e) = self.receive_step(&mut data) {
                self.end_input(Ending::Failed(e));
            }
        }
    }

    /// Payload bytes of the data frame being received that may be read
    /// straight into the message buffer with
    /// [`direct_read_buf`](Self::direct_read_buf): the rest of an
    /// uncompressed data frame, 0 when there is none.
    ///
    /// For large messages this saves copying every byte out of a read
    /// buffer: the transport writes the payload where the message is
    /// assembled, and it is unmasked and checked in place.
    pub fn direct_read_len(&self) -> u64 {
        match self.frame {
            Some(f)
                if !f.opcode.is_control() && self.reading() && !self.assembler.is_compressed() =>
            {
                f.remaining
            }
            _ => 0,
        }
    }

    /// The buffer of the message being received and how many payload bytes
    /// may be appended to it (at most `max`, at most
    /// [`direct_read_len`](Self::direct_read_len), and never more than the
    /// message received so far or [`DIRECT_READ_GROWTH`] bytes, whichever is
    /// larger: memory grows with what arrives, not with what a header
    /// declares). Append up to that many bytes read from the transport,
    /// then call [`commit_direct_read`](Self::commit_direct_read).
    pub fn direct_read_buf(&mut self, max: usize) -> (&mut Vec<u8>, usize) {
        let remaining = usize::try_from(self.direct_read_len()).unwrap_or(usize::MAX);
        let room = self.assembler.len().max(DIRECT_READ_GROWTH);
        let len = max.min(remaining).min(room);
        self.direct_from = Some(self.assembler.len());
        let frame_left = (remaining - len) as u64;
        (self.assembler.direct_buf(len, frame_left), len)
    }

    /// Processes the payload bytes appended to the buffer of
    /// [`direct_read_buf`](Self::direct_read_buf) (none is fine, after a read
    /// that would block). Bytes past the frame's payload are discarded.
    pub fn commit_direct_read(&mut self) {
        let (Some(start), Some(mut frame)) = (self.direct_from.take(), self.frame) else {
            return;
        };
        let appended = self.assembler.len().saturating_sub(start);
        let n = usize::try_from(frame.remaining).map_or(appended, |r| appended.min(r));
        let mask = frame.mask.map(|k| (k, frame.offset));
        if let Err(e) = self.assembler.commit_direct(start, n, mask) {
            self.end_input(Ending::Failed(e));
            return;
        }
        frame.remaining -= n as u64;
        frame.offset += n;
        self.frame = Some(frame);
        if frame.remaining == 0 {
            self.frame = None;
            if let Err(e) = self.on_frame_end(frame) {
                self.end_input(Ending::Failed(e));
            }
        }
    }

    /// Reports that the peer closed the transport. Unless the closing
    /// handshake was complete, the connection fails with close code 1006.
    pub fn receive_eof(&mut self) {
        if self.reading() {
            self.end_input(Ending::Failed(ProtocolError::Eof));
        }
    }

    /// Consumes a header or a piece of payload from the front of `data`.
    pub(super) fn receive_step(&mut self, data: &mut &[u8]) -> Result<(), ProtocolError> {
        let Some(mut frame) = self.frame else {
            if let Some(header) = self.take_header(data)? {
                self.on_header(header)?;
            }
            return Ok(());
        };
        let take = usize::try_from(frame.remaining)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let (piece, rest) = data.split_at(take);
        *data = rest;
        frame.remaining -= take as u64;
        let mask = frame.mask.map(|k| (k, frame.offset));
        if frame.opcode.is_control() {
            let start = self.control.len();
            self.control.extend_from_slice(piece);
            if let Some((key, offset)) = mask {
                apply_mask(&mut self.control[start..], key, offset);
            }
        } else {
            let max = self.config.max_message_size();
            let inflate = self
                .deflate
                .as_deref_mut()
                .map(|d| (&mut d.inflater, &mut d.scratch));
            self.assembler
                .push(piece, mask, frame.remaining, inflate, max)?;
        }
        frame.offset += take;
        self.frame = Some(frame);
        if frame.remaining == 0 {
            self.frame = None;
            self.on_frame_end(frame)?;
        }
        Ok(())
    }

    /// Takes a complete header from the front of `data`, buffering a partial one.
    pub(super) fn take_header(
        &mut self,
        data: &mut &[u8],
    ) -> Result<Option<FrameHeader>, ProtocolError> {
        if self.header_len == 0 {
            if let Some((header, n)) = FrameHeader::parse(data)? {
                *data = &data[n..];
                return Ok(Some(header));
            }
        }
        loop {
            let have = usize::from(self.header_len);
            let need = if have < 2 {
                2
            } else {
                FrameHeader::len_from_prefix([self.header[0], self.header[1]])
            };
            if have >= 2 && have == need {
                self.header_len = 0;
                return Ok(FrameHeader::parse(&self.header[..need])?.map(|(h, _)| h));
            }
            if data.is_empty() {
                return Ok(None);
            }
            let take = (need - have).min(data.len());
            self.header[have..have + take].copy_from_slice(&data[..take]);
            // At most MAX_HEADER_LEN (14): it fits in a byte.
            self.header_len = (have + take) as u8;
            *data = &data[take..];
        }
    }

    /// Checks a header against the connection's state and limits.
    pub(super) fn on_header(&mut self, h: FrameHeader) -> Result<(), ProtocolError> {
        let data_start = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if h.rsv2 || h.rsv3 || (h.rsv1 && (self.deflate.is_none() || !data_start)) {
            return Err(ProtocolError::ReservedBits(
                u8::from(h.rsv1) << 2 | u8::from(h.rsv2) << 1 | u8::from(h.rsv3),
            ));
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        match h.opcode {
            OpCode::Continuation if !self.assembler.in_progress() => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            OpCode::Text | OpCode::Binary if self.assembler.in_progress() => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            _ => {}
        }
        if !h.opcode.is_control() {
            let compressed = if data_start {
                h.rsv1
            } else {
                self.assembler.is_compressed()
            };
            // Compressed payloads are streamed into the inflater, whose output
            // is what the message limit bounds; their wire size may exceed
            // the plain limits by DEFLATE's worst-case expansion.
            let allow = |limit: usize| {
                if compressed {
                    with_deflate_expansion(limit)
                } else {
                    limit
                }
            };
            let max_frame = allow(self.config.max_frame_size());
            if h.payload_len > max_frame as u64 {
                return Err(ProtocolError::FrameTooLarge {
                    len: h.payload_len,
                    max: max_frame,
                });
            }
            if data_start {
                self.wire_len = 0;
            }
            self.wire_len = self.wire_len.saturating_add(h.payload_len);
            let max = self.config.max_message_size();
            if self.wire_len > allow(max) as u64 {
                return Err(ProtocolError::MessageTooLarge { max });
            }
            match h.opcode {
                OpCode::Text => self.assembler.start(MessageKind::Text, h.rsv1),
                OpCode::Binary => self.assembler.start(MessageKind::Binary, h.rsv1),
                _ => {}
            }
        } else {
            self.control.clear();
        }
        let frame = FrameInProgress {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask,
            remaining: h.payload_len,
            offset: 0,
        };
        if h.payload_len == 0 {
            self.on_frame_end(frame)
        } else {
            self.frame = Some(frame);
            Ok(())
        }
    }

    pub(super) fn on_frame_end(&mut self, frame: FrameInProgress) -> Result<(), ProtocolError> {
        match frame.opcode {
            OpCode::Close => {
                let close = parse_close(&self.control)?;
                self.end_input(Ending::Close(close));
            }
            OpCode::Ping => {
                if self.state.can_send() {
                    let mask = self.mask_key();
                    encode_frame(
                        &mut self.tx.out,
                        OpCode::Pong,
                        true,
                        false,
                        mask,
                        &self.control,
                    );
                }
                self.events
                    .push_back(Event::Ping(Bytes::copy_from_slice(&self.control)));
            }
            OpCode::Pong => {
                if let Some(k) = &mut self.keepalive {
                    k.on_pong(&self.control);
                }
                self.events
                    .push_back(Event::Pong(Bytes::copy_from_slice(&self.control)));
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if frame.fin {
                    let max = self.config.max_message_size();
                    let inflater = self.deflate.as_mut().map(|d| &mut d.inflater);
                    let message = self.assembler.finish(inflater, max)?;
                    self.events.push_back(Event::Message(message));
                }
            }
        }
        Ok(())
    }
}

/// A limit raised by DEFLATE's worst case: incompressible data grows by a
/// few bytes per block; 1/64 plus 1 KiB is well above it.
fn with_deflate_expansion(limit: usize) -> usize {
    limit.saturating_add(limit / 64).saturating_add(1024)
}

/// Parses and checks a Close frame's payload.
fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::TruncatedClose),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_allowed_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            utf8::validate(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            let reason = Utf8Bytes::from_validated(Bytes::copy_from_slice(reason));
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::message::Message;

    fn client_frames(messages: &[Message]) -> Vec<u8> {
        let mut client = Connection::new(Role::Client, Config::default(), None);
        for m in messages {
            client.send(m).unwrap();
        }
        let mut wire = Vec::new();
        client.poll_transmit(&mut wire);
        wire
    }

    fn messages(server: &mut Connection) -> Vec<Result<Message, ProtocolError>> {
        std::iter::from_fn(|| server.poll_event())
            .filter_map(|e| match e {
                Event::Message(m) => Some(Ok(m)),
                Event::Failed(e) => Some(Err(e)),
                _ => None,
            })
            .collect()
    }

    /// Feeds `wire` as a transport would: `receive` for what the read
    /// buffer gets, direct reads of `chunk` bytes whenever a payload is open.
    fn drive(server: &mut Connection, mut wire: &[u8], chunk: usize) {
        while !wire.is_empty() {
            if server.direct_read_len() > 0 {
                let (buf, room) = server.direct_read_buf(chunk);
                let n = room.min(wire.len());
                buf.extend_from_slice(&wire[..n]);
                wire = &wire[n..];
                server.commit_direct_read();
            } else {
                let n = 7.min(wire.len());
                server.receive(&wire[..n]);
                wire = &wire[n..];
            }
        }
    }

    #[test]
    fn direct_reads_assemble_the_same_messages() {
        let big = Message::binary(
            (0..200_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        let text = Message::text("héllo ".repeat(30_000));
        let sent = vec![big, Message::text("small"), text];
        let wire = client_frames(&sent);
        for chunk in [1, 1000, 65_536, usize::MAX] {
            let mut server = Connection::new(Role::Server, Config::default(), None);
            drive(&mut server, &wire, chunk);
            let got: Vec<Message> = messages(&mut server)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, sent, "chunk {chunk}");
        }
    }

    #[test]
    fn invalid_utf8_read_directly_fails_the_connection() {
        let mut payload = "a".repeat(100_000).into_bytes();
        payload[70_000] = 0xFF;
        let mut wire = Vec::new();
        encode_frame(
            &mut wire,
            OpCode::Text,
            true,
            false,
            Some([9, 8, 7, 6]),
            &payload,
        );
        let mut server = Connection::new(Role::Server, Config::default(), None);
        drive(&mut server, &wire, 65_536);
        assert_eq!(messages(&mut server), vec![Err(ProtocolError::InvalidUtf8)]);
    }

    #[test]
    fn a_declared_length_alone_does_not_reserve_memory() {
        let mut server = Connection::new(Role::Server, Config::default(), None);
        let mut header = Vec::new();
        FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode: OpCode::Binary,
            mask: Some([1, 2, 3, 4]),
            payload_len: 10 << 20,
        }
        .write_to(&mut header);
        server.receive(&header);
        assert_eq!(server.direct_read_len(), 10 << 20);
        let (buf, room) = server.direct_read_buf(usize::MAX);
        assert_eq!(room, DIRECT_READ_GROWTH);
        assert!(buf.capacity() <= DIRECT_READ_GROWTH + 64);
        server.commit_direct_read();
        assert!(server.assembler_capacity() <= DIRECT_READ_GROWTH + 64);
    }

    #[test]
    fn nothing_to_read_directly_outside_data_payloads() {
        let mut server = Connection::new(Role::Server, Config::default(), None);
        assert_eq!(server.direct_read_len(), 0);
        // Inside a ping's payload: control frames go through `receive`.
        let mut ping = Vec::new();
        encode_frame(
            &mut ping,
            OpCode::Ping,
            true,
            false,
            Some([1, 2, 3, 4]),
            b"abc",
        );
        server.receive(&ping[..ping.len() - 1]);
        assert_eq!(server.direct_read_len(), 0);
        // A commit without a direct read changes nothing.
        server.commit_direct_read();
        server.receive(&ping[ping.len() - 1..]);
        assert!(matches!(server.poll_event(), Some(Event::Ping(p)) if &p[..] == b"abc"));
    }
}
