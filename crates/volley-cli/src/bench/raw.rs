//! The raw-socket engine of `volley bench`: a load generator cheap enough to
//! measure servers that answer over a million messages per second.
//!
//! No WebSocket library on the load side: each thread runs a current-thread
//! tokio runtime; a connection writes its K masked frames from a ring that
//! was encoded once per thread (so sending costs no encoding and no
//! allocation; the ring's K masking keys are random but reused cyclically,
//! which a server cannot tell from fresh ones), and verifies what comes
//! back with [`EchoChecker`], which parses the server's frames and compares
//! every payload byte with the message sent. The replies to everything one read brought in are answered
//! with one (vectored) write, as a real client with a queue would.
//!
//! Latency runs one connection on a blocking socket (one message in flight,
//! each round trip timed alone), so no scheduler sits between the clock and
//! the socket.

use std::io::{self, IoSlice, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead as _, AsyncReadExt as _, AsyncWrite as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use volley::proto::config::HeadLimits;
use volley::proto::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, encode_frame};
use volley::proto::handshake::{ClientHandshake, ClientResponse, ResponseError};

/// What went wrong in a load run.
#[derive(Debug)]
pub(crate) enum BenchError {
    /// A socket operation failed.
    Io(&'static str, io::Error),
    /// The server garbled the opening handshake.
    Handshake(String),
    /// The server refused the opening handshake (with its explanation).
    Response(ResponseError),
    /// The server sent bytes that are not the echo of what was sent.
    Mismatch(String),
    /// The server closed the connection in the middle of the run.
    Closed,
    /// Something took longer than its bound.
    Timeout(&'static str),
    /// A connection of the run failed (its error, as text).
    Failed(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(what, e) => write!(f, "{what}: {e}"),
            Self::Handshake(why) => write!(f, "opening handshake: {why}"),
            Self::Response(e) => write!(f, "opening handshake: {e}"),
            Self::Mismatch(why) => write!(f, "echo differs from what was sent: {why}"),
            Self::Closed => write!(f, "the server closed the connection during the run"),
            Self::Timeout(what) => write!(f, "timed out: {what}"),
            Self::Failed(why) => write!(f, "a connection failed: {why}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> BenchError {
    move |e| BenchError::Io(what, e)
}

/// Where to connect and what to send.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The server's address.
    pub(crate) addr: SocketAddr,
    /// The `Host` header.
    pub(crate) host: String,
    /// The request path.
    pub(crate) path: String,
    /// Plain TCP echo: no handshake, the server returns the bytes as sent.
    pub(crate) raw_tcp: bool,
    /// The subprotocol to offer; the server must select it.
    pub(crate) protocol: Option<String>,
}

/// An echo throughput run.
#[derive(Clone, Debug)]
pub(crate) struct EchoSpec {
    pub(crate) target: Target,
    pub(crate) connections: usize,
    pub(crate) in_flight: usize,
    pub(crate) size: usize,
    pub(crate) text: bool,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) threads: usize,
    pub(crate) progress: bool,
}

/// The outcome of an echo run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EchoResult {
    pub(crate) messages: u64,
    pub(crate) seconds: f64,
    /// CPU seconds of this process during the measurement.
    pub(crate) cpu_seconds: f64,
    /// CPU seconds of the server during the measurement (0 if unknown).
    pub(crate) server_cpu_seconds: f64,
}

/// A message payload: repeating `a`..`z` (valid UTF-8, so text and binary
/// runs send the same bytes).
pub(crate) fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A small PRNG for masking keys (splitmix64); the keys of a ring differ from
/// frame to frame and from run to run.
pub(crate) struct KeyGen(u64);

impl KeyGen {
    pub(crate) fn new(salt: u64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self(now ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub(crate) fn key(&mut self) -> [u8; 4] {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let z = z ^ (z >> 31);
        (z as u32).to_ne_bytes()
    }
}

/// Frames encoded once: the ring of masked client frames a connection sends
/// from, and the payload every echo is compared with.
#[derive(Debug)]
pub(crate) struct Frames {
    /// `in_flight` masked client frames back to back (each with its own key).
    ring: Vec<u8>,
    /// Bytes of one client frame.
    frame_len: usize,
    payload: Vec<u8>,
    opcode: OpCode,
}

impl Frames {
    pub(crate) fn new(size: usize, text: bool, in_flight: usize, salt: u64) -> Self {
        let payload = payload(size);
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let mut keys = KeyGen::new(salt);
        let mut ring = Vec::new();
        for _ in 0..in_flight.max(1) {
            encode_frame(&mut ring, opcode, true, false, Some(keys.key()), &payload);
        }
        let frame_len = ring.len() / in_flight.max(1);
        Self {
            ring,
            frame_len,
            payload,
            opcode,
        }
    }
}

/// Checks a byte stream of server frames against the expected message,
/// counting the messages that arrive complete and correct.
///
/// Accepts any fragmentation the server chooses (RFC 6455 lets a server or
/// an intermediary re-fragment), rejects masked frames, reserved bits,
/// control frames during the run, and any payload byte that differs.
#[derive(Debug)]
pub(crate) struct EchoChecker {
    /// The unfragmented server frame, for the fast path.
    whole: Vec<u8>,
    /// Where its payload starts.
    payload_start: usize,
    opcode: OpCode,
    /// The bytes of a header that arrived split across reads.
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    in_frame: bool,
    /// Payload bytes left in the current frame.
    frame_left: u64,
    frame_fin: bool,
    /// Offset of the next payload byte within the message.
    msg_off: usize,
    in_message: bool,
}

impl EchoChecker {
    pub(crate) fn new(frames: &Frames) -> Self {
        let mut whole = Vec::new();
        encode_frame(
            &mut whole,
            frames.opcode,
            true,
            false,
            None,
            &frames.payload,
        );
        Self {
            payload_start: whole.len() - frames.payload.len(),
            opcode: frames.opcode,
            whole,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            in_frame: false,
            frame_left: 0,
            frame_fin: false,
            msg_off: 0,
            in_message: false,
        }
    }

    /// Whether the stream stands between two messages.
    pub(crate) fn at_boundary(&self) -> bool {
        !self.in_message && !self.in_frame && self.header_len == 0
    }

    /// Feeds received bytes; returns how many messages completed.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<usize, BenchError> {
        let mut done = 0;
        while !data.is_empty() {
            if !self.in_frame {
                // Fast path: a whole unfragmented frame at a message boundary.
                if self.at_boundary() && data.starts_with(&self.whole) {
                    data = &data[self.whole.len()..];
                    done += 1;
                    continue;
                }
                data = self.take_header(data)?;
                if !self.in_frame {
                    break; // the header continues in the next read
                }
                if self.frame_left == 0 {
                    self.in_frame = false;
                    done += self.end_frame()?;
                    continue;
                }
            }
            let take = self.frame_left.min(data.len() as u64) as usize;
            let end = self.msg_off + take;
            let expected = &self.whole[self.payload_start..];
            if end > expected.len() {
                return Err(BenchError::Mismatch(format!(
                    "message longer than the {} bytes sent",
                    expected.len()
                )));
            }
            if data[..take] != expected[self.msg_off..end] {
                return Err(BenchError::Mismatch(format!(
                    "payload differs within bytes {}..{end}",
                    self.msg_off
                )));
            }
            self.msg_off = end;
            self.frame_left -= take as u64;
            data = &data[take..];
            if self.frame_left == 0 {
                self.in_frame = false;
                done += self.end_frame()?;
            }
        }
        Ok(done)
    }

    /// A frame's payload is complete: 1 if it ended a correct message.
    fn end_frame(&mut self) -> Result<usize, BenchError> {
        if !self.frame_fin {
            return Ok(0);
        }
        let expected = self.whole.len() - self.payload_start;
        if self.msg_off != expected {
            return Err(BenchError::Mismatch(format!(
                "message of {} bytes, {expected} sent",
                self.msg_off
            )));
        }
        self.msg_off = 0;
        self.in_message = false;
        Ok(1)
    }

    /// Accumulates a frame header (parsed by the core's [`FrameHeader`]) and
    /// checks it; sets `in_frame` once complete.
    fn take_header<'a>(&mut self, mut data: &'a [u8]) -> Result<&'a [u8], BenchError> {
        let header = loop {
            match FrameHeader::parse(&self.header[..self.header_len]) {
                Ok(Some((header, _))) => break header,
                Ok(None) => {}
                Err(e) => return Err(BenchError::Mismatch(format!("frame header: {e}"))),
            }
            if data.is_empty() {
                return Ok(data);
            }
            let need = match self.header_len {
                0 | 1 => 2,
                _ => FrameHeader::len_from_prefix([self.header[0], self.header[1]]),
            };
            let take = (need - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
        };
        self.header_len = 0;
        if header.mask.is_some() {
            return Err(BenchError::Mismatch("the server masked a frame".into()));
        }
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(BenchError::Mismatch("reserved bits set".into()));
        }
        let expected = if self.in_message {
            OpCode::Continuation
        } else {
            self.opcode
        };
        if header.opcode != expected {
            return Err(BenchError::Mismatch(format!(
                "opcode {} where {} was expected",
                header.opcode.bits(),
                expected.bits()
            )));
        }
        self.in_message = true;
        self.in_frame = true;
        self.frame_fin = header.fin;
        self.frame_left = header.payload_len;
        Ok(data)
    }
}

