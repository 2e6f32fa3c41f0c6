//! Time in the core: the timers of `specs/protocol.md` ("Timers": M1's election timer, the
//! heartbeat H1, retransmission R1 and the catch-up request K5) and the deadlines of leader
//! leases (L1–L6, [`Lease`]), on a clock the runtime advances with
//! [`crate::multi::Input::Tick`].
//!
//! The core reads no clock. The runtime passes the time of its monotonic clock in every
//! `Tick` (milliseconds from an origin it fixes, its start), asks
//! [`crate::multi::Replica::next_deadline`] when to tick next, and ticks before it steps a
//! batch of other inputs, so that a deadline pushed back by a message is measured from the
//! present. Election jitter comes from a generator seeded by the configuration: a core fed
//! the same inputs does the same thing, which is what conformance and replays rely on.

use serde::{Deserialize, Serialize};

use super::types::Slot;
use crate::ballot::Ballot;

/// Milliseconds on the runtime's monotonic clock.
pub type Millis = u64;

/// The timers' lengths: core configuration, with the bounds [`Timing::validate`] enforces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// A replica that does not lead and hears no leader for a delay drawn from
    /// `[election_timeout_min_ms, election_timeout_max_ms)` starts phase 1 (M1).
    pub election_timeout_min_ms: Millis,
    pub election_timeout_max_ms: Millis,
    /// A leader sends a heartbeat to every other replica this often (H1): at most half the
    /// least election timeout, so that one lost heartbeat does not start an election.
    pub heartbeat_interval_ms: Millis,
    /// A leader re-sends the Accept of a slot in flight for a whole interval to the replicas
    /// whose vote it has not counted (R1).
    pub retransmit_interval_ms: Millis,
    /// A follower asks the replica it promised for what it may have missed (a lost Decide,
    /// a snapshot), and a leader below its floor asks every other, this often (K5).
    pub catch_up_interval_ms: Millis,
    /// Seeds the election jitter: replicas of one cluster should have different seeds, or
    /// they draw the same delays and campaign against each other at the same moments.
    pub jitter_seed: u64,
    /// Leader leases (L1–L6): how long a replica that answers a confirmation round promises
    /// no higher ballot, on its own clock; 0 turns leases off.
    pub lease_ms: Millis,
    /// The most two replicas' clocks can disagree over `lease_ms` (A-clock): a leader trusts
    /// its lease for `lease_ms - lease_margin_ms` of its own clock after the round (L3).
    pub lease_margin_ms: Millis,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            heartbeat_interval_ms: 50,
            retransmit_interval_ms: 200,
            catch_up_interval_ms: 50,
            jitter_seed: 0,
            lease_ms: 0,
            lease_margin_ms: 0,
        }
    }
}

/// Why a [`Timing`] cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimingError {
    /// Not `0 < election_timeout_min_ms < election_timeout_max_ms`.
    ElectionRange { min: Millis, max: Millis },
    /// A heartbeat interval of zero or above half the least election timeout.
    HeartbeatTooSlow {
        heartbeat: Millis,
        election_min: Millis,
    },
    /// A retransmit or catch-up interval of zero (the leader would spin).
    ZeroInterval(&'static str),
    /// A lease no longer than its margin: the leader could never trust it (L3).
    LeaseWithinMargin { lease: Millis, margin: Millis },
    /// A lease at least the least election timeout: a live leader's grantors would hold
    /// back elections (L2') for longer than a timeout, and failover would exceed twice it.
    LeaseOutlastsElection { lease: Millis, election_min: Millis },
    /// A lease margin with leases off.
    MarginWithoutLease,
}

impl std::fmt::Display for TimingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimingError::ElectionRange { min, max } => write!(
                f,
                "timing: need 0 < election_timeout_min_ms ({min}) < election_timeout_max_ms ({max})"
            ),
            TimingError::HeartbeatTooSlow {
                heartbeat,
                election_min,
            } => write!(
                f,
                "timing: heartbeat_interval_ms ({heartbeat}) must be positive and at most half \
                 of election_timeout_min_ms ({election_min}), or followers time out under a \
                 live leader"
            ),
            TimingError::ZeroInterval(name) => write!(f, "timing: {name} must be positive"),
            TimingError::LeaseWithinMargin { lease, margin } => write!(
                f,
                "timing: lease_ms ({lease}) must exceed lease_margin_ms ({margin}), the most \
                 two clocks can disagree over a lease, or no lease can be trusted"
            ),
            TimingError::LeaseOutlastsElection {
                lease,
                election_min,
            } => write!(
                f,
                "timing: lease_ms ({lease}) must be below election_timeout_min_ms \
                 ({election_min}): a replica that granted a lease neither campaigns nor \
                 promises until it ends"
            ),
            TimingError::MarginWithoutLease => {
                write!(f, "timing: lease_margin_ms needs lease_ms (leases are off)")
            }
        }
    }
}

