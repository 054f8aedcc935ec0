//! The connection state machine: bytes in, events and bytes out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::assembler::{Assembler, MessageKind};
use super::keepalive::{Due, Keepalive, KeepaliveTimer};
use super::state::{CloseAction, State};
use crate::config::Config;
use crate::deflate::DeflateParams;
use crate::deflate::codec::{Deflater, Inflater};
use crate::error::{ProtocolError, SendError};
use crate::frame::utf8::{self, Utf8Validator};
use crate::frame::{
    CloseCode, FrameHeader, MAX_HEADER_LEN, OpCode, PreparedFrame, apply_mask, encode_frame,
};
use crate::message::{CloseFrame, Message, Utf8Bytes};

/// Which end of the connection this is. Clients mask what they send and
/// require unmasked frames; servers the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The end that opened the connection.
    Client,
    /// The end that accepted it.
    Server,
}

/// What the connection reports to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete text or binary message.
    Message(Message),
    /// A ping; the pong is already queued.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer's Close frame. The closing handshake is complete: our reply
    /// (or our earlier Close) is queued or sent. `None` when it had no code.
    Close(Option<CloseFrame>),
    /// The connection failed. A Close frame with the error's code is queued
    /// when one may still be sent.
    Failed(ProtocolError),
}

/// How input ended, applied when the events before it have been polled.
#[derive(Clone, Debug)]
enum Ending {
    /// The peer's Close frame.
    Close(Option<CloseFrame>),
    /// A protocol error or EOF.
    Failed(ProtocolError),
}

/// Payloads at least this long go out by reference (the message's shared
/// `Bytes`, written with a vectored write) instead of being copied, when the
/// frame is unmasked and uncompressed. Below it a copy is cheaper than a
/// separate piece.
const SHARE_PAYLOAD_FROM: usize = 4 << 10;

/// A direct read may grow the message buffer by this much even when less
/// of the message has arrived (see [`Connection::direct_read_buf`]).
pub const DIRECT_READ_GROWTH: usize = 64 << 10;

/// A part of the output queue ahead of the tail of `out`.
#[derive(Debug)]
enum Piece {
    /// The next this many bytes of `out` (from `out_pos`).
    Out(usize),
    /// Shared bytes written as they are: a large payload or a prepared frame.
    Shared(Bytes),
}

/// The frame being received.
#[derive(Clone, Copy, Debug)]
struct FrameInProgress {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    offset: usize,
}

/// Negotiated permessage-deflate state.
#[derive(Debug)]
struct Deflate {
    inflater: Inflater,
    deflater: Deflater,
    /// False when our window is 8 bits, which zlib cannot honor: we then send
    /// every message uncompressed.
    compress: bool,
    threshold: usize,
}

/// A WebSocket connection after the opening handshake, without I/O.
///
/// Feed received bytes to [`receive`](Self::receive), take events from
/// [`poll_event`](Self::poll_event) and bytes to write from
/// [`poll_transmit`](Self::poll_transmit). Time comes in as an argument: call
/// [`handle_timeout`](Self::handle_timeout) when
/// [`poll_timeout`](Self::poll_timeout) passes.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    frame: Option<FrameInProgress>,
    control: Vec<u8>,
    assembler: Assembler,
    events: VecDeque<Event>,
    /// Bytes to write: the pieces in order, then the rest of `out`.
    out: Vec<u8>,
    /// Bytes at the front of `out` already handed out by `advance_transmit`.
    out_pos: usize,
    pieces: VecDeque<Piece>,
    /// Bytes of `out` covered by `Piece::Out` entries.
    pieces_out: usize,
    /// Bytes in `Piece::Shared` entries.
    pieces_shared: usize,
    close_deadline: Option<Instant>,
    /// Boxed: connections without keepalive pay one pointer.
    keepalive: Option<Box<KeepaliveTimer>>,
    ending: Option<Ending>,
    /// Payload bytes of the current message as declared on the wire.
    wire_len: u64,
    /// Boxed: its codec state is large, and most connections never
    /// negotiate permessage-deflate (an idle connection stays small).
    deflate: Option<Box<Deflate>>,
    scratch: Vec<u8>,
    sending_fragments: bool,
    fragment_text: bool,
    send_utf8: Utf8Validator,
    /// Length of the message buffer when `direct_read_buf` handed it out.
    direct_from: Option<usize>,
}

