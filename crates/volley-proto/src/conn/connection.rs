//! The connection state machine: bytes in, events and bytes out.
//!
//! The [`Connection`] ties its parts together here (state, events, timers,
//! the closing handshake); the receive path is in `receive.rs`, the send path
//! in `send.rs`, and the transmit buffer in `transmit.rs`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::assembler::Assembler;
use super::keepalive::{Due, Keepalive, KeepaliveTimer};
use super::state::{CloseAction, State};
use crate::config::Config;
use crate::deflate::DeflateParams;
use crate::deflate::codec::{Deflater, Inflater};
use crate::error::ProtocolError;
use crate::frame::utf8::Utf8Validator;
use crate::frame::{MAX_HEADER_LEN, OpCode, encode_frame};
use crate::message::{CloseFrame, Message};

mod receive;
mod send;
mod transmit;

use transmit::Transmit;

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
    /// Unmasked input for the inflater, compressed output of the deflater.
    scratch: Vec<u8>,
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
    /// Bytes in `header` (a header split across reads), at most 14.
    header_len: u8,
    frame: Option<FrameInProgress>,
    control: Vec<u8>,
    assembler: Assembler,
    events: VecDeque<Event>,
    /// Bytes to write.
    tx: Transmit,
    close_deadline: Option<Instant>,
    /// Boxed: connections without keepalive pay one pointer.
    keepalive: Option<Box<KeepaliveTimer>>,
    /// Boxed: set once, at the end of input.
    ending: Option<Box<Ending>>,
    /// Payload bytes of the current message as declared on the wire.
    wire_len: u64,
    /// Boxed: its codec state is large, and most connections never
    /// negotiate permessage-deflate (an idle connection stays small).
    deflate: Option<Box<Deflate>>,
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
        #[cfg(feature = "deflate")]
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
                scratch: Vec::new(),
            })
        });
        // Without the codec, Config refuses permessage-deflate, so nothing
        // negotiated it.
        #[cfg(not(feature = "deflate"))]
        let deflate: Option<Box<Deflate>> = {
            let _ = deflate;
            None
        };
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
            tx: Transmit::default(),
            close_deadline: None,
            keepalive: None,
            ending: None,
            wire_len: 0,
            deflate,
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

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        match *self.ending.take()? {
            Ending::Close(close) => self.on_close(close),
            Ending::Failed(err) => self.fail(err),
        }
        self.events.pop_front()
    }

    /// Frees the buffers an idle connection does not need: the event queue
    /// once its events are polled (192 bytes after the first message) and
    /// the last control frame's payload. For a caller whose transport has
    /// nothing more to read right now; they grow again with the next input.
    pub fn release_idle_buffers(&mut self) {
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if self.frame.is_none() {
            self.control = Vec::new();
        }
    }

    /// Whether input is still parsed.
    fn reading(&self) -> bool {
        self.state.can_receive() && self.ending.is_none()
    }

    /// Stops parsing; the ending is applied once earlier events are polled.
    fn end_input(&mut self, ending: Ending) {
        self.frame = None;
        self.ending = Some(Box::new(ending));
    }

    /// Moves the bytes waiting to be written into `buf` (swapping buffers when
    /// `buf` is empty and nothing is shared, so no bytes are copied). Returns
    /// false if there were none.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        self.tx.poll(buf)
    }

    /// Bytes waiting to be written.
    pub fn pending_transmit(&self) -> usize {
        self.tx.pending()
    }

    /// Bytes of buffer the transmit side holds for encoding frames (its
    /// capacity, not what waits): what a connection costs in memory besides
    /// the bytes queued.
    pub fn transmit_capacity(&self) -> usize {
        self.tx.capacity()
    }

    /// Whether queued bytes include shared payloads, best written with a
    /// vectored write through [`transmit_chunks`](Self::transmit_chunks)
    /// (`poll_transmit` would copy them).
    pub fn has_shared_transmit(&self) -> bool {
        self.tx.has_shared()
    }

    /// Fills `dst` with the queued bytes in order, without copying: returns
    /// how many slices were filled (0 when nothing waits). Write them (a
    /// vectored write), then report how many bytes went out with
    /// [`advance_transmit`](Self::advance_transmit).
    pub fn transmit_chunks<'a>(&'a self, dst: &mut [&'a [u8]]) -> usize {
        self.tx.chunks(dst)
    }

    /// Drops the first `n` queued bytes, which were written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.tx.advance(n)
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
                        encode_frame(&mut self.tx.out, OpCode::Ping, true, false, mask, &payload);
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
}

#[cfg(test)]
mod sizes {
    use super::*;

    /// What an idle connection holds inline (an idle connection owns no heap
    /// buffer: every `Vec` and `VecDeque` here is empty until data arrives).
    /// Printed with `cargo test -p volley-proto sizes -- --nocapture`.
    #[test]
    fn an_idle_connection_is_small() {
        let parts = [
            ("Connection", size_of::<Connection>()),
            ("  Config", size_of::<Config>()),
            ("  State", size_of::<State>()),
            (
                "  Option<FrameInProgress>",
                size_of::<Option<FrameInProgress>>(),
            ),
            ("  Assembler", size_of::<Assembler>()),
            ("  VecDeque<Event>", size_of::<VecDeque<Event>>()),
            ("  Transmit", size_of::<Transmit>()),
            ("  Ending (boxed)", size_of::<Ending>()),
            ("  KeepaliveTimer (boxed)", size_of::<KeepaliveTimer>()),
            ("  Utf8Validator", size_of::<Utf8Validator>()),
            ("Event", size_of::<Event>()),
        ];
        for (name, size) in parts {
            println!("{name:<28} {size:>4} bytes");
        }
        assert_eq!(
            size_of::<Config>(),
            size_of::<usize>(),
            "shared, not copied"
        );
        // Boxed per connection with keepalive: 80 bytes is a jemalloc size
        // class (it was 112 with the payload and two more instants).
        assert!(size_of::<KeepaliveTimer>() <= 80);
        let c = Connection::new(Role::Server, Config::default(), None);
        assert_eq!(c.control.capacity(), 0);
        assert_eq!(c.events.capacity(), 0);
        assert_eq!(c.tx.out.capacity(), 0);
    }

    /// After a message and a ping have been handled, an idle connection
    /// gives back the event queue and the control payload's buffer.
    #[test]
    fn an_idle_connection_releases_its_buffers() {
        let mut client = Connection::new(Role::Client, Config::default(), None);
        let mut server = Connection::new(Role::Server, Config::default(), None);
        client
            .send(&crate::message::Message::text("subscribe"))
            .unwrap();
        client.ping(b"abc").unwrap();
        let mut wire = Vec::new();
        client.poll_transmit(&mut wire);
        server.receive(&wire);
        assert!(server.events.capacity() > 0 && server.control.capacity() > 0);
        // Not while events wait to be polled.
        server.release_idle_buffers();
        assert!(server.events.capacity() > 0);
        while server.poll_event().is_some() {}
        server.release_idle_buffers();
        assert_eq!(server.events.capacity(), 0);
        assert_eq!(server.control.capacity(), 0);
        // And the next input is received as before.
        client
            .send(&crate::message::Message::text("again"))
            .unwrap();
        wire.clear();
        client.poll_transmit(&mut wire);
        server.receive(&wire);
        assert!(matches!(
            server.poll_event(),
            Some(Event::Message(m)) if m == crate::message::Message::text("again")
        ));
    }
}
