//! Snapshot transfer below the protocol: a `Snapshot` message (K2, K6, K7) travels as chunks
//! of at most `limits.snapshot_chunk_bytes`, each frame small, with one checksum over the
//! whole message; the receiver acknowledges what it holds, and a transfer cut by a dropped
//! connection resumes from there.
//!
//! ```text
//!   sender's outbound task                                 receiver's inbound task
//!   Snapshot msg ─► postcard bytes, crc32c ─► Chunk{id, total, crc, offset, bytes} ──►
//!                                                           append at `offset` (in order only)
//!   resume from `received` after a reconnect ◄── Ack{id, received} ◄── via its outbound link
//!                                                           whole and crc ok ─► Snapshot msg to
//!                                                           the node task, as if sent whole
//! ```
//!
//! The core never sees a chunk: it sees the `Snapshot` message once the whole of it arrived
//! and its checksum holds, so what it does is what the model checks (a message delivered).
//! The sender keeps one transfer per peer: a `Snapshot` message equal to the one being sent
//! is dropped (the core asks again on every catch-up request it answers, K6; each copy would
//! be the whole snapshot again), and a different one replaces it. Dropping or cutting a
//! transfer short is message loss, which the protocol tolerates. A transfer whose checksum
//! fails is refused with an error: the receiver keeps what it had and asks for it again from
//! the start.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One piece of a snapshot message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The transfer: the same for every chunk of one message, different for the next one.
    pub id: u64,
    /// Bytes of the whole encoded message.
    pub total: u64,
    /// crc32c of the whole encoded message.
    pub checksum: u32,
    /// Where `bytes` go in the message.
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// The receiver holds the first `received` bytes of transfer `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAck {
    pub id: u64,
    pub received: u64,
}

/// The latest acknowledgement from one peer, shared by the inbound task that reads it and
/// the outbound task that resumes from it (and is woken by it).
pub type AckSlot = Arc<AckState>;

#[derive(Debug, Default)]
pub struct AckState {
    latest: Mutex<Option<SnapshotAck>>,
    pub arrived: tokio::sync::Notify,
}

impl AckState {
    /// Keeps `ack` as the latest and wakes the outbound task.
    pub fn put(&self, ack: SnapshotAck) {
        match self.latest.lock() {
            Ok(mut latest) => *latest = Some(ack),
            Err(poisoned) => *poisoned.into_inner() = Some(ack),
        }
        self.arrived.notify_one();
    }

    /// The latest acknowledgement not yet taken.
    pub fn take(&self) -> Option<SnapshotAck> {
        match self.latest.lock() {
            Ok(mut latest) => latest.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// The sender's side of one transfer.
#[derive(Debug)]
pub struct Outgoing {
    id: u64,
    bytes: Arc<Vec<u8>>,
    checksum: u32,
    /// The next offset to send.
    next: u64,
    /// What the receiver acknowledged last.
    acked: u64,
    /// The receiver acknowledged the whole message.
    complete: bool,
}

impl Outgoing {
    /// A transfer of `bytes` (an encoded `Snapshot` message) under `id`.
    pub fn new(id: u64, bytes: Vec<u8>) -> Outgoing {
        Outgoing {
            id,
            checksum: crc32c::crc32c(&bytes),
            bytes: Arc::new(bytes),
            next: 0,
            acked: 0,
            complete: false,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn total(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether a chunk is left to send.
    pub fn has_more(&self) -> bool {
        self.next < self.total() || (self.total() == 0 && self.next == 0)
    }

    /// The next chunk of at most `chunk_bytes` (at least 1), or `None` when every byte has
    /// been sent since the last rewind.
    pub fn next_chunk(&mut self, chunk_bytes: usize) -> Option<SnapshotChunk> {
        if !self.has_more() {
            return None;
        }
        let start = usize::try_from(self.next).ok()?;
        let end = start
            .saturating_add(chunk_bytes.max(1))
            .min(self.bytes.len());
        let chunk = SnapshotChunk {
            id: self.id,
            total: self.total(),
            checksum: self.checksum,
            offset: self.next,
            bytes: self.bytes.get(start..end)?.to_vec(),
        };
        // An empty message is one empty chunk.
        self.next = (end as u64).max(1);
        Some(chunk)
    }

    /// The receiver's acknowledgement: for this transfer, it holds `received` bytes. Below
    /// what was sent means chunks were lost or refused: send again from there.
    pub fn on_ack(&mut self, ack: SnapshotAck) {
        if ack.id != self.id {
            return;
        }
        self.acked = ack.received.min(self.total());
        self.complete = ack.received >= self.total();
        // Nothing to send again once the receiver holds it all (an empty message's one chunk
        // ends at 0, which is not "below what was sent").
        if self.acked < self.next && !self.complete {
            self.next = self.acked;
        }
    }

    /// A new connection: whatever was sent and not acknowledged is lost with the old one.
    pub fn resume(&mut self) {
        if !self.done() {
            self.next = self.acked;
        }
    }

    /// The receiver holds the whole message.
    pub fn done(&self) -> bool {
        self.complete
    }
}

/// The receiver's side: the transfer in progress from one peer.
#[derive(Debug, Default)]
pub struct Incoming {
    current: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    id: u64,
    total: u64,
    checksum: u32,
    bytes: Vec<u8>,
}

/// What a chunk did.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Acknowledge this (more is to come, or the chunk was out of order).
    Partial(SnapshotAck),
    /// The whole message, its checksum verified; acknowledge it too.
    Complete(Vec<u8>, SnapshotAck),
}

/// Why a transfer was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error(
        "snapshot transfer {id}: {total} bytes is above limits.snapshot_bytes_max ({max}): refused"
    )]
    TooLarge { id: u64, total: u64, max: u64 },
    #[error(
        "snapshot transfer {id}: the checksum of its {total} bytes is {found:08x}, the sender's \
         {expected:08x}: refused, the replica keeps what it had and asks for it again"
    )]
    Corrupt {
        id: u64,
        total: u64,
        expected: u32,
        found: u32,
    },
    #[error("snapshot transfer {id}: a chunk ends at {end}, past the message's {total} bytes")]
    PastTheEnd { id: u64, end: u64, total: u64 },
}

