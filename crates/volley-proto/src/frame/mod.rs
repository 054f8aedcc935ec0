//! One frame at a time, with no connection context: header parse and emit,
//! opcodes, close codes, masking and UTF-8 validation.
//!
//! Everything here is a pure function of its input, and is fuzzed alone
//! (`fuzz/fuzz_targets/frame.rs`).

mod close_code;
mod header;
mod mask;
mod opcode;
mod prepared;
pub mod utf8;

pub use close_code::CloseCode;
pub use header::{FrameHeader, HeaderError, MAX_HEADER_LEN};
pub use mask::{apply_mask, apply_mask_bytewise, apply_mask_portable};
pub use opcode::OpCode;
pub use prepared::{PreparedFrame, PreparedFrames};

/// Appends a complete frame (header and payload, masked when `mask` is set) to `out`.
pub fn encode_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    out.reserve(MAX_HEADER_LEN + payload.len());
    header.write_to(out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}
