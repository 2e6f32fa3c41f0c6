//! The loop both protocols run under, so that neither gets a batching opportunity the other
//! does not: the network delivers in rounds, and what a round's deliveries send is delivered in
//! the next round.

use std::time::{Duration, Instant};

/// A 3-replica cluster with an elected leader, a network and trivial state machines.
pub trait Cluster {
    /// A short name for the table.
    fn name(&self) -> &'static str;

    /// Submits the client's `seq`-th command to the leader. Whatever the leader sends because
    /// of it is delivered in the next round.
    fn propose(&mut self, client: u64, seq: u64);

    /// Delivers every message sent before this call, in the order sent, each to its
    /// replica; what those deliveries send waits for the next round. Returns whether anything
    /// was delivered.
    fn deliver_round(&mut self) -> bool;

    /// Messages delivered so far.
    fn delivered(&self) -> u64;

    /// Commands chosen (decided) and applied at the leader so far, warm-up included.
    fn committed(&self) -> u64;

    /// Per replica, the commands its state machine has applied and a checksum of them; the
    /// run checks that every replica agrees once the network is quiet.
    fn applied(&self) -> Vec<(u64, u64)>;
}

/// What one timed run measured.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    pub commands: u64,
    pub elapsed: Duration,
    /// Network rounds the timed part took.
    pub rounds: u64,
    /// Messages the timed part delivered.
    pub messages: u64,
    /// Minor page faults of the process during the timed part: memory touched for the first
    /// time (`None` where `/proc/self/stat` is not there to read).
    pub page_faults: Option<u64>,
}

impl Measurement {
    pub fn commits_per_second(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64()
    }
}

/// Closed loop: `window` clients, each with one command in flight; a client issues its next
/// command as soon as the previous one is committed at the leader. `warmup` commands run
/// first, untimed, after the leader is elected (the cluster constructor elects it).
pub fn run(
    cluster: &mut dyn Cluster,
    window: u64,
    commands: u64,
    warmup: u64,
) -> anyhow::Result<Measurement> {
    anyhow::ensure!(window > 0, "the window must be at least 1");
    let mut issued = 0;
    drive(cluster, window, warmup, &mut issued)?;
    let delivered = cluster.delivered();
    let faults_before = minor_page_faults();
    let start = Instant::now();
    let rounds = drive(cluster, window, warmup + commands, &mut issued)?;
    let elapsed = start.elapsed();
    let page_faults = minor_page_faults()
        .zip(faults_before)
        .map(|(after, before)| after.saturating_sub(before));
    let messages = cluster.delivered() - delivered;
    while cluster.deliver_round() {}
    let applied = cluster.applied();
    let total = warmup + commands;
    anyhow::ensure!(
        applied.iter().all(|a| *a == applied[0] && a.0 == total),
        "{}: replicas disagree or missed commands after {total}: {applied:?}",
        cluster.name()
    );
    Ok(Measurement {
        commands,
        elapsed,
        rounds,
        messages,
        page_faults,
    })
}

/// The process's minor page faults so far, field 10 of `/proc/self/stat` (Linux). Counted
/// because the two systems keep different amounts of state per command: the first touch of
/// each new page of a growing log costs a fault, which instruction counts do not see.
pub fn minor_page_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(7)?.parse().ok()
}

/// Runs until `target` commands are committed; returns the network rounds it took. Command
/// `i` belongs to client `i % window`, as its `i / window + 1`-th command: commands commit in
/// the order issued, so each client has at most one in flight.
fn drive(
    cluster: &mut dyn Cluster,
    window: u64,
    target: u64,
    issued: &mut u64,
) -> anyhow::Result<u64> {
    let mut rounds = 0;
    while cluster.committed() < target {
        while *issued - cluster.committed() < window && *issued < target {
            cluster.propose(*issued % window, *issued / window + 1);
            *issued += 1;
        }
        if !cluster.deliver_round() {
            anyhow::bail!(
                "{}: no message in flight with {} of {target} committed",
                cluster.name(),
                cluster.committed()
            );
        }
        rounds += 1;
    }
    Ok(rounds)
}

/// The trivial state machine both sides apply: a running checksum of the commands.
pub fn checksum(sum: u64, client: u64, seq: u64) -> u64 {
    sum.wrapping_mul(31).wrapping_add(client << 32 ^ seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_fresh_memory_counts_page_faults() {
        let Some(before) = minor_page_faults() else {
            return; // not Linux: the column reads n/a
        };
        let mut fresh = vec![0u8; 32 << 20];
        for page in fresh.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&fresh);
        let after = minor_page_faults().expect("readable a moment ago");
        // Transparent huge pages may map 2 MiB per fault: at least 16 faults for 32 MiB.
        assert!(after >= before + 16, "{before} → {after}");
    }
}
