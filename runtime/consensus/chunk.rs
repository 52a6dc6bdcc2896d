//! Splitting consensus-stream messages into frame-sized pieces, and putting them back together.
//!
//! A message (an RPC request or reply, already encoded) longer than [`RPC_CHUNK_BYTES`] travels as a
//! run of [`Chunk`]s. The mesh delivers in order per peer and traffic class within one connection, so a
//! receiver expects a message's pieces one after another; anything else (a piece out of order, a message
//! cut by a reconnect, an announced size over the bound) drops that message, and its call times out and
//! is retried by the layer above, as any lost frame would be.
//!
//! Core: no I/O, no clock. Invariant: a receiver never buffers more than
//! [`RPC_REASSEMBLIES_PER_PEER_MAX`] partial messages per peer, each at most
//! [`RPC_MESSAGE_BYTES_MAX`] bytes, and never allocates for a length before the bytes arrive.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;
use crate::limits::{RPC_CHUNK_BYTES, RPC_MESSAGE_BYTES_MAX, RPC_REASSEMBLIES_PER_PEER_MAX};

/// One piece of a long message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The message this piece belongs to, unique per sender process.
    pub message: u64,
    /// Position of this piece, from 0.
    pub index: u32,
    /// Pieces in the whole message.
    pub count: u32,
    /// Length of the whole message.
    pub total_bytes: u64,
    /// This piece's bytes.
    pub bytes: Vec<u8>,
}

/// Cuts `bytes` into chunks of at most `piece_bytes` for message `message`.
///
/// # Panics
/// If `piece_bytes` is 0 (a programmer error: the size is a constant).
pub fn split(message: u64, bytes: &[u8], piece_bytes: usize) -> Vec<Chunk> {
    assert!(piece_bytes > 0, "chunk size must be positive");
    if bytes.is_empty() {
        return vec![Chunk { message, index: 0, count: 1, total_bytes: 0, bytes: Vec::new() }];
    }
    let count = bytes.len().div_ceil(piece_bytes).max(1);
    let count_u32 = u32::try_from(count).unwrap_or(u32::MAX);
    bytes
        .chunks(piece_bytes)
        .enumerate()
        .map(|(index, piece)| Chunk {
            message,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            count: count_u32,
            total_bytes: bytes.len() as u64,
            bytes: piece.to_vec(),
        })
        .collect()
}

/// Whether a message of this length must travel in chunks.
pub fn needs_chunks(message_bytes: usize) -> bool {
    message_bytes > RPC_CHUNK_BYTES
}

/// Why a piece was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The whole message would exceed [`RPC_MESSAGE_BYTES_MAX`].
    #[error("message of {0} bytes exceeds the reassembly limit")]
    Oversized(u64),
    /// The piece does not continue a message being reassembled, or contradicts its header.
    #[error("chunk out of sequence")]
    OutOfSequence,
}

struct Partial {
    message: u64,
    next: u32,
    count: u32,
    total_bytes: u64,
    bytes: Vec<u8>,
}

/// Puts chunked messages back together, per peer.
#[derive(Default)]
pub struct Reassembler {
    partials: BTreeMap<NodeId, VecDeque<Partial>>,
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler").field("peers", &self.partials.len()).finish()
    }
}

impl Reassembler {
    /// Takes one piece from `from`; returns the whole message once its last piece arrived.
    ///
    /// # Errors
    /// [`ChunkError`] when the piece is dropped (and with it the message it belonged to).
    pub fn on_chunk(&mut self, from: NodeId, chunk: Chunk) -> Result<Option<Vec<u8>>, ChunkError> {
        if chunk.total_bytes > RPC_MESSAGE_BYTES_MAX as u64 {
            self.drop_message(from, chunk.message);
            return Err(ChunkError::Oversized(chunk.total_bytes));
        }
        let partials = self.partials.entry(from).or_default();
        if chunk.index == 0 {
            partials.retain(|partial| partial.message != chunk.message);
            if partials.len() >= RPC_REASSEMBLIES_PER_PEER_MAX {
                partials.pop_front();
            }
            partials.push_back(Partial {
                message: chunk.message,
                next: 0,
                count: chunk.count,
                total_bytes: chunk.total_bytes,
                bytes: Vec::new(),
            });
        }
        let Some(position) = partials.iter().position(|partial| partial.message == chunk.message) else {
            return Err(ChunkError::OutOfSequence);
        };
        let partial = &mut partials[position];
        let fits = partial.bytes.len() as u64 + chunk.bytes.len() as u64 <= partial.total_bytes;
        if chunk.index != partial.next
            || chunk.count != partial.count
            || chunk.total_bytes != partial.total_bytes
            || !fits
        {
            partials.remove(position);
            return Err(ChunkError::OutOfSequence);
        }
        partial.bytes.extend_from_slice(&chunk.bytes);
        partial.next += 1;
        if partial.next < partial.count {
            return Ok(None);
        }
        let done = partials.remove(position).expect("the position was just found");
        if done.bytes.len() as u64 != done.total_bytes {
            return Err(ChunkError::OutOfSequence);
        }
        Ok(Some(done.bytes))
    }