impl Connection {
    /// A connection in the open state. `deflate` holds the permessage-deflate
    /// parameters if the handshake negotiated them.
    pub fn new(role: Role, config: Config, deflate: Option<DeflateParams>) -> Self {
        let deflate = deflate.map(|p| {
            let (ours, ours_keep, theirs, theirs_keep) = match role {
                Role::Server => (
                    p.server_max_window_bits,
                    !p.server_no_context_takeover,
                    p.client_max_window_bits,
                    !p.client_no_context_takeover,
                ),
                Role::Client => (
                    p.client_max_window_bits,
                    !p.client_no_context_takeover,
                    p.server_max_window_bits,
                    !p.server_no_context_takeover,
                ),
            };
            Box::new(Deflate {
                inflater: Inflater::new(theirs, theirs_keep),
                deflater: Deflater::new(p.level, ours, ours_keep),
                compress: ours > 8,
                threshold: p.threshold,
            })
        });
        Self {
            role,
            config,
            state: State::Open,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            control: Vec::new(),
            assembler: Assembler::default(),
            events: VecDeque::new(),
            out: Vec::new(),
            out_pos: 0,
            pieces: VecDeque::new(),
            pieces_out: 0,
            pieces_shared: 0,
            close_deadline: None,
            keepalive: None,
            ending: None,
            wire_len: 0,
            deflate,
            scratch: Vec::new(),
            sending_fragments: false,
            fragment_text: false,
            send_utf8: Utf8Validator::new(),
            direct_from: None,
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether permessage-deflate was negotiated.
    pub fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Whether compressor or decompressor state is allocated right now (it is
    /// allocated by the first compressed message, and dropped after each
    /// message when the context is not kept).
    pub fn has_compression_state(&self) -> bool {
        self.deflate
            .as_ref()
            .is_some_and(|d| d.inflater.is_allocated() || d.deflater.is_allocated())
    }

    /// Capacity of the buffer of the message being received (for tests of
    /// the memory bound).
    #[cfg(test)]
    pub(crate) fn assembler_capacity(&self) -> usize {
        self.assembler.capacity()
    }

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

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        match self.ending.take()? {
            Ending::Close(close) => self.on_close(close),
            Ending::Failed(err) => self.fail(err),
        }
        self.events.pop_front()
    }

    /// Whether input is still parsed.
    fn reading(&self) -> bool {
        self.state.can_receive() && self.ending.is_none()
    }

    /// Stops parsing; the ending is applied once earlier events are polled.
    fn end_input(&mut self, ending: Ending) {
        self.frame = None;
        self.ending = Some(ending);
    }

    /// Moves the bytes waiting to be written into `buf` (swapping buffers when
    /// `buf` is empty and nothing is shared, so no bytes are copied). Returns
    /// false if there were none.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.pending_transmit() == 0 {
            return false;
        }
        if self.pieces.is_empty() && self.out_pos == 0 {
            if buf.is_empty() {
                std::mem::swap(buf, &mut self.out);
            } else {
                buf.extend_from_slice(&self.out);
                self.out.clear();
            }
            return true;
        }
        let mut pos = self.out_pos;
        for piece in self.pieces.drain(..) {
            match piece {
                Piece::Out(n) => {
                    buf.extend_from_slice(&self.out[pos..pos + n]);
                    pos += n;
                }
                Piece::Shared(bytes) => buf.extend_from_slice(&bytes),
            }
        }
        buf.extend_from_slice(&self.out[pos..]);
        self.out.clear();
        self.out_pos = 0;
        self.pieces_out = 0;
        self.pieces_shared = 0;
        true
    }

    /// Bytes waiting to be written.
    pub fn pending_transmit(&self) -> usize {
        self.out.len() - self.out_pos + self.pieces_shared
    }

    /// Whether queued bytes include shared payloads, best written with a
    /// vectored write through [`transmit_chunks`](Self::transmit_chunks)
    /// (`poll_transmit` would copy them).
    pub fn has_shared_transmit(&self) -> bool {
        !self.pieces.is_empty()
    }