impl Timing {
    pub fn validate(&self) -> Result<(), TimingError> {
        let (min, max) = (self.election_timeout_min_ms, self.election_timeout_max_ms);
        if min == 0 || min >= max {
            return Err(TimingError::ElectionRange { min, max });
        }
        let heartbeat = self.heartbeat_interval_ms;
        if heartbeat == 0 || heartbeat.saturating_mul(2) > min {
            return Err(TimingError::HeartbeatTooSlow {
                heartbeat,
                election_min: min,
            });
        }
        if self.retransmit_interval_ms == 0 {
            return Err(TimingError::ZeroInterval("retransmit_interval_ms"));
        }
        if self.catch_up_interval_ms == 0 {
            return Err(TimingError::ZeroInterval("catch_up_interval_ms"));
        }
        let (lease, margin) = (self.lease_ms, self.lease_margin_ms);
        if lease == 0 && margin > 0 {
            return Err(TimingError::MarginWithoutLease);
        }
        if lease > 0 && lease <= margin {
            return Err(TimingError::LeaseWithinMargin { lease, margin });
        }
        if lease >= min {
            return Err(TimingError::LeaseOutlastsElection {
                lease,
                election_min: min,
            });
        }
        Ok(())
    }

    pub fn leases(&self) -> bool {
        self.lease_ms > 0
    }

    /// L3: how long a lease lasts on the leader's clock after its round is sent.
    pub fn trusted_lease_ms(&self) -> Millis {
        self.lease_ms.saturating_sub(self.lease_margin_ms)
    }
}

/// The deadlines of leader leases (L1–L6), each a reading of this replica's clock
/// ([`Timers::now_ms`]) and `None` once passed (or never set), as the model keeps them.
/// Volatile: a restart forgets them, and L6 stands in for the grant it forgot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// L1, L6: this replica promises no ballot above its promise, and does not campaign,
    /// until its clock reads this.
    pub grant_until: Option<Millis>,
    /// L3: the end of a lease based on the outstanding confirmation round.
    pub round_lease: Option<Millis>,
    /// L4: the lease this leader holds.
    pub lease_until: Option<Millis>,
}

impl Lease {
    pub fn grant_active(&self, now: Millis) -> bool {
        self.grant_until.is_some_and(|until| now < until)
    }

    pub fn lease_active(&self, now: Millis) -> bool {
        self.lease_until.is_some_and(|until| now < until)
    }

    /// L1, L6: promise nothing new until `until` (a grant only ever extends).
    pub fn grant(&mut self, until: Millis) {
        self.grant_until = Some(self.grant_until.map_or(until, |g| g.max(until)));
    }

    /// L4: the outstanding round is confirmed; its lease is the leader's.
    pub fn confirm_round(&mut self) {
        if let Some(round) = self.round_lease.take() {
            self.lease_until = Some(self.lease_until.map_or(round, |l| l.max(round)));
        }
    }

    /// M12: a leader that steps down holds no lease and waits for no round.
    pub fn drop_leadership(&mut self) {
        self.round_lease = None;
        self.lease_until = None;
    }

    /// Forgets every deadline at or before `now`.
    pub fn forget_passed(&mut self, now: Millis) {
        for deadline in [
            &mut self.grant_until,
            &mut self.round_lease,
            &mut self.lease_until,
        ] {
            if deadline.is_some_and(|at| at <= now) {
                *deadline = None;
            }
        }
    }
}

/// The timers' state: volatile (a restart starts them afresh), part of
/// [`crate::multi::ReplicaState`] so that conformance can set them and step logs show them.
///
/// Which are armed follows the phase: `election_at_ms` exactly when the replica does not lead,
/// `heartbeat_at_ms` and `retransmit_at_ms` exactly when it leads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// The time of the latest tick.
    pub now_ms: Millis,
    /// When the election timer fires (M1), unless a leader is heard first.
    pub election_at_ms: Option<Millis>,
    /// The election delay drawn when the timer was last armed or fired: hearing the leader
    /// restarts the timer with it, without a new draw (raft-rs keeps its randomized timeout
    /// the same way), which keeps the per-message cost of a follower at a store.
    pub election_timeout_ms: Millis,
    /// When the leader's next heartbeat goes out (H1).
    pub heartbeat_at_ms: Option<Millis>,
    /// When the leader next re-sends what is still in flight (R1).
    pub retransmit_at_ms: Option<Millis>,
    /// The leader's `next_slot` at the previous retransmission check: a slot below it still
    /// in flight at the next check has waited a whole interval for its votes.
    pub retransmit_below: Slot,
    /// When this replica next asks for what it may have missed (K5): armed at every
    /// replica, always.
    pub catch_up_at_ms: Option<Millis>,
    /// The highest ballot a leader was heard at, and when: where to send clients.
    pub leader_heard: Option<(Ballot, Millis)>,
    /// The election jitter generator's state (SplitMix64).
    pub jitter: u64,
}

