//! Stateright models of the Synod protocol (single-decree Paxos), of Multi-Paxos, and a
//! state-for-state mirror of Lamport's `Paxos.tla`, with the invariants of *Paxos Made Simple*.

pub mod lamport;
pub mod runner;
pub mod synod;