/// What a connection compares the echo with.
#[derive(Debug)]
enum Checker {
    /// Server frames carrying the payload.
    WebSocket(EchoChecker),
    /// The sent bytes themselves (raw TCP echo): `pos` is the offset in the
    /// ring of the next byte expected back.
    Raw { pos: usize },
}

impl Checker {
    fn feed(&mut self, frames: &Frames, data: &[u8]) -> Result<usize, BenchError> {
        match self {
            Self::WebSocket(c) => c.feed(data),
            Self::Raw { pos } => {
                let ring = &frames.ring;
                let mut done = 0;
                let mut rest = data;
                while !rest.is_empty() {
                    let take = (ring.len() - *pos).min(rest.len());
                    if rest[..take] != ring[*pos..*pos + take] {
                        return Err(BenchError::Mismatch(format!(
                            "raw echo differs at ring offset {pos}"
                        )));
                    }
                    let before = *pos / frames.frame_len;
                    *pos += take;
                    done += *pos / frames.frame_len - before;
                    if *pos == ring.len() {
                        *pos = 0;
                    }
                    rest = &rest[take..];
                }
                Ok(done)
            }
        }
    }
}

/// Starts the opening handshake: the request to send, and what the response
/// must match (the library's client handshake, without extensions).
fn request(target: &Target) -> (ClientHandshake, Vec<u8>) {
    let mut out = Vec::with_capacity(256);
    let protocols: Vec<String> = target.protocol.iter().cloned().collect();
    let hs = ClientHandshake::start(
        &mut out,
        &target.host,
        &target.path,
        &protocols,
        None,
        &hyper::HeaderMap::new(),
    );
    (hs, out)
}

