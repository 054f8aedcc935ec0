//! The raw subscriber engine of `volley bench fanout` (`--engine raw`): a
//! subscriber cheap enough to read several million deliveries per second
//! on one core.
//!
//! Each subscriber does the opening handshake (the raw engine's, offering
//! `volley.v1`), `connect` and `subscribe` on its TCP socket directly; its
//! read loop then reads into one 64 KiB buffer shared by every subscriber of
//! the thread (nothing per subscriber but the few bytes of a header or
//! message that a read split), parses the hub's frames with the core's
//! [`FrameHeader`] and hands each text message, in place, to the same checks
//! as the client engine. Pings are answered with a masked Pong; a Close,
//! a protocol error or the end of the stream end the subscriber as an error.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use volley::proto::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, encode_frame};

use super::fanout::{Tracker, check_publication, connect_result, subscribe_offset};
use super::raw::{self, KeyGen, Target};

/// Bytes read at once into the thread's shared buffer.
pub(super) const READ_BUFFER: usize = 64 << 10;

/// Largest message accepted (as the client engine's `max_size`).
const MAX_MESSAGE: usize = 64 << 20;

/// Why the hub's byte stream is not one a subscriber accepts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(super) enum StreamError {
    /// The core rejected a frame header.
    #[error("frame header: {0}")]
    Header(#[from] volley::proto::frame::HeaderError),
    /// The hub masked a frame (servers must not).
    #[error("the hub masked a frame")]
    Masked,
    /// A reserved bit is set (no extension was negotiated).
    #[error("reserved bits set in a frame")]
    Reserved,
    /// A frame's opcode does not fit where it stands.
    #[error("opcode {got:#x} where {expected} was expected")]
    Sequence {
        /// The frame's opcode.
        got: u8,
        /// What could stand there.
        expected: &'static str,
    },
    /// A binary message (the hub speaks JSON text).
    #[error("binary message from the hub")]
    Binary,
    /// A message beyond [`MAX_MESSAGE`].
    #[error("message of more than {MAX_MESSAGE} bytes")]
    TooLarge,
}

