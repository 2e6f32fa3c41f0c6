//! The production Multi-Paxos replicated key-value service. This crate never depends on the
//! model or on stateright; `conformance/` maps between the two.
//!
//! So far it holds the protocol vocabulary the core will be built on (issue: protocol core).

pub mod ballot;

pub use ballot::Ballot;
