//! The permessage-deflate codec (RFC 7692 §7): raw DEFLATE with a sync flush,
//! the `00 00 ff ff` tail stripped on send and restored on receive.
//!
//! Both halves allocate their zlib state only when the first compressed
//! message needs it, and drop it after each message when the context is not
//! kept, so an idle connection holds no compressor memory.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The tail that a sync flush ends with, removed from each message on the wire.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output is grown by at least this much per step while inflating.
pub(crate) const INFLATE_CHUNK: usize = 32 << 10;

/// Why inflating stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The output would exceed the limit.
    TooBig,
    /// The input is not valid DEFLATE data.
    Corrupt,
}

/// Decompresses the messages of one direction.
#[derive(Debug)]
pub(crate) struct Inflater {
    state: Option<Decompress>,
    window_bits: u8,
    keep_context: bool,
    /// A final block (BFINAL) ended the stream inside the current message.
    ended: bool,
}

impl Inflater {
    /// `window_bits` is the peer's negotiated window; `keep_context` is false
    /// when the peer resets its compressor after each message.
    pub(crate) fn new(window_bits: u8, keep_context: bool) -> Self {
        // zlib cannot compress with an 8-bit window and silently uses 9, so a
        // peer that negotiated 8 may still send 9-bit distances: inflate with
        // at least 9 (a larger window only costs memory, never correctness).
        Self {
            state: None,
            window_bits: window_bits.max(9),
            keep_context,
            ended: false,
        }
    }

    /// Inflates `input`, appending to `out`, which may hold at most `max` bytes.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        let bits = self.window_bits;
        let state = self
            .state
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        let mut input = input;
        loop {
            if self.ended {
                // Data after a final block cannot be decoded with this stream.
                return if input.is_empty() {
                    Ok(())
                } else {
                    Err(InflateError::Corrupt)
                };
            }
            if out.len() == out.capacity() {
                grow(out, max)?;
            }
            let room = out.capacity() - out.len();
            let (in0, out0) = (state.total_in(), state.total_out());
            let status = state
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (state.total_in() - in0) as usize;
            let produced = (state.total_out() - out0) as usize;
            input = &input[consumed..];
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            match status {
                Status::StreamEnd => self.ended = true,
                Status::Ok | Status::BufError => {}
            }
            // Done when the input is used up and the output was not the limit.
            if input.is_empty() && produced < room {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && out.len() < out.capacity() {
                // No progress with room to spare: the decoder needs more input.
                return if input.is_empty() {
                    Ok(())
                } else {
                    Err(InflateError::Corrupt)
                };
            }
        }
    }

    /// Ends a message: feeds the stripped tail, then resets or drops the state
    /// when the context is not kept.
    pub(crate) fn finish_message(
        &mut self,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        let result = if self.ended {
            Ok(())
        } else {
            self.inflate(&SYNC_TAIL, out, max)
        };
        if !self.keep_context || self.ended {
            // A final block ends the stream: the next message starts afresh.
            self.state = None;
            self.ended = false;
        }
        result
    }

    /// Drops the state (after an error, or when idle without context).
    pub(crate) fn reset(&mut self) {
        self.state = None;
        self.ended = false;
    }

    /// Whether zlib state is currently allocated.
    pub(crate) fn is_allocated(&self) -> bool {
        self.state.is_some()
    }
}

/// Grows `out` geometrically, never past `max + 1` bytes of capacity (one byte
/// past the limit is how an oversized message is detected).
fn grow(out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
    let cap_limit = max.saturating_add(1);
    if out.capacity() >= cap_limit {
        return Err(InflateError::TooBig);
    }
    let want = out
        .capacity()
        .saturating_mul(2)
        .max(out.len() + INFLATE_CHUNK)
        .min(cap_limit);
    out.reserve_exact(want - out.len());
    Ok(())
}

/// Compresses the messages of one direction.
#[derive(Debug)]
pub(crate) struct Deflater {
    state: Option<Compress>,
    level: u32,
    window_bits: u8,
    keep_context: bool,
}