    /// Forgets everything partial from `peer` (its connection was replaced).
    pub fn on_peer_reset(&mut self, peer: NodeId) {
        self.partials.remove(&peer);
    }

    /// Bytes held in partial messages, over all peers.
    pub fn buffered_bytes(&self) -> usize {
        self.partials.values().flatten().map(|partial| partial.bytes.len()).sum()
    }

    fn drop_message(&mut self, from: NodeId, message: u64) {
        if let Some(partials) = self.partials.get_mut(&from) {
            partials.retain(|partial| partial.message != message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(bytes: usize) -> Vec<u8> {
        (0..bytes).map(|index| (index % 251) as u8).collect()
    }

    #[test]
    fn pieces_come_back_whole() {
        let original = message(10_000);
        let mut reassembler = Reassembler::default();
        let chunks = split(7, &original, 3_000);
        assert_eq!(chunks.len(), 4);
        let mut out = None;
        for chunk in chunks {
            out = reassembler.on_chunk(NodeId(2), chunk).expect("in sequence");
        }
        assert_eq!(out, Some(original));
        assert_eq!(reassembler.buffered_bytes(), 0);
    }

    #[test]
    fn interleaved_messages_from_two_peers_both_complete() {
        let (a, b) = (message(5_000), message(7_000));
        let mut reassembler = Reassembler::default();
        let (mut ca, mut cb) = (split(1, &a, 1_000).into_iter(), split(1, &b, 1_000).into_iter());
        let (mut got_a, mut got_b) = (None, None);
        loop {
            let (next_a, next_b) = (ca.next(), cb.next());
            if next_a.is_none() && next_b.is_none() {
                break;
            }
            if let Some(chunk) = next_a {
                got_a = got_a.or(reassembler.on_chunk(NodeId(1), chunk).expect("a"));
            }
            if let Some(chunk) = next_b {
                got_b = got_b.or(reassembler.on_chunk(NodeId(2), chunk).expect("b"));
            }
        }
        assert_eq!((got_a, got_b), (Some(a), Some(b)));
    }

    #[test]
    fn a_gap_drops_the_message_and_the_next_one_still_arrives() {
        let mut reassembler = Reassembler::default();
        let chunks = split(1, &message(4_000), 1_000);
        reassembler.on_chunk(NodeId(1), chunks[0].clone()).expect("first");
        assert_eq!(reassembler.on_chunk(NodeId(1), chunks[2].clone()), Err(ChunkError::OutOfSequence));
        assert_eq!(reassembler.on_chunk(NodeId(1), chunks[3].clone()), Err(ChunkError::OutOfSequence));
        assert_eq!(reassembler.buffered_bytes(), 0);
        let again = message(2_500);
        let mut out = None;
        for chunk in split(2, &again, 1_000) {
            out = reassembler.on_chunk(NodeId(1), chunk).expect("fresh message");
        }
        assert_eq!(out, Some(again));
    }

    #[test]
    fn announced_size_over_the_bound_is_refused_before_buffering() {
        let mut reassembler = Reassembler::default();
        let chunk =
            Chunk { message: 1, index: 0, count: 2, total_bytes: RPC_MESSAGE_BYTES_MAX as u64 + 1, bytes: vec![0; 8] };
        assert!(matches!(reassembler.on_chunk(NodeId(1), chunk), Err(ChunkError::Oversized(_))));
        assert_eq!(reassembler.buffered_bytes(), 0);
    }

    #[test]
    fn pieces_longer_than_announced_are_refused() {
        let mut reassembler = Reassembler::default();
        let first = Chunk { message: 1, index: 0, count: 2, total_bytes: 10, bytes: vec![0; 8] };
        let second = Chunk { message: 1, index: 1, count: 2, total_bytes: 10, bytes: vec![0; 8] };
        assert_eq!(reassembler.on_chunk(NodeId(1), first), Ok(None));
        assert_eq!(reassembler.on_chunk(NodeId(1), second), Err(ChunkError::OutOfSequence));
    }

    #[test]
    fn partials_per_peer_are_bounded() {
        let mut reassembler = Reassembler::default();
        for message_id in 0..(RPC_REASSEMBLIES_PER_PEER_MAX as u64 + 3) {
            let chunk = Chunk { message: message_id, index: 0, count: 2, total_bytes: 2_000, bytes: vec![1; 1_000] };
            assert_eq!(reassembler.on_chunk(NodeId(1), chunk), Ok(None));
        }
        assert_eq!(reassembler.buffered_bytes(), RPC_REASSEMBLIES_PER_PEER_MAX * 1_000);
        reassembler.on_peer_reset(NodeId(1));
        assert_eq!(reassembler.buffered_bytes(), 0);
    }

    #[test]
    fn an_empty_message_is_one_empty_chunk() {
        let chunks = split(3, &[], 1_000);
        assert_eq!(chunks.len(), 1);
        let mut reassembler = Reassembler::default();
        assert_eq!(reassembler.on_chunk(NodeId(1), chunks[0].clone()), Ok(Some(Vec::new())));
    }
}