/// What a read brought, message by message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event<'a> {
    /// A complete text message (not yet checked as UTF-8).
    Text(&'a [u8]),
    /// A Ping with its payload, to answer.
    Ping(&'a [u8]),
    /// A Close frame's payload (code and reason).
    Close(&'a [u8]),
}

/// Reassembles the hub's unmasked frames from reads of any size.
///
/// A message that arrives whole in one read is handed out in place; only a
/// header, message or control frame split between reads is copied.
#[derive(Debug, Default)]
pub(super) struct FrameReader {
    /// The bytes of a header split across reads.
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    /// The current frame: its opcode, FIN and payload bytes still to come.
    frame: Option<(OpCode, bool, u64)>,
    /// A data message in progress (fragmented, or split between reads).
    message: Vec<u8>,
    in_message: bool,
    /// A control frame split between reads.
    control: Vec<u8>,
}

impl FrameReader {
    /// Feeds the bytes of one read; calls `on` for every complete message.
    pub(super) fn feed(
        &mut self,
        mut data: &[u8],
        mut on: impl FnMut(Event<'_>),
    ) -> Result<(), StreamError> {
        while !data.is_empty() {
            let Some((opcode, fin, left)) = self.frame else {
                data = self.take_header(data)?;
                if let Some((opcode, fin, 0)) = self.frame {
                    self.complete(opcode, fin, &[], &mut on)?;
                }
                continue;
            };
            let take = left.min(data.len() as u64) as usize;
            let (chunk, rest) = data.split_at(take);
            data = rest;
            let left = left - take as u64;
            if left > 0 {
                let buffer = if opcode.is_control() {
                    &mut self.control
                } else {
                    &mut self.message
                };
                if buffer.len() + chunk.len() > MAX_MESSAGE {
                    return Err(StreamError::TooLarge);
                }
                buffer.extend_from_slice(chunk);
                self.frame = Some((opcode, fin, left));
            } else {
                self.complete(opcode, fin, chunk, &mut on)?;
            }
        }
        Ok(())
    }

    /// The current frame's payload is complete; `last` is its part in this
    /// read (the rest, if any, is buffered). A payload that arrived whole
    /// in one read is handed out in place.
    fn complete(
        &mut self,
        opcode: OpCode,
        fin: bool,
        last: &[u8],
        on: &mut impl FnMut(Event<'_>),
    ) -> Result<(), StreamError> {
        self.frame = None;
        if opcode.is_control() {
            let mut payload = std::mem::take(&mut self.control);
            let whole = if payload.is_empty() {
                last
            } else {
                payload.extend_from_slice(last);
                &payload[..]
            };
            match opcode {
                OpCode::Ping => on(Event::Ping(whole)),
                OpCode::Close => on(Event::Close(whole)),
                _ => {} // an unsolicited Pong
            }
            payload.clear();
            self.control = payload;
            return Ok(());
        }
        if fin && self.message.is_empty() {
            self.in_message = false;
            on(Event::Text(last));
            return Ok(());
        }
        if self.message.len() + last.len() > MAX_MESSAGE {
            return Err(StreamError::TooLarge);
        }
        self.message.extend_from_slice(last);
        if fin {
            self.in_message = false;
            let mut message = std::mem::take(&mut self.message);
            on(Event::Text(&message));
            // Keep the allocation for the next split message.
            message.clear();
            self.message = message;
        }
        Ok(())
    }

    /// Takes a frame header (whole from `data`, or completed from the
    /// bytes kept from the previous read) and checks it; sets `frame`.
    fn take_header<'a>(&mut self, data: &'a [u8]) -> Result<&'a [u8], StreamError> {
        let (header, rest) = if self.header_len == 0 {
            match FrameHeader::parse(data)? {
                Some((header, len)) => (header, &data[len..]),
                None => {
                    self.header[..data.len()].copy_from_slice(data);
                    self.header_len = data.len();
                    return Ok(&[]);
                }
            }
        } else {
            let need = if self.header_len < 2 {
                2
            } else {
                FrameHeader::len_from_prefix([self.header[0], self.header[1]])
            };
            let take = (need - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            match FrameHeader::parse(&self.header[..self.header_len])? {
                Some((header, _)) => {
                    self.header_len = 0;
                    (header, &data[take..])
                }
                None => return Ok(&data[take..]),
            }
        };
        if header.mask.is_some() {
            return Err(StreamError::Masked);
        }
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(StreamError::Reserved);
        }
        match header.opcode {
            OpCode::Text if !self.in_message => self.in_message = true,
            OpCode::Continuation if self.in_message => {}
            OpCode::Binary if !self.in_message => return Err(StreamError::Binary),
            op if op.is_control() => {}
            op => {
                return Err(StreamError::Sequence {
                    got: op.bits(),
                    expected: if self.in_message {
                        "a continuation"
                    } else {
                        "a new message"
                    },
                });
            }
        }
        if header.payload_len > MAX_MESSAGE as u64 {
            return Err(StreamError::TooLarge);
        }
        self.frame = Some((header.opcode, header.fin, header.payload_len));
        Ok(rest)
    }
}

/// A subscribed connection, ready for its read loop.
pub(super) struct RawSubscriber {
    tcp: TcpStream,
    reader: FrameReader,
    keys: KeyGen,
}

/// A masked client frame.
fn client_frame(keys: &mut KeyGen, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
    encode_frame(&mut out, opcode, true, false, Some(keys.key()), payload);
    out
}

/// Connects subscriber `index` (from `source` if given): the opening
/// handshake with `volley.v1`, anonymous `connect`, `subscribe`. Returns the
/// connection and the channel's offset.
pub(super) async fn subscribe(
    index: usize,
    server: SocketAddr,
    source: Option<std::net::IpAddr>,
    channel: &str,
) -> Result<(RawSubscriber, u64), String> {
    let target = Target {
        addr: server,
        host: server.to_string(),
        path: "/connection/websocket".into(),
        raw_tcp: false,
        protocol: Some("volley.v1".into()),
    };
    let tcp = raw::open(&target, source)
        .await
        .map_err(|e| e.to_string())?;
    let mut sub = RawSubscriber {
        tcp,
        reader: FrameReader::default(),
        keys: KeyGen::new(index as u64),
    };
    let connect = r#"{"id":1,"method":"connect","params":{"name":"volley-bench","version":"1"}}"#;
    connect_result(&sub.command(connect, 1).await?)?;
    let subscribe =
        serde_json::json!({"id": 2, "method": "subscribe", "params": {"channel": channel}});
    let reply = sub.command(&subscribe.to_string(), 2).await?;
    let offset = subscribe_offset(&reply)?;
    Ok((sub, offset))
}

impl RawSubscriber {
    /// Sends a command and waits (at most 30 s) for the reply with `id`.
    async fn command(&mut self, text: &str, id: u64) -> Result<serde_json::Value, String> {
        let frame = client_frame(&mut self.keys, OpCode::Text, text.as_bytes());
        self.tcp
            .write_all(&frame)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match tokio::time::timeout_at(
                deadline,
                tokio::io::AsyncReadExt::read(&mut self.tcp, &mut buf),
            )
            .await
            {
                Ok(Ok(0)) => return Err("closed by the server".into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(format!("recv: {e}")),
                Err(_) => return Err("no reply within 30 s".into()),
            };
            let (mut replies, mut pongs, mut closed) = (Vec::new(), Vec::new(), None);
            let keys = &mut self.keys;
            self.reader
                .feed(&buf[..n], |event| match event {
                    Event::Text(t) => replies.push(t.to_vec()),
                    Event::Ping(p) => pongs.extend(client_frame(keys, OpCode::Pong, p)),
                    Event::Close(c) => closed = Some(describe_close(c)),
                })
                .map_err(|e| e.to_string())?;
            if let Some(close) = closed {
                return Err(format!("closed by the server: {close}"));
            }
            if !pongs.is_empty() {
                self.tcp
                    .write_all(&pongs)
                    .await
                    .map_err(|e| format!("send Pong: {e}"))?;
            }
            for reply in replies {
                let v: serde_json::Value = serde_json::from_slice(&reply)
                    .map_err(|e| format!("invalid JSON from the server: {e}"))?;
                if v.get("id").and_then(serde_json::Value::as_u64) == Some(id) {
                    return Ok(v);
                }
            }
        }
    }
}

/// A Close frame's code and reason, for the error report.
fn describe_close(payload: &[u8]) -> String {
    match payload {
        [a, b, reason @ ..] => format!(
            "Close {} {:?}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "Close without a code".into(),
    }
}

/// A subscriber's state between reads, whoever reads its socket (the raw
/// engine's task or the epoll engine's thread): the frame reader, the mask
/// keys and the next offset expected.
pub(super) struct Reading {
    reader: FrameReader,
    keys: KeyGen,
    next_offset: u64,
}

impl RawSubscriber {
    /// The socket, and the state its reads go through (from `next_offset`).
    pub(super) fn into_parts(self, next_offset: u64) -> (TcpStream, Reading) {
        let reading = Reading {
            reader: self.reader,
            keys: self.keys,
            next_offset,
        };
        (self.tcp, reading)
    }
}

impl Reading {
    /// Takes the bytes of one read (received at `now`): counts the read,
    /// checks every publication, appends a masked Pong per Ping to `pongs`.
    /// Returns whether the stop event came, or why the subscriber is over
    /// (a Close, a protocol error), as the error to count.
    pub(super) fn read(
        &mut self,
        t: &Tracker,
        data: &[u8],
        now: Instant,
        pongs: &mut Vec<u8>,
    ) -> Result<bool, String> {
        t.read();
        let (mut closed, mut stop) = (None, false);
        let Self {
            reader,
            keys,
            next_offset,
        } = self;
        reader
            .feed(data, |event| match event {
                Event::Text(text) => match std::str::from_utf8(text) {
                    Ok(_) => stop |= check_publication(t, next_offset, text, now),
                    Err(e) => t.error(format!("invalid UTF-8 in a text message: {e}")),
                },
                Event::Ping(p) => pongs.extend(client_frame(keys, OpCode::Pong, p)),
                Event::Close(c) => closed = Some(describe_close(c)),
            })
            .map_err(|e| format!("subscriber stream: {e}"))?;
        match closed {
            Some(close) => Err(format!("subscriber closed by the server: {close}")),
            None => Ok(stop),
        }
    }

    /// The next mask key (for a Close frame).
    pub(super) fn key(&mut self) -> [u8; 4] {
        self.keys.key()
    }
}

/// The subscriber's read loop: every read into the thread's shared
/// `buffer`, every publication checked, counted and timed (at the read that
/// completed it). Ends on the stop event (with a clean close), or as an
/// error on a Close, a protocol error or the end of the stream.
pub(super) async fn receive(
    sub: RawSubscriber,
    next_offset: u64,
    t: Arc<Tracker>,
    buffer: Rc<RefCell<Vec<u8>>>,
) {
    let (mut tcp, mut reading) = sub.into_parts(next_offset);
    let fail = |detail: String| t.closed(detail);
    let mut pongs = Vec::new();
    loop {
        if let Err(e) = tcp.readable().await {
            return fail(format!("subscriber connection failed: {e}"));
        }
        let stop = {
            let mut buf = buffer.borrow_mut();
            let n = match tcp.try_read(&mut buf) {
                Ok(0) => return fail("subscriber connection ended without a Close".into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return fail(format!("subscriber connection failed: {e}")),
            };
            match reading.read(&t, &buf[..n], Instant::now(), &mut pongs) {
                Ok(stop) => stop,
                Err(detail) => return fail(detail),
            }
        };
        if !pongs.is_empty() {
            if let Err(e) = tcp.write_all(&pongs).await {
                return fail(format!("subscriber Pong failed: {e}"));
            }
            pongs.clear();
        }
        if stop {
            let key = reading.key();
            let _ = raw::close(&mut tcp, false, key).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, opcode, fin, false, None, payload);
        out
    }

    /// Feeds `stream` cut at `cuts`; returns the events as owned values.
    fn events(stream: &[u8], cuts: &[usize]) -> Result<Vec<(u8, Vec<u8>)>, StreamError> {
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
            reader.feed(&stream[start..end], |e| {
                got.push(match e {
                    Event::Text(t) => (1, t.to_vec()),
                    Event::Ping(p) => (9, p.to_vec()),
                    Event::Close(c) => (8, c.to_vec()),
                })
            })?;
            start = end;
        }
        Ok(got)
    }

    fn push(offset: u64, seq: u64, pad: usize) -> Vec<u8> {
        format!(
            r#"{{"push":"publication","channel":"fanout:bench","offset":{offset},"data":{{"seq":{seq},"p":"{}"}}}}"#,
            "x".repeat(pad)
        )
        .into_bytes()
    }

    #[test]
    fn messages_survive_every_split_point() {
        // A short frame, a 16-bit length frame, a ping between them, a
        // fragmented message with a ping inside, and a 64-bit length frame.
        let (a, b, c) = (push(1, 0, 10), push(2, 1, 300), push(3, 2, 70_000));
        let mut stream = frame(OpCode::Text, true, &a);
        stream.extend(frame(OpCode::Ping, true, b"hi"));
        stream.extend(frame(OpCode::Text, true, &b));
        stream.extend(frame(OpCode::Text, false, &a[..20]));
        stream.extend(frame(OpCode::Ping, true, b""));
        stream.extend(frame(OpCode::Continuation, false, &a[20..30]));
        stream.extend(frame(OpCode::Continuation, true, &a[30..]));
        stream.extend(frame(OpCode::Text, true, &c));
        let want = vec![
            (1, a.clone()),
            (9, b"hi".to_vec()),
            (1, b.clone()),
            (9, Vec::new()),
            (1, a.clone()),
            (1, c.clone()),
        ];
        // Every single cut in the first part, and cuts inside the big frame.
        for cut in (0..stream.len() - c.len()).chain([stream.len() - 1, stream.len() - 40_000]) {
            assert_eq!(events(&stream, &[cut]).unwrap(), want, "cut at {cut}");
        }
        // One byte per read.
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(events(&stream, &every).unwrap(), want);
    }

    #[test]
    fn offsets_and_seqs_come_out_of_split_pushes() {
        let a = push(41, 7, 64);
        let stream = [frame(OpCode::Text, true, &a), frame(OpCode::Text, true, &a)].concat();
        for cut in 0..stream.len() {
            let got = events(&stream, &[cut]).unwrap();
            assert_eq!(got.len(), 2, "cut at {cut}");
            for (_, text) in got {
                assert_eq!(
                    super::super::fanout::push_numbers(&text),
                    Some((41, 7)),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_close_is_reported_with_its_code() {
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"going away");
        let stream = frame(OpCode::Close, true, &payload);
        let got = events(&stream, &[3]).unwrap();
        assert_eq!(got, vec![(8, payload.clone())]);
        assert_eq!(describe_close(&payload), r#"Close 1001 "going away""#);
        assert_eq!(describe_close(&[]), "Close without a code");
    }

    #[test]
    fn rejects_what_a_hub_must_not_send() {
        let mut masked = Vec::new();
        encode_frame(
            &mut masked,
            OpCode::Text,
            true,
            false,
            Some([1, 2, 3, 4]),
            b"x",
        );
        assert!(matches!(events(&masked, &[]), Err(StreamError::Masked)));
        let mut rsv = frame(OpCode::Text, true, b"x");
        rsv[0] |= 0x40;
        assert!(matches!(events(&rsv, &[1]), Err(StreamError::Reserved)));
        let binary = frame(OpCode::Binary, true, b"x");
        assert!(matches!(events(&binary, &[]), Err(StreamError::Binary)));
        let stray = frame(OpCode::Continuation, true, b"x");
        assert!(matches!(
            events(&stray, &[]),
            Err(StreamError::Sequence { .. })
        ));
        let interleaved = [
            frame(OpCode::Text, false, b"x"),
            frame(OpCode::Text, true, b"y"),
        ]
        .concat();
        assert!(matches!(
            events(&interleaved, &[]),
            Err(StreamError::Sequence { .. })
        ));
        let reserved = [0x83u8, 0x00];
        assert!(matches!(
            events(&reserved, &[]),
            Err(StreamError::Header(_))
        ));
    }
}
