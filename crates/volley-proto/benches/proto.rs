//! Microbenchmarks of the hot paths: frame parse and emit, masking, UTF-8
//! validation and message assembly. `cargo bench -p volley-proto`.
#![allow(missing_docs, clippy::unwrap_used)] // a benchmark binary

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use volley_proto::frame::utf8::{Utf8Validator, validate};
use volley_proto::frame::{
    FrameHeader, MAX_HEADER_LEN, OpCode, apply_mask, apply_mask_bytewise, apply_mask_portable,
    encode_frame,
};
use volley_proto::{Config, Connection, Event, Message, Role};

const SIZES: [usize; 4] = [20, 1024, 16 << 10, 1 << 20];
/// Masking also at 125 bytes, the largest payload with a 2-byte header.
const MASK_SIZES: [usize; 5] = [20, 125, 1024, 16 << 10, 1 << 20];

fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    let header = FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Binary,
        mask: Some([1, 2, 3, 4]),
        payload_len: 70_000,
    };
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut buf);
    g.bench_function("parse", |b| {
        b.iter(|| FrameHeader::parse(black_box(&buf[..n])).unwrap())
    });
    g.bench_function("encode", |b| {
        let mut out = [0u8; MAX_HEADER_LEN];
        b.iter(|| black_box(&header).encode(&mut out))
    });
    g.finish();
}

fn emit(c: &mut Criterion) {
    let mut g = c.benchmark_group("emit_frame");
    for size in SIZES {
        let payload = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::with_capacity(size + MAX_HEADER_LEN);
        g.bench_with_input(BenchmarkId::new("server", size), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                encode_frame(&mut out, OpCode::Binary, true, false, None, black_box(p));
            })
        });
        g.bench_with_input(BenchmarkId::new("client_masked", size), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                encode_frame(
                    &mut out,
                    OpCode::Binary,
                    true,
                    false,
                    Some([1, 2, 3, 4]),
                    black_box(p),
                );
            })
        });
    }
    g.finish();
}

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in MASK_SIZES {
        let mut data = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        // What `apply_mask` does: AVX2 if the CPU has it, else `word`.
        g.bench_function(BenchmarkId::new("dispatch", size), |b| {
            b.iter(|| apply_mask(black_box(&mut data), [1, 2, 3, 4], 1))
        });
        g.bench_function(BenchmarkId::new("word", size), |b| {
            b.iter(|| apply_mask_portable(black_box(&mut data), [1, 2, 3, 4], 1))
        });
        g.bench_function(BenchmarkId::new("bytewise", size), |b| {
            b.iter(|| apply_mask_bytewise(black_box(&mut data), [1, 2, 3, 4], 1))
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for size in SIZES {
        let ascii = "a".repeat(size);
        let mixed: String = "κόσμε héllo 🌍 ".chars().cycle().take(size / 2).collect();
        for (name, text) in [("ascii", &ascii), ("mixed", &mixed)] {
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_function(BenchmarkId::new(format!("whole_{name}"), size), |b| {
                b.iter(|| validate(black_box(text.as_bytes())).unwrap())
            });
            g.bench_function(
                BenchmarkId::new(format!("incremental_4k_{name}"), size),
                |b| {
                    b.iter(|| {
                        let mut v = Utf8Validator::new();
                        for piece in text.as_bytes().chunks(4096) {
                            v.feed(black_box(piece)).unwrap();
                        }
                        v.finish().unwrap();
                    })
                },
            );
        }
    }
    g.finish();
}

/// A server core receiving client frames: parse, unmask, assemble, validate.
fn assembly(c: &mut Criterion) {
    let mut g = c.benchmark_group("receive_message");
    for size in SIZES {
        let mut client = Connection::new(Role::Client, Config::default(), None);
        let text = "x".repeat(size);
        client.send(&Message::text(text.as_str())).unwrap();
        let mut whole = Vec::new();
        client.poll_transmit(&mut whole);
        for fragments in [1usize, 16] {
            let mut wire = Vec::new();
            if fragments == 1 {
                wire.clone_from(&whole);
            } else {
                let piece = size.div_ceil(fragments).max(1);
                let chunks: Vec<&[u8]> = text.as_bytes().chunks(piece).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    let kind = volley_proto::MessageKind::Text;
                    client
                        .send_fragment(kind, chunk, i + 1 == chunks.len())
                        .unwrap();
                }
                client.poll_transmit(&mut wire);
            }
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(
                BenchmarkId::new(format!("text_{fragments}_fragments"), size),
                |b| {
                    let mut server = Connection::new(Role::Server, Config::default(), None);
                    b.iter(|| {
                        server.receive(black_box(&wire));
                        match server.poll_event() {
                            Some(Event::Message(m)) => black_box(m),
                            other => panic!("{other:?}"),
                        }
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, frame_header, emit, masking, utf8, assembly);
criterion_main!(benches);
