//! Side-by-side benchmarks.
//!
//! - [`harness`]: one closed loop that drives a 3-replica cluster in one thread over an
//!   in-memory network, with `window` client commands in flight, and counts commits per second.
//!   [`ours`] plugs the sans-IO Multi-Paxos core of `paxos-protocol` into it, [`omni`] OmniPaxos
//!   (`omnipaxos` with `omnipaxos_storage::memory_storage::MemoryStorage`). The `core-bench`
//!   binary prints the table of `specs/results.md`, "Protocol core against OmniPaxos".
//! - [`plot`]: SVG plots of the service against etcd from the CSV `bench/etcd-compare.sh`
//!   writes (the `bench-plot` binary).
//!
//! ```text
//!   harness::run ──► Cluster::propose (leader) ─► in-memory FIFO network ─► Cluster::deliver_round
//!        ▲                                                                        │
//!        └──────────── Cluster::committed (commands decided at the leader) ◄──────┘
//! ```

pub mod harness;
pub mod omni;
pub mod ours;
pub mod plot;