impl Deflater {
    /// `window_bits` is our negotiated window (9 to 15); `keep_context` is
    /// false when we promised to reset after each message.
    pub(crate) fn new(level: u32, window_bits: u8, keep_context: bool) -> Self {
        Self {
            state: None,
            level,
            window_bits: window_bits.clamp(9, 15),
            keep_context,
        }
    }

    /// Compresses one whole message, appending it to `out` without the sync tail.
    pub(crate) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let (level, bits) = (self.level, self.window_bits);
        let state = self.state.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(level), false, bits)
        });
        let start = out.len();
        out.reserve(input.len() / 2 + 64);
        let mut input = input;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(1024));
            }
            let room = out.capacity() - out.len();
            let (in0, out0) = (state.total_in(), state.total_out());
            // Compression into a Vec cannot fail: its only errors are misuse.
            if state.compress_vec(input, out, FlushCompress::Sync).is_err() {
                break;
            }
            let consumed = (state.total_in() - in0) as usize;
            let produced = (state.total_out() - out0) as usize;
            input = &input[consumed..];
            if input.is_empty() && produced < room {
                break;
            }
        }
        if out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(out.len() - SYNC_TAIL.len());
        }
        if out.len() == start {
            // An empty message still needs one empty block.
            out.push(0x00);
        }
        if !self.keep_context {
            self.state = None;
        }
    }

    /// Whether zlib state is currently allocated.
    pub(crate) fn is_allocated(&self) -> bool {
        self.state.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(keep: bool, bits: u8, messages: &[&[u8]]) {
        let mut d = Deflater::new(6, bits, keep);
        let mut i = Inflater::new(bits, keep);
        for m in messages {
            let mut wire = Vec::new();
            d.compress(m, &mut wire);
            let mut out = Vec::new();
            // Feed in small pieces to exercise streaming.
            for piece in wire.chunks(7) {
                i.inflate(piece, &mut out, 1 << 20).unwrap();
            }
            i.finish_message(&mut out, 1 << 20).unwrap();
            assert_eq!(&out[..], *m);
        }
    }

    #[test]
    fn round_trips_with_and_without_context() {
        let msgs: &[&[u8]] = &[
            b"Hello",
            b"Hello",
            b"",
            &[7u8; 100_000],
            b"Hello world Hello world",
        ];
        for keep in [true, false] {
            for bits in [9, 12, 15] {
                round_trip(keep, bits, msgs);
            }
        }
    }

    #[test]
    fn rfc7692_examples() {
        // §7.2.3.1: "Hello" compressed.
        let mut i = Inflater::new(15, true);
        let mut out = Vec::new();
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        i.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: the second "Hello" refers to the first.
        let mut out = Vec::new();
        i.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100)
            .unwrap();
        i.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.3: a stored (uncompressed) block.
        let mut i = Inflater::new(15, true);
        let mut out = Vec::new();
        i.inflate(
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            &mut out,
            100,
        )
        .unwrap();
        i.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn stops_at_the_limit_without_inflating_further() {
        let mut d = Deflater::new(9, 15, false);
        let mut wire = Vec::new();
        d.compress(&vec![0u8; 10 << 20], &mut wire);
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        assert_eq!(
            i.inflate(&wire, &mut out, 1 << 20),
            Err(InflateError::TooBig)
        );
        assert!(
            out.capacity() <= (1 << 20) + 1,
            "capacity {}",
            out.capacity()
        );
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        // BTYPE 11 is reserved.
        assert_eq!(
            i.inflate(&[0xff, 0xff, 0xff], &mut out, 100),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn state_is_lazy_and_dropped_without_context() {
        let mut d = Deflater::new(6, 15, false);
        assert!(!d.is_allocated());
        let mut wire = Vec::new();
        d.compress(b"abc", &mut wire);
        assert!(!d.is_allocated());
        let mut d = Deflater::new(6, 15, true);
        d.compress(b"abc", &mut wire);
        assert!(d.is_allocated());
    }
}
