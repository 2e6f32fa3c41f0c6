//! The peer wire format: length-prefixed frames of postcard-encoded messages.
//!
//! ```text
//!   frame   = [u32 LE payload length][payload]          (length <= frame_bytes_max)
//!   payload = postcard(Hello) | postcard(HelloReply)    (the handshake frames)
//!           | postcard(HelloProof)
//!           | postcard(Vec<PeerMsg>)                    (every later frame: one or more)
//! ```
//!
//! A connection carries messages one way: the dialler sends its messages to the listener,
//! which answers only the handshake (`runtime::auth`): the dialler's [`Hello`] names the
//! cluster, the dialler, the node it meant to reach and a nonce; the listener answers
//! [`HelloReply::Challenge`] with its own nonce and its proof of the cluster secret; the
//! dialler checks that proof and sends [`HelloProof`]; the listener answers
//! [`HelloReply::Welcome`] or [`HelloReply::Refused`] with the reason, and closes the
//! connection after a refusal. Anything that does not decode, or a length above the maximum,
//! closes the connection with a logged error; the node itself keeps serving.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::auth::{Nonce, Proof};
use super::snapshot_transfer::{SnapshotAck, SnapshotChunk};
use crate::ballot::NodeId;
use crate::multi::{Message, SnapshotOf, StateMachine};

/// The first four bytes of every [`Hello`]: "paxos node, wire format 7" (2: authenticated;
/// 3: phase 2 carries runs of slots; 4: the heartbeat is the core's `Message::Heartbeat`;
/// 5: the heartbeat carries only its ballot, and the catch-up and snapshot messages are
/// K5–K7's; 6: snapshots travel in chunks, [`PeerMsg::SnapshotChunk`] and
/// [`PeerMsg::SnapshotAck`]; 7: the read index's `Message::Confirm` and
/// `Message::Confirmed`; 8: the [`Hello`] carries the dialler's [`LeaseTerms`]). A peer of
/// another format is refused at the handshake.
pub const MAGIC: [u8; 4] = *b"PXN8";

/// The lease every replica grants and trusts (L1, L3: `Timing::lease_ms` and
/// `lease_margin_ms`, both 0 without leases). A replica that grants less than a leader trusts,
/// or nothing, breaks the lease's argument: a leader would answer reads under a lease its
/// majority never promised. So peers whose terms differ are refused at the handshake, and a
/// misconfigured replica is cut off instead of quietly voting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTerms {
    pub lease_ms: u64,
    pub margin_ms: u64,
}

impl std::fmt::Display for LeaseTerms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lease_ms == 0 {
            f.write_str("no leases")
        } else {
            write!(
                f,
                "leases of {} ms (margin {} ms)",
                self.lease_ms, self.margin_ms
            )
        }
    }
}

/// The dialler's handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub cluster_id: String,
    /// The dialler.
    pub from: NodeId,
    /// The node the dialler means to reach.
    pub to: NodeId,
    /// Fresh for every connection: the listener's proof covers it.
    pub nonce: Nonce,
    /// The dialler's lease; the listener refuses other terms than its own.
    pub lease: LeaseTerms,
}

/// The dialler's proof of the cluster secret, sent once the listener has proved its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloProof {
    pub proof: Proof,
}

/// The listener's answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The listener knows the dialler by name; here is its nonce and its proof of the secret.
    Challenge {
        nonce: Nonce,
        proof: Proof,
    },
    /// The dialler proved it knows the secret: protocol frames may follow.
    Welcome,
    Refused(String),
}

/// What one replica's runtime tells another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMsg<Op, Snap> {
    /// A protocol message of `specs/protocol.md`, delivered to the core as it is: every
    /// message a replica sends is the core's decision (the heartbeat and the snapshot
    /// included). A `Snapshot` message is never sent as one: it travels as chunks.
    Paxos(Message<Op, Snap>),
    /// A piece of a `Snapshot` message (`runtime::snapshot_transfer`).
    SnapshotChunk(SnapshotChunk),
    /// The receiver of a snapshot transfer holds this much of it, on the connection the other
    /// way.
    SnapshotAck(SnapshotAck),
}

