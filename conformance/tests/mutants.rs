//! Power: every hand-written protocol mutant of the implementation's replica core
//! (`paxos_protocol::multi::mutants`, one per class of Paxos mistake) is caught by the exhaustive
//! Multi-Paxos conformance check, on the smallest model configuration where the mutated rule
//! matters. A harness that let one through would prove nothing about that class.

use std::time::Duration;

use paxos_conformance::check::{self, Outcome};
use paxos_model::multi::{self, MultiBug, MultiConfig, MultiModel};
use paxos_protocol::multi::mutants::{with_mutant, Mutant};

/// One command, one client that may retry once, one election: the conformance suite's
/// "small" configuration.
fn small() -> MultiConfig {
    MultiConfig {
        commands: 1,
        retries: 1,
        ..MultiConfig::default()
    }
}

/// Where each mutant's rule is exercised, and why there: the smallest configuration that
/// reaches it, because every pair of it is replayed; with a depth bound (see
/// `check::explore`) where the configuration is only needed for its first steps.
fn target_for(mutant: Mutant) -> (MultiConfig, Option<usize>) {
    // The spread-clients configuration reaches its witness in 10 steps, in a space of
    // 10 million states: its first 12 steps are what it is for.
    let depth = (mutant == Mutant::FirstPromisedVote).then_some(13);
    (config_for(mutant), depth)
}

fn config_for(mutant: Mutant) -> MultiConfig {
    // Two followers that may both campaign at round 2: the cheapest way to two candidates
    // (with two replicas only one campaigns, the bootstrap leader being out of rounds).
    let two_candidates = MultiConfig {
        elections: 2,
        slots: 1,
        window: 1,
        retries: 0,
        ..small()
    };
    let lease_witness = MultiConfig {
        bug: None,
        ..MultiBug::LeaseOutlivesPromise.witness_config()
    };
    let lease_without_election = MultiConfig {
        elections: 0,
        max_round: 1,
        ..lease_witness.clone()
    };
    match mutant {
        // A Prepare below a promise needs two candidates.
        Mutant::PromiseBelowPromised => two_candidates,
        Mutant::IgnorePromisedVotes => small(),
        // The targeted configuration of `.ci/run` that reaches the witness "promises from two
        // ballots", the only place where the first vote heard and the highest one differ.
        Mutant::FirstPromisedVote => MultiConfig {
            commands: 2,
            clients: 2,
            spread_clients: true,
            slots: 1,
            window: 1,
            elections: 2,
            max_round: 3,
            retries: 0,
            ..MultiConfig::default()
        },
        // With 3 replicas `3 / 2 = 1` still needs the first Accepted, so the leader decides
        // just as a correct one; with 5 it decides on 2 votes instead of 3.
        Mutant::QuorumOneShort => MultiConfig {
            replicas: 5,
            elections: 0,
            retries: 0,
            ..small()
        },
        Mutant::RoundNotPersisted => small(),
        // A Nack reaches the bootstrap leader once a candidate has a promise.
        Mutant::SkipPhase1AfterPreemption => small(),
        // Two commands in flight, Decides overtaking each other.
        Mutant::ApplyOutOfOrder => MultiConfig {
            elections: 0,
            ..MultiConfig::default()
        },
        // A retry of an executed command.
        Mutant::IgnoreClientTable => small(),
        // A follower still promised to 1.0 hears the heartbeat of a leader elected at 2.x.
        Mutant::HeartbeatRaisesPromise => small(),
        // The first chosen command: caught by the core's invariants, which conformance
        // builds check in every step (the `invariants` feature), release builds included.
        Mutant::StaleInFlightIndex => MultiConfig {
            elections: 0,
            retries: 0,
            ..small()
        },
        // The bootstrap leader crashes and recovers: a follower of its own ballot.
        Mutant::OwnBallotFollowerAsksNoOne => MultiConfig {
            catch_ups: 1,
            crashes: 1,
            elections: 0,
            retries: 0,
            ..small()
        },
        // A replica compacts slot 0, then a candidate's Prepare reaches it.
        Mutant::PromiseHidesCompaction => MultiConfig {
            compactions: 1,
            retries: 0,
            ..small()
        },
        // The leader compacts slot 0 and answers a follower's catch-up request (K6) with its
        // snapshot; the leader's Decide reaches the follower first.
        Mutant::InstallOlderSnapshot => MultiConfig {
            compactions: 1,
            catch_ups: 1,
            elections: 0,
            retries: 0,
            ..small()
        },
        // A read at the bootstrap leader is answered before its confirmation round.
        Mutant::ReadWithoutConfirmation => MultiConfig {
            elections: 0,
            max_round: 1,
            retries: 0,
            slots: 1,
            window: 1,
            reads: 1,
            ..small()
        },
        // Two reads at the stable leader, the second while the first's round is out.
        Mutant::ReadJoinsOutstandingRound => MultiConfig {
            elections: 0,
            max_round: 1,
            retries: 0,
            slots: 1,
            window: 1,
            reads: 2,
            ..small()
        },
        // The bootstrap leader's round grants a lease (L5', L1); a campaign's Prepare reaches
        // a grantor, or a grantor's own election timer fires. The model bugs' configuration,
        // which also holds the bootstrap leader's first round, compared at its first start
        // (L5', L3).
        Mutant::LeaseOutlivesPromise | Mutant::LeaseGrantorCampaigns | Mutant::LeaseBeyondDrift => {
            lease_witness
        }
        // The leader's clock ticks before the bootstrap round's confirmation arrives; no
        // election, so that time stays cheap.
        Mutant::LeaseFromArrival => MultiConfig {
            ticks: 1,
            ..lease_without_election
        },
        // A replica recovers (L6), with no election.
        Mutant::LeaseForgottenOnRestart => MultiConfig {
            crashes: 1,
            ..lease_without_election
        },
    }
}

