//! The bound flags of each variant, shared by every command that builds a model from the
//! command line (`paxos-model check|explore|export-traces`, `paxos-conform check`), so that
//! the same flags mean the same configuration everywhere.

use std::str::FromStr;

use clap::Args;

use crate::multi::{MultiBug, MultiConfig, Ticks};
use crate::synod::{SynodBug, SynodConfig};

/// The bug named `name` of this variant; the error says so when it names a bug of the `other`
/// variant instead.
fn parse_bug<Bug, OtherBug>(name: &str, other: &str) -> Result<Bug, String>
where
    Bug: FromStr<Err = String>,
    OtherBug: FromStr,
{
    name.parse::<Bug>().map_err(|error| {
        if name.parse::<OtherBug>().is_ok() {
            format!("{error} (it is a bug of the {other} variant: use `{other} --bug ...`)")
        } else {
            error
        }
    })
}

/// The fault model and seeded bug, the same flags for both variants.
#[derive(Args, Debug, Clone)]
pub struct FaultFlags {
    /// Nodes (replicas) that may be crashed at the same time; a crash keeps only durable state.
    #[arg(long, default_value_t = 0)]
    pub crashes: usize,
    /// The network may lose messages.
    #[arg(long)]
    pub lossy: bool,
    /// The network may deliver a message more than once.
    #[arg(long)]
    pub duplicating: bool,
    /// Use a seeded bug instead of the correct protocol (see `paxos-model bugs`).
    #[arg(long, value_name = "NAME")]
    pub bug: Option<String>,
}

/// The Synod bounds and fault model.
#[derive(Args, Debug, Clone)]
pub struct SynodBounds {
    /// Proposers (1-3); proposer i proposes value v(i mod values + 1).
    #[arg(long, default_value_t = SynodConfig::default().proposers)]
    pub proposers: usize,
    /// Acceptors (usually 3 or 5).
    #[arg(long, default_value_t = SynodConfig::default().acceptors)]
    pub acceptors: usize,
    /// Learners (0-3). With 0 nothing is learned (Non-vacuity fails on a complete run): for
    /// targeted runs about phases 1 and 2, which then have far fewer interleavings.
    #[arg(long, default_value_t = SynodConfig::default().learners)]
    pub learners: usize,
    /// Distinct input values (1 to the number of proposers) [default: the number of proposers].
    #[arg(long)]
    pub values: Option<usize>,
    /// Highest round a proposer may start (the bound that keeps the state space finite).
    #[arg(long, default_value_t = SynodConfig::default().max_round)]
    pub rounds: u8,
    #[command(flatten)]
    pub faults: FaultFlags,
}

