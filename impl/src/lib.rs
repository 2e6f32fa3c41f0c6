//! The production Multi-Paxos replicated key-value service. This crate never depends on the
//! model or on stateright; `conformance/` maps between the two.
//!
//! Ballots, the single-decree (Synod) core of `specs/protocol.md`, the Multi-Paxos core,
//! durable storage, and the networked runtime that the `paxos-node` binary serves.
//!
//! [`rules`]: the acceptor and proposer rules both cores share.
//! [`core`]: the Multi-Paxos replica core of `specs/protocol.md` (M1–M12), sans-IO.
//! [`storage`]: the durable write-ahead log, group commit and snapshots.
//! [`runtime`]: the node task (timers, persist-before-send), peer TCP transport, HTTP API.

pub mod ballot;
pub mod core;
pub mod history;
pub mod rules;
pub mod runtime;
pub mod storage;
pub mod synod;

pub use ballot::Ballot;
