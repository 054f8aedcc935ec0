//! A message encoded once as a server frame, to be written to many
//! connections (broadcast, fan-out) without encoding it again.

use bytes::Bytes;

use super::{OpCode, encode_frame};

/// A whole message encoded once as an unmasked, uncompressed frame.
///
/// Server frames are never masked, so the same bytes are valid on every
/// server-side connection: a hub encodes a publication once and queues the
/// shared [`Bytes`] (a reference count, no copy of the payload) to each
/// subscriber with [`Connection::send_prepared`](crate::Connection::send_prepared).
/// Prepared frames are never compressed: RFC 7692 lets any message go
/// uncompressed, and compressing per connection would defeat the purpose.
///
/// ```
/// use volley_proto::{Message, PreparedFrame};
///
/// let frame = PreparedFrame::new(&Message::text("hello"));
/// assert_eq!(frame.as_bytes(), b"\x81\x05hello");
/// assert_eq!(frame.payload(), b"hello");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedFrame {
    bytes: Bytes,
    header_len: usize,
    opcode: OpCode,
}

impl PreparedFrame {
    /// Encodes `payload` as one final, unmasked data frame with `opcode`
    /// ([`OpCode::Text`] or [`OpCode::Binary`]; the caller vouches that text
    /// is UTF-8). [`PreparedFrame::new`] does it from a message.
    pub fn encode(opcode: OpCode, payload: &[u8]) -> Self {
        let mut out = Vec::new();
        encode_frame(&mut out, opcode, true, false, None, payload);
        let header_len = out.len() - payload.len();
        Self {
            bytes: Bytes::from(out),
            header_len,
            opcode,
        }
    }

    /// The whole frame: header and payload, as written to a server-side
    /// connection.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole frame as shared bytes (cloning is a reference count).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The message payload.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.header_len..]
    }

    /// The frame's opcode ([`OpCode::Text`] or [`OpCode::Binary`]).
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// The frame's length on the wire, header included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a frame has at least a two-byte header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameHeader;

    #[test]
    fn encodes_header_once_for_every_length_class() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let frame = PreparedFrame::encode(OpCode::Binary, &vec![7u8; len]);
            let (header, used) = FrameHeader::parse(frame.as_bytes())
                .expect("valid header")
                .expect("complete header");
            assert_eq!(header.payload_len, len as u64);
            assert!(header.fin && !header.rsv1 && header.mask.is_none());
            assert_eq!(used + len, frame.len());
            assert_eq!(frame.payload().len(), len);
        }
    }
}
