//! The transmit buffer: frames encoded into one growing `Vec`, with large
//! payloads and prepared frames queued by reference (shared `Bytes`), handed
//! out by copy (`poll`) or as slices for a vectored write (`chunks`, then
//! `advance`).

use std::collections::VecDeque;

use bytes::Bytes;

/// A part of the output queue ahead of the tail of `out`.
#[derive(Debug)]
enum Piece {
    /// The next this many bytes of `out` (from `out_pos`).
    Out(usize),
    /// Shared bytes written as they are: a large payload or a prepared frame.
    Shared(Bytes),
}

/// The bytes waiting to be written, in order: the shared pieces, then the
/// rest of `out`.
#[derive(Debug, Default)]
pub(super) struct Transmit {
    /// Where frames are encoded.
    pub(super) out: Vec<u8>,
    /// Bytes at the front of `out` already handed out by `advance`.
    out_pos: usize,
    /// Boxed on the first shared payload, kept after: a connection that
    /// never sends one (every idle one) pays a pointer.
    shared: Option<Box<Pieces>>,
}

/// The queue of pieces ahead of the tail of `out`.
#[derive(Debug, Default)]
struct Pieces {
    queue: VecDeque<Piece>,
    /// Bytes of `out` covered by `Piece::Out` entries.
    out: usize,
    /// Bytes in `Piece::Shared` entries.
    shared: usize,
}

impl Transmit {
    /// The queued pieces (none when nothing was ever shared).
    fn pieces(&self) -> impl Iterator<Item = &Piece> {
        self.shared.iter().flat_map(|p| p.queue.iter())
    }

    /// Moves the bytes waiting to be written into `buf` (swapping buffers when
    /// `buf` is empty and nothing is shared, so no bytes are copied). Returns
    /// false if there were none.
    pub(super) fn poll(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.pending() == 0 {
            return false;
        }
        if !self.has_shared() && self.out_pos == 0 {
            if buf.is_empty() {
                std::mem::swap(buf, &mut self.out);
            } else {
                buf.extend_from_slice(&self.out);
                self.out.clear();
            }
            return true;
        }
        let mut pos = self.out_pos;
        if let Some(pieces) = &mut self.shared {
            for piece in pieces.queue.drain(..) {
                match piece {
                    Piece::Out(n) => {
                        buf.extend_from_slice(&self.out[pos..pos + n]);
                        pos += n;
                    }
                    Piece::Shared(bytes) => buf.extend_from_slice(&bytes),
                }
            }
            pieces.out = 0;
            pieces.shared = 0;
        }
        buf.extend_from_slice(&self.out[pos..]);
        self.out.clear();
        self.out_pos = 0;
        true
    }

    /// Bytes of buffer held for encoding (the capacity of `out`).
    pub(super) fn capacity(&self) -> usize {
        self.out.capacity()
    }

    /// Bytes waiting to be written.
    pub(super) fn pending(&self) -> usize {
        self.out.len() - self.out_pos + self.shared.as_ref().map_or(0, |p| p.shared)
    }

    /// Whether queued bytes include shared payloads, best written with a
    /// vectored write through [`transmit_chunks`](Self::chunks)
    /// (`poll_transmit` would copy them).
    pub(super) fn has_shared(&self) -> bool {
        self.shared.as_ref().is_some_and(|p| !p.queue.is_empty())
    }

    /// Fills `dst` with the queued bytes in order, without copying: returns
    /// how many slices were filled (0 when nothing waits). Write them (a
    /// vectored write), then report how many bytes went out with
    /// [`advance_transmit`](Self::advance).
    pub(super) fn chunks<'a>(&'a self, dst: &mut [&'a [u8]]) -> usize {
        let mut pos = self.out_pos;
        let mut filled = 0;
        for piece in self.pieces() {
            if filled == dst.len() {
                return filled;
            }
            dst[filled] = match piece {
                Piece::Out(n) => {
                    pos += n;
                    &self.out[pos - n..pos]
                }
                Piece::Shared(bytes) => bytes,
            };
            filled += 1;
        }
        if pos < self.out.len() && filled < dst.len() {
            dst[filled] = &self.out[pos..];
            filled += 1;
        }
        filled
    }

