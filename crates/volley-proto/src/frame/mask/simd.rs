//! Masking with AVX2, chosen at run time: the one module of volley-proto that
//! may use `unsafe`.
//!
//! # Why it exists
//!
//! Built for baseline x86-64, the word loop in the parent module is
//! vectorized with 16-byte SSE2 registers only. A safe loop over 32-byte
//! blocks compiled with AVX2 enabled masks 16 KiB in 166–179 ns instead of
//! 306–318 ns (1.8×) and 1 MiB in 11.2–13.3 µs instead of 18.2–20.5 µs
//! (1.6×), on an AMD EPYC (Zen 4), criterion, two runs side by side (see
//! BENCHMARKS.md, "Microbenchmarks of the protocol core"). At 16 KiB that
//! is roughly one 32-byte store per clock cycle, near what the core can
//! store, so explicit intrinsics (more `unsafe`: pointer loads and stores)
//! were not tried. AVX-512 (64-byte blocks) was slower than AVX2 on the same
//! machine (224 ns and 15.4 µs), so it is not used. Under 1 KiB the gain is
//! small, and under 32 bytes the byte loop is kept.
//!
//! # What is audited
//!
//! - [`mask_avx2`] is safe Rust: slices, `chunks_exact_mut` and XOR, no
//!   pointers. `#[target_feature(enable = "avx2")]` only lets the compiler
//!   emit AVX2 instructions in it.
//! - The one `unsafe` block is the call of [`mask_avx2`] in [`try_apply`].
//!   Calling a `#[target_feature]` function is unsafe because running AVX2
//!   instructions on a CPU without them is undefined behaviour; the call is
//!   made only after `is_x86_feature_detected!("avx2")` said yes (checked once,
//!   cached in [`BACKEND`]).
//! - Any other CPU or target takes the safe word loop. Tests check both paths
//!   against the byte-at-a-time reference; the frame fuzz target does the same
//!   through `apply_mask`.

use std::sync::atomic::{AtomicU8, Ordering};

/// Not checked yet.
const UNKNOWN: u8 = 0;
/// No AVX2: the portable word loop.
const WORDS: u8 = 1;
/// AVX2 detected.
const AVX2: u8 = 2;

/// The backend detected on this CPU, [`UNKNOWN`] until first use.
static BACKEND: AtomicU8 = AtomicU8::new(UNKNOWN);

fn backend() -> u8 {
    match BACKEND.load(Ordering::Relaxed) {
        UNKNOWN => {
            // Racing threads compute the same answer; either store is fine.
            let b = if std::is_x86_feature_detected!("avx2") {
                AVX2
            } else {
                WORDS
            };
            BACKEND.store(b, Ordering::Relaxed);
            b
        }
        b => b,
    }
}

/// The name of the backend [`try_apply`] uses on this CPU.
#[cfg(test)]
pub(super) fn backend_name() -> &'static str {
    match backend() {
        AVX2 => "avx2",
        _ => "words",
    }
}

/// Masks `buf` with the already rotated `key` using AVX2 and returns `true`,
/// or returns `false` without touching `buf` if this CPU has no AVX2.
pub(super) fn try_apply(buf: &mut [u8], key: [u8; 4]) -> bool {
    if backend() != AVX2 {
        return false;
    }
    // SAFETY: `mask_avx2` is only unsafe to call because of its
    // `#[target_feature(enable = "avx2")]`; `backend()` returned AVX2, so
    // `is_x86_feature_detected!("avx2")` confirmed this CPU supports it.
    unsafe { mask_avx2(buf, key) };
    true
}

/// The safe block-and-word loop, compiled with AVX2 enabled.
#[target_feature(enable = "avx2")]
fn mask_avx2(buf: &mut [u8], key: [u8; 4]) {
    super::mask_blocks(buf, key);
}
