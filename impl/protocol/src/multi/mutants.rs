//! Hand-written protocol mutants of the replica core: one plausible bug per class of Paxos
//! mistake, for showing that conformance (and the other test suites) can fail.
//!
//! A mutant is active only inside `with_mutant`, on the calling thread, and only when the
//! crate is built with the `mutants` cargo feature (the conformance crate's tests enable it).
//! Without the feature `active` is a constant `false` the optimiser removes, so production
//! builds carry none of this.

use strum::{EnumMessage, VariantArray};

/// One deliberate deviation from `specs/protocol.md`. Its list, name and class are derived
/// (strum), as in every catalogue of deliberate bugs in the workspace.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumMessage,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Mutant {
    /// Promise rule (M2''): a Prepare below the promise is promised anyway, lowering it.
    #[strum(message = "promise rule")]
    PromiseBelowPromised,
    /// Value selection (M3): a new leader ignores the votes Promises carry and re-proposes
    /// only what it accepted itself (no-ops elsewhere).
    #[strum(message = "value selection")]
    IgnorePromisedVotes,
    /// Value selection (M3): the first vote heard for a slot is kept instead of the highest.
    /// It picks right whenever the votes a candidate hears in a slot share one ballot, so only
    /// a configuration that reaches the witness "promises from two ballots" sees it.
    #[strum(message = "value selection")]
    FirstPromisedVote,
    /// Quorum count: a majority is taken as `n / 2`, one short for odd `n`.
    #[strum(message = "quorum count")]
    QuorumOneShort,
    /// Ballot persistence (M1, M10): the round is raised in memory but never written.
    #[strum(message = "ballot persistence")]
    RoundNotPersisted,
    /// Skipping phase 1 after preemption (M10): a refused leader or candidate moves to a
    /// ballot above the refusal and re-proposes its accepted slots there, without phase 1.
    #[strum(
        message = "skipping phase 1 after preemption",
        serialize = "skip-phase-1-after-preemption"
    )]
    SkipPhase1AfterPreemption,
    /// Apply order (M8/M9): a decided command is executed at once, ahead of unchosen slots.
    #[strum(message = "apply order")]
    ApplyOutOfOrder,
    /// Client dedup (M5, M9): the client table is never consulted, so a retried command is
    /// proposed again and executed again.
    #[strum(message = "client dedup")]
    IgnoreClientTable,
    /// Heartbeat handling (H2): a heartbeat above the promise is taken as a promise, in
    /// memory only. Nothing was promised to anyone, so nothing was persisted, and a restart
    /// forgets it: a replica that may accept below what it acts on.
    #[strum(message = "heartbeat handling")]
    HeartbeatRaisesPromise,
    /// In-flight bookkeeping (M7): a chosen command stays in the leader's index of commands in
    /// flight. Nothing the replica says or persists changes at once; only the core's own
    /// invariants see it (`check_invariants`, on in conformance builds).
    #[strum(message = "in-flight bookkeeping")]
    StaleInFlightIndex,
    /// Catch-up request (K5): a follower whose promise is its own ballot (a leader that
    /// restarted or was refused) asks no one, as if the replica of its promise were a leader
    /// to ask: in an idle cluster it never catches up.
    #[strum(message = "catch-up request")]
    OwnBallotFollowerAsksNoOne,
    /// Compaction reporting (K2): a Promise reports compaction point 0, as if compacting
    /// below one's own applied prefix needed no one told (the unsafe own-applied rule), so a
    /// new leader may fill a compacted chosen slot.
    #[strum(message = "compaction reporting")]
    PromiseHidesCompaction,
    /// Snapshot install (K4): a snapshot at or below the applied prefix is installed anyway
    /// (unless it is the replica's own), moving the applied prefix backwards.
    #[strum(message = "snapshot install")]
    InstallOlderSnapshot,
    /// Read confirmation (Q4): a read is answered from the applied state as soon as the fence
    /// allows, without waiting for a majority to confirm the ballot: a deposed leader serves
    /// stale reads.
    #[strum(message = "read confirmation")]
    ReadWithoutConfirmation,
    /// Read batching (Q1): a read arriving while a confirmation round is outstanding waits
    /// for that round, whose answers may have been sent before the read arrived.
    #[strum(message = "read batching")]
    ReadJoinsOutstandingRound,
    /// Lease grant (L2): a replica promises a higher ballot while a lease it granted holds,
    /// so a new leader is elected and writes while the old one still answers reads.
    #[strum(message = "lease grant")]
    LeaseOutlivesPromise,
    /// Lease grant (L2'): a replica campaigns while a lease it granted holds, promising its
    /// own higher ballot.
    #[strum(message = "lease grant")]
    LeaseGrantorCampaigns,
    /// Lease length (L3): the leader trusts the whole grant on its own clock, with no margin
    /// for the clocks' drift.
    #[strum(message = "lease length")]
    LeaseBeyondDrift,
    /// Lease length (L3, L4): the lease is counted from the round's confirmation rather than
    /// from when it was sent.
    #[strum(message = "lease length")]
    LeaseFromArrival,
    /// Lease grant (L6): a restarted replica promises at once, though it may have granted a
    /// lease it no longer remembers.
    #[strum(message = "lease grant")]
    LeaseForgottenOnRestart,
}

impl Mutant {
    /// Every mutant, in declaration order.
    pub const ALL: &'static [Mutant] = <Mutant as VariantArray>::VARIANTS;

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The class of Paxos mistake it stands for.
    pub fn class(self) -> &'static str {
        self.get_message().unwrap_or_default()
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
                catch_up_entries_max: crate::multi::CATCH_UP_ENTRIES_MAX,
            };
            let majority = config.majority();
            assert_eq!(majority, replicas as usize / 2 + 1);
            let short = with_mutant(Mutant::QuorumOneShort, || config.majority());
            assert_eq!(short, majority - 1, "{replicas} replicas");
        }
    }
}
