//! Counters and histograms of one node, rendered in the Prometheus text format for
//! `GET /metrics`. Plain atomics: the node task, the transport and the HTTP handlers update them
//! without locks.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::storage::GroupCommitStats;

/// A histogram with fixed bucket bounds (Prometheus `histogram`).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Bucket bounds for durations, in seconds.
pub const LATENCY_BOUNDS_S: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Bucket bounds for batch sizes.
pub const SIZE_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Observes a value (for durations: seconds). The sum keeps millionths.
    pub fn observe(&self, value: f64) {
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if value <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = (value * 1e6).max(0.0) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let n = bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every metric of one node.
#[derive(Debug)]
pub struct Metrics {
    pub client_requests: AtomicU64,
    pub client_redirects: AtomicU64,
    pub proposals: AtomicU64,
    pub slots_chosen: AtomicU64,
    pub commands_executed: AtomicU64,
    pub elections_started: AtomicU64,
    pub leader_changes: AtomicU64,
    pub peer_messages_sent: AtomicU64,
    pub peer_frames_sent: AtomicU64,
    pub peer_messages_received: AtomicU64,
    pub peer_messages_dropped: AtomicU64,
    pub peer_messages_unreachable: AtomicU64,
    pub peer_frames_rejected: AtomicU64,
    pub peer_handshakes_refused: AtomicU64,
    pub accept_retransmissions: AtomicU64,
    pub catch_up_requests: AtomicU64,
    /// K1: snapshots this node took of its applied prefix.
    pub snapshots_taken: AtomicU64,
    /// K4: snapshots received from a peer and installed.
    pub snapshots_installed: AtomicU64,
    /// K2, K6, K7: snapshots sent to a peer behind this node's compaction point.
    pub snapshots_sent: AtomicU64,
    /// Snapshots not sent because they exceed `limits.snapshot_bytes_max`.
    pub snapshots_too_large: AtomicU64,
    /// Snapshot transfers started (a `Snapshot` message the core sent, in chunks).
    pub snapshot_transfers: AtomicU64,
    /// `Snapshot` messages dropped because the same snapshot was already being sent to that
    /// peer.
    pub snapshot_sends_coalesced: AtomicU64,
    /// Snapshot bytes sent in chunks (a resumed transfer counts its repeated chunks again).
    pub snapshot_bytes_sent: AtomicU64,
    /// Snapshot transfers received and refused (checksum, size).
    pub snapshot_transfers_refused: AtomicU64,
    /// State-machine snapshot bytes written to disk.
    pub snapshot_bytes_written: AtomicU64,
    /// From handing a snapshot to the WAL writer until it was durable and the log compacted.
    pub snapshot_write_latency: Histogram,
    /// Linearizable reads received under the read-index or lease policy (redirected ones
    /// included).
    pub reads: AtomicU64,
    /// Reads answered by this node as leader (Q4).
    pub reads_answered: AtomicU64,
    /// Confirmation rounds this node started as leader (Q1, Q3); reads per round is
    /// `reads_answered / read_rounds`.
    pub read_rounds: AtomicU64,
    /// Reads answered under a lease (L5): at arrival, with no round.
    pub lease_reads: AtomicU64,
    /// Lease answers withheld because the clock passed the lease's end during their step
    /// (the read then waits for a round).
    pub lease_reads_withheld: AtomicU64,
    /// From a read's arrival at the node task until its answer was released.
    pub read_latency: Histogram,
    /// Records per group-commit submission of the node task.
    pub wal_batch_records: Histogram,
    /// From a submission to the group-commit writer until its fsync returned.
    pub wal_commit_latency: Histogram,
    /// Protocol messages per peer frame.
    pub frame_messages: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            client_requests: AtomicU64::new(0),
            client_redirects: AtomicU64::new(0),
            proposals: AtomicU64::new(0),
            slots_chosen: AtomicU64::new(0),
            commands_executed: AtomicU64::new(0),
            elections_started: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            peer_messages_sent: AtomicU64::new(0),
            peer_frames_sent: AtomicU64::new(0),
            peer_messages_received: AtomicU64::new(0),
            peer_messages_dropped: AtomicU64::new(0),
            peer_messages_unreachable: AtomicU64::new(0),
            peer_frames_rejected: AtomicU64::new(0),
            peer_handshakes_refused: AtomicU64::new(0),
            accept_retransmissions: AtomicU64::new(0),
            catch_up_requests: AtomicU64::new(0),
            snapshots_taken: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            snapshots_sent: AtomicU64::new(0),
            snapshots_too_large: AtomicU64::new(0),
            snapshot_transfers: AtomicU64::new(0),
            snapshot_sends_coalesced: AtomicU64::new(0),
            snapshot_bytes_sent: AtomicU64::new(0),
            snapshot_transfers_refused: AtomicU64::new(0),
            snapshot_bytes_written: AtomicU64::new(0),
            snapshot_write_latency: Histogram::new(LATENCY_BOUNDS_S),
            reads: AtomicU64::new(0),
            reads_answered: AtomicU64::new(0),
            read_rounds: AtomicU64::new(0),
            lease_reads: AtomicU64::new(0),
            lease_reads_withheld: AtomicU64::new(0),
            read_latency: Histogram::new(LATENCY_BOUNDS_S),
            wal_batch_records: Histogram::new(SIZE_BOUNDS),
            wal_commit_latency: Histogram::new(LATENCY_BOUNDS_S),
            frame_messages: Histogram::new(SIZE_BOUNDS),
        }
    }
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// The Prometheus text exposition; `wal` are the group commit's own counters.
    pub fn render(&self, wal: &GroupCommitStats, node: u32) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 30] = [
            (
                "paxos_client_requests_total",
                "client requests received",
                &self.client_requests,
            ),
            (
                "paxos_client_redirects_total",
                "client requests answered with the leader's address",
                &self.client_redirects,
            ),
            (
                "paxos_proposals_total",
                "slots this node proposed as leader (Accept at its own ballot)",
                &self.proposals,
            ),
            (
                "paxos_slots_chosen_total",
                "slots this node learned as chosen",
                &self.slots_chosen,
            ),
            (
                "paxos_commands_executed_total",
                "client commands applied to the state machine",
                &self.commands_executed,
            ),
            (
                "paxos_elections_started_total",
                "election timeouts that started phase 1",
                &self.elections_started,
            ),
            (
                "paxos_leader_changes_total",
                "changes of the leader this node knows",
                &self.leader_changes,
            ),
            (
                "paxos_peer_messages_sent_total",
                "protocol messages written to peers",
                &self.peer_messages_sent,
            ),
            (
                "paxos_peer_frames_sent_total",
                "frames written to peers",
                &self.peer_frames_sent,
            ),
            (
                "paxos_peer_messages_received_total",
                "messages received from peers",
                &self.peer_messages_received,
            ),
            (
                "paxos_peer_messages_dropped_total",
                "messages dropped because a peer queue was full",
                &self.peer_messages_dropped,
            ),
            (
                "paxos_peer_messages_unreachable_total",
                "messages discarded because their peer could not be reached",
                &self.peer_messages_unreachable,
            ),
            (
                "paxos_peer_frames_rejected_total",
                "inbound connections closed on a malformed frame",
                &self.peer_frames_rejected,
            ),
            (
                "paxos_peer_handshakes_refused_total",
                "inbound connections refused at the handshake",
                &self.peer_handshakes_refused,
            ),
            (
                "paxos_accept_retransmissions_total",
                "Accept messages re-sent for slots long in flight",
                &self.accept_retransmissions,
            ),
            (
                "paxos_catch_up_requests_total",
                "catch-up requests sent to the leader",
                &self.catch_up_requests,
            ),
            (
                "paxos_snapshots_taken_total",
                "snapshots of the applied prefix this node took, compacting its log",
                &self.snapshots_taken,
            ),
            (
                "paxos_snapshots_installed_total",
                "snapshots received from a peer and installed",
                &self.snapshots_installed,
            ),
            (
                "paxos_snapshots_sent_total",
                "snapshots sent to a peer behind this node's compaction point",
                &self.snapshots_sent,
            ),
            (
                "paxos_snapshots_too_large_total",
                "snapshots not sent because they exceed limits.snapshot_bytes_max",
                &self.snapshots_too_large,
            ),
            (
                "paxos_snapshot_transfers_total",
                "snapshot transfers to a peer started",
                &self.snapshot_transfers,
            ),
            (
                "paxos_snapshot_sends_coalesced_total",
                "snapshot messages dropped: the same snapshot was being sent to that peer",
                &self.snapshot_sends_coalesced,
            ),
            (
                "paxos_snapshot_bytes_sent_total",
                "snapshot bytes sent in chunks, resent chunks included",
                &self.snapshot_bytes_sent,
            ),
            (
                "paxos_snapshot_transfers_refused_total",
                "snapshot transfers received and refused (checksum or size)",
                &self.snapshot_transfers_refused,
            ),
            (
                "paxos_snapshot_bytes_written_total",
                "state-machine snapshot bytes written to disk",
                &self.snapshot_bytes_written,
            ),
            (
                "paxos_reads_total",
                "linearizable reads received under the read-index or lease policy",
                &self.reads,
            ),
            (
                "paxos_reads_answered_total",
                "reads answered as leader without a log write (read index)",
                &self.reads_answered,
            ),
            (
                "paxos_read_rounds_total",
                "confirmation rounds started for reads (reads per round: answered / rounds)",
                &self.read_rounds,
            ),
            (
                "paxos_lease_reads_total",
                "reads answered under a leader lease, at arrival, with no round",
                &self.lease_reads,
            ),
            (
                "paxos_lease_reads_withheld_total",
                "lease answers withheld: the clock passed the lease's end during their step",
                &self.lease_reads_withheld,
            ),
        ];
        let _ = writeln!(
            out,
            "# HELP paxos_node_id this node's id\n# TYPE paxos_node_id gauge\npaxos_node_id {node}"
        );
        for (name, help, value) in counters {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let wal_counters = [
            (
                "paxos_wal_fsyncs_total",
                "fsyncs of the write-ahead log",
                wal.fsyncs,
            ),
            (
                "paxos_wal_records_total",
                "records made durable",
                wal.records_written,
            ),
            (
                "paxos_wal_batches_total",
                "group-commit batches (one write, one fsync)",
                wal.batches,
            ),
        ];
        for (name, help, value) in wal_counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let name = "paxos_wal_batch_records_max";
        let _ = writeln!(
            out,
            "# HELP {name} most records in one group commit\n# TYPE {name} gauge\n{name} {}",
            wal.batch_records_max
        );
        self.wal_batch_records.render(
            &mut out,
            "paxos_wal_submit_records",
            "records per submission to the group commit",
        );
        self.wal_commit_latency.render(
            &mut out,
            "paxos_wal_commit_latency_seconds",
            "from submission to the group commit until durable (queueing, write, fsync)",
        );
        self.snapshot_write_latency.render(
            &mut out,
            "paxos_snapshot_write_latency_seconds",
            "from handing a snapshot to the WAL writer until durable and the log compacted",
        );
        self.read_latency.render(
            &mut out,
            "paxos_read_latency_seconds",
            "from a read's arrival until its answer (confirmation round, applied prefix)",
        );
        self.frame_messages.render(
            &mut out,
            "paxos_peer_frame_messages",
            "protocol messages per peer frame",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let h = Histogram::new(SIZE_BOUNDS);
        h.observe(1.0);
        h.observe(3.0);
        h.observe(5000.0);
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"4\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"1024\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count 3\n"));
    }

    #[test]
    fn render_names_every_counter() {
        let m = Metrics::default();
        inc(&m.proposals);
        let text = m.render(&GroupCommitStats::default(), 1);
        assert!(text.contains("paxos_proposals_total 1\n"));
        assert!(text.contains("paxos_wal_fsyncs_total 0\n"));
        assert!(text.contains("# TYPE paxos_wal_commit_latency_seconds histogram"));
    }
}
