//! The Multi-Paxos replica core: every replica is acceptor, leader candidate, learner and state
//! machine, as one deterministic state machine with no IO, no clocks, no randomness and no
//! threads. The transitions are those of `specs/protocol.md`: M1–M12 ("Multi-Paxos: the replica
//! as modelled"), the timers and heartbeats T, H1, H2, R1 ("Timers and heartbeats") and
//! compaction, snapshots and catch-up K1–K7 ("Compaction that no replica can block") and reads
//! through the read index Q1–Q5 ("Reads that write nothing"); each handler in [`replica`]
//! names its rule. Time is an input like any other ([`timers`]).
//!
//! ```text
//!   Replica::new(config, sm)             ─┐
//!   Replica::recover(config, durable, sm) ├─► (Replica, [Persist(..)])
//!                                         │
//!   Input::Message { from, msg }   ─┐     │
//!   Input::ClientRequest(command)  ─┼─► Replica::step ─► [Persist(Record)..,     (durable first)
//!   Input::Tick { now_ms }         ─┘         │            Send { to, msg } | Executed { .. }
//!                                             │            | Reply { .. } ..]
//!                                             └─► Replica::next_deadline(): tick again then
//! ```
//!
//! The runtime performs a step's effects in order and makes every `Persist` durable before it
//! performs anything after it. A write-ahead log of the [`Record`]s folds back into the
//! [`Durable`] state ([`Durable::from_records`]) that [`Replica::recover`] starts from (M11).
//!
//! Modelled exactly, because conformance replays every model transition on this core:
//! - bootstrap: the initial leader leads at `1.<leader>` with `round = 1, promised = 1.<leader>`
//!   persisted; the others are followers promised to `1.<leader>`, nothing persisted;
//! - the candidate and the leader do their own acceptor part in the same step, never by a
//!   message to themselves;
//! - sends go out in ascending slot order, each to the other replicas in configuration order;
//!   pending commands are proposed in ascending `(client, seq)` order;
//! - the election timer is armed exactly when the replica is not leading (the heartbeat and
//!   retransmission timers exactly when it leads); the model's timer fires at any time, the
//!   core's at its deadline.
//!
//! A follower ignores client requests (M5''): the service redirects the client to the leader
//! it knows, `promised().node`.
//!
//! # Trace events
//!
//! Every transition — each [`Replica::step`], plus bootstrap and recovery — emits exactly one
//! `tracing` event at level DEBUG with target [`TRACE_TARGET`] (`"paxos::core"`). Its fields
//! are stable (trace validation reads them); optional fields are absent when they do not apply:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `node` | u32 | the replica's id |
//! | `rule` | str | the rule applied: `bootstrap`, `M1`, `M2`, `M2'`, `M2''`, `M3`, `M4`, `M5`, `M5'`, `M5''`, `M6`, `M6'`, `M7`, `M8`, `M10`, `M11`, the timer rules `H1`, `H2`, `R1` (a tick at a leader that re-sent anything is `R1`, else `H1` if its heartbeat went out; a tick that fired nothing else but a catch-up request is `K5`), the compaction rules `K1` (compact), `K4` (snapshot installed), `K6` (catch-up request answered), `K7` (an Accept below the compaction point answered with the snapshot), the read rules `Q1` (a read waits at the leader), `Q1'` (a read at a replica that does not lead), `Q2`, `Q2'` (a confirmation request answered or refused), `Q3` (a confirmation counted), or `none` when the input changed nothing. Q4 (answering the reads that are ready) happens at the end of any step. K2 and K3 happen inside M2 and M4, and a `CatchUp` received is `M8`. M5b, M9 and M12 happen inside these and are not separate events. |
//! | `input` | str | `bootstrap`, `recover`, `tick`, `client_request` (one request or several together), `read`, `prepare`, `promise`, `nack`, `accept`, `accepted`, `decide`, `status`, `catch_up`, `heartbeat`, `confirm`, `confirmed` |
//! | `from` | u32, optional | the sender of a message |
//! | `ballot` | str `round.node`, optional | the message's ballot; for M1 the new own ballot |
//! | `slot` | u64, optional | the first slot of the message's run (Accept, Accepted, Decide) |
//! | `promised` | str `round.node` | the promise after the step |
//! | `round` | u64 | the round after the step |
//! | `phase` | str | `follower`, `preparing` or `leading` after the step |
//! | `next_slot` | u64, optional | `next_slot` after the step, when leading |
//! | `chosen` | u64, optional | the highest slot this step chose (M7 on a majority, M8; a run may choose several) |
//! | `applied` | u64 | the applied prefix's length after the step |
//! | `pending` | u64 | pending commands after the step |
//! | `persisted` | u64 | `Persist` effects of the step |
//! | `sent` | u64 | `Send` effects of the step |

pub mod mutants;
pub mod replica;
pub mod runs;
pub mod slot_map;
pub mod state_machine;
pub mod timers;
pub mod types;

#[cfg(test)]
mod tests;

pub use replica::{
    AppliedState, ClientEntry, ClientTable, InputOf, MessageOf, Phase, ReadIndex, Replica,
    ReplicaEffect, ReplicaState, Rule, SnapshotOf, Voters, WaitingRead, INVARIANTS_CHECKED,
};
pub use runs::Runs;
pub use slot_map::SlotMap;
pub use state_machine::{KvOp, KvOutput, KvStore, Recorder, StateMachine};
pub use timers::{Lease, Millis, Timers, Timing, TimingError};
pub use types::{
    ClientId, Command, CommandId, Config, ConfigError, Durable, Effect, Entry, Input, Message,
    ReadId, Record, RecordError, Slot, Vote, CATCH_UP_ENTRIES_MAX,
};

/// The `tracing` target of the core's transition events.
pub const TRACE_TARGET: &str = "paxos::core";