    /// Fills `dst` with the queued bytes in order, without copying: returns
    /// how many slices were filled (0 when nothing waits). Write them (a
    /// vectored write), then report how many bytes went out with
    /// [`advance_transmit`](Self::advance_transmit).
    pub fn transmit_chunks<'a>(&'a self, dst: &mut [&'a [u8]]) -> usize {
        let mut pos = self.out_pos;
        let mut filled = 0;
        for piece in &self.pieces {
            if filled == dst.len() {
                return filled;
            }
            dst[filled] = match piece {
                Piece::Out(n) => {
                    pos += n;
                    &self.out[pos - n..pos]
                }
                Piece::Shared(bytes) => bytes,
            };
            filled += 1;
        }
        if pos < self.out.len() && filled < dst.len() {
            dst[filled] = &self.out[pos..];
            filled += 1;
        }
        filled
    }

    /// Drops the first `n` queued bytes, which were written.
    pub fn advance_transmit(&mut self, mut n: usize) {
        while n > 0 {
            match self.pieces.front_mut() {
                Some(Piece::Out(len)) => {
                    let k = n.min(*len);
                    *len -= k;
                    self.out_pos += k;
                    self.pieces_out -= k;
                    n -= k;
                    if *len == 0 {
                        self.pieces.pop_front();
                    }
                }
                Some(Piece::Shared(bytes)) => {
                    let k = n.min(bytes.len());
                    bytes::Buf::advance(bytes, k);
                    self.pieces_shared -= k;
                    n -= k;
                    if bytes.is_empty() {
                        self.pieces.pop_front();
                    }
                }
                None => {
                    self.out_pos += n.min(self.out.len() - self.out_pos);
                    break;
                }
            }
        }
        if self.pieces.is_empty() && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Queues shared bytes after everything queued so far.
    fn push_shared(&mut self, bytes: Bytes) {
        let tail = self.out.len() - self.out_pos - self.pieces_out;
        if tail > 0 {
            self.pieces.push_back(Piece::Out(tail));
            self.pieces_out += tail;
        }
        self.pieces_shared += bytes.len();
        self.pieces.push_back(Piece::Shared(bytes));
    }

    /// Starts (or with `None` stops) keepalive pings: the first is due one
    /// interval after `now`. Its deadlines then come out of
    /// [`poll_timeout`](Self::poll_timeout) while the connection is open.
    pub fn set_keepalive(&mut self, keepalive: Option<Keepalive>, now: Instant) {
        self.keepalive = keepalive.map(|k| Box::new(KeepaliveTimer::new(k, now)));
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called:
    /// the next keepalive ping or pong deadline while open, the close
    /// timeout while our Close waits for its answer, never once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Open => self.keepalive.as_ref().map(|k| k.deadline()),
            State::CloseSent => self.close_deadline,
            State::Closed => None,
        }
    }