impl Timers {
    /// Timers at time 0 with the generator seeded from `timing`.
    pub fn new(timing: &Timing) -> Self {
        Timers {
            jitter: timing.jitter_seed,
            ..Timers::default()
        }
    }

    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        [
            self.election_at_ms,
            self.heartbeat_at_ms,
            self.retransmit_at_ms,
            self.catch_up_at_ms,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether `deadline` is armed and has passed.
    pub fn due(&self, deadline: Option<Millis>) -> bool {
        deadline.is_some_and(|at| at <= self.now_ms)
    }

    /// The next election deadline: `now + extra` plus a delay drawn from the election range,
    /// which [`Timers::election_restart`] reuses.
    pub fn election_deadline(&mut self, timing: &Timing, extra: Millis) -> Millis {
        let span = timing
            .election_timeout_max_ms
            .saturating_sub(timing.election_timeout_min_ms)
            .max(1);
        self.election_timeout_ms = timing.election_timeout_min_ms + self.next_random() % span;
        self.now_ms
            .saturating_add(extra)
            .saturating_add(self.election_timeout_ms)
    }

    /// The election deadline after the leader was heard: now plus the delay last drawn.
    pub fn election_restart(&self) -> Millis {
        self.now_ms.saturating_add(self.election_timeout_ms)
    }

    /// SplitMix64: small, fast, and every seed (zero included) gives a full-period sequence.
    fn next_random(&mut self) -> u64 {
        self.jitter = self.jitter.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.jitter;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_delays_stay_in_the_range_and_differ_by_seed() {
        let timing = Timing::default();
        let draws = |seed| {
            let mut timers = Timers::new(&Timing {
                jitter_seed: seed,
                ..timing.clone()
            });
            (0..64)
                .map(|_| timers.election_deadline(&timing, 0))
                .collect::<Vec<_>>()
        };
        let (a, b) = (draws(1), draws(2));
        assert!(a.iter().chain(&b).all(|&d| (300..600).contains(&d)));
        assert_ne!(a, b, "two seeds draw two sequences");
        assert_eq!(a, draws(1), "one seed draws one sequence");
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(
            distinct.len() > 32,
            "jitter spreads the delays: {distinct:?}"
        );
    }

    /// The generator is SplitMix64 as published (Vigna's `splitmix64.c`): seeded with 0, its
    /// first outputs are the reference ones. A mixing step gone wrong still draws delays in
    /// the range, which the test above cannot tell.
    #[test]
    fn the_jitter_generator_draws_splitmix64s_reference_sequence() {
        let mut timers = Timers::new(&Timing {
            jitter_seed: 0,
            ..Timing::default()
        });
        let drawn: Vec<u64> = (0..3).map(|_| timers.next_random()).collect();
        assert_eq!(
            drawn,
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F
            ]
        );
    }

    /// L1, L4: a grant or a lease holds until the clock reads its end, and not at that
    /// reading (the core also forgets it then: `forget_passed`).
    #[test]
    fn a_grant_and_a_lease_end_when_the_clock_reads_their_end() {
        let lease = Lease {
            grant_until: Some(10),
            round_lease: None,
            lease_until: Some(20),
        };
        assert!(lease.grant_active(9));
        assert!(!lease.grant_active(10));
        assert!(lease.lease_active(19));
        assert!(!lease.lease_active(20));
        assert!(!Lease::default().grant_active(0));
        assert!(!Lease::default().lease_active(0));
    }

    #[test]
    fn timing_bounds_are_enforced_with_reasons() {
        assert_eq!(Timing::default().validate(), Ok(()));
        let bad = |t: Timing| t.validate().expect_err("refused").to_string();
        let base = Timing::default();
        let inverted = Timing {
            election_timeout_min_ms: 600,
            election_timeout_max_ms: 600,
            ..base.clone()
        };
        assert!(bad(inverted).contains("election_timeout_min_ms (600) <"));
        let slow = Timing {
            heartbeat_interval_ms: 151,
            ..base.clone()
        };
        assert!(bad(slow).contains("at most half"));
        let half = Timing {
            heartbeat_interval_ms: 150,
            ..base.clone()
        };
        assert_eq!(half.validate(), Ok(()), "exactly half is allowed");
        let spin = Timing {
            retransmit_interval_ms: 0,
            ..base.clone()
        };
        assert!(bad(spin).contains("retransmit_interval_ms must be positive"));
        let spin = Timing {
            catch_up_interval_ms: 0,
            ..base
        };
        assert!(bad(spin).contains("catch_up_interval_ms must be positive"));
    }

    #[test]
    fn the_next_deadline_is_the_earliest_armed_one() {
        let mut timers = Timers::default();
        assert_eq!(timers.next_deadline(), None);
        timers.heartbeat_at_ms = Some(50);
        timers.retransmit_at_ms = Some(20);
        assert_eq!(timers.next_deadline(), Some(20));
        timers.now_ms = 20;
        assert!(timers.due(timers.retransmit_at_ms));
        assert!(!timers.due(timers.heartbeat_at_ms));
        assert!(!timers.due(None));
    }
}
