//! The Paxos protocol, sans IO: everything a replica decides, and nothing it does. No async
//! runtime, no network, no disk, no clock and no randomness but what comes in as input (time as
//! [`multi::Input::Tick`], election jitter from a configured seed). The node crate
//! (`paxos-impl`) performs the effects; `conformance/` checks these cores against the model.
//!
//! ```text
//!   inputs ──► Replica::step ──► effects (Persist first, then Send / Executed / Reply)
//!   (messages, client requests, Tick { now_ms })      └─► next_deadline(): when to tick again
//! ```
//!
//! [`ballot`]: ballots `(round, node)`. [`rules`]: the acceptor and proposer rules both cores
//! share. [`synod`]: the single-decree core (S1–S9 of `specs/protocol.md`). [`multi`]: the
//! Multi-Paxos replica (M1–M12, the timers T/H1/H2/R1, compaction and catch-up K1–K7), its durable records and
//! their fold. [`step_log`]: the line format of a real run's step log, which trace validation
//! reads.

pub mod ballot;
pub mod multi;
pub mod rules;
pub mod sim;
pub mod step_log;
pub mod synod;

pub use ballot::Ballot;
