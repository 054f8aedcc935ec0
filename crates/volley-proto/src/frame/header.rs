//! The frame header: parse from bytes and emit to bytes (RFC 6455 §5.2).
//!
//! This module knows nothing of the connection. It checks only what a lone
//! header can show to be wrong: a reserved opcode, a fragmented or oversized
//! control frame, a 64-bit length with its top bit set.

use super::OpCode;

/// The longest header: 2 bytes, an 8-byte extended length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of its message.
    pub fin: bool,
    /// RSV1 (used by permessage-deflate for "compressed").
    pub rsv1: bool,
    /// RSV2, reserved.
    pub rsv2: bool,
    /// RSV3, reserved.
    pub rsv3: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on frames sent by a client.
    pub mask: Option<[u8; 4]>,
    /// The declared payload length. It is only a claim: check it against a
    /// limit before acting on it.
    pub payload_len: u64,
}

/// A header that no connection could accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The opcode is one of the reserved values.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame whose payload exceeds 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(u64),
    /// A 64-bit length with the most significant bit set.
    #[error("payload length has its most significant bit set")]
    LengthOverflow,
}

impl FrameHeader {
    /// The header length implied by the first two bytes.
    pub const fn len_from_prefix(b0_b1: [u8; 2]) -> usize {
        let _ = b0_b1[0];
        let ext = match b0_b1[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if b0_b1[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed, or the header and the
    /// number of bytes it took.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, HeaderError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let len = Self::len_from_prefix([b0, b1]);
        if buf.len() < len {
            return Ok(None);
        }
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(HeaderError::ReservedOpcode(b0 & 0x0F))?;
        let fin = b0 & 0x80 != 0;
        let mut pos = 2;
        let payload_len = match b1 & 0x7F {
            126 => {
                pos += 2;
                u64::from(u16::from_be_bytes([buf[2], buf[3]]))
            }
            127 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&buf[2..10]);
                pos += 8;
                let n = u64::from_be_bytes(bytes);
                if n >> 63 != 0 {
                    return Err(HeaderError::LengthOverflow);
                }
                n
            }
            n => u64::from(n),
        };
        let mask = if b1 & 0x80 != 0 {
            let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            Some(key)
        } else {
            None
        };
        if opcode.is_control() {
            if !fin {
                return Err(HeaderError::FragmentedControl);
            }
            if payload_len > 125 {
                return Err(HeaderError::ControlTooLong(payload_len));
            }
        }
        let header = Self {
            fin,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, len)))
    }

    /// Writes the header into `out` and returns how many bytes it took.
    /// The length is encoded minimally, as RFC 6455 requires.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = u8::from(self.fin) << 7
            | u8::from(self.rsv1) << 6
            | u8::from(self.rsv2) << 5
            | u8::from(self.rsv3) << 4
            | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = 2;
        if self.payload_len < 126 {
            out[1] = mask_bit | self.payload_len as u8;
        } else if let Ok(n) = u16::try_from(self.payload_len) {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&n.to_be_bytes());
            pos = 4;
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            pos = 10;
        }
        if let Some(key) = self.mask {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }

    /// Appends the header to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = self.encode(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn encode_then_parse_round_trips_at_each_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = header(OpCode::Binary, len, mask);
                let mut buf = [0u8; MAX_HEADER_LEN];
                let n = h.encode(&mut buf);
                assert_eq!(FrameHeader::len_from_prefix([buf[0], buf[1]]), n);
                assert_eq!(FrameHeader::parse(&buf[..n]), Ok(Some((h, n))));
                assert_eq!(FrameHeader::parse(&buf[..n - 1]), Ok(None));
            }
        }
    }

    #[test]
    fn minimal_length_encoding() {
        let mut buf = [0u8; MAX_HEADER_LEN];
        assert_eq!(header(OpCode::Text, 125, None).encode(&mut buf), 2);
        assert_eq!(header(OpCode::Text, 126, None).encode(&mut buf), 4);
        assert_eq!(header(OpCode::Text, 65536, None).encode(&mut buf), 10);
    }

    #[test]
    fn rejects_what_no_connection_accepts() {
        assert_eq!(
            FrameHeader::parse(&[0x83, 0]),
            Err(HeaderError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x8F, 0]),
            Err(HeaderError::ReservedOpcode(0xF))
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0]),
            Err(HeaderError::FragmentedControl)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 126, 0, 126]),
            Err(HeaderError::ControlTooLong(126))
        );
        let mut big = vec![0x82, 127];
        big.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(FrameHeader::parse(&big), Err(HeaderError::LengthOverflow));
    }
}
