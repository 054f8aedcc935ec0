//! Payload masking (RFC 6455 §5.3).
//!
//! On x86-64 CPUs with AVX2 (detected at run time) payloads from 32 bytes are
//! masked 32 bytes at a time by the [`simd`] module, the crate's one audited
//! use of `unsafe`. Everywhere else the XOR is done on 8-byte words, which the
//! compiler turns into SSE2 on baseline x86-64; the unaligned tail is done a
//! byte at a time, and so are payloads under 32 bytes.

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // calls a `#[target_feature]` function; see its docs
mod simd;

/// XORs `buf` with the masking key `key`, as if `buf` started at byte `offset`
/// of the frame payload. Applying it twice restores the input.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= SHORT && simd::try_apply(buf, rotate_key(key, offset)) {
        return;
    }
    apply_mask_portable(buf, key, offset);
}

/// The safe path of [`apply_mask`], taken on CPUs without AVX2 and on other
/// targets: the byte loop under 32 bytes, else 8-byte words. Public for
/// tests and benchmarks.
pub fn apply_mask_portable(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if buf.len() < SHORT {
        // Short payloads (chat messages, small JSON): the byte loop wins
        // below this (see BENCHMARKS.md, masking).
        apply_mask_bytewise(buf, key, offset);
        return;
    }
    mask_words(buf, rotate_key(key, offset));
}

/// Masks `buf` 8 bytes at a time with the rotated `key`.
fn mask_words(buf: &mut [u8], key: [u8; 4]) {
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

/// Masks `buf` in 32-byte blocks with the rotated `key`, the rest as
/// [`mask_words`] does. Inlined into [`simd`]'s `#[target_feature]` function,
/// where each block is one AVX2 XOR.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mask_blocks(buf: &mut [u8], key: [u8; 4]) {
    let mut pattern = [0u8; BLOCK];
    for (i, p) in pattern.iter_mut().enumerate() {
        *p = key[i & 3];
    }
    let mut blocks = buf.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        for (b, p) in block.iter_mut().zip(pattern) {
            *b ^= p;
        }
    }
    // BLOCK is a multiple of 4, so the key is still in phase.
    mask_words(blocks.into_remainder(), key);
}

/// Bytes masked at once by [`mask_blocks`]: one AVX2 register.
#[cfg(target_arch = "x86_64")]
const BLOCK: usize = 32;

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

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Every length 0..300, a few large odd ones.
    fn lengths() -> impl Iterator<Item = usize> {
        (0..300).chain([1000, 4099, 16 * 1024 + 7, 65_537, (1 << 20) + 13])
    }

    fn input(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    /// Checks `mask` against the byte-at-a-time reference at every payload
    /// offset 0..4, every length, and start addresses 0..64 bytes into an
    /// allocation (so both aligned and unaligned).
    fn matches_reference(mask: impl Fn(&mut [u8], [u8; 4], usize)) {
        for len in lengths() {
            let data = input(len + 64);
            let starts = if len < 300 { 0..64 } else { 0..3 };
            for start in starts {
                for offset in 0..4 {
                    let mut fast = data.clone();
                    let mut slow = data.clone();
                    mask(&mut fast[start..start + len], KEY, offset);
                    apply_mask_bytewise(&mut slow[start..start + len], KEY, offset);
                    assert!(fast == slow, "len {len} start {start} offset {offset}");
                    mask(&mut fast[start..start + len], KEY, offset);
                    assert!(fast == data, "len {len} start {start} offset {offset}");
                }
            }
        }
    }

    /// Checks that masking a payload in two pieces, the second at the
    /// offset where the first ended, equals masking it whole.
    fn split_equals_whole(mask: impl Fn(&mut [u8], [u8; 4], usize)) {
        let data = input(300);
        let mut whole = data.clone();
        mask(&mut whole, KEY, 0);
        for at in 0..=data.len() {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(at);
            mask(a, KEY, 0);
            mask(b, KEY, at);
            assert!(parts == whole, "split at {at}");
        }
    }

    #[test]
    fn dispatch_matches_the_bytewise_reference() {
        matches_reference(apply_mask);
        split_equals_whole(apply_mask);
    }

    #[test]
    fn portable_path_matches_the_bytewise_reference() {
        matches_reference(apply_mask_portable);
        split_equals_whole(apply_mask_portable);
    }

    #[test]
    fn word_loop_matches_the_bytewise_reference_below_the_short_cutoff_too() {
        matches_reference(|buf, key, offset| mask_words(buf, rotate_key(key, offset)));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_path_matches_the_bytewise_reference() {
        let has_avx2 = std::is_x86_feature_detected!("avx2");
        let simd = |buf: &mut [u8], key, offset| {
            let key = rotate_key(key, offset);
            if !simd::try_apply(buf, key) {
                assert!(!has_avx2, "AVX2 detected but not used");
                mask_words(buf, key);
            }
        };
        matches_reference(simd);
        split_equals_whole(simd);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn dispatcher_picks_avx2_when_the_cpu_has_it() {
        let expected = if std::is_x86_feature_detected!("avx2") {
            "avx2"
        } else {
            "words"
        };
        assert_eq!(simd::backend_name(), expected);
        let mut buf = [0u8; 64];
        assert_eq!(simd::try_apply(&mut buf, KEY), expected == "avx2");
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: a masked "Hello" with key 37 fa 21 3d.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        let mut data = *b"Hello";
        apply_mask_portable(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