/// Where the response head ends in `buf`, if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Checks the response head `head[..end]`. A refusal (any status but 101)
/// comes back with the start of its body: `head[end..]` and what
/// `read_more` adds (it reads at most the given number of bytes; 0 at the
/// end), so that the server's explanation is shown rather than taken for
/// WebSocket data.
fn check_response(
    hs: &ClientHandshake,
    head: &[u8],
    end: usize,
    mut read_more: impl FnMut(&mut Vec<u8>, usize) -> usize,
) -> Result<ClientResponse, BenchError> {
    match hs.finish(&head[..end], &HeadLimits::default()) {
        Ok(response) => Ok(response),
        Err(refusal) => {
            let mut body = head[end..].to_vec();
            loop {
                let missing = refusal.body_missing(body.len());
                if missing == 0 || read_more(&mut body, missing) == 0 {
                    break;
                }
            }
            Err(BenchError::Response(refusal.with_body(&body)))
        }
    }
}

/// How long the async engine waits for more of a refusal's body.
const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(1);

/// Largest response head accepted.
const MAX_HEAD: usize = 16 << 10;

/// Connects (from `source` if given) and does the opening handshake, unless
/// the target is a raw TCP echo.
pub(crate) async fn open(target: &Target, source: Option<IpAddr>) -> Result<TcpStream, BenchError> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(io_err("socket"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(io_err("bind a source address"))?;
    }
    let mut tcp = socket
        .connect(target.addr)
        .await
        .map_err(io_err("connect"))?;
    tcp.set_nodelay(true).map_err(io_err("TCP_NODELAY"))?;
    if target.raw_tcp {
        return Ok(tcp);
    }
    let (hs, request) = request(target);
    tcp.write_all(&request)
        .await
        .map_err(io_err("send the request"))?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(io_err("read the response"))?;
        if n == 0 {
            return Err(BenchError::Handshake("closed before the response".into()));
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head) {
            // Whatever the server says after a refusal arrived already or
            // comes within a second.
            let mut rest = Vec::new();
            if hs.finish(&head[..end], &HeadLimits::default()).is_err() {
                let reading = async {
                    let mut chunk = [0u8; 1024];
                    while let Ok(Ok(n @ 1..)) =
                        tokio::time::timeout(REFUSAL_BODY_WAIT, tcp.read(&mut chunk)).await
                    {
                        rest.extend_from_slice(&chunk[..n]);
                        if rest.len() >= volley::proto::handshake::MAX_REFUSAL_BODY {
                            break;
                        }
                    }
                };
                reading.await;
            }
            let mut rest = &rest[..];
            let response = check_response(&hs, &head, end, |body, missing| {
                let n = missing.min(rest.len());
                body.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                n
            })?;
            if target.protocol.is_some() && response.protocol != target.protocol {
                return Err(BenchError::Handshake(format!(
                    "subprotocol {:?}, want {:?}",
                    response.protocol, target.protocol
                )));
            }
            if end != head.len() {
                return Err(BenchError::Handshake(
                    "data before the first message".into(),
                ));
            }
            return Ok(tcp);
        }
        if head.len() > MAX_HEAD {
            return Err(BenchError::Handshake("response head too large".into()));
        }
    }
}

