//! A message encoded once as a server frame, to be written to many
//! connections (broadcast, fan-out) without encoding it again; and several
//! of them joined into one buffer.

use bytes::Bytes;

use super::{FrameHeader, OpCode, encode_frame};

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

/// Several whole messages, each a [`PreparedFrame`], in one buffer: their
/// frames back to back, as they go on the wire.
///
/// A hub that has several publications waiting for the same subscribers
/// joins their frames once and queues the one buffer to each subscriber
/// (one reference count, one queue entry and one write per subscriber, not
/// one per message). [`Connection::send_prepared_frames`](crate::Connection::send_prepared_frames)
/// sends them; [`PreparedFrames::iter`] gives the messages back.
///
/// ```
/// use volley_proto::{Message, PreparedFrame, PreparedFrames};
///
/// let a = PreparedFrame::new(&Message::text("a"));
/// let b = PreparedFrame::new(&Message::binary(vec![1, 2]));
/// let both = PreparedFrames::join([&a, &b]);
/// assert_eq!(both.as_bytes(), b"\x81\x01a\x82\x02\x01\x02");
/// assert_eq!(both.count(), 2);
/// assert_eq!(both.iter().collect::<Vec<_>>(), [a, b]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedFrames {
    bytes: Bytes,
    count: usize,
}

impl PreparedFrames {
    /// Joins frames, in order, into one buffer (one copy of each).
    pub fn join<'a>(frames: impl IntoIterator<Item = &'a PreparedFrame> + Clone) -> Self {
        let len = frames.clone().into_iter().map(PreparedFrame::len).sum();
        let mut out = Vec::with_capacity(len);
        let mut count = 0;
        for frame in frames {
            out.extend_from_slice(frame.as_bytes());
            count += 1;
        }
        Self {
            bytes: Bytes::from(out),
            count,
        }
    }

    /// The frames, back to back, as written to a server-side connection.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The frames as shared bytes (cloning is a reference count).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// How many messages there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Their length on the wire, headers included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there is no message at all.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The messages, in order, each as the [`PreparedFrame`] it was (its
    /// bytes shared with these, not copied).
    pub fn iter(&self) -> impl Iterator<Item = PreparedFrame> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            // The buffer holds only whole frames this type encoded: a header
            // that does not parse cannot occur, and would end the walk.
            let (header, header_len) = FrameHeader::parse(self.bytes.get(at..)?).ok()??;
            let end = at
                .checked_add(header_len)?
                .checked_add(usize::try_from(header.payload_len).ok()?)?;
            if end > self.bytes.len() {
                return None;
            }
            let frame = PreparedFrame {
                bytes: self.bytes.slice(at..end),
                header_len,
                opcode: header.opcode,
            };
            at = end;
            Some(frame)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameHeader;

    #[test]
    fn joined_frames_split_back_into_the_same_frames() {
        let frames: Vec<PreparedFrame> = [0usize, 1, 125, 126, 65_536]
            .iter()
            .map(|&len| PreparedFrame::encode(OpCode::Binary, &vec![len as u8; len]))
            .chain([PreparedFrame::encode(OpCode::Text, b"text")])
            .collect();
        let joined = PreparedFrames::join(&frames);
        assert_eq!(joined.count(), frames.len());
        assert_eq!(
            joined.len(),
            frames.iter().map(PreparedFrame::len).sum::<usize>()
        );
        assert_eq!(joined.iter().collect::<Vec<_>>(), frames);
        assert_eq!(PreparedFrames::join(&[]).iter().count(), 0);
    }

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
