//! The production Multi-Paxos replicated key-value service. This crate never depends on the
//! model or on stateright; `conformance/` maps between the two.
//!
//! So far: ballots and the single-decree (Synod) core of `specs/protocol.md`; Multi-Paxos,
//! storage and the runtime follow (issues: protocol core, service).

pub mod ballot;
pub mod synod;

pub use ballot::Ballot;