impl SynodBounds {
    /// The validated configuration; the error names the offending flag.
    pub fn config(&self) -> Result<SynodConfig, String> {
        let faults = &self.faults;
        let bug = faults.bug.as_deref();
        let bug = bug.map(|name| parse_bug::<SynodBug, MultiBug>(name, "multi"));
        let bug = bug.transpose()?;
        let cfg = SynodConfig {
            proposers: self.proposers,
            acceptors: self.acceptors,
            learners: self.learners,
            values: self.values.unwrap_or(self.proposers),
            max_round: self.rounds,
            crashes: faults.crashes,
            lossy: faults.lossy,
            duplicating: faults.duplicating,
            bug,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The Multi-Paxos bounds and fault model.
#[derive(Args, Debug, Clone)]
pub struct MultiBounds {
    /// Replicas (2-5, usually 3 or 5); each is acceptor, leader candidate, learner and state
    /// machine. Replica 0 leads first.
    #[arg(long, default_value_t = MultiConfig::default().replicas)]
    pub replicas: usize,
    /// Log slots (1-4).
    #[arg(long, default_value_t = MultiConfig::default().slots)]
    pub slots: usize,
    /// Client commands in all (1-6), dealt round-robin to the clients.
    #[arg(long, default_value_t = MultiConfig::default().commands)]
    pub commands: usize,
    /// Clients (1 to min(3, commands)); each sends its commands one at a time.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Highest round an election may use: 1 keeps the initial leader, 2 allows every replica
    /// one election, and so on.
    #[arg(long, default_value_t = MultiConfig::default().max_round)]
    pub rounds: u64,
    /// Elections the whole run may hold (any replica may campaign; each uses a higher round).
    #[arg(long, default_value_t = MultiConfig::default().elections)]
    pub elections: u8,
    /// Slots the leader may have in flight for new commands [default: --slots].
    #[arg(long)]
    pub window: Option<usize>,
    /// How often a client may resend its outstanding request to every replica.
    #[arg(long, default_value_t = MultiConfig::default().retries)]
    pub retries: u8,
    /// Client i sends its first request to replica i mod replicas (a follower drops it)
    /// instead of the initial leader.
    #[arg(long)]
    pub spread_clients: bool,
    /// Compaction progress the run may make: every replica's compaction point (snapshot of
    /// its applied prefix, K1, or an installed snapshot, K4) adds up to at most this. 0
    /// disables compaction and snapshots.
    #[arg(long, default_value_t = MultiConfig::default().compactions)]
    pub compactions: u8,
    /// Catch-up requests (`Status`, K5) the whole run may send. 0 disables catch-up.
    #[arg(long, default_value_t = MultiConfig::default().catch_ups)]
    pub catch_ups: u8,
    /// The most chosen entries one `CatchUp` carries, the lowest (K6); all when not given.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub catch_up_max: Option<u64>,
    /// Reads (0-3) a reader invokes one after another, at any time, answered by a leader
    /// through the read index (Q1-Q5). 0: no reader.
    #[arg(long, default_value_t = MultiConfig::default().reads)]
    pub reads: u8,
    /// The reader invokes every read at this replica only (default: at any replica).
    #[arg(long)]
    pub reader_at: Option<u8>,
    /// Leader leases (L1-L6): a grant lasts this many ticks of the granting replica's clock.
    /// 0 disables leases and time.
    #[arg(long, default_value_t = MultiConfig::default().leases)]
    pub leases: Ticks,
    /// The clock bound: at every moment any two replicas' clocks differ by at most this many
    /// ticks (a lease is --leases minus twice this).
    #[arg(long, default_value_t = MultiConfig::default().drift)]
    pub drift: Ticks,
    /// How far each replica's clock may run, in ticks.
    #[arg(long, default_value_t = MultiConfig::default().ticks)]
    pub ticks: Ticks,
    #[command(flatten)]
    pub faults: FaultFlags,
}

impl MultiBounds {
    /// The validated configuration; the error names the offending flag.
    pub fn config(&self) -> Result<MultiConfig, String> {
        let faults = &self.faults;
        let bug = faults.bug.as_deref();
        let bug = bug.map(|name| parse_bug::<MultiBug, SynodBug>(name, "synod"));
        let bug = bug.transpose()?;
        let defaults = MultiConfig::default();
        let cfg = MultiConfig {
            replicas: self.replicas,
            clients: self
                .clients
                .unwrap_or_else(|| defaults.clients.min(self.commands)),
            commands: self.commands,
            slots: self.slots,
            window: self.window.unwrap_or(self.slots),
            max_round: self.rounds,
            elections: self.elections,
            retries: self.retries,
            spread_clients: self.spread_clients,
            crashes: faults.crashes,
            compactions: self.compactions,
            catch_ups: self.catch_ups,
            catch_up_max: self
                .catch_up_max
                .map(|e| usize::try_from(e).unwrap_or(usize::MAX)),
            reads: self.reads,
            reader_at: self.reader_at,
            leases: self.leases,
            drift: self.drift,
            ticks: self.ticks,
            lossy: faults.lossy,
            duplicating: faults.duplicating,
            bug,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