/// A masked Close frame with code 1000.
pub(crate) fn close_frame(key: [u8; 4]) -> [u8; 8] {
    [
        0x88,
        0x82,
        key[0],
        key[1],
        key[2],
        key[3],
        0x03 ^ key[0],
        0xE8 ^ key[1],
    ]
}

/// Bound on each connection's closing handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ends a connection cleanly: our Close, then the server's Close and its TCP
/// close (so TIME_WAIT stays on the server's side). Raw TCP: half-close,
/// then read to EOF.
pub(crate) async fn close(
    tcp: &mut TcpStream,
    raw_tcp: bool,
    key: [u8; 4],
) -> Result<(), BenchError> {
    let run = async {
        if raw_tcp {
            tcp.shutdown().await.map_err(io_err("shutdown"))?;
        } else {
            tcp.write_all(&close_frame(key))
                .await
                .map_err(io_err("send Close"))?;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) if got.len() < 256 => got.extend_from_slice(&buf[..n]),
                Ok(_) => {}
                // A reset after the Close exchange still ends the connection.
                Err(_) if !got.is_empty() => break,
                Err(e) => return Err(BenchError::Io("read the Close", e)),
            }
        }
        if !raw_tcp && got.first() != Some(&0x88) {
            return Err(BenchError::Mismatch(format!(
                "expected the server's Close, got {:02x?}",
                &got[..got.len().min(8)]
            )));
        }
        Ok(())
    };
    tokio::time::timeout(CLOSE_TIMEOUT, run)
        .await
        .map_err(|_| BenchError::Timeout("closing handshake"))?
}

