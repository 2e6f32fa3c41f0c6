//! The production Multi-Paxos replicated key-value service. This crate never depends on the
//! model or on stateright; `conformance/` maps between the two.
//!
//! So far: ballots, the single-decree (Synod) core of `specs/protocol.md`, the Multi-Paxos core
//! and durable storage; the networked runtime follows (issue: service).
//!
//! [`core`]: the Multi-Paxos replica core of `specs/protocol.md` (M1–M12), sans-IO.
//! [`storage`]: the durable write-ahead log, group commit and snapshots.

pub mod ballot;
pub mod core;
pub mod storage;
pub mod synod;

pub use ballot::Ballot;