    /// Drops the first `n` queued bytes, which were written.
    pub(super) fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let front = self.shared.as_mut().and_then(|p| {
                let front = p.queue.front_mut()?;
                Some((front, &mut p.out, &mut p.shared))
            });
            match front {
                Some((Piece::Out(len), pieces_out, _)) => {
                    let k = n.min(*len);
                    *len -= k;
                    self.out_pos += k;
                    *pieces_out -= k;
                    n -= k;
                    if *len == 0 {
                        self.pop_piece();
                    }
                }
                Some((Piece::Shared(bytes), _, pieces_shared)) => {
                    let k = n.min(bytes.len());
                    bytes::Buf::advance(bytes, k);
                    *pieces_shared -= k;
                    n -= k;
                    if bytes.is_empty() {
                        self.pop_piece();
                    }
                }
                None => {
                    self.out_pos += n.min(self.out.len() - self.out_pos);
                    break;
                }
            }
        }
        if !self.has_shared() && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Drops the front piece, written in full.
    fn pop_piece(&mut self) {
        if let Some(p) = &mut self.shared {
            p.queue.pop_front();
        }
    }

    /// Queues shared bytes after everything queued so far.
    pub(super) fn push_shared(&mut self, bytes: Bytes) {
        let pieces = self.shared.get_or_insert_with(Box::default);
        let tail = self.out.len() - self.out_pos - pieces.out;
        if tail > 0 {
            pieces.queue.push_back(Piece::Out(tail));
            pieces.out += tail;
        }
        pieces.shared += bytes.len();
        pieces.queue.push_back(Piece::Shared(bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::super::SHARE_PAYLOAD_FROM;
    use crate::config::Config;
    use crate::conn::{Connection, Event, Role};
    use crate::frame::PreparedFrame;
    use crate::frame::{OpCode, encode_frame};
    use crate::message::Message;

    fn big(n: usize, seed: u8) -> Message {
        Message::binary(
            (0..n)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect::<Vec<u8>>(),
        )
    }

    /// Small, large (shared), prepared and control frames interleaved.
    fn queue_mixed(server: &mut Connection) -> Vec<Message> {
        let sent = vec![
            Message::text("a"),
            big(SHARE_PAYLOAD_FROM, 1),
            Message::binary(vec![7u8; 300]),
            big(70_000, 2),
            big(SHARE_PAYLOAD_FROM + 1, 3),
            Message::text("z"),
        ];
        server.send(&sent[0]).unwrap();
        server.send(&sent[1]).unwrap();
        server.ping(b"p").unwrap();
        server.send(&sent[2]).unwrap();
        server.send(&sent[3]).unwrap();
        server.send_prepared(&PreparedFrame::new(&sent[4])).unwrap();
        server.send(&sent[5]).unwrap();
        sent
    }

    fn received(wire: &[u8]) -> Vec<Message> {
        let mut client = Connection::new(Role::Client, Config::default(), None);
        client.receive(wire);
        std::iter::from_fn(|| client.poll_event())
            .filter_map(|e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn large_payloads_are_shared_and_arrive_in_order() {
        let mut server = Connection::new(Role::Server, Config::default(), None);
        let sent = queue_mixed(&mut server);
        assert!(server.has_shared_transmit());
        let mut wire = Vec::new();
        assert!(server.poll_transmit(&mut wire));
        assert_eq!(server.pending_transmit(), 0);
        assert!(!server.has_shared_transmit());
        assert_eq!(received(&wire), sent);
    }

    #[test]
    fn chunked_writes_of_any_size_give_the_same_bytes() {
        let mut reference = Connection::new(Role::Server, Config::default(), None);
        queue_mixed(&mut reference);
        let mut expected = Vec::new();
        reference.poll_transmit(&mut expected);
        // Queued after the first write: goes after everything before it.
        encode_frame(&mut expected, OpCode::Text, true, false, None, b"late");
        for step in [1usize, 3, 4095, 4096, 65_536, usize::MAX] {
            let mut server = Connection::new(Role::Server, Config::default(), None);
            queue_mixed(&mut server);
            let mut wire = Vec::new();
            let mut late = false;
            while server.pending_transmit() > 0 {
                let before = server.pending_transmit();
                let mut parts: [&[u8]; 4] = [&[]; 4];
                let n = server.transmit_chunks(&mut parts);
                assert!(n > 0);
                // A short write: only `step` bytes of the offered slices.
                let mut left = step;
                let mut written = 0;
                for part in &parts[..n] {
                    let take = part.len().min(left);
                    wire.extend_from_slice(&part[..take]);
                    written += take;
                    left -= take;
                }
                server.advance_transmit(written);
                assert_eq!(server.pending_transmit(), before - written);
                if !late {
                    server.send(&Message::text("late")).unwrap();
                    late = true;
                }
            }
            assert_eq!(wire, expected, "step {step}");
            // The queue is empty and reusable.
            server.send(&Message::text("again")).unwrap();
            let mut more = Vec::new();
            assert!(server.poll_transmit(&mut more));
            assert_eq!(received(&more), vec![Message::text("again")]);
        }
    }

    #[test]
    fn clients_never_share_payloads_they_must_mask() {
        let mut client = Connection::new(Role::Client, Config::default(), None);
        client.send(&big(100_000, 9)).unwrap();
        assert!(!client.has_shared_transmit());
        assert!(client.pending_transmit() > 100_000);
    }
}
