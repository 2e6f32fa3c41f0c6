//! Stateright models of the Synod protocol (single-decree Paxos), of Multi-Paxos, and a
//! state-for-state mirror of Lamport's `Paxos.tla`, with the invariants of *Paxos Made Simple*.

pub mod actor_trace;
pub mod cli;
pub mod explorer_view;
pub mod lamport;
mod lamport_target;
pub mod multi;
pub mod runner;
pub mod synod;
pub mod types;