fn check(
    mutant: Option<Mutant>,
    (cfg, depth): &(MultiConfig, Option<usize>),
) -> Outcome<MultiModel> {
    let model = multi::model(cfg.clone());
    let run = || check::check(&model, 1, *depth, Duration::MAX, |_, _| {});
    let outcome = match mutant {
        Some(m) => with_mutant(m, run),
        None => run(),
    };
    let name = mutant.map_or("correct", Mutant::name);
    let c = outcome.counts;
    eprintln!(
        "{name}: {} states, {} pairs and {} stuttering steps replayed in {:?}",
        c.states, c.replayed, c.stutters, outcome.elapsed
    );
    outcome
}

/// The mutant that changes nothing the model compares is caught by the core's invariants:
/// conformance builds check them after every step.
#[test]
fn a_broken_core_invariant_is_a_divergence() {
    let mutant = Mutant::StaleInFlightIndex;
    let outcome = check(Some(mutant), &target_for(mutant));
    let divergence = outcome.first_divergence().expect("caught").to_string();
    assert!(
        divergence.contains("in-flight index"),
        "caught by the invariant: {divergence}"
    );
}

#[test]
fn every_protocol_mutant_is_a_divergence() {
    let mut missed = Vec::new();
    for &mutant in Mutant::ALL {
        let outcome = check(Some(mutant), &target_for(mutant));
        match outcome.first_divergence() {
            None => missed.push(mutant.name()),
            Some(d) => eprintln!("  {} ({}): {d}", mutant.name(), mutant.class()),
        }
    }
    assert!(missed.is_empty(), "conformance let through {missed:?}");
}

/// The configurations above conform without a mutant: each divergence is the mutant's doing.
#[test]
fn the_mutants_configurations_conform_without_a_mutant() {
    // Mutants that share a configuration share its check.
    let mut checked: Vec<(MultiConfig, Option<usize>)> = Vec::new();
    for &mutant in Mutant::ALL {
        let target = target_for(mutant);
        if checked.contains(&target) {
            continue;
        }
        let outcome = check(None, &target);
        assert!(outcome.counts.replayed > 0);
        if let Some(d) = outcome.first_divergence() {
            panic!("{} configuration diverges unmutated:\n{d}", mutant.name());
        }
        checked.push(target);
    }
}
