//! The Multi-Paxos replicated key-value service built on the sans-IO protocol crate
//! (`paxos-protocol`): durable storage, the networked runtime that the `paxos-node` binary
//! serves, and the client. This crate never depends on the model or on stateright;
//! `conformance/` maps between the two, and checks the protocol crate, not this one.
//!
//! [`storage`]: the durable write-ahead log, group commit and snapshots.
//! [`runtime`]: the node task (IO only: persist before send, tick the core's clock), the peer
//! TCP transport, the HTTP API and the client.
//!
//! The protocol crate's modules are re-exported: [`multi`] (the Multi-Paxos core and the
//! key-value state machine), [`synod`], [`ballot`], [`rules`].

pub mod runtime;
pub mod storage;

pub use paxos_protocol::{ballot, multi, rules, sim, step_log, synod, Ballot};
