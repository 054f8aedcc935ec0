//! A 1 MiB compressed message that inflates to 1 GiB: the server closes with
//! 1009 and its heap never grows past the message limit plus one inflate chunk.
//!
//! The heap is measured with a counting global allocator (the only unsafe
//! code in the tests: it forwards to the system allocator unchanged).
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` with the same arguments; the
// counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const GIB: usize = 1 << 30;
const MIB: usize = 1 << 20;

/// Raw DEFLATE of 1 GiB of zeros, ending in a sync flush whose tail is
/// stripped (a permessage-deflate payload). Built from a repeated block:
/// once the window is all zeros, each further MiB compresses identically.
fn bomb() -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let mut c = Compress::new(Compression::best(), false);
    let mut pieces = Vec::new();
    for _ in 0..3 {
        let mut out = Vec::with_capacity(MIB);
        c.compress_vec(&zeros, &mut out, FlushCompress::Sync)
            .unwrap();
        pieces.push(out);
    }
    assert_eq!(pieces[1], pieces[2], "steady-state block repeats");
    let mut payload = pieces[0].clone();
    for _ in 1..GIB / MIB {
        payload.extend_from_slice(&pieces[1]);
    }
    assert!(payload.ends_with(&[0, 0, 0xff, 0xff]));
    payload.truncate(payload.len() - 4);
    payload
}

/// How many bytes the payload inflates to, counted without keeping them.
fn inflated_len(payload: &[u8]) -> usize {
    let mut d = Decompress::new(false);
    let mut out = vec![0u8; MIB];
    let mut input = payload;
    let mut total = 0;
    loop {
        let (i0, o0) = (d.total_in(), d.total_out());
        d.decompress(input, &mut out, FlushDecompress::Sync)
            .unwrap();
        input = &input[(d.total_in() - i0) as usize..];
        let produced = (d.total_out() - o0) as usize;
        total += produced;
        if input.is_empty() && produced < out.len() {
            return total;
        }
    }
}

fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first, 0x80 | 127];
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    let key = [1, 2, 3, 4];
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    volley::proto::frame::apply_mask(&mut out[start..], key, 0);
    out
}

#[tokio::test(flavor = "current_thread")]
async fn bomb_is_closed_with_1009_within_the_memory_bound() {
    let payload = bomb();
    assert!(payload.len() < 2 * MIB, "bomb is {} bytes", payload.len());
    assert_eq!(inflated_len(&payload), GIB);
    let frame = masked_frame(0xC2, &payload); // FIN, RSV1, binary
    drop(payload);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = volley::accept(tcp).await.unwrap();
        let baseline = CURRENT.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let result = ws.recv().await;
        (result, PEAK.load(Ordering::Relaxed) - baseline)
    });

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        // The server stops reading once it closes: a write error is expected.
        let _ = wr.write_all(&frame).await;
    });
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap_or(0);
    let _ = writer.await;

    let (result, growth) = server.await.unwrap();
    assert!(matches!(
        result,
        Some(Err(volley::Error::Protocol(
            volley::proto::ProtocolError::MessageTooLarge { .. }
        )))
    ));
    // The response head, then an unmasked close frame with 1009.
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let close = &received[head_end..];
    assert_eq!(close[0], 0x88);
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1009);

    let limit = volley::proto::config::DEFAULT_MAX_MESSAGE_SIZE;
    let chunk = 32 << 10;
    println!(
        "heap growth while receiving the bomb: {growth} bytes (limit {limit} + chunk {chunk})"
    );
    // Beside the message buffer: the read buffer (32 KiB) and zlib's window
    // and tables (under 64 KiB); budget 128 KiB for them.
    assert!(growth <= limit + chunk + (128 << 10), "grew by {growth}");
}
