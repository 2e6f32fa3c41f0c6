//! Hand-written protocol mutants of the replica core: one plausible bug per class of Paxos
//! mistake, for showing that conformance (and the other test suites) can fail.
//!
//! A mutant is active only inside `with_mutant`, on the calling thread, and only when the
//! crate is built with the `mutants` cargo feature (the conformance crate's tests enable it).
//! Without the feature `active` is a constant `false` the optimiser removes, so production
//! builds carry none of this.

/// One deliberate deviation from `specs/protocol.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// Promise rule (M2''): a Prepare below the promise is promised anyway, lowering it.
    PromiseBelowPromised,
    /// Value selection (M3): a new leader ignores the votes Promises carry and re-proposes
    /// only what it accepted itself (no-ops elsewhere).
    IgnorePromisedVotes,
    /// Quorum count: a majority is taken as `n / 2`, one short for odd `n`.
    QuorumOneShort,
    /// Ballot persistence (M1, M10): the round is raised in memory but never written.
    RoundNotPersisted,
    /// Skipping phase 1 after preemption (M10): a refused leader or candidate moves to a
    /// ballot above the refusal and re-proposes its accepted slots there, without phase 1.
    SkipPhase1AfterPreemption,
    /// Apply order (M8/M9): a decided command is executed at once, ahead of unchosen slots.
    ApplyOutOfOrder,
    /// Client dedup (M5, M9): the client table is never consulted, so a retried command is
    /// proposed again and executed again.
    IgnoreClientTable,
    /// Heartbeat handling (H2): a heartbeat above the promise is taken as a promise, in
    /// memory only. Nothing was promised to anyone, so nothing was persisted, and a restart
    /// forgets it: a replica that may accept below what it acts on.
    HeartbeatRaisesPromise,
}

impl Mutant {
    pub const ALL: [Mutant; 8] = [
        Mutant::PromiseBelowPromised,
        Mutant::IgnorePromisedVotes,
        Mutant::QuorumOneShort,
        Mutant::RoundNotPersisted,
        Mutant::SkipPhase1AfterPreemption,
        Mutant::ApplyOutOfOrder,
        Mutant::IgnoreClientTable,
        Mutant::HeartbeatRaisesPromise,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::PromiseBelowPromised => "promise-below-promised",
            Mutant::IgnorePromisedVotes => "ignore-promised-votes",
            Mutant::QuorumOneShort => "quorum-one-short",
            Mutant::RoundNotPersisted => "round-not-persisted",
            Mutant::SkipPhase1AfterPreemption => "skip-phase-1-after-preemption",
            Mutant::ApplyOutOfOrder => "apply-out-of-order",
            Mutant::IgnoreClientTable => "ignore-client-table",
            Mutant::HeartbeatRaisesPromise => "heartbeat-raises-promise",
        }
    }

    /// The class of Paxos mistake it stands for.
    pub fn class(self) -> &'static str {
        match self {
            Mutant::PromiseBelowPromised => "promise rule",
            Mutant::IgnorePromisedVotes => "value selection",
            Mutant::QuorumOneShort => "quorum count",
            Mutant::RoundNotPersisted => "ballot persistence",
            Mutant::SkipPhase1AfterPreemption => "skipping phase 1 after preemption",
            Mutant::ApplyOutOfOrder => "apply order",
            Mutant::IgnoreClientTable => "client dedup",
            Mutant::HeartbeatRaisesPromise => "heartbeat handling",
        }
    }
}

#[cfg(feature = "mutants")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Mutant>> = const { std::cell::Cell::new(None) };
}

/// Runs `body` with `mutant` active in every core on this thread, restoring the previous
/// state afterwards (also when `body` panics).
#[cfg(feature = "mutants")]
pub fn with_mutant<R>(mutant: Mutant, body: impl FnOnce() -> R) -> R {
    struct Restore(Option<Mutant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTIVE.set(self.0);
        }
    }
    let _restore = Restore(ACTIVE.replace(Some(mutant)));
    body()
}

/// Whether `mutant` is active on this thread.
#[inline(always)]
pub(crate) fn active(mutant: Mutant) -> bool {
    #[cfg(feature = "mutants")]
    {
        ACTIVE.get() == Some(mutant)
    }
    #[cfg(not(feature = "mutants"))]
    {
        let _ = mutant;
        false
    }
}

#[cfg(all(test, feature = "mutants"))]
mod tests {
    use super::*;

    #[test]
    fn a_mutant_is_active_only_inside_its_scope() {
        assert!(!active(Mutant::ApplyOutOfOrder));
        with_mutant(Mutant::ApplyOutOfOrder, || {
            assert!(active(Mutant::ApplyOutOfOrder));
            assert!(!active(Mutant::IgnoreClientTable));
        });
        assert!(!active(Mutant::ApplyOutOfOrder));
    }

    /// The seeded quorum bug is exactly one short, at every cluster size: a safety bug
    /// (two majorities that need not intersect), not a quorum nothing can reach.
    #[test]
    fn quorum_one_short_counts_one_fewer_than_a_majority() {
        for replicas in 2..=7u32 {
            let config = crate::multi::Config {
                id: 0,
                replicas: (0..replicas).collect(),
                initial_leader: 0,
                window: 1,
                slot_limit: None,
                timing: Default::default(),
            };
            let majority = config.majority();
            assert_eq!(majority, replicas as usize / 2 + 1);
            let short = with_mutant(Mutant::QuorumOneShort, || config.majority());
            assert_eq!(short, majority - 1, "{replicas} replicas");
        }
    }
}