/// State shared by the threads of an echo run.
#[derive(Debug, Default)]
struct Shared {
    connected: std::sync::atomic::AtomicUsize,
    measuring: AtomicBool,
    stop: AtomicBool,
    counted: AtomicU64,
    failure: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, e: &BenchError) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    fn failed(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

/// What one wake of a connection did.
enum Step {
    /// Echoed bytes arrived and were checked: this many messages completed.
    Echoed(usize),
    /// This many bytes of the ring were written.
    Sent(usize),
}

/// The most one read takes. Larger reads were slower: with 1 MiB reads the
/// 1 MiB scenario ran at 2,300–2,900 msg/s against 3,000–3,100 with 64 KiB
/// (the bytes are compared while they are still in cache).
const MAX_READ: usize = 64 << 10;

thread_local! {
    /// The read buffer of every connection of a generator thread: a
    /// connection checks what it read before it yields, so one buffer per
    /// thread serves them all.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One connection of an echo run, from connect to close.
async fn drive(
    target: &Target,
    frames: &Frames,
    in_flight: usize,
    shared: &Shared,
) -> Result<(), BenchError> {
    let mut tcp = open(target, None).await?;
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut checker = if target.raw_tcp {
        Checker::Raw { pos: 0 }
    } else {
        Checker::WebSocket(EchoChecker::new(frames))
    };
    let ring = &frames.ring[..];
    let fl = frames.frame_len;
    let rbuf_len = (fl * in_flight).clamp(16 << 10, MAX_READ);
    let mut pos = 0usize; // next ring byte to send
    let mut unsent = ring.len(); // bytes owed: K frames to start with
    let mut awaiting = in_flight.max(1); // messages whose echo is due
    let mut stopping = false;
    loop {
        if !stopping && shared.stop.load(Ordering::Relaxed) {
            stopping = true;
            // Finish the frame being written; drop the ones not started.
            let partial = (fl - pos % fl) % fl;
            awaiting -= (unsent - partial) / fl;
            unsent = partial;
        }
        if stopping && awaiting == 0 {
            break;
        }
        // Through `poll_read`, not `try_read`: a short read clears the
        // socket's readiness, so a drained socket costs no extra `recv`
        // that answers EAGAIN (one syscall per message at K=1).
        let step = std::future::poll_fn(|cx| {
            let read = READ_BUFFER.with(|shared_buf| {
                let mut buf = shared_buf.borrow_mut();
                if buf.len() < rbuf_len {
                    buf.resize(rbuf_len, 0);
                }
                let mut rb = tokio::io::ReadBuf::new(&mut buf[..rbuf_len]);
                match Pin::new(&mut tcp).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                        Poll::Ready(Err(BenchError::Closed))
                    }
                    Poll::Ready(Ok(())) => Poll::Ready(checker.feed(frames, rb.filled())),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(BenchError::Io("read", e))),
                    Poll::Pending => Poll::Pending,
                }
            });
            if let Poll::Ready(done) = read {
                return Poll::Ready(done.map(Step::Echoed));
            }
            if unsent > 0 {
                let first = &ring[pos..(pos + unsent).min(ring.len())];
                let second = &ring[..unsent - first.len()];
                let slices = [IoSlice::new(first), IoSlice::new(second)];
                match Pin::new(&mut tcp).poll_write_vectored(cx, &slices) {
                    Poll::Ready(Ok(n)) => return Poll::Ready(Ok(Step::Sent(n))),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(BenchError::Io("write", e))),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await?;
        match step {
            Step::Echoed(done) => {
                awaiting = awaiting
                    .checked_sub(done)
                    .ok_or_else(|| BenchError::Mismatch("more messages than were sent".into()))?;
                if done > 0 {
                    if shared.measuring.load(Ordering::Relaxed) {
                        shared.counted.fetch_add(done as u64, Ordering::Relaxed);
                    }
                    if !stopping {
                        unsent += done * fl;
                        awaiting += done;
                    }
                }
            }
            Step::Sent(n) => {
                pos = (pos + n) % ring.len();
                unsent -= n;
            }
        }
    }
    close(&mut tcp, target.raw_tcp, KeyGen::new(pos as u64).key()).await
}

/// Runs an echo throughput test; blocks until it is over.
/// `cpu` returns the CPU seconds used so far by this process and by the
/// server.
pub(crate) fn run_echo(
    spec: &EchoSpec,
    cpu: impl Fn() -> [f64; 2],
) -> Result<EchoResult, BenchError> {
    let shared = Arc::new(Shared::default());
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let (spec, shared) = (spec.clone(), shared.clone());
        let count = spec.connections / threads + usize::from(t < spec.connections % threads);
        handles.push(std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return shared.fail(&BenchError::Io("runtime", e)),
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async {
                let frames = Rc::new(Frames::new(spec.size, spec.text, spec.in_flight, t as u64));
                let target = Rc::new(spec.target.clone());
                let mut tasks = Vec::with_capacity(count);
                for _ in 0..count {
                    let (frames, target, shared) = (frames.clone(), target.clone(), shared.clone());
                    let k = spec.in_flight;
                    tasks.push(tokio::task::spawn_local(async move {
                        if let Err(e) = drive(&target, &frames, k, &shared).await {
                            shared.fail(&e);
                        }
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
        }));
    }
    // Wait for every connection (or a failure), then warm up and measure.
    let connect_deadline = Instant::now() + Duration::from_secs(60);
    while shared.connected.load(Ordering::Relaxed) < spec.connections {
        if shared.failed().is_some() || Instant::now() > connect_deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut result = Err(BenchError::Timeout("connecting"));
    if shared.failed().is_none() && shared.connected.load(Ordering::Relaxed) == spec.connections {
        std::thread::sleep(spec.warmup);
        let (cpu0, t0) = (cpu(), Instant::now());
        shared.measuring.store(true, Ordering::Relaxed);
        let end = t0 + spec.duration;
        let mut last = (t0, 0u64);
        while Instant::now() < end && shared.failed().is_none() {
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(250)));
            if spec.progress {
                let (now, n) = (Instant::now(), shared.counted.load(Ordering::Relaxed));
                let rate = (n - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
                progress_bar(now - t0, spec.duration, rate);
                last = (now, n);
            }
        }
        shared.measuring.store(false, Ordering::Relaxed);
        let (cpu1, seconds) = (cpu(), t0.elapsed().as_secs_f64());
        if spec.progress {
            eprint!("\r{:78}\r", "");
        }
        result = Ok(EchoResult {
            messages: shared.counted.load(Ordering::Relaxed),
            seconds,
            cpu_seconds: cpu1[0] - cpu0[0],
            server_cpu_seconds: cpu1[1] - cpu0[1],
        });
    }
    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    match shared.failed() {
        Some(e) => Err(BenchError::Failed(e)),
        None => result,
    }
}

/// Draws `[=====     ] 2.5/10.0 s  1,234,567 msg/s` on stderr.
fn progress_bar(elapsed: Duration, total: Duration, rate: f64) {
    let frac = (elapsed.as_secs_f64() / total.as_secs_f64().max(1e-9)).clamp(0.0, 1.0);
    let filled = (frac * 30.0) as usize;
    eprint!(
        "\r[{}{}] {:5.1}/{:.1} s {:>12.0} msg/s",
        "=".repeat(filled),
        " ".repeat(30 - filled),
        elapsed.as_secs_f64(),
        total.as_secs_f64(),
        rate
    );
    let _ = io::stderr().flush();
}

/// A latency run: one connection, one message in flight.
#[derive(Clone, Debug)]
pub(crate) struct LatencySpec {
    pub(crate) target: Target,
    pub(crate) size: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

/// Measures round trips one at a time on a blocking socket; returns each
/// measured round trip in nanoseconds.
pub(crate) fn run_latency(spec: &LatencySpec) -> Result<Vec<u64>, BenchError> {
    let target = &spec.target;
    let mut tcp = std::net::TcpStream::connect(target.addr).map_err(io_err("connect"))?;
    tcp.set_nodelay(true).map_err(io_err("TCP_NODELAY"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io_err("read timeout"))?;
    if !target.raw_tcp {
        let (hs, request) = request(target);
        tcp.write_all(&request)
            .map_err(io_err("send the request"))?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte: nothing past the head may be consumed here.
        while head_end(&head).is_none() {
            if head.len() > MAX_HEAD {
                return Err(BenchError::Handshake("response head too large".into()));
            }
            match tcp.read(&mut byte).map_err(io_err("read the response"))? {
                0 => return Err(BenchError::Handshake("closed before the response".into())),
                _ => head.push(byte[0]),
            }
        }
        let end = head.len();
        check_response(&hs, &head, end, |body, missing| {
            let mut chunk = vec![0u8; missing];
            match tcp.read(&mut chunk) {
                Ok(n) => {
                    body.extend_from_slice(&chunk[..n]);
                    n
                }
                Err(_) => 0,
            }
        })?;
    }
    let frames = Frames::new(spec.size, false, 64, 7);
    let mut checker = if target.raw_tcp {
        Checker::Raw { pos: 0 }
    } else {
        Checker::WebSocket(EchoChecker::new(&frames))
    };
    let mut rbuf = vec![0u8; (frames.frame_len + 16).max(4096)];
    let mut samples = Vec::new();
    let start = Instant::now();
    let (measure_from, end) = (start + spec.warmup, start + spec.warmup + spec.duration);
    let mut i = 0;
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        let at = (i % 64) * frames.frame_len;
        i += 1;
        tcp.write_all(&frames.ring[at..at + frames.frame_len])
            .map_err(io_err("write"))?;
        let mut done = 0;
        while done == 0 {
            let n = tcp.read(&mut rbuf).map_err(io_err("read"))?;
            if n == 0 {
                return Err(BenchError::Closed);
            }
            done = checker.feed(&frames, &rbuf[..n])?;
        }
        if done != 1 {
            return Err(BenchError::Mismatch("more messages than were sent".into()));
        }
        if t >= measure_from {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    if target.raw_tcp {
        let _ = tcp.shutdown(std::net::Shutdown::Write);
    } else {
        tcp.write_all(&close_frame(KeyGen::new(9).key()))
            .map_err(io_err("send Close"))?;
    }
    let mut rest = [0u8; 256];
    while let Ok(n) = tcp.read(&mut rest) {
        if n == 0 {
            break;
        }
    }
    Ok(samples)
}

/// An idle-connections run.
#[derive(Clone, Debug)]
pub(crate) struct ConnectSpec {
    pub(crate) target: Target,
    pub(crate) connections: usize,
    pub(crate) concurrency: usize,
    /// Connections opened from one source address before the next
    /// (127.0.0.2, 127.0.0.3, ...) is used, on loopback.
    pub(crate) ports_per_source: usize,
    pub(crate) progress: bool,
}

/// The outcome of a connect run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectResult {
    pub(crate) connections: usize,
    pub(crate) seconds: f64,
    /// What `measure` returned once every connection was open and idle.
    pub(crate) measured: Option<u64>,
}

/// Opens `connections` WebSocket connections (at most `concurrency` opening
/// at a time), lets them idle, calls `measure` (the server's RSS), then
/// closes them all cleanly. Blocks until done.
pub(crate) fn run_connect(
    spec: &ConnectSpec,
    measure: impl FnOnce() -> Option<u64>,
) -> Result<ConnectResult, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("runtime"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let target = Rc::new(spec.target.clone());
        let semaphore = Arc::new(tokio::sync::Semaphore::new(spec.concurrency.max(1)));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(spec.connections);
        for i in 0..spec.connections {
            let permit = semaphore
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| BenchError::Timeout("semaphore closed"))?;
            let source =
                (target.addr.ip().is_loopback() && i >= spec.ports_per_source).then(|| {
                    IpAddr::V4(Ipv4Addr::new(
                        127,
                        0,
                        0,
                        1 + (i / spec.ports_per_source) as u8,
                    ))
                });
            let target = target.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let tcp = open(&target, source).await;
                drop(permit);
                tcp
            }));
            if spec.progress && i % 1000 == 999 {
                eprint!("\r{} connections open", i + 1);
            }
        }
        let mut held = Vec::with_capacity(spec.connections);
        for task in tasks {
            match task.await {
                Ok(Ok(tcp)) => held.push(tcp),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(BenchError::Failed(e.to_string())),
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        if spec.progress {
            eprint!("\r{:40}\r", "");
        }
        // Let the server finish its work for the last connections.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let measured = measure();
        let connections = held.len();
        let raw = target.raw_tcp;
        let closing: Vec<_> = held
            .into_iter()
            .enumerate()
            .map(|(i, mut tcp)| {
                tokio::task::spawn_local(async move {
                    close(&mut tcp, raw, KeyGen::new(i as u64).key()).await
                })
            })
            .collect();
        for c in closing {
            let _ = c.await;
        }
        Ok(ConnectResult {
            connections,
            seconds,
            measured,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(size: usize) -> Frames {
        Frames::new(size, false, 4, 1)
    }

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let op = match opcode {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            _ => OpCode::Binary,
        };
        encode_frame(&mut out, op, fin, false, None, payload);
        out
    }

    #[test]
    fn counts_whole_frames_split_at_every_point() {
        let f = frames(300);
        let one = server_frame(2, true, &payload(300));
        let stream: Vec<u8> = one
            .iter()
            .chain(one.iter())
            .chain(one.iter())
            .copied()
            .collect();
        for cut in 0..=stream.len() {
            let mut c = EchoChecker::new(&f);
            let a = c.feed(&stream[..cut]).unwrap();
            let b = c.feed(&stream[cut..]).unwrap();
            assert_eq!(a + b, 3, "cut {cut}");
            assert!(c.at_boundary());
        }
    }

    #[test]
    fn accepts_a_refragmented_message() {
        let f = frames(100);
        let p = payload(100);
        let mut stream = server_frame(2, false, &p[..10]);
        stream.extend(server_frame(0, false, &[]));
        stream.extend(server_frame(0, true, &p[10..]));
        let mut c = EchoChecker::new(&f);
        assert_eq!(c.feed(&stream).unwrap(), 1);
    }

    #[test]
    fn rejects_a_changed_byte_a_wrong_length_and_a_masked_frame() {
        let f = frames(100);
        let mut p = payload(100);
        p[57] ^= 1;
        assert!(
            EchoChecker::new(&f)
                .feed(&server_frame(2, true, &p))
                .is_err()
        );
        assert!(
            EchoChecker::new(&f)
                .feed(&server_frame(2, true, &payload(99)))
                .is_err()
        );
        assert!(
            EchoChecker::new(&f)
                .feed(&server_frame(2, true, &payload(101)))
                .is_err()
        );
        let mut masked = Vec::new();
        encode_frame(
            &mut masked,
            OpCode::Binary,
            true,
            false,
            Some([1, 2, 3, 4]),
            &payload(100),
        );
        assert!(EchoChecker::new(&f).feed(&masked).is_err());
        assert!(
            EchoChecker::new(&f)
                .feed(&server_frame(1, true, &payload(100)))
                .is_err()
        );
    }

    #[test]
    fn counts_a_64_bit_length_frame_split_at_every_header_byte() {
        let f = frames(70_000);
        let one = server_frame(2, true, &payload(70_000));
        for cut in 0..=12 {
            let mut c = EchoChecker::new(&f);
            let a = c.feed(&one[..cut]).unwrap();
            let b = c.feed(&one[cut..]).unwrap();
            assert_eq!(a + b, 1, "cut {cut}");
            assert!(c.at_boundary());
        }
    }

    #[test]
    fn rejects_reserved_bits_a_control_frame_and_a_reserved_opcode() {
        let f = frames(10);
        let mut rsv = server_frame(2, true, &payload(10));
        rsv[0] |= 0x40;
        assert!(EchoChecker::new(&f).feed(&rsv).is_err());
        let mut ping = Vec::new();
        encode_frame(&mut ping, OpCode::Ping, true, false, None, b"hi");
        assert!(EchoChecker::new(&f).feed(&ping).is_err());
        let mut reserved = server_frame(2, true, &payload(10));
        reserved[0] = 0x80 | 0x3;
        assert!(EchoChecker::new(&f).feed(&reserved).is_err());
    }

    #[test]
    fn raw_checker_counts_frames_across_the_ring() {
        let f = frames(20);
        let mut c = Checker::Raw { pos: 0 };
        let twice: Vec<u8> = f.ring.iter().chain(f.ring.iter()).copied().collect();
        let (a, b) = twice.split_at(f.frame_len * 3 + 5);
        assert_eq!(c.feed(&f, a).unwrap() + c.feed(&f, b).unwrap(), 8);
        let mut bad = f.ring.clone();
        bad[3] ^= 0xFF;
        assert!(Checker::Raw { pos: 0 }.feed(&f, &bad).is_err());
    }

    #[test]
    fn ring_frames_carry_the_payload_under_different_keys() {
        let f = frames(64);
        assert_eq!(f.ring.len(), 4 * f.frame_len);
        let keys: Vec<&[u8]> = f.ring.chunks(f.frame_len).map(|c| &c[2..6]).collect();
        assert_ne!(keys[0], keys[1]);
        for chunk in f.ring.chunks(f.frame_len) {
            let mut p = chunk[6..].to_vec();
            volley::proto::frame::apply_mask(&mut p, [chunk[2], chunk[3], chunk[4], chunk[5]], 0);
            assert_eq!(p, payload(64));
        }
    }
}