/// What one replica running state machine `S` tells another.
pub type PeerMsgOf<S> = PeerMsg<<S as StateMachine>::Op, SnapshotOf<S>>;

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes is above the maximum of {max}")]
    TooLong { len: u32, max: u32 },
    #[error("empty frame")]
    Empty,
    #[error("payload does not decode: {0}")]
    Malformed(String),
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// `payload` as one frame: its length, then itself.
pub fn frame(payload: &[u8], max: u32) -> Result<Vec<u8>, FrameError> {
    let len =
        u32::try_from(payload.len()).map_err(|_| FrameError::TooLong { len: u32::MAX, max })?;
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Any serialisable value as one frame.
pub fn encode<T: Serialize + ?Sized>(value: &T, max: u32) -> Result<Vec<u8>, FrameError> {
    let payload = postcard::to_stdvec(value).map_err(|e| FrameError::Encode(e.to_string()))?;
    frame(&payload, max)
}

/// Decodes a payload that must hold exactly one `T`.
pub fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} bytes left over after the value",
            rest.len()
        )));
    }
    Ok(value)
}

/// Reads one frame's payload; a length above `max` is refused before anything is allocated.
/// A clean end of stream before the length is [`FrameError::Closed`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len);
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Encodes `msgs` into frames of at most `max` bytes each, splitting the batch where needed.
/// A single message too large for any frame is returned in the error list (and not sent).
pub fn encode_batch<Op: Serialize, Snap: Serialize>(
    msgs: &[PeerMsg<Op, Snap>],
    max: u32,
) -> (Vec<Vec<u8>>, Vec<FrameError>) {
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    let mut stack = vec![msgs];
    while let Some(batch) = stack.pop() {
        if batch.is_empty() {
            continue;
        }
        match encode(batch, max) {
            Ok(frame) => frames.push(frame),
            Err(FrameError::TooLong { .. }) if batch.len() > 1 => {
                let (left, right) = batch.split_at(batch.len() / 2);
                // Popped last-in first-out: push the right half first to keep the order.
                stack.push(right);
                stack.push(left);
            }
            Err(e) => errors.push(e),
        }
    }
    (frames, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::Ballot;
    use crate::multi::Slot;
    use crate::multi::{ClientId, Command, Entry, KvOp, KvStore};

    type PeerMsg = super::PeerMsgOf<KvStore>;

    fn accept(slot: Slot, value: &str) -> PeerMsg {
        PeerMsg::Paxos(Message::Accept {
            ballot: Ballot { round: 2, node: 1 },
            slot,
            entries: vec![Entry::Command(Command {
                client: ClientId(9),
                seq: slot + 1,
                op: KvOp::Put {
                    key: "k".into(),
                    value: value.into(),
                },
            })],
        })
    }

    #[tokio::test]
    async fn a_batch_round_trips_through_one_frame() {
        let msgs = vec![
            accept(0, "a"),
            PeerMsg::Paxos(Message::Heartbeat {
                ballot: Ballot { round: 2, node: 1 },
            }),
            PeerMsg::Paxos(Message::Status { applied: 3 }),
        ];
        let (frames, errors) = encode_batch(&msgs, 1 << 20);
        assert!(errors.is_empty());
        assert_eq!(frames.len(), 1);
        let mut reader = frames[0].as_slice();
        let payload = read_frame(&mut reader, 1 << 20).await.expect("frame");
        assert_eq!(decode::<Vec<PeerMsg>>(&payload).expect("decode"), msgs);
        let end = read_frame(&mut reader, 1 << 20).await;
        assert!(matches!(end, Err(FrameError::Closed)));
    }

    #[test]
    fn a_batch_above_the_frame_maximum_is_split_in_order() {
        let value = "v".repeat(600);
        let msgs: Vec<PeerMsg> = (0..5).map(|s| accept(s, &value)).collect();
        let (frames, errors) = encode_batch(&msgs, 1500);
        assert!(errors.is_empty());
        assert!(frames.len() > 1);
        let mut decoded = Vec::new();
        for frame in &frames {
            assert!(frame.len() <= 1504);
            decoded.extend(decode::<Vec<PeerMsg>>(&frame[4..]).expect("decode"));
        }
        assert_eq!(decoded, msgs);
        let huge = [accept(0, &"x".repeat(4000))];
        let (frames, errors) = encode_batch(&huge, 1500);
        assert!(frames.is_empty());
        assert!(matches!(errors.as_slice(), [FrameError::TooLong { .. }]));
    }

    #[tokio::test]
    async fn lengths_above_the_maximum_and_garbage_are_refused() {
        let mut long = &u32::MAX.to_le_bytes()[..];
        let refused = read_frame(&mut long, 1024).await;
        assert!(matches!(refused, Err(FrameError::TooLong { .. })));
        let garbage = [0xFFu8, 0xFF, 0xFF, 0xFF, 0xFF, 0x13];
        assert!(decode::<Vec<PeerMsg>>(&garbage).is_err());
        assert!(decode::<Hello>(&garbage).is_err());
        let mut zero = &0u32.to_le_bytes()[..];
        assert!(matches!(
            read_frame(&mut zero, 1024).await,
            Err(FrameError::Empty)
        ));
    }
}