    /// Advances timers to `now`: a keepalive ping falls due and is queued; a
    /// ping unanswered for the keepalive timeout fails the connection with
    /// 1011 ([`ProtocolError::KeepaliveTimeout`]); a peer that has not
    /// answered our Close by the close timeout fails it
    /// ([`ProtocolError::CloseTimeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Open => {
                let due = match &mut self.keepalive {
                    Some(k) => k.on_timeout(now),
                    None => Due::Nothing,
                };
                match due {
                    Due::Nothing => {}
                    Due::Ping(payload) => {
                        let mask = self.mask_key();
                        encode_frame(&mut self.out, OpCode::Ping, true, false, mask, &payload);
                    }
                    Due::TimedOut => self.fail(ProtocolError::KeepaliveTimeout),
                }
            }
            State::CloseSent => {
                if self.close_deadline.is_some_and(|deadline| now >= deadline) {
                    self.state.on_failure();
                    self.assembler.reset();
                    self.events
                        .push_back(Event::Failed(ProtocolError::CloseTimeout));
                }
            }
            State::Closed => {}
        }
    }

    /// Records, as of `now`, the round trip of the keepalive ping that the
    /// last [`Event::Pong`] answered (call it when that event is polled).
    pub fn measure_rtt(&mut self, now: Instant) {
        if let Some(k) = &mut self.keepalive {
            k.measure(now);
        }
    }

    /// The last round trip measured by keepalive pings.
    pub fn rtt(&self) -> Option<Duration> {
        self.keepalive.as_ref().and_then(|k| k.rtt())
    }

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

    fn send_message(
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
                self.scratch.clear();
                d.deflater.compress(payload, &mut self.scratch);
                encode_frame(&mut self.out, opcode, true, true, mask, &self.scratch);
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
                header.write_to(&mut self.out);
                self.push_shared(message.clone().into_bytes());
            }
            _ => encode_frame(&mut self.out, opcode, true, false, mask, payload),
        }
        Ok(())
    }

    /// Queues a message encoded once by [`PreparedFrame::new`], never
    /// compressed. On a server connection the frame's bytes are copied as
    /// they are; a client must mask every frame with a fresh key, so there
    /// the payload is encoded again.
    pub fn send_prepared(&mut self, frame: &PreparedFrame) -> Result<(), SendError> {
        if !self.state.can_send() {
            return Err(SendError::Closed);
        }
        if self.sending_fragments {
            return Err(SendError::Fragmentation(
                "a fragmented message is in progress",
            ));
        }
        match self.mask_key() {
            None if frame.as_bytes().len() >= SHARE_PAYLOAD_FROM => {
                self.push_shared(frame.bytes().clone());
            }
            None => self.out.extend_from_slice(frame.as_bytes()),
            mask => encode_frame(
                &mut self.out,
                frame.opcode(),
                true,
                false,
                mask,
                frame.payload(),
            ),
        }
        Ok(())
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
        encode_frame(&mut self.out, opcode, fin, false, mask, payload);
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

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if !self.state.can_send() {
            return Err(SendError::Closed);
        }
        if payload.len() > 125 {
            return Err(SendError::ControlTooLong(payload.len()));
        }
        let mask = self.mask_key();
        encode_frame(&mut self.out, opcode, true, false, mask, payload);
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

    fn mask_key(&self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(rand::random()),
            Role::Server => None,
        }
    }

    fn write_close(&mut self, code: Option<CloseCode>, reason: &str) {
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
            &mut self.out,
            OpCode::Close,
            true,
            false,
            mask,
            &payload[..len],
        );
    }

    /// The peer's Close frame takes effect.
    fn on_close(&mut self, close: Option<CloseFrame>) {
        if self.state.on_close_received() == CloseAction::SendClose {
            // Echo the peer's code and reason (RFC 6455 §5.5.1).
            match &close {
                Some(frame) => self.write_close(Some(frame.code), frame.reason.as_str()),
                None => self.write_close(None, ""),
            }
        }
        self.assembler.reset();
        self.events.push_back(Event::Close(close));
    }

    fn fail(&mut self, err: ProtocolError) {
        if self.state.on_failure() == CloseAction::SendClose && err != ProtocolError::Eof {
            let code = err.close_code();
            if code.is_allowed_on_wire() {
                self.write_close(Some(code), &err.to_string());
            }
        }
        self.assembler.reset();
        self.frame = None;
        if let Some(d) = &mut self.deflate {
            d.inflater.reset();
        }
        self.events.push_back(Event::Failed(err));
    }

    /// Consumes a header or a piece of payload from the front of `data`.
    fn receive_step(&mut self, data: &mut &[u8]) -> Result<(), ProtocolError> {
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
            let inflater = self.deflate.as_mut().map(|d| &mut d.inflater);
            self.assembler.push(
                piece,
                mask,
                frame.remaining,
                inflater,
                &mut self.scratch,
                max,
            )?;
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
    fn take_header(&mut self, data: &mut &[u8]) -> Result<Option<FrameHeader>, ProtocolError> {
        if self.header_len == 0 {
            if let Some((header, n)) = FrameHeader::parse(data)? {
                *data = &data[n..];
                return Ok(Some(header));
            }
        }
        loop {
            let need = if self.header_len < 2 {
                2
            } else {
                FrameHeader::len_from_prefix([self.header[0], self.header[1]])
            };
            if self.header_len >= 2 && self.header_len == need {
                self.header_len = 0;
                return Ok(FrameHeader::parse(&self.header[..need])?.map(|(h, _)| h));
            }
            if data.is_empty() {
                return Ok(None);
            }
            let take = (need - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            *data = &data[take..];
        }
    }

    /// Checks a header against the connection's state and limits.
    fn on_header(&mut self, h: FrameHeader) -> Result<(), ProtocolError> {
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

    fn on_frame_end(&mut self, frame: FrameInProgress) -> Result<(), ProtocolError> {
        match frame.opcode {
            OpCode::Close => {
                let close = parse_close(&self.control)?;
                self.end_input(Ending::Close(close));
            }
            OpCode::Ping => {
                if self.state.can_send() {
                    let mask = self.mask_key();
                    encode_frame(
                        &mut self.out,
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

#[cfg(test)]
mod transmit_tests {
    use super::*;

    fn big(n: usize, seed: u8) -> Message {
        Message::binary(
            (0..n)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect::<Vec<u8>>(),
        )
    }

    /// Small, large (shared), prepared and control frames interleaved.
    fn queue_mixed(server: &mut Connection) -> Vec<Message> {
        let sent = vec![
            Message::text("a"),
            big(SHARE_PAYLOAD_FROM, 1),
            Message::binary(vec![7u8; 300]),
            big(70_000, 2),
            big(SHARE_PAYLOAD_FROM + 1, 3),
            Message::text("z"),
        ];
        server.send(&sent[0]).unwrap();
        server.send(&sent[1]).unwrap();
        server.ping(b"p").unwrap();
        server.send(&sent[2]).unwrap();
        server.send(&sent[3]).unwrap();
        server.send_prepared(&PreparedFrame::new(&sent[4])).unwrap();
        server.send(&sent[5]).unwrap();
        sent
    }

    fn received(wire: &[u8]) -> Vec<Message> {
        let mut client = Connection::new(Role::Client, Config::default(), None);
        client.receive(wire);
        std::iter::from_fn(|| client.poll_event())
            .filter_map(|e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn large_payloads_are_shared_and_arrive_in_order() {
        let mut server = Connection::new(Role::Server, Config::default(), None);
        let sent = queue_mixed(&mut server);
        assert!(server.has_shared_transmit());
        let mut wire = Vec::new();
        assert!(server.poll_transmit(&mut wire));
        assert_eq!(server.pending_transmit(), 0);
        assert!(!server.has_shared_transmit());
        assert_eq!(received(&wire), sent);
    }

    #[test]
    fn chunked_writes_of_any_size_give_the_same_bytes() {
        let mut reference = Connection::new(Role::Server, Config::default(), None);
        queue_mixed(&mut reference);
        let mut expected = Vec::new();
        reference.poll_transmit(&mut expected);
        // Queued after the first write: goes after everything before it.
        encode_frame(&mut expected, OpCode::Text, true, false, None, b"late");
        for step in [1usize, 3, 4095, 4096, 65_536, usize::MAX] {
            let mut server = Connection::new(Role::Server, Config::default(), None);
            queue_mixed(&mut server);
            let mut wire = Vec::new();
            let mut late = false;
            while server.pending_transmit() > 0 {
                let before = server.pending_transmit();
                let mut parts: [&[u8]; 4] = [&[]; 4];
                let n = server.transmit_chunks(&mut parts);
                assert!(n > 0);
                // A short write: only `step` bytes of the offered slices.
                let mut left = step;
                let mut written = 0;
                for part in &parts[..n] {
                    let take = part.len().min(left);
                    wire.extend_from_slice(&part[..take]);
                    written += take;
                    left -= take;
                }
                server.advance_transmit(written);
                assert_eq!(server.pending_transmit(), before - written);
                if !late {
                    server.send(&Message::text("late")).unwrap();
                    late = true;
                }
            }
            assert_eq!(wire, expected, "step {step}");
            // The queue is empty and reusable.
            server.send(&Message::text("again")).unwrap();
            let mut more = Vec::new();
            assert!(server.poll_transmit(&mut more));
            assert_eq!(received(&more), vec![Message::text("again")]);
        }
    }

    #[test]
    fn clients_never_share_payloads_they_must_mask() {
        let mut client = Connection::new(Role::Client, Config::default(), None);
        client.send(&big(100_000, 9)).unwrap();
        assert!(!client.has_shared_transmit());
        assert!(client.pending_transmit() > 100_000);
    }
}

#[cfg(test)]
mod direct_read_tests {
    use super::*;

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
