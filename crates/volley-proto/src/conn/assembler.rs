//! Message assembly: the payloads of a message's frames, unmasked, inflated
//! and UTF-8-checked as they arrive, into one contiguous buffer.
//!
//! Memory: the buffer grows with the bytes that actually arrive, never from a
//! declared length alone; its capacity stays within twice the bytes received
//! (and within the declared frame length when the peer is honest), so a
//! partial message pins at most about twice its own size.

use bytes::Bytes;

use crate::deflate::codec::{InflateError, Inflater};
use crate::error::ProtocolError;
use crate::frame::apply_mask;
use crate::frame::utf8::Utf8Validator;
use crate::message::{Message, Utf8Bytes};

/// The type of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
}

/// The message being received.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    kind: Option<MessageKind>,
    compressed: bool,
    buf: Vec<u8>,
    utf8: Utf8Validator,
}

impl Assembler {
    pub(crate) fn in_progress(&self) -> bool {
        self.kind.is_some()
    }

    pub(crate) fn is_compressed(&self) -> bool {
        self.compressed
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub(crate) fn start(&mut self, kind: MessageKind, compressed: bool) {
        self.kind = Some(kind);
        self.compressed = compressed;
        self.utf8 = Utf8Validator::new();
    }

    /// Appends a piece of frame payload. `mask` is the key and the piece's
    /// offset in its frame; `frame_left` is what the frame still declares
    /// after this piece. `inflate` is the inflater with its scratch buffer
    /// (for unmasking compressed input) when deflate was negotiated.
    pub(crate) fn push(
        &mut self,
        piece: &[u8],
        mask: Option<([u8; 4], usize)>,
        frame_left: u64,
        inflate: Option<(&mut Inflater, &mut Vec<u8>)>,
        max: usize,
    ) -> Result<(), ProtocolError> {
        let start = self.buf.len();
        match (self.compressed, inflate) {
            (true, Some((inflater, scratch))) => {
                let input: &[u8] = match mask {
                    Some((key, offset)) => {
                        scratch.clear();
                        scratch.extend_from_slice(piece);
                        apply_mask(scratch, key, offset);
                        scratch
                    }
                    None => piece,
                };
                inflater
                    .inflate(input, &mut self.buf, max)
                    .map_err(|e| inflate_error(e, max))?;
            }
            _ => {
                self.reserve_plain(piece.len(), frame_left);
                self.buf.extend_from_slice(piece);
                if let Some((key, offset)) = mask {
                    apply_mask(&mut self.buf[start..], key, offset);
                }
            }
        }
        if self.kind == Some(MessageKind::Text) {
            self.utf8
                .feed(&self.buf[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Makes room for `more` bytes of uncompressed payload: at least double
    /// the capacity (amortized), never past what the frame declares.
    fn reserve_plain(&mut self, more: usize, frame_left: u64) {
        let start = self.buf.len();
        let need = start + more;
        if need > self.buf.capacity() {
            let declared = need.saturating_add(usize::try_from(frame_left).unwrap_or(usize::MAX));
            let target = self
                .buf
                .capacity()
                .saturating_mul(2)
                .clamp(need, declared.max(need));
            self.buf.reserve_exact(target - start);
        }
    }

    /// Bytes of the message received so far.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The message buffer with room for `more` payload bytes, for a read
    /// straight into it (uncompressed messages only).
    pub(crate) fn direct_buf(&mut self, more: usize, frame_left: u64) -> &mut Vec<u8> {
        self.reserve_plain(more, frame_left);
        &mut self.buf
    }

    /// Accepts the `n` bytes appended from `start` by a direct read: drops
    /// anything past them, unmasks, checks UTF-8.
    pub(crate) fn commit_direct(
        &mut self,
        start: usize,
        n: usize,
        mask: Option<([u8; 4], usize)>,
    ) -> Result<(), ProtocolError> {
        self.buf.truncate(start + n);
        if let Some((key, offset)) = mask {
            apply_mask(&mut self.buf[start..], key, offset);
        }
        if self.kind == Some(MessageKind::Text) {
            self.utf8
                .feed(&self.buf[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Completes the message.
    pub(crate) fn finish(
        &mut self,
        inflater: Option<&mut Inflater>,
        max: usize,
    ) -> Result<Message, ProtocolError> {
        if self.compressed {
            if let Some(inflater) = inflater {
                let start = self.buf.len();
                inflater
                    .finish_message(&mut self.buf, max)
                    .map_err(|e| inflate_error(e, max))?;
                if self.kind == Some(MessageKind::Text) {
                    self.utf8
                        .feed(&self.buf[start..])
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
            }
        }
        let kind = self.kind.take();
        self.compressed = false;
        let bytes = Bytes::from(std::mem::take(&mut self.buf));
        match kind {
            Some(MessageKind::Text) => {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Message::Text(Utf8Bytes::from_validated(bytes)))
            }
            _ => Ok(Message::Binary(bytes)),
        }
    }

    /// Drops a partial message.
    pub(crate) fn reset(&mut self) {
        self.kind = None;
        self.compressed = false;
        self.buf = Vec::new();
    }
}

fn inflate_error(e: InflateError, max: usize) -> ProtocolError {
    match e {
        InflateError::TooBig => ProtocolError::MessageTooLarge { max },
        InflateError::Corrupt => ProtocolError::CorruptDeflate,
    }
}
