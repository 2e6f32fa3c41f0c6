//! The bound flags of each variant, shared by every command that builds a model from the
//! command line (`paxos-model check|explore|export-traces`, `paxos-conform check`), so that
//! the same flags mean the same configuration everywhere.

use clap::Args;

use crate::multi::{MultiBug, MultiConfig};
use crate::synod::{SynodBug, SynodConfig};

/// Adds to an unknown-bug error that the name is a bug of `other` variant, when it is.
fn other_variant_hint(error: String, is_other: bool, other: &str) -> String {
    if is_other {
        format!("{error} (it is a bug of the {other} variant: use `{other} --bug ...`)")
    } else {
        error
    }
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
    /// Learners (1-3).
    #[arg(long, default_value_t = SynodConfig::default().learners)]
    pub learners: usize,
    /// Distinct input values (1 to the number of proposers) [default: the number of proposers].
    #[arg(long)]
    pub values: Option<usize>,
    /// Highest round a proposer may start (the bound that keeps the state space finite).
    #[arg(long, default_value_t = SynodConfig::default().max_round)]
    pub rounds: u8,
    /// Nodes that may be crashed at the same time; a crash keeps only durable state.
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

impl SynodBounds {
    /// The validated configuration; the error names the offending flag.
    pub fn config(&self) -> Result<SynodConfig, String> {
        let bug = self
            .bug
            .as_deref()
            .map(|name| {
                name.parse::<SynodBug>()
                    .map_err(|e| other_variant_hint(e, name.parse::<MultiBug>().is_ok(), "multi"))
            })
            .transpose()?;
        let cfg = SynodConfig {
            proposers: self.proposers,
            acceptors: self.acceptors,
            learners: self.learners,
            values: self.values.unwrap_or(self.proposers),
            max_round: self.rounds,
            crashes: self.crashes,
            lossy: self.lossy,
            duplicating: self.duplicating,
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
    pub rounds: u8,
    /// Elections the whole run may hold (any replica may campaign; each uses a higher round).
    #[arg(long, default_value_t = MultiConfig::default().elections)]
    pub elections: u8,
    /// Slots the leader may have in flight for new commands [default: --slots].
    #[arg(long)]
    pub window: Option<usize>,
    /// How often a client may resend its outstanding request to every replica.
    #[arg(long, default_value_t = MultiConfig::default().retries)]
    pub retries: u8,
    /// Replicas that may be crashed at the same time; a crash keeps only durable state.
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

impl MultiBounds {
    /// The validated configuration; the error names the offending flag.
    pub fn config(&self) -> Result<MultiConfig, String> {
        let bug = self
            .bug
            .as_deref()
            .map(|name| {
                name.parse::<MultiBug>()
                    .map_err(|e| other_variant_hint(e, name.parse::<SynodBug>().is_ok(), "synod"))
            })
            .transpose()?;
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
            crashes: self.crashes,
            lossy: self.lossy,
            duplicating: self.duplicating,
            bug,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
