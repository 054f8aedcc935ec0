//! Payload masking (RFC 6455 §5.3), a word at a time.
//!
//! The XOR is done on 8-byte words, which the compiler turns into SIMD on
//! targets that have it; the unaligned head and tail are done a byte at a time.

/// XORs `buf` with the masking key `key`, as if `buf` started at byte `offset`
/// of the frame payload. Applying it twice restores the input.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if buf.len() < SHORT {
        // Short payloads (chat messages, small JSON): the byte loop wins
        // below this (see BENCHMARKS.md, masking).
        apply_mask_bytewise(buf, key, offset);
        return;
    }
    let key = rotate_key(key, offset);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let masked = u64::from_ne_bytes(bytes) ^ word;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Below this many bytes the byte loop is faster than words.
const SHORT: usize = 32;

/// The key as seen from payload position `offset`.
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut k = key;
    k.rotate_left(offset & 3);
    k
}

/// The byte-at-a-time reference implementation, for tests and benchmarks.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_bytewise_reference_at_every_offset_and_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..70 {
            for offset in 0..4 {
                let input: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = input.clone();
                let mut slow = input.clone();
                apply_mask(&mut fast, key, offset);
                apply_mask_bytewise(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
                apply_mask(&mut fast, key, offset);
                assert_eq!(fast, input);
            }
        }
    }

    #[test]
    fn split_application_equals_whole() {
        let key = [1, 2, 3, 4];
        let input: Vec<u8> = (0..100u8).collect();
        let mut whole = input.clone();
        apply_mask(&mut whole, key, 0);
        let mut parts = input;
        let (a, b) = parts.split_at_mut(13);
        apply_mask(a, key, 0);
        apply_mask(b, key, 13);
        assert_eq!(whole, parts);
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: a masked "Hello" with key 37 fa 21 3d.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
