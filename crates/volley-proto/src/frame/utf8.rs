//! UTF-8 validation that works across fragment and read boundaries.
//!
//! Text messages arrive in pieces; a code point may be split between two of
//! them. [`Utf8Validator`] checks each piece as it arrives (so an invalid byte
//! fails the connection at once, not when the message ends) and carries at most
//! three bytes of an incomplete code point to the next piece. The bulk of the
//! work is `simdutf8`, which picks a SIMD implementation at run time.

use simdutf8::compat::from_utf8;

/// Invalid UTF-8 was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8")]
pub struct InvalidUtf8;

/// Incremental UTF-8 validator. Feed pieces with [`feed`](Self::feed), then
/// call [`finish`](Self::finish) at the end of the message.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Validates the next piece of the message. Fails as soon as the bytes seen
    /// so far cannot be the start of valid UTF-8.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = usize::from(self.partial_len);
            let width = sequence_width(self.partial[0]).ok_or(InvalidUtf8)?;
            let take = (width - have).min(input.len());
            self.partial[have..have + take].copy_from_slice(&input[..take]);
            let now = have + take;
            input = &input[take..];
            match from_utf8(&self.partial[..now]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() && now < width => {
                    self.partial_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &input[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the message: fails if it stopped inside a code point.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.partial_len != 0;
        self.partial_len = 0;
        if incomplete { Err(InvalidUtf8) } else { Ok(()) }
    }
}

/// Validates a complete piece of text (a close reason, a whole message).
pub fn validate(input: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(input)
        .map(|_| ())
        .map_err(|_| InvalidUtf8)
}

/// Length of the sequence a lead byte starts, or `None` for a byte that cannot lead.
const fn sequence_width(lead: u8) -> Option<usize> {
    match lead {
        0x00..=0x7F => Some(1),
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts {
            v.feed(&bytes[start..cut])?;
            start = cut;
        }
        v.feed(&bytes[start..])?;
        v.finish()
    }

    #[test]
    fn valid_text_split_at_every_point_is_accepted() {
        let text = "κόσμε 𝄞 héllo €".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(feed_split(text, &[i, j]), Ok(()), "cuts {i} {j}");
            }
        }
    }

    #[test]
    fn invalid_text_is_rejected_wherever_it_is_split() {
        let cases: &[&[u8]] = &[
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", // surrogate
            b"\xf4\x90\x80\x80",                                               // > U+10FFFF
            b"\xc0\xaf",                                                       // overlong
            b"abc\xff",
            b"\xe0\x80\x80",
        ];
        for bytes in cases {
            for i in 0..=bytes.len() {
                assert_eq!(
                    feed_split(bytes, &[i]),
                    Err(InvalidUtf8),
                    "{bytes:?} cut {i}"
                );
            }
        }
    }

    #[test]
    fn fails_fast_on_the_first_bad_byte() {
        let mut v = Utf8Validator::new();
        // \xed\xa0 starts a surrogate: no continuation can make it valid.
        assert_eq!(v.feed(b"ok\xed\xa0"), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ok\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn truncated_sequence_fails_at_finish() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xe2\x82"), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }
}