impl TransferError {
    /// What to acknowledge after the refusal: nothing held, so the sender starts over.
    pub fn ack(&self) -> SnapshotAck {
        let id = match self {
            TransferError::TooLarge { id, .. }
            | TransferError::Corrupt { id, .. }
            | TransferError::PastTheEnd { id, .. } => *id,
        };
        SnapshotAck { id, received: 0 }
    }
}

impl Incoming {
    /// Takes one chunk. Chunks are appended in order only: a chunk of a new transfer
    /// replaces the one in progress if it starts it, a chunk past what is held is answered
    /// with what is held (the sender goes back), a repeated one changes nothing. Memory is
    /// bounded by `max_total` per peer.
    pub fn accept(
        &mut self,
        chunk: SnapshotChunk,
        max_total: u64,
    ) -> Result<Received, TransferError> {
        let SnapshotChunk {
            id,
            total,
            checksum,
            offset,
            bytes,
        } = chunk;
        if total > max_total {
            self.current = None;
            return Err(TransferError::TooLarge {
                id,
                total,
                max: max_total,
            });
        }
        let end = offset.saturating_add(bytes.len() as u64);
        if end > total {
            self.current = None;
            return Err(TransferError::PastTheEnd { id, end, total });
        }
        let same = self
            .current
            .as_ref()
            .is_some_and(|p| p.id == id && p.total == total && p.checksum == checksum);
        if !same {
            if offset != 0 {
                // The start of this transfer is gone: ask for it from the beginning.
                return Ok(Received::Partial(SnapshotAck { id, received: 0 }));
            }
            self.current = Some(Partial {
                id,
                total,
                checksum,
                bytes: Vec::new(),
            });
        }
        let Some(partial) = self.current.as_mut() else {
            return Ok(Received::Partial(SnapshotAck { id, received: 0 }));
        };
        let held = partial.bytes.len() as u64;
        if offset == held {
            partial.bytes.extend_from_slice(&bytes);
        }
        let received = partial.bytes.len() as u64;
        let ack = SnapshotAck { id, received };
        if received < total {
            return Ok(Received::Partial(ack));
        }
        let Some(whole) = self.current.take() else {
            return Ok(Received::Partial(ack));
        };
        let found = crc32c::crc32c(&whole.bytes);
        if found != whole.checksum {
            return Err(TransferError::Corrupt {
                id,
                total,
                expected: whole.checksum,
                found,
            });
        }
        Ok(Received::Complete(whole.bytes, ack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn deliver_all(out: &mut Outgoing, inc: &mut Incoming, chunk: usize) -> Option<Vec<u8>> {
        while let Some(c) = out.next_chunk(chunk) {
            match inc.accept(c, 1 << 20).expect("accepted") {
                Received::Partial(ack) => out.on_ack(ack),
                Received::Complete(bytes, ack) => {
                    out.on_ack(ack);
                    return Some(bytes);
                }
            }
        }
        None
    }

    proptest! {
        #[test]
        fn any_message_arrives_whole_in_any_chunk_size(
            bytes in proptest::collection::vec(any::<u8>(), 0..5000),
            chunk in 1usize..2000,
        ) {
            let mut out = Outgoing::new(7, bytes.clone());
            let mut inc = Incoming::default();
            prop_assert_eq!(deliver_all(&mut out, &mut inc, chunk), Some(bytes));
            prop_assert!(out.done());
            prop_assert_eq!(out.next_chunk(chunk), None);
        }

        #[test]
        fn a_transfer_cut_anywhere_resumes_from_what_was_acknowledged(
            bytes in proptest::collection::vec(any::<u8>(), 1..5000),
            chunk in 1usize..700,
            cut in 0usize..20,
            lost in 0usize..5,
        ) {
            let mut out = Outgoing::new(3, bytes.clone());
            let mut inc = Incoming::default();
            // `cut` chunks arrive and are acknowledged, then `lost` are sent into a dropped
            // connection.
            for _ in 0..cut {
                let Some(c) = out.next_chunk(chunk) else { break };
                if let Ok(Received::Partial(ack)) = inc.accept(c, 1 << 20) {
                    out.on_ack(ack);
                }
            }
            for _ in 0..lost {
                let _ = out.next_chunk(chunk);
            }
            if !out.done() {
                out.resume();
                prop_assert_eq!(deliver_all(&mut out, &mut inc, chunk), Some(bytes));
            }
            prop_assert!(out.done());
        }
    }

    #[test]
    fn an_empty_message_is_one_empty_chunk_and_then_done() {
        let mut out = Outgoing::new(1, Vec::new());
        let mut inc = Incoming::default();
        assert!(!out.done());
        assert_eq!(deliver_all(&mut out, &mut inc, 10), Some(Vec::new()));
        assert!(out.done());
        out.resume();
        assert_eq!(out.next_chunk(10), None);
    }

    #[test]
    fn a_corrupt_transfer_is_refused_and_sent_again_from_the_start() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let mut out = Outgoing::new(1, bytes.clone());
        let mut inc = Incoming::default();
        let mut first = out.next_chunk(60).expect("a chunk");
        first.bytes[3] ^= 0xff;
        assert!(matches!(
            inc.accept(first, 1 << 20),
            Ok(Received::Partial(_))
        ));
        let refused = inc
            .accept(out.next_chunk(60).expect("a chunk"), 1 << 20)
            .expect_err("corrupt");
        assert!(
            matches!(refused, TransferError::Corrupt { id: 1, .. }),
            "{refused}"
        );
        out.on_ack(refused.ack());
        assert_eq!(deliver_all(&mut out, &mut inc, 60), Some(bytes));
    }

    #[test]
    fn chunks_out_of_order_new_transfers_and_oversize_ones() {
        let mut inc = Incoming::default();
        let chunk = |id, offset: u64, bytes: &[u8]| SnapshotChunk {
            id,
            total: 10,
            checksum: crc32c::crc32c(b"0123456789"),
            offset,
            bytes: bytes.to_vec(),
        };
        // A chunk past what is held is answered with what is held.
        let ack = |id, received| Ok(Received::Partial(SnapshotAck { id, received }));
        assert_eq!(inc.accept(chunk(1, 4, b"45"), 100), ack(1, 0));
        assert_eq!(inc.accept(chunk(1, 0, b"0123"), 100), ack(1, 4));
        assert_eq!(inc.accept(chunk(1, 6, b"67"), 100), ack(1, 4));
        assert_eq!(inc.accept(chunk(1, 0, b"0123"), 100), ack(1, 4));
        // A new transfer that starts replaces the old one.
        assert_eq!(inc.accept(chunk(2, 0, b"01234"), 100), ack(2, 5));
        assert_eq!(
            inc.accept(chunk(2, 5, b"56789"), 100),
            Ok(Received::Complete(
                b"0123456789".to_vec(),
                SnapshotAck {
                    id: 2,
                    received: 10
                }
            ))
        );
        // Above the limit, or past the end: refused.
        let too_large = inc.accept(chunk(3, 0, b"0"), 9).expect_err("too large");
        assert_eq!(too_large.ack(), SnapshotAck { id: 3, received: 0 });
        let past = inc
            .accept(chunk(4, 8, b"89x"), 100)
            .expect_err("past the end");
        assert!(
            matches!(past, TransferError::PastTheEnd { end: 11, .. }),
            "{past}"
        );
    }
}
