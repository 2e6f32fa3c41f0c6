//! The Multi-Paxos replica: acceptor, leader candidate, learner and state machine in one
//! deterministic state machine. One handler per input; each names the rule of
//! `specs/protocol.md` (M1–M12, K1–K7) it implements.

use std::collections::{hash_map, BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::{smallvec, SmallVec};

use super::mutants::{self, Mutant};
use super::runs::Runs;
use super::slot_map::SlotMap;
use super::state_machine::StateMachine;
use super::timers::{Lease, Millis, Timers};
use super::types::{
    ClientId, Command, CommandId, Config, ConfigError, Durable, Effect, Entry, Input, Message,
    ReadId, Record, Slot, Vote,
};
use crate::ballot::{Ballot, NodeId};
use crate::rules::{self, PrepareVerdict};

/// How many of the leader's in-flight slots hold each request ([`requests_in_flight`]).
type InFlight = HashMap<CommandId, u32, ahash::RandomState>;

/// The client table (M9): per client, its last executed request and that request's output.
/// Read and written for every command applied, the hottest map of a busy replica, so a hash
/// map; aHash with random keys, since clients choose their ids.
pub type ClientTable<Out> = HashMap<ClientId, ClientEntry<Out>, ahash::RandomState>;

/// The snapshot a replica running state machine `SM` holds at its compaction point, sends
/// (K2, K6, K7) and installs (K4): shared, since one may go to several replicas in a step.
pub type SnapshotOf<SM> =
    Arc<AppliedState<<SM as StateMachine>::Snapshot, <SM as StateMachine>::Output>>;

/// The effect type of a replica running state machine `SM`.
pub type ReplicaEffect<SM> =
    Effect<<SM as StateMachine>::Op, <SM as StateMachine>::Output, SnapshotOf<SM>>;

/// The message type of a replica running state machine `SM`.
pub type MessageOf<SM> = Message<<SM as StateMachine>::Op, SnapshotOf<SM>>;

/// The input type of a replica running state machine `SM`.
pub type InputOf<SM> = Input<<SM as StateMachine>::Op, SnapshotOf<SM>>;

/// The replica's role in the current ballot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase<Op> {
    Follower,
    /// Phase 1 at the replica's own ballot `(round, id)`.
    Preparing {
        /// Replicas whose Promise has been counted, this one included.
        promises: BTreeSet<NodeId>,
        /// Per slot, the highest-ballot vote among the counted Promises and the own votes.
        merged: SlotMap<(Ballot, Entry<Op>)>,
        /// The highest compaction point among the counted Promises and the own (K3): nothing
        /// is proposed below it.
        floor: Slot,
    },
    /// Phase 2 at the replica's own ballot `(round, id)`.
    Leading {
        /// The next slot for a new command.
        next_slot: Slot,
        /// Per slot proposed at this ballot and not chosen yet, the replicas that accepted it
        /// (this one included).
        votes: SlotMap<Voters>,
    },
}

/// The replicas that accepted a slot's proposal at the leader's ballot, in ascending order.
/// Inline up to seven replicas: the leader makes one per slot it proposes, and a heap set
/// each (a `BTreeSet`, allocated, searched and freed per command) was a tenth of the core's
/// instructions per command. Serialised as a sequence of ids, as a set would be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Voters(SmallVec<[NodeId; 7]>);

impl Voters {
    /// The proposer's own vote, counted when it proposes.
    pub fn only(id: NodeId) -> Self {
        Voters(smallvec![id])
    }

    /// Counts `id`; `false` if it was counted already.
    pub fn insert(&mut self, id: NodeId) -> bool {
        match self.0.binary_search(&id) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, id);
                true
            }
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.0.binary_search(&id).is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<NodeId> for Voters {
    fn from_iter<I: IntoIterator<Item = NodeId>>(ids: I) -> Self {
        let mut voters = Voters::default();
        for id in ids {
            voters.insert(id);
        }
        voters
    }
}

impl Serialize for Voters {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// Sorted and deduplicated on the way in, whatever order the input has.
impl<'de> Deserialize<'de> for Voters {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ids = Vec::<NodeId>::deserialize(deserializer)?;
        Ok(ids.into_iter().collect())
    }
}

impl<Op> Phase<Op> {
    /// `"follower"`, `"preparing"` or `"leading"`, as in the trace events.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Follower => "follower",
            Phase::Preparing { .. } => "preparing",
            Phase::Leading { .. } => "leading",
        }
    }
}

/// A client's row in the client table: its last executed request and that request's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEntry<Out> {
    pub last_seq: u64,
    pub output: Out,
}

/// A leader's read-index state (Q1–Q5, specs/protocol.md). Volatile, and empty at a replica
/// that does not lead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadIndex<Op> {
    /// M4's `next_slot`: every slot that can hold a command an earlier leader acknowledged is
    /// below it, and reads wait until the applied prefix reaches it (Q4).
    pub fence: Slot,
    /// The last confirmation round started in this term (rounds count from 1).
    pub started: u64,
    /// The last round a majority confirmed.
    pub confirmed: u64,
    /// The replicas that confirmed round `started` (the leader counts itself apart).
    pub acks: Voters,
    /// The reads waiting, in arrival order.
    pub waiting: Vec<WaitingRead<Op>>,
}

impl<Op> Default for ReadIndex<Op> {
    fn default() -> Self {
        ReadIndex {
            fence: 0,
            started: 0,
            confirmed: 0,
            acks: Voters::default(),
            waiting: Vec::new(),
        }
    }
}

impl<Op> ReadIndex<Op> {
    /// A confirmation round is out: started and not yet confirmed by a majority.
    pub fn is_round_outstanding(&self) -> bool {
        self.confirmed < self.started
    }
}

/// A read waiting at the leader for confirmation round `round` (Q1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingRead<Op> {
    pub id: ReadId,
    pub op: Op,
    pub round: u64,
}

/// Everything a replica holds besides its configuration and state machine, as plain data: the
/// read-only view conformance abstracts from, and what it concretises a replica from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState<Op, Out> {
    /// The highest round used for an own ballot, or known to be superseded (M10).
    pub round: u64,
    pub promised: Ballot,
    pub accepted: SlotMap<(Ballot, Entry<Op>)>,
    pub chosen: SlotMap<Entry<Op>>,
    pub phase: Phase<Op>,
    /// Client commands waiting for a slot, in ascending `(client, seq)` order.
    #[serde(with = "crate::multi::types::pending_as_list")]
    pub pending: BTreeMap<CommandId, Command<Op>>,
    /// The length of the applied prefix: slots `0..applied` are chosen and applied.
    pub applied: Slot,
    /// `last_seq[client]` and the output of that request.
    pub clients: ClientTable<Out>,
    /// The round as the records persisted so far rebuild it.
    pub persisted_round: u64,
    /// The promise as the records persisted so far rebuild it (`None`: never written).
    pub persisted_promise: Option<Ballot>,
    /// The compaction point (K1, K4): every slot below it is chosen and applied, and its
    /// accepted and chosen entries are forgotten; the replica's snapshot
    /// ([`Replica::snapshot`]) is the applied state there.
    pub compacted: Slot,
    /// The timers (M1, H1, R1, K5): volatile, and outside the model's state.
    #[serde(default)]
    pub timers: Timers,
    /// The reads waiting at a leader and its confirmation rounds (Q1–Q5): volatile.
    #[serde(default = "ReadIndex::default")]
    pub reads: ReadIndex<Op>,
    /// Leader leases (L1–L6): deadlines on the timers' clock, volatile (L6 covers a restart).
    #[serde(default)]
    pub lease: Lease,
}

/// What a snapshot must hold besides the protocol's durable state to restart a replica whose
/// log was compacted: the applied prefix, the state machine after exactly those slots, and
/// the client table (exactly-once execution must survive the restart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState<S, Out> {
    pub applied: Slot,
    pub state_machine: S,
    pub clients: ClientTable<Out>,
}

/// A Multi-Paxos replica running state machine `SM`.
#[derive(Clone, Debug, PartialEq)]
pub struct Replica<SM: StateMachine> {
    config: Config,
    state: ReplicaState<SM::Op, SM::Output>,
    sm: SM,
    /// The applied state at `state.compacted` (`None` while that is 0): durable (K1, K4 make
    /// it so before anything else), and what a replica behind it is sent.
    snapshot: Option<SnapshotOf<SM>>,
    /// Derived from the leading phase's `votes` and `accepted` ([`requests_in_flight`]): how
    /// many slots in flight hold each request, so that M5's "already in flight?" is a lookup,
    /// not a scan of the window. Empty unless leading. A request chosen but not yet applied (a
    /// slot below it is still open) is not in flight: the spec re-proposes it if it arrives
    /// again, and M9 executes it once. A count, because M4 may re-propose one request in two
    /// slots.
    in_flight: InFlight,
}

/// The rule a step applied; `as_str` gives the id of `specs/protocol.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Bootstrap,
    M1,
    M2,
    M2Repeat,
    M2Nack,
    M3,
    M4,
    M5,
    M5Preparing,
    M5Follower,
    M6,
    M6Nack,
    M7,
    M8,
    M10,
    M11,
    /// Compaction: snapshot the applied prefix, forget the log below it.
    K1,
    /// Install a snapshot past the applied prefix.
    K4,
    /// A catch-up request went out.
    K5,
    /// A catch-up request answered with a snapshot or chosen entries.
    K6,
    /// An Accept below the compaction point answered with the snapshot.
    K7,
    /// The leader's heartbeat went out.
    H1,
    /// A heartbeat from the leader: the election timer starts again.
    H2,
    /// The leader re-sent the Accepts still in flight after a whole retransmit interval.
    R1,
    /// A read arrived at the leader: it waits for the next confirmation round.
    Q1,
    /// A read arrived at a replica that does not lead: nothing (the service redirects).
    Q1Follower,
    /// A confirmation request answered: the ballot stands here.
    Q2,
    /// A confirmation request refused: the ballot is below the promise.
    Q2Nack,
    /// A confirmation counted for the outstanding round.
    Q3,
    /// A Prepare above the promise ignored: a lease this replica granted holds.
    L2,
    /// The election timer fired while a lease this replica granted holds: no campaign.
    L2Campaign,
    /// A read answered at arrival under the leader's lease.
    L5,
    /// The input changed nothing ("any other delivery"; a tick with no timer due).
    None,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Bootstrap => "bootstrap",
            Rule::M1 => "M1",
            Rule::M2 => "M2",
            Rule::M2Repeat => "M2'",
            Rule::M2Nack => "M2''",
            Rule::M3 => "M3",
            Rule::M4 => "M4",
            Rule::M5 => "M5",
            Rule::M5Preparing => "M5'",
            Rule::M5Follower => "M5''",
            Rule::M6 => "M6",
            Rule::M6Nack => "M6'",
            Rule::M7 => "M7",
            Rule::M8 => "M8",
            Rule::M10 => "M10",
            Rule::M11 => "M11",
            Rule::K1 => "K1",
            Rule::K4 => "K4",
            Rule::K5 => "K5",
            Rule::K6 => "K6",
            Rule::K7 => "K7",
            Rule::H1 => "H1",
            Rule::H2 => "H2",
            Rule::R1 => "R1",
            Rule::Q1 => "Q1",
            Rule::Q1Follower => "Q1'",
            Rule::Q2 => "Q2",
            Rule::Q2Nack => "Q2'",
            Rule::Q3 => "Q3",
            Rule::L2 => "L2",
            Rule::L2Campaign => "L2'",
            Rule::L5 => "L5",
            Rule::None => "none",
        }
    }
}

/// What one transition did, for its trace event.
struct Transition {
    rule: Rule,
    input: &'static str,
    from: Option<NodeId>,
    ballot: Option<Ballot>,
    slot: Option<Slot>,
    chosen: Option<Slot>,
}

impl Transition {
    fn new(rule: Rule, input: &'static str) -> Self {
        Transition {
            rule,
            input,
            from: None,
            ballot: None,
            slot: None,
            chosen: None,
        }
    }

    fn from(mut self, from: NodeId) -> Self {
        self.from = Some(from);
        self
    }

    fn ballot(mut self, ballot: Ballot) -> Self {
        self.ballot = Some(ballot);
        self
    }

    fn slot(mut self, slot: Slot) -> Self {
        self.slot = Some(slot);
        self
    }

    fn chosen(mut self, slot: Slot) -> Self {
        self.chosen = Some(slot);
        self
    }
}

/// A step's effects while they are produced, appended to the caller's buffer (reused across
/// steps by [`Replica::step_into`]): the step's records first, everything else after.
struct Outbox<'a, Op, Out, Snap> {
    effects: &'a mut Vec<Effect<Op, Out, Snap>>,
    /// Where the step's records end in `effects`, and its other effects begin.
    records_end: usize,
    /// Where the step's effects begin in `effects`.
    start: usize,
}

impl<'a, Op, Out, Snap> Outbox<'a, Op, Out, Snap> {
    fn new(effects: &'a mut Vec<Effect<Op, Out, Snap>>) -> Self {
        let start = effects.len();
        Outbox {
            effects,
            records_end: start,
            start,
        }
    }

    /// A record goes before every non-record effect of the step: the runtime makes it durable
    /// before it performs any of them. A step writes its records before or between its sends
    /// as the rules read; the insertion moves at most the few effects already pushed.
    fn persist(&mut self, record: Record<Op>) {
        self.effects
            .insert(self.records_end, Effect::Persist(record));
        self.records_end += 1;
    }

    /// K1, K4: the snapshot goes with the step's records, before every other effect.
    fn persist_snapshot(&mut self, snapshot: Snap) {
        self.effects
            .insert(self.records_end, Effect::Snapshot(snapshot));
        self.records_end += 1;
    }

    /// Records that `slot` is chosen with this replica's vote there: one more slot for the
    /// step's last record if that is a [`Record::ChosenVotes`] run ending just below `slot`,
    /// else a new run. Only the last record is extended, so every vote the run names was
    /// persisted before the run's record.
    fn persist_chosen_vote(&mut self, slot: Slot) {
        if self.records_end > self.start {
            if let Effect::Persist(Record::ChosenVotes { slot: first, count }) =
                &mut self.effects[self.records_end - 1]
            {
                if first.checked_add(*count) == Some(slot) {
                    *count += 1;
                    return;
                }
            }
        }
        self.persist(Record::ChosenVotes { slot, count: 1 });
    }

    fn push(&mut self, effect: Effect<Op, Out, Snap>) {
        self.effects.push(effect);
    }

    fn persisted(&self) -> usize {
        self.records_end - self.start
    }

    fn sent(&self) -> usize {
        let sends = self.effects[self.records_end..].iter();
        sends.filter(|e| matches!(e, Effect::Send { .. })).count()
    }
}

/// Whether every step checks the replica's invariants: in debug builds, and in any build with
/// the `invariants` feature (conformance turns it on, so its release builds check them too). The
/// checks scan the whole `accepted` map, a cost that grows with the log: release builds of the
/// service skip them.
pub const INVARIANTS_CHECKED: bool = cfg!(any(debug_assertions, feature = "invariants"));

type OutboxOf<'a, SM> =
    Outbox<'a, <SM as StateMachine>::Op, <SM as StateMachine>::Output, SnapshotOf<SM>>;

impl<SM: StateMachine> Replica<SM> {
    /// Bootstrap from empty storage. The initial leader leads at `1.<id>` and persists
    /// `round = 1, promised = 1.<id>`; every other replica is a follower promised to it, with
    /// nothing persisted and its election timer armed. The returned effects do exactly that.
    pub fn new(config: Config, sm: SM) -> Result<(Self, Vec<ReplicaEffect<SM>>), ConfigError> {
        config.validate()?;
        let bootstrap = config.bootstrap_ballot();
        let mut replica = Replica {
            state: ReplicaState::empty(bootstrap, Timers::new(&config.timing)),
            config,
            sm,
            snapshot: None,
            in_flight: InFlight::default(),
        };
        let mut effects = Vec::new();
        let mut out = Outbox::new(&mut effects);
        if replica.config.id == replica.config.initial_leader {
            replica.set_round(1, &mut out);
            replica.set_promised(bootstrap, &mut out);
            replica.state.phase = Phase::Leading {
                next_slot: 0,
                votes: SlotMap::new(),
            };
            // L5': the initial leader's first confirmation round, whose lease later reads use.
            if replica.config.timing.leases() {
                replica.start_confirmation(&mut out);
            }
        }
        replica.start_timers();
        replica.trace(&Transition::new(Rule::Bootstrap, "bootstrap"), &out);
        replica.check_invariants();
        Ok((replica, effects))
    }

    /// M11: restart from storage only, as a follower. The promise is the highest of the
    /// persisted one (the bootstrap promise if none) and every accepted ballot; the chosen
    /// prefix is re-applied to `sm` (which should be empty) without replies. The returned
    /// effects arm the election timer.
    pub fn recover(
        config: Config,
        durable: Durable<SM::Op>,
        sm: SM,
    ) -> Result<(Self, Vec<ReplicaEffect<SM>>), ConfigError> {
        Self::recover_from(config, durable, None, sm, 0)
    }

    /// M11 from a snapshot: as [`Replica::recover`], but the state machine and the client
    /// table are restored from `snapshot` and only the chosen slots from
    /// `snapshot.applied` on are re-applied. The snapshot's applied prefix is the compaction
    /// point (K1, K4): `durable` may lack any entry below it (a compacted log), and those it
    /// still has are forgotten. `now_ms` is the clock's reading at recovery (the runtime's
    /// clock starts at its start: 0), from which L6 counts.
    pub fn recover_from(
        config: Config,
        mut durable: Durable<SM::Op>,
        snapshot: Option<AppliedState<SM::Snapshot, SM::Output>>,
        mut sm: SM,
        now_ms: Millis,
    ) -> Result<(Self, Vec<ReplicaEffect<SM>>), ConfigError> {
        config.validate()?;
        let snapshot = snapshot.filter(|s| s.applied > 0).map(Arc::new);
        let (applied, clients) = match &snapshot {
            None => (0, ClientTable::default()),
            Some(snapshot) => {
                sm.restore(snapshot.state_machine.clone());
                (snapshot.applied, snapshot.clients.clone())
            }
        };
        durable.accepted.remove_below(applied);
        durable.chosen.remove_below(applied);
        let highest_vote = durable.accepted.values().map(|(ballot, _)| *ballot).max();
        let promised = durable.promised.unwrap_or(config.bootstrap_ballot());
        let state = ReplicaState {
            round: durable.round,
            promised: promised.max(highest_vote.unwrap_or(promised)),
            accepted: durable.accepted,
            chosen: durable.chosen,
            phase: Phase::Follower,
            pending: BTreeMap::new(),
            applied,
            clients,
            persisted_round: durable.round,
            persisted_promise: durable.promised,
            compacted: applied,
            timers: Timers {
                now_ms,
                ..Timers::new(&config.timing)
            },
            reads: ReadIndex::default(),
            lease: Lease::default(),
        };
        let mut replica = Replica {
            config,
            state,
            sm,
            snapshot,
            in_flight: InFlight::default(),
        };
        // L6: a grant this replica gave before the crash and forgot may still hold.
        if !mutants::active(Mutant::LeaseForgottenOnRestart) {
            replica.grant_lease();
        }
        // Re-applying sends no replies: its effects are dropped.
        replica.apply_chosen(&mut Outbox::new(&mut Vec::new()));
        replica.start_timers();
        let mut effects = Vec::new();
        let out = Outbox::new(&mut effects);
        replica.trace(&Transition::new(Rule::M11, "recover"), &out);
        replica.check_invariants();
        Ok((replica, effects))
    }

    /// Concretisation for conformance: a replica in exactly `state` with `snapshot` at its
    /// compaction point, which the caller keeps consistent (`sm` has executed the commands of
    /// the snapshot and of `chosen[compacted..applied]` that the client table records;
    /// `promised` is the own ballot when not a follower).
    pub fn from_state(
        config: Config,
        state: ReplicaState<SM::Op, SM::Output>,
        snapshot: Option<SnapshotOf<SM>>,
        sm: SM,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let in_flight = requests_in_flight(&state);
        Ok(Replica {
            config,
            state,
            sm,
            snapshot,
            in_flight,
        })
    }

    /// Applies one input; returns the effects to perform, in order (see [`Effect`]).
    pub fn step(&mut self, input: InputOf<SM>) -> Vec<ReplicaEffect<SM>> {
        let mut effects = Vec::new();
        self.step_into(input, &mut effects);
        effects
    }

    /// [`Replica::step`], appending the effects to `effects`: a runtime that drains the buffer
    /// after each step reuses one allocation for every step.
    pub fn step_into(&mut self, input: InputOf<SM>, effects: &mut Vec<ReplicaEffect<SM>>) {
        let was_leading = self.is_leading();
        let mut out = Outbox::new(effects);
        let transition = match input {
            Input::Tick { now_ms } => self.on_tick(now_ms, &mut out),
            Input::ClientRequest(command) => self.on_requests([command], &mut out),
            Input::ClientRequests(mut commands) => {
                // The order the requests one by one are checked in (M5 proposes after each).
                commands.sort_by_key(Command::id);
                self.on_requests(commands, &mut out)
            }
            Input::Message { from, msg } => self.on_message(from, msg, &mut out),
            Input::Compact => self.on_compact(&mut out),
            Input::Read { id, op } => self.on_read(id, op, &mut out),
        };
        // Q4 after every step: whichever rule made a read ready (Q3, M7, M8, K4) answers it.
        self.serve_reads(&mut out);
        self.sync_timers(was_leading);
        self.trace(&transition, &out);
        self.check_invariants();
    }

    // ---------------------------------------------------------------- read-only view

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn state(&self) -> &ReplicaState<SM::Op, SM::Output> {
        &self.state
    }

    pub fn round(&self) -> u64 {
        self.state.round
    }

    pub fn promised(&self) -> Ballot {
        self.state.promised
    }

    /// The own ballot `(round, id)`: the one in use while preparing or leading.
    pub fn ballot(&self) -> Ballot {
        Ballot {
            round: self.state.round,
            node: self.config.id,
        }
    }

    pub fn accepted(&self) -> &SlotMap<(Ballot, Entry<SM::Op>)> {
        &self.state.accepted
    }

    pub fn chosen(&self) -> &SlotMap<Entry<SM::Op>> {
        &self.state.chosen
    }

    pub fn phase(&self) -> &Phase<SM::Op> {
        &self.state.phase
    }

    pub fn is_leading(&self) -> bool {
        matches!(self.state.phase, Phase::Leading { .. })
    }

    /// Waiting client commands, ascending by `(client, seq)`.
    pub fn pending(&self) -> impl Iterator<Item = &Command<SM::Op>> {
        self.state.pending.values()
    }

    pub fn applied(&self) -> Slot {
        self.state.applied
    }

    pub fn clients(&self) -> &ClientTable<SM::Output> {
        &self.state.clients
    }

    pub fn state_machine(&self) -> &SM {
        &self.sm
    }

    /// The state and the state machine, taken back from a replica [`Replica::from_state`]
    /// built for one step: trace validation lends each step's replica the run's executed
    /// sequence and its log since the last snapshot rather than copying them.
    pub fn into_parts(self) -> (ReplicaState<SM::Op, SM::Output>, SM) {
        (self.state, self.sm)
    }

    /// Armed exactly when not leading.
    pub fn election_timer_armed(&self) -> bool {
        self.state.timers.election_at_ms.is_some()
    }

    /// When the runtime must tick next ([`Input::Tick`]): the earliest armed timer. Never
    /// `None` for a replica of a valid configuration (a leader's heartbeat, anyone else's
    /// election timer), but a runtime need not rely on it.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.state.timers.next_deadline()
    }

    /// The time of the latest tick.
    pub fn now_ms(&self) -> Millis {
        self.state.timers.now_ms
    }

    /// Where to send a client: this replica while it leads; otherwise the highest-ballot
    /// leader heard within the longest election timeout, else the proposer of the promise;
    /// `None` if that is this replica (a candidate, or a deposed leader).
    pub fn leader(&self) -> Option<NodeId> {
        if self.is_leading() {
            return Some(self.config.id);
        }
        let timers = &self.state.timers;
        let fresh = self.config.timing.election_timeout_max_ms;
        let heard = timers
            .leader_heard
            .filter(|(_, at)| timers.now_ms.saturating_sub(*at) < fresh)
            .map(|(ballot, _)| ballot.node);
        heard
            .or(Some(self.state.promised.node))
            .filter(|&leader| leader != self.config.id)
    }

    /// What a snapshot at the current applied prefix must hold besides [`Replica::durable`].
    pub fn applied_state(&self) -> AppliedState<SM::Snapshot, SM::Output> {
        AppliedState {
            applied: self.state.applied,
            state_machine: self.sm.snapshot(),
            clients: self.state.clients.clone(),
        }
    }

    /// The snapshot at the compaction point (`None` while that is 0): the applied state there.
    pub fn snapshot(&self) -> Option<&SnapshotOf<SM>> {
        self.snapshot.as_ref()
    }

    /// The compaction point (K1, K4).
    pub fn compacted(&self) -> Slot {
        self.state.compacted
    }

    /// The state the records persisted so far rebuild ([`Durable::from_records`] of them).
    pub fn durable(&self) -> Durable<SM::Op> {
        self.state.durable()
    }

    // ---------------------------------------------------------------- handlers

    /// Time passes: the election timer (M1) at a replica that does not lead; retransmission
    /// (R1) and the heartbeat (H1) at a leader, in that order; then, at any replica, the
    /// catch-up request (K5). A tick before the latest one counts as the latest. The step's
    /// rule is the first that fired.
    fn on_tick(&mut self, now_ms: Millis, out: &mut OutboxOf<SM>) -> Transition {
        let timers = &mut self.state.timers;
        timers.now_ms = timers.now_ms.max(now_ms);
        self.state.lease.forget_passed(timers.now_ms);
        let transition = self.on_timers(out);
        let timers = &mut self.state.timers;
        if !timers.due(timers.catch_up_at_ms) {
            return transition;
        }
        timers.catch_up_at_ms = Some(timers.now_ms + self.config.timing.catch_up_interval_ms);
        let asked = self.request_catch_up(out);
        match transition.rule {
            Rule::None if asked => Transition::new(Rule::K5, "tick"),
            _ => transition,
        }
    }

    /// The election timer (M1) or the leader's timers (R1, H1), as [`Self::on_tick`] says.
    fn on_timers(&mut self, out: &mut OutboxOf<SM>) -> Transition {
        let leading = self.is_leading();
        let timers = &mut self.state.timers;
        if !leading {
            if !timers.due(timers.election_at_ms) {
                return Transition::new(Rule::None, "tick");
            }
            let transition = self.on_election_timeout(out);
            // The timer runs on after it fires, until the replica leads.
            self.arm_election(0);
            return transition;
        }
        let mut rule = Rule::None;
        if timers.due(timers.retransmit_at_ms) {
            timers.retransmit_at_ms =
                Some(timers.now_ms + self.config.timing.retransmit_interval_ms);
            if self.retransmit(out) {
                rule = Rule::R1;
            }
        }
        let timers = &mut self.state.timers;
        if timers.due(timers.heartbeat_at_ms) {
            timers.heartbeat_at_ms = Some(timers.now_ms + self.config.timing.heartbeat_interval_ms);
            let heartbeat = Message::Heartbeat {
                ballot: self.ballot(),
            };
            self.send_to_others(heartbeat, out);
            if rule == Rule::None {
                rule = Rule::H1;
            }
        }
        Transition::new(rule, "tick")
    }

    /// R1: re-send, to every replica whose vote is not counted, the Accept of each slot that
    /// was in flight at the previous check and still is, one Accept per run, and to every
    /// replica that has not confirmed it, the outstanding confirmation round's `Confirm` (a
    /// lost one would leave every read waiting); `true` if any went out. Each is a message
    /// already sent at this ballot: a duplicate, which the model's network allows.
    fn retransmit(&mut self, out: &mut OutboxOf<SM>) -> bool {
        let Phase::Leading { next_slot, votes } = &self.state.phase else {
            return false;
        };
        let below = std::mem::replace(&mut self.state.timers.retransmit_below, *next_slot);
        let ballot = self.ballot();
        let mut resent = false;
        for to in self.config.others() {
            let mut runs = Runs::new();
            let mut send_run = |run: Option<(Slot, Vec<Entry<SM::Op>>)>| {
                if let Some((slot, entries)) = run {
                    let accept = Message::Accept {
                        ballot,
                        slot,
                        entries,
                    };
                    out.push(send(to, accept));
                    resent = true;
                }
            };
            for (slot, voters) in votes.range(..below) {
                if voters.contains(to) {
                    continue;
                }
                if let Some((_, entry)) = self.state.accepted.get(&slot) {
                    send_run(runs.push(slot, entry.clone()));
                }
            }
            send_run(runs.finish());
            let reads = &self.state.reads;
            if reads.is_round_outstanding() && !reads.acks.contains(to) {
                let round = reads.started;
                out.push(send(to, Message::Confirm { ballot, round }));
                resent = true;
            }
        }
        resent
    }

    /// H2: a heartbeat from the leader at `ballot`, at or above the promise, restarts the
    /// election timer. A heartbeat below the promise, or whose ballot is not its sender's,
    /// changes nothing.
    fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot) -> Transition {
        if ballot < self.state.promised || ballot.node != from {
            return Transition::new(Rule::None, "heartbeat").ballot(ballot);
        }
        self.heard_leader(ballot);
        if mutants::active(Mutant::HeartbeatRaisesPromise) && ballot > self.state.promised {
            self.state.promised = ballot;
        }
        Transition::new(Rule::H2, "heartbeat").ballot(ballot)
    }

    /// K5: a follower asks the replica it promised for what it may have missed; a follower
    /// whose promise is its own ballot (a leader that restarted or was refused: it hears the
    /// new leader's heartbeats but promises it nothing until its next Accept) and a leader
    /// below its floor ([`Self::below_floor`]) ask every other replica. `true` if a request
    /// went out.
    fn request_catch_up(&mut self, out: &mut OutboxOf<SM>) -> bool {
        let status = Message::Status {
            applied: self.state.applied,
        };
        let leader = self.state.promised.node;
        match self.state.phase {
            Phase::Follower if leader != self.config.id => {
                out.push(send(leader, status));
                true
            }
            Phase::Follower if !mutants::active(Mutant::OwnBallotFollowerAsksNoOne) => {
                self.send_to_others(status, out);
                true
            }
            Phase::Leading { .. } if self.below_floor() => {
                self.send_to_others(status, out);
                true
            }
            _ => false,
        }
    }

    /// K3, K5: a leader is below its floor when the first slot it has not applied is below
    /// `next_slot` and holds no proposal of its own (and is not known chosen, M9 would have
    /// applied it): a slot another leader chose, below a compaction point a Promise reported.
    fn below_floor(&self) -> bool {
        let Phase::Leading { next_slot, .. } = self.state.phase else {
            return false;
        };
        let gap = self.state.applied;
        let own = self.ballot();
        gap < next_slot
            && !self.state.chosen.contains_key(&gap)
            && self.state.accepted.get(&gap).is_none_or(|(b, _)| *b != own)
    }

    /// K6: a replica below the compaction point gets the snapshot, and the chosen entries at
    /// or above both the request and the compaction point follow, learned as Decides (M8).
    fn on_status(&mut self, from: NodeId, applied: Slot, out: &mut OutboxOf<SM>) -> Transition {
        let compacted = self.state.compacted;
        let mut answered = false;
        if applied < compacted {
            if let Some(snapshot) = &self.snapshot {
                let state = Arc::clone(snapshot);
                out.push(send(from, Message::Snapshot { state }));
                answered = true;
            }
        }
        let entries: Vec<_> = self
            .state
            .chosen
            .range(applied.max(compacted)..)
            .take(self.config.catch_up_entries_max)
            .map(|(slot, entry)| (slot, entry.clone()))
            .collect();
        if !entries.is_empty() {
            out.push(send(from, Message::CatchUp { entries }));
            answered = true;
        }
        let rule = if answered { Rule::K6 } else { Rule::None };
        Transition::new(rule, "status")
    }

    /// K6's answer: learn each chosen entry as from a Decide (M8), then apply (M9). Safe from
    /// any sender: they are chosen values.
    fn on_catch_up(
        &mut self,
        entries: Vec<(Slot, Entry<SM::Op>)>,
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        let mut transition = Transition::new(Rule::None, "catch_up");
        for (slot, entry) in entries {
            if self.learn(slot, entry, out) {
                transition = Transition::new(Rule::M8, "catch_up").chosen(slot);
            }
        }
        self.apply_chosen(out);
        transition
    }

    /// K1: snapshot the applied prefix and forget the log below it; the snapshot is made
    /// durable before anything else.
    fn on_compact(&mut self, out: &mut OutboxOf<SM>) -> Transition {
        let applied = self.state.applied;
        if applied <= self.state.compacted {
            return Transition::new(Rule::None, "compact");
        }
        let snapshot = Arc::new(self.applied_state());
        out.persist_snapshot(Arc::clone(&snapshot));
        self.compact_to(snapshot);
        Transition::new(Rule::K1, "compact").slot(applied)
    }

    /// K4: install a snapshot past the applied prefix (made durable first): the state
    /// machine and client table from it, the log below it forgotten. What this replica was
    /// asked for and the snapshot executed (pending, or proposed by it as leader below the
    /// snapshot) leaves `pending`, and a leader answers it as M9 would have; then M9 from
    /// the snapshot on, and M5b. A snapshot at or below the applied prefix changes nothing.
    fn on_snapshot(&mut self, state: SnapshotOf<SM>, out: &mut OutboxOf<SM>) -> Transition {
        let c = state.applied;
        let older = c <= self.state.applied;
        if older && !(mutants::active(Mutant::InstallOlderSnapshot) && c != self.state.compacted) {
            return Transition::new(Rule::None, "snapshot").slot(c);
        }
        out.persist_snapshot(Arc::clone(&state));
        let leading = self.is_leading();
        let mut asked: BTreeSet<CommandId> = self.state.pending.keys().copied().collect();
        if leading {
            let own = self.ballot();
            let proposed = self.state.accepted.range(..c);
            let proposed = proposed.filter(|(_, (b, _))| *b == own);
            asked.extend(proposed.filter_map(|(_, (_, e))| e.command().map(Command::id)));
        }
        self.sm.restore(state.state_machine.clone());
        self.state.clients = state.clients.clone();
        self.state.applied = c;
        self.compact_to(state);
        for id in asked {
            if executed(&self.state.clients, id) {
                self.state.pending.remove(&id);
                if leading {
                    out.push(self.reply_from_table(id));
                }
            }
        }
        self.apply_chosen(out);
        self.propose_pending(out);
        Transition::new(Rule::K4, "snapshot").slot(c)
    }

    /// K1, K4: `snapshot` is the applied state at its prefix `c`, now the compaction point:
    /// forget the accepted and chosen entries below it, and a leader's voters there; a leader
    /// proposes nothing below it (every slot there is chosen).
    fn compact_to(&mut self, snapshot: SnapshotOf<SM>) {
        let c = snapshot.applied;
        self.state.accepted.remove_below(c);
        self.state.chosen.remove_below(c);
        if let Phase::Leading { next_slot, votes } = &mut self.state.phase {
            votes.remove_below(c);
            *next_slot = (*next_slot).max(c);
        }
        self.state.compacted = c;
        self.snapshot = Some(snapshot);
        self.in_flight = requests_in_flight(&self.state);
    }

    /// M1: start phase 1 for all slots at a ballot above everything seen.
    fn on_election_timeout(&mut self, out: &mut OutboxOf<SM>) -> Transition {
        let ignored = Transition::new(Rule::None, "tick");
        if self.is_leading() {
            return ignored;
        }
        // L2': no campaign while a lease this replica granted holds (the timer runs on).
        if self.grant_active() && !mutants::active(Mutant::LeaseGrantorCampaigns) {
            return Transition::new(Rule::L2Campaign, "tick");
        }
        let seen = self.state.round.max(self.state.promised.round);
        let Some(round) = seen.checked_add(1) else {
            return ignored;
        };
        let ballot = self.begin_phase_1(round, out);
        let applied = self.state.applied;
        self.send_to_others(Message::Prepare { ballot, applied }, out);
        Transition::new(Rule::M1, "tick").ballot(ballot)
    }

    fn on_message(
        &mut self,
        from: NodeId,
        msg: MessageOf<SM>,
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        if from == self.config.id || !self.config.is_replica(from) {
            return Transition::new(Rule::None, msg.kind()).from(from);
        }
        let transition = match msg {
            Message::Prepare { ballot, applied } => self.on_prepare(from, ballot, applied, out),
            Message::Promise {
                ballot,
                accepted,
                compacted,
            } => self.on_promise(from, ballot, (accepted, compacted), out),
            Message::Nack { ballot, promised } => self.on_nack(ballot, promised, out),
            Message::Accept {
                ballot,
                slot,
                entries,
            } => self.on_accept(from, ballot, slot, entries, out),
            Message::Accepted {
                ballot,
                slot,
                count,
            } => self.on_accepted(from, ballot, slot, count, out),
            Message::Decide { slot, entries } => self.on_decide(slot, entries, out),
            Message::Heartbeat { ballot } => self.on_heartbeat(from, ballot),
            Message::Status { applied } => self.on_status(from, applied, out),
            Message::CatchUp { entries } => self.on_catch_up(entries, out),
            Message::Snapshot { state } => self.on_snapshot(state, out),
            Message::Confirm { ballot, round } => self.on_confirm(from, ballot, round, out),
            Message::Confirmed { ballot, round } => self.on_confirmed(from, ballot, round, out),
        };
        transition.from(from)
    }

    /// M2 (promise a higher ballot), M2' (repeat), M2'' (Nack a lower one), with K2: the
    /// Promise reports the compaction point, and a candidate whose applied prefix is below
    /// it gets the snapshot too.
    fn on_prepare(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        applied: Slot,
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        let mut verdict = rules::on_prepare(Some(self.state.promised), ballot);
        if mutants::active(Mutant::PromiseBelowPromised) {
            if let PrepareVerdict::Refuse { .. } = verdict {
                verdict = PrepareVerdict::Promise;
            }
        }
        // L2: while a granted lease holds, a higher ballot gets neither a promise nor a Nack.
        if verdict == PrepareVerdict::Promise
            && self.grant_active()
            && !mutants::active(Mutant::LeaseOutlivesPromise)
        {
            return Transition::new(Rule::L2, "prepare").ballot(ballot);
        }
        let rule = match verdict {
            PrepareVerdict::Refuse { promised } => {
                out.push(send(from, Message::Nack { ballot, promised }));
                Rule::M2Nack
            }
            PrepareVerdict::Repeat => {
                out.push(send(from, self.promise(ballot)));
                Rule::M2Repeat
            }
            PrepareVerdict::Promise => {
                self.set_promised(ballot, out);
                out.push(send(from, self.promise(ballot)));
                self.step_down();
                // A candidate this replica promised gets a whole timeout to win.
                self.heard_leader(ballot);
                Rule::M2
            }
        };
        if rule != Rule::M2Nack && applied < self.reported_compaction() {
            if let Some(snapshot) = &self.snapshot {
                let state = Arc::clone(snapshot);
                out.push(send(from, Message::Snapshot { state }));
            }
        }
        Transition::new(rule, "prepare").ballot(ballot)
    }

    /// M3: count a Promise for the own ballot and merge its votes and its compaction point
    /// (K3); M4 on a majority.
    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        (votes, compacted): (Vec<Vote<SM::Op>>, Slot),
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        let ignored = Transition::new(Rule::None, "promise").ballot(ballot);
        let own = self.ballot();
        let majority = self.config.majority();
        let Phase::Preparing {
            promises,
            merged,
            floor,
        } = &mut self.state.phase
        else {
            return ignored;
        };
        if ballot != own || !promises.insert(from) {
            return ignored;
        }
        *floor = (*floor).max(compacted);
        for (slot, vote_ballot, entry) in votes {
            let vote = (vote_ballot, entry);
            let higher = if mutants::active(Mutant::FirstPromisedVote) {
                !merged.contains_key(&slot)
            } else {
                rules::is_higher_vote(merged.get(&slot), &vote)
            };
            if higher && !mutants::active(Mutant::IgnorePromisedVotes) {
                merged.insert(slot, vote);
            }
        }
        if promises.len() < majority {
            return Transition::new(Rule::M3, "promise").ballot(ballot);
        }
        self.become_leader(out);
        Transition::new(Rule::M4, "promise").ballot(ballot)
    }

    /// M4 with K3: re-propose, at the own ballot, every unchosen slot from the floor up to
    /// the highest known one (the highest-ballot vote, or `noop`), then propose pending
    /// commands (M5b), never below the floor.
    fn become_leader(&mut self, out: &mut OutboxOf<SM>) {
        let phase = std::mem::replace(&mut self.state.phase, Phase::Follower);
        let Phase::Preparing {
            mut merged, floor, ..
        } = phase
        else {
            self.state.phase = phase;
            return;
        };
        let top = merged.last_slot().max(self.state.chosen.last_slot());
        let mut votes = SlotMap::new();
        let mut reproposed = BTreeSet::new();
        // Every slot below `applied` is chosen, and so is every slot below a compaction point
        // a Promise reported (K3), so the scan starts at the higher of the two.
        let start = self.state.applied.max(floor);
        let scan = top.map(|top| start..=top).into_iter().flatten();
        let unchosen: Vec<Slot> = scan
            .filter(|s| !self.state.chosen.contains_key(s))
            .collect();
        // One Accept per run of consecutive unchosen slots.
        let mut runs = Runs::new();
        for slot in unchosen {
            let entry = merged.remove(&slot).map_or(Entry::Noop, |(_, entry)| entry);
            reproposed.extend(entry.command().map(Command::id));
            self.accept_own(slot, entry.clone(), out);
            votes.insert(slot, Voters::only(self.config.id));
            if let Some((first, entries)) = runs.push(slot, entry) {
                self.send_accept(first, entries, out);
            }
        }
        if let Some((first, entries)) = runs.finish() {
            self.send_accept(first, entries, out);
        }
        // Every slot below `start` is chosen, also where compaction (K1, K4) has forgotten it
        // and the votes merged from older Promises reach no higher: a proposal there would
        // contest a chosen slot.
        let above = top.map_or(0, |top| top.saturating_add(1));
        let next_slot = above.max(start);
        self.state.phase = Phase::Leading { next_slot, votes };
        self.state.reads = ReadIndex {
            fence: next_slot,
            ..ReadIndex::default()
        };
        self.in_flight = requests_in_flight(&self.state);
        let clients = &self.state.clients;
        self.state
            .pending
            .retain(|id, _| !reproposed.contains(id) && !executed(clients, *id));
        self.propose_pending(out);
    }

    /// M5 (leading), M5' (preparing), M5'' (following: nothing) for each request, in the
    /// order given, M5b after each that becomes pending: the requests one by one, except that
    /// what they propose goes out as one run.
    fn on_requests(
        &mut self,
        commands: impl IntoIterator<Item = Command<SM::Op>>,
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        let mut rule = Rule::None;
        let first = self.next_slot();
        let mut proposed = Vec::new();
        for command in commands {
            let id = command.id();
            match self.state.phase {
                Phase::Follower => rule = Rule::M5Follower,
                Phase::Preparing { .. } => {
                    if !executed(&self.state.clients, id) && !self.state.pending.contains_key(&id) {
                        self.state.pending.insert(id, command);
                        rule = Rule::M5Preparing;
                    }
                }
                Phase::Leading { .. } => {
                    rule = Rule::M5;
                    if executed(&self.state.clients, id) {
                        out.push(self.reply_from_table(id));
                    } else if !self.state.pending.contains_key(&id)
                        && !self.in_flight.contains_key(&id)
                    {
                        // M5b after each new request, as the requests one by one would: a
                        // request already pending or in flight proposes nothing, even where a
                        // Decide (M8) has freed room in the window.
                        match self.room().filter(|_| self.state.pending.is_empty()) {
                            // Alone in `pending`, it would be the least and leave at once:
                            // the common case of a leader with room skips the map.
                            Some(slot) => self.propose(slot, command, &mut proposed, out),
                            None => {
                                self.state.pending.insert(id, command);
                                self.fill_window(&mut proposed, out);
                            }
                        }
                    }
                }
            }
        }
        if let Some(first) = first.filter(|_| !proposed.is_empty()) {
            self.send_accept(first, proposed, out);
        }
        Transition::new(rule, "client_request")
    }

    /// M6: accept every slot of the run at a ballot at or above the promise, answer the
    /// leader once for the run, step down if this replica was preparing or leading at a lower
    /// ballot. M6': Nack below the promise, once for the run. An empty run, or one that runs
    /// past the last slot, comes from no correct leader and is ignored. K7: the slots of the
    /// run below the compaction point are answered with the snapshot, whatever the ballot,
    /// once for the run; the rest of it is an Accept from the compaction point.
    fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        mut slot: Slot,
        mut entries: Vec<Entry<SM::Op>>,
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        let Some(mut count) = run_length(slot, entries.len()) else {
            return Transition::new(Rule::None, "accept")
                .ballot(ballot)
                .slot(slot);
        };
        let compacted = self.state.compacted;
        if slot < compacted {
            if let Some(snapshot) = &self.snapshot {
                let state = Arc::clone(snapshot);
                out.push(send(from, Message::Snapshot { state }));
            }
            let below = compacted - slot;
            if below >= count {
                return Transition::new(Rule::K7, "accept")
                    .ballot(ballot)
                    .slot(slot);
            }
            // `below < count = entries.len()`, so it fits a usize.
            entries.drain(..below as usize);
            (slot, count) = (compacted, count - below);
        }
        if let Err(promised) = rules::may_accept(Some(self.state.promised), ballot) {
            out.push(send(from, Message::Nack { ballot, promised }));
            return Transition::new(Rule::M6Nack, "accept")
                .ballot(ballot)
                .slot(slot);
        }
        self.set_promised(ballot, out);
        // `run_length` checked that the run's slots do not overflow.
        for (i, entry) in (0..).zip(entries) {
            self.set_accepted(slot + i, ballot, entry, out);
        }
        let accepted = Message::Accepted {
            ballot,
            slot,
            count,
        };
        out.push(send(from, accepted));
        let campaigning = !matches!(self.state.phase, Phase::Follower);
        if campaigning && self.ballot() < ballot {
            self.step_down();
        }
        self.heard_leader(ballot);
        Transition::new(Rule::M6, "accept")
            .ballot(ballot)
            .slot(slot)
    }

    /// M7: count a vote for every slot of the run proposed at the own ballot and still in
    /// flight; the slots that reach a majority are chosen with the leader's own proposal:
    /// persist, one Decide per run of them, apply (M9), and refill the window (M5b). As the
    /// run's slots one by one in ascending order would, which is how conformance checks it.
    fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        count: u64,
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        let ignored = Transition::new(Rule::None, "accepted")
            .ballot(ballot)
            .slot(slot);
        let own = self.ballot();
        let majority = self.config.majority();
        let Phase::Leading { votes, .. } = &mut self.state.phase else {
            return ignored;
        };
        if ballot != own {
            return ignored;
        }
        // Only unchosen slots from `applied` up hold voters (`check_invariants`): a chosen slot,
        // or one below the applied prefix that compaction may have forgotten, is skipped.
        let end = slot.saturating_add(count);
        let mut counted = false;
        let mut reached = Vec::new();
        for (at, voters) in votes.range_mut(slot..end) {
            if voters.insert(from) {
                counted = true;
                if voters.len() >= majority {
                    if let Some((_, entry)) = self.state.accepted.get(&at) {
                        reached.push((at, entry.clone()));
                    }
                }
            }
        }
        if !counted {
            return ignored;
        }
        let mut transition = Transition::new(Rule::M7, "accepted")
            .ballot(ballot)
            .slot(slot);
        let chose = !reached.is_empty();
        let decided = reached.iter().map(|(at, entry)| (*at, entry.clone()));
        for (slot, entries) in Runs::cut(decided) {
            self.send_to_others(Message::Decide { slot, entries }, out);
        }
        for (at, entry) in reached {
            self.choose(at, entry, out);
            transition = transition.chosen(at);
            self.apply_and_serve_reads(out);
        }
        // As modelled, only a vote that chooses refills the window: where a Decide (M8) freed
        // room, a vote short of a majority proposes nothing.
        if chose {
            self.propose_pending(out);
        }
        transition
    }

    /// M8: learn the chosen slots of a run from the leader and apply (M9).
    fn on_decide(
        &mut self,
        slot: Slot,
        entries: Vec<Entry<SM::Op>>,
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        let mut transition = Transition::new(Rule::None, "decide").slot(slot);
        if run_length(slot, entries.len()).is_none() {
            return transition;
        }
        // `run_length` checked that the run's slots do not overflow.
        for (i, entry) in (0..).zip(entries) {
            let at = slot + i;
            if self.learn(at, entry, out) {
                transition = Transition::new(Rule::M8, "decide").slot(slot).chosen(at);
                self.apply_and_serve_reads(out);
            }
        }
        transition
    }

    /// M8 for one slot, without M9: `entry` is chosen in `slot`, unless the slot is known
    /// chosen already or applied (K7': below the compaction point too). `true` if learned.
    fn learn(&mut self, slot: Slot, entry: Entry<SM::Op>, out: &mut OutboxOf<SM>) -> bool {
        if self.state.chosen.contains_key(&slot) || slot < self.state.applied {
            return false;
        }
        if mutants::active(Mutant::ApplyOutOfOrder) && slot > self.state.applied {
            if let Some(command) = entry.command() {
                let leading = self.is_leading();
                let row = self.state.clients.entry(command.client);
                Self::execute(&mut self.sm, row, leading, slot, command, out);
            }
        }
        self.choose(slot, entry, out);
        true
    }

    /// M10: the own ballot was refused; remember how high the refusal was and step down.
    /// The raised round is persisted: it costs a write only under contention, and keeps
    /// "the round in storage is the round in memory" true at every step, which is what the
    /// model and the conformance comparison check.
    fn on_nack(&mut self, ballot: Ballot, promised: Ballot, out: &mut OutboxOf<SM>) -> Transition {
        if matches!(self.state.phase, Phase::Follower) || ballot != self.ballot() {
            return Transition::new(Rule::None, "nack").ballot(ballot);
        }
        if promised.round > self.state.round {
            self.set_round(promised.round, out);
        }
        if mutants::active(Mutant::SkipPhase1AfterPreemption) {
            return self.outbid_without_phase_1(promised, out);
        }
        self.step_down();
        Transition::new(Rule::M10, "nack").ballot(ballot)
    }

    // ---------------------------------------------------------------- sub-rules

    /// The [`Mutant::SkipPhase1AfterPreemption`] bug: answer a refusal by re-proposing the own
    /// accepted slots at a ballot above the refusal, as if phase 1 had been won.
    fn outbid_without_phase_1(&mut self, refusal: Ballot, out: &mut OutboxOf<SM>) -> Transition {
        let ballot = self.begin_phase_1(refusal.round.saturating_add(1), out);
        self.become_leader(out);
        Transition::new(Rule::M4, "nack").ballot(ballot)
    }

    /// M5b: while leading, with pending commands, fewer than `window` slots in flight and the
    /// slot bound not reached, propose the least pending command in `next_slot`. Everything
    /// one call proposes goes out as one run.
    fn propose_pending(&mut self, out: &mut OutboxOf<SM>) {
        let Some(first) = self.next_slot() else {
            return;
        };
        let mut proposed = Vec::new();
        self.fill_window(&mut proposed, out);
        if !proposed.is_empty() {
            self.send_accept(first, proposed, out);
        }
    }

    /// M5b without the send: accept the proposals and append their entries to `proposed`,
    /// the run the caller sends from the `next_slot` it read before.
    fn fill_window(&mut self, proposed: &mut Vec<Entry<SM::Op>>, out: &mut OutboxOf<SM>) {
        while let Some(slot) = self.room() {
            let Some((_, command)) = self.state.pending.pop_first() else {
                break;
            };
            self.propose(slot, command, proposed, out);
        }
    }

    /// M5b's guard: leading, below the slot bound and with fewer than `window` slots in
    /// flight. The slot the next proposal takes.
    fn room(&self) -> Option<Slot> {
        let Phase::Leading { next_slot, .. } = self.state.phase else {
            return None;
        };
        let at_limit = self
            .config
            .slot_limit
            .is_some_and(|limit| next_slot >= limit);
        // `Slot::MAX` stays free: `next_slot` must not overflow past it.
        let full = self.slots_in_flight() >= self.config.window || next_slot == Slot::MAX;
        (!at_limit && !full).then_some(next_slot)
    }

    /// M5b's step: propose `command` in `slot`, the `next_slot` that [`Self::room`] gave.
    fn propose(
        &mut self,
        slot: Slot,
        command: Command<SM::Op>,
        proposed: &mut Vec<Entry<SM::Op>>,
        out: &mut OutboxOf<SM>,
    ) {
        let id = command.id();
        let entry = Entry::Command(command);
        self.accept_own(slot, entry.clone(), out);
        proposed.push(entry);
        // A leader behind a slot decided by another one proposes into it (as modelled);
        // that slot is not in flight, and holds no voters, since it is chosen already.
        let in_flight = !self.state.chosen.contains_key(&slot);
        if let Phase::Leading { next_slot, votes } = &mut self.state.phase {
            if in_flight {
                votes.insert(slot, Voters::only(self.config.id));
                *self.in_flight.entry(id).or_default() += 1;
            }
            *next_slot = slot + 1;
        }
    }

    /// The slot the next proposal takes, while leading.
    fn next_slot(&self) -> Option<Slot> {
        match self.state.phase {
            Phase::Leading { next_slot, .. } => Some(next_slot),
            _ => None,
        }
    }

    /// M9 then Q4 after one slot of a run is chosen: a run of slots is its one-slot steps in
    /// order ("Runs of slots"), and the model answers the reads that are ready after each, so
    /// a read made ready by a run's first slot gets the state after that slot, not after the
    /// whole run. (A `CatchUp` is one step in the model, and answers once, at its end.)
    fn apply_and_serve_reads(&mut self, out: &mut OutboxOf<SM>) {
        self.apply_chosen(out);
        self.serve_reads(out);
    }

    /// M9: apply the chosen prefix in slot order. A `noop` and a retried duplicate are
    /// skipped; a leader replies to the client of every command it executes.
    fn apply_chosen(&mut self, out: &mut OutboxOf<SM>) {
        let leading = self.is_leading();
        while let Some(entry) = self.state.chosen.get(&self.state.applied) {
            let slot = self.state.applied;
            if let Some(command) = entry.command() {
                // One search of the client table per command: it is read and written for
                // every command applied, the hottest map of a busy leader.
                let row = self.state.clients.entry(command.client);
                let known = match &row {
                    hash_map::Entry::Occupied(row) => Some(row.get()),
                    hash_map::Entry::Vacant(_) => None,
                };
                if !executed_in(known, command.seq) {
                    Self::execute(&mut self.sm, row, leading, slot, command, out);
                }
            }
            let Some(next) = slot.checked_add(1) else {
                return;
            };
            self.state.applied = next;
        }
    }

    /// Apply `command` to the state machine, record it in its client's `row` of the client
    /// table, and reply if leading.
    fn execute(
        sm: &mut SM,
        row: hash_map::Entry<'_, ClientId, ClientEntry<SM::Output>>,
        leading: bool,
        slot: Slot,
        command: &Command<SM::Op>,
        out: &mut OutboxOf<SM>,
    ) {
        let output = sm.apply(command);
        let executed = ClientEntry {
            last_seq: command.seq,
            output: output.clone(),
        };
        row.insert_entry(executed);
        out.push(Effect::Executed {
            slot,
            command: command.clone(),
            output: output.clone(),
        });
        if leading {
            out.push(Effect::Reply {
                client: command.client,
                seq: command.seq,
                output: Some(output),
            });
        }
    }

    /// L1, L6 (with leases on): no new promise, and no campaign, for `lease_ms` of this
    /// clock from now.
    fn grant_lease(&mut self) {
        let timing = &self.config.timing;
        if timing.leases() {
            let until = self.state.timers.now_ms.saturating_add(timing.lease_ms);
            self.state.lease.grant(until);
        }
    }

    /// Whether a lease this replica granted holds (L2, L2').
    fn grant_active(&self) -> bool {
        self.state.lease.grant_active(self.state.timers.now_ms)
    }

    /// M12: back to following; pending commands are dropped (their clients retry).
    fn step_down(&mut self) {
        self.state.phase = Phase::Follower;
        self.state.pending.clear();
        self.in_flight.clear();
        self.state.reads = ReadIndex::default();
        self.state.lease.drop_leadership();
    }

    // ---------------------------------------------------------------- reads (Q1–Q5)

    /// Q1: a read waits for the next confirmation round, started now if none is outstanding;
    /// Q1': a replica that does not lead does nothing. A read already waiting (the same id)
    /// changes nothing.
    fn on_read(&mut self, id: ReadId, op: SM::Op, out: &mut OutboxOf<SM>) -> Transition {
        if !self.is_leading() {
            return Transition::new(Rule::Q1Follower, "read");
        }
        let reads = &mut self.state.reads;
        if reads.waiting.iter().any(|read| read.id == id) {
            return Transition::new(Rule::None, "read");
        }
        // L5: under a lease, once the fence is applied, the answer needs no round.
        let now = self.state.timers.now_ms;
        if self.state.lease.lease_active(now) && self.state.applied >= reads.fence {
            let output = self.sm.query(&op);
            out.push(Effect::ReadReply { id, output });
            return Transition::new(Rule::L5, "read");
        }
        let reads = &mut self.state.reads;
        let outstanding = reads.is_round_outstanding();
        let round = if outstanding && mutants::active(Mutant::ReadJoinsOutstandingRound) {
            reads.started
        } else {
            reads.started + 1
        };
        reads.waiting.push(WaitingRead { id, op, round });
        if !outstanding {
            self.start_confirmation(out);
        }
        Transition::new(Rule::Q1, "read")
    }

    /// Q1, Q3: asks every other replica whether this leader's ballot still stands.
    fn start_confirmation(&mut self, out: &mut OutboxOf<SM>) {
        let ballot = self.ballot();
        let timing = &self.config.timing;
        // L3: a lease based on this round ends `lease_ms - margin` of this clock after it is
        // sent.
        if timing.leases() {
            let trusted = if mutants::active(Mutant::LeaseBeyondDrift) {
                timing.lease_ms
            } else {
                timing.trusted_lease_ms()
            };
            let end = self.state.timers.now_ms.saturating_add(trusted);
            self.state.lease.round_lease = Some(end);
        }
        let reads = &mut self.state.reads;
        reads.started += 1;
        reads.acks = Voters::default();
        let confirm = Message::Confirm {
            ballot,
            round: reads.started,
        };
        self.send_to_others(confirm, out);
    }

    /// Q2 (confirm a ballot not below the promise; confirming promises nothing, and hears
    /// the leader as H2 does), Q2' (refuse one below it).
    fn on_confirm(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        round: u64,
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        let promised = self.state.promised;
        if promised > ballot {
            out.push(send(from, Message::Nack { ballot, promised }));
            return Transition::new(Rule::Q2Nack, "confirm").ballot(ballot);
        }
        if ballot.node == from {
            self.heard_leader(ballot);
        }
        // L1: confirming grants a lease.
        self.grant_lease();
        out.push(send(from, Message::Confirmed { ballot, round }));
        Transition::new(Rule::Q2, "confirm").ballot(ballot)
    }

    /// Q3: counts a confirmation of the outstanding round; with a majority (the leader
    /// included) the round is confirmed, and the next starts if a read waits for it.
    fn on_confirmed(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        round: u64,
        out: &mut OutboxOf<SM>,
    ) -> Transition {
        let ignored = Transition::new(Rule::None, "confirmed").ballot(ballot);
        if !self.is_leading() || ballot != self.ballot() {
            return ignored;
        }
        let majority = self.config.majority();
        let reads = &mut self.state.reads;
        if round != reads.started || !reads.is_round_outstanding() || !reads.acks.insert(from) {
            return ignored;
        }
        if reads.acks.len() + 1 >= majority {
            reads.confirmed = reads.started;
            reads.acks = Voters::default();
            if mutants::active(Mutant::LeaseFromArrival) && self.config.timing.leases() {
                let now = self.state.timers.now_ms;
                self.state.lease.round_lease =
                    Some(now.saturating_add(self.config.timing.trusted_lease_ms()));
            }
            self.state.lease.confirm_round();
            let reads = &mut self.state.reads;
            if reads
                .waiting
                .iter()
                .any(|read| read.round > reads.confirmed)
            {
                self.start_confirmation(out);
            }
        }
        Transition::new(Rule::Q3, "confirmed").ballot(ballot)
    }

    /// Q4: answers, in id order, each read whose round is confirmed, once the slots in play at
    /// the election are applied.
    fn serve_reads(&mut self, out: &mut OutboxOf<SM>) {
        if !self.is_leading() {
            return;
        }
        let reads = &mut self.state.reads;
        if reads.waiting.is_empty() || self.state.applied < reads.fence {
            return;
        }
        let confirmed = if mutants::active(Mutant::ReadWithoutConfirmation) {
            u64::MAX
        } else {
            reads.confirmed
        };
        // Called after every slot of a run: most calls find nothing ready, and cost no sort.
        if reads.waiting.iter().all(|read| read.round > confirmed) {
            return;
        }
        let (mut ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut reads.waiting)
            .into_iter()
            .partition(|read| read.round <= confirmed);
        reads.waiting = waiting;
        ready.sort_by_key(|read| read.id);
        for read in ready {
            let output = self.sm.query(&read.op);
            out.push(Effect::ReadReply {
                id: read.id,
                output,
            });
        }
    }

    // ---------------------------------------------------------------- timers

    /// Arms the timers of a replica that has just started (bootstrap, M11): the heartbeat
    /// and retransmission of a leader, the election timer of anyone else, which waits one
    /// longest timeout more than usual, so that a restarted replica hears the leader before
    /// it campaigns.
    fn start_timers(&mut self) {
        let timers = &mut self.state.timers;
        timers.catch_up_at_ms = Some(timers.now_ms + self.config.timing.catch_up_interval_ms);
        if self.is_leading() {
            self.arm_leader_timers();
        } else {
            self.arm_election(self.config.timing.election_timeout_max_ms);
        }
    }

    /// Arms the election timer at `now + extra` plus a newly drawn delay.
    fn arm_election(&mut self, extra: Millis) {
        let timers = &mut self.state.timers;
        timers.election_at_ms = Some(timers.election_deadline(&self.config.timing, extra));
    }

    /// After every step: the election timer is armed exactly when the replica does not lead,
    /// the heartbeat and retransmission timers exactly when it does.
    fn sync_timers(&mut self, was_leading: bool) {
        match (was_leading, self.is_leading()) {
            (false, true) => self.arm_leader_timers(),
            (true, false) => {
                let timers = &mut self.state.timers;
                timers.heartbeat_at_ms = None;
                timers.retransmit_at_ms = None;
                self.arm_election(0);
            }
            _ => {}
        }
    }

    fn arm_leader_timers(&mut self) {
        let timing = &self.config.timing;
        let timers = &mut self.state.timers;
        timers.election_at_ms = None;
        timers.heartbeat_at_ms = Some(timers.now_ms + timing.heartbeat_interval_ms);
        timers.retransmit_at_ms = Some(timers.now_ms + timing.retransmit_interval_ms);
        // The slots M4 has just re-proposed wait a whole interval before they are re-sent.
        timers.retransmit_below = self.state.applied;
    }

    /// A leader at `ballot` was heard (H2, or M2/M6 for its ballot): remember it for client
    /// redirects and, unless leading, start the election timer again.
    fn heard_leader(&mut self, ballot: Ballot) {
        let leading = self.is_leading();
        let timers = &mut self.state.timers;
        if timers.leader_heard.is_none_or(|(heard, _)| heard <= ballot) {
            timers.leader_heard = Some((ballot, timers.now_ms));
        }
        if !leading {
            timers.election_at_ms = Some(timers.election_restart());
        }
    }

    // ---------------------------------------------------------------- helpers

    /// M1's effect on the replica: the new round and the promise of its own ballot (both
    /// persisted), and phase 1 with its own votes merged and its own Promise counted.
    fn begin_phase_1(&mut self, round: u64, out: &mut OutboxOf<SM>) -> Ballot {
        self.set_round(round, out);
        let ballot = self.ballot();
        self.set_promised(ballot, out);
        self.state.phase = Phase::Preparing {
            promises: BTreeSet::from([self.config.id]),
            merged: self.state.accepted.clone(),
            floor: self.state.compacted,
        };
        self.in_flight.clear();
        ballot
    }

    /// Accept `entry` in `slot` at the own ballot (M4, M5b); [`Replica::send_accept`] sends it.
    fn accept_own(&mut self, slot: Slot, entry: Entry<SM::Op>, out: &mut OutboxOf<SM>) {
        let ballot = self.ballot();
        self.set_accepted(slot, ballot, entry, out);
    }

    /// Phase 2a at the own ballot for the run from `slot` (M4, M5b).
    fn send_accept(&self, slot: Slot, entries: Vec<Entry<SM::Op>>, out: &mut OutboxOf<SM>) {
        let ballot = self.ballot();
        let accept = Message::Accept {
            ballot,
            slot,
            entries,
        };
        self.send_to_others(accept, out);
    }

    fn set_round(&mut self, round: u64, out: &mut OutboxOf<SM>) {
        self.state.round = round;
        if mutants::active(Mutant::RoundNotPersisted) {
            return;
        }
        self.state.persisted_round = round;
        out.persist(Record::Round(round));
    }

    /// Written unless storage already holds exactly this promise (after recovery, the
    /// promise in memory may be a vote's ballot that was never written as a promise).
    fn set_promised(&mut self, ballot: Ballot, out: &mut OutboxOf<SM>) {
        self.state.promised = ballot;
        if self.state.persisted_promise != Some(ballot) {
            self.state.persisted_promise = Some(ballot);
            out.persist(Record::Promise(ballot));
        }
    }

    fn set_accepted(
        &mut self,
        slot: Slot,
        ballot: Ballot,
        entry: Entry<SM::Op>,
        out: &mut OutboxOf<SM>,
    ) {
        let vote = (ballot, entry);
        if self.state.accepted.get(&slot) == Some(&vote) {
            return;
        }
        self.state.accepted.insert(slot, vote.clone());
        let (ballot, entry) = vote;
        out.persist(Record::Accept {
            slot,
            ballot,
            entry,
        });
    }

    fn choose(&mut self, slot: Slot, entry: Entry<SM::Op>, out: &mut OutboxOf<SM>) {
        // The voters of a chosen slot are dead state (M7 ignores a chosen slot), and the model
        // clears them too: forgetting them keeps `votes` as small as the window instead of
        // as long as the log.
        if let Phase::Leading { votes, .. } = &mut self.state.phase {
            // What the leader proposed there, which a Decide from another leader may not be.
            let proposed = votes.remove(&slot).and(self.state.accepted.get(&slot));
            let proposed = proposed.filter(|_| !mutants::active(Mutant::StaleInFlightIndex));
            if let Some(id) = proposed
                .and_then(|(_, entry)| entry.command())
                .map(Command::id)
            {
                if let Some(count) = self.in_flight.get_mut(&id) {
                    *count -= 1;
                    if *count == 0 {
                        self.in_flight.remove(&id);
                    }
                }
            }
        }
        // Chosen with the own vote, nearly always: the record names the vote, no copy of it.
        // (Not for the last slot, which no run `slot..slot + count` can end after.)
        let own_vote = matches!(self.state.accepted.get(&slot), Some((_, vote)) if *vote == entry);
        if own_vote && slot < Slot::MAX {
            out.persist_chosen_vote(slot);
            self.state.chosen.insert(slot, entry);
        } else {
            self.state.chosen.insert(slot, entry.clone());
            out.persist(Record::Chosen { slot, entry });
        }
    }

    fn send_to_others(&self, msg: MessageOf<SM>, out: &mut OutboxOf<SM>) {
        // The last recipient takes the message itself: one clone fewer per broadcast, which
        // for a command is a copy of the client's operation.
        let mut others = self.config.others().peekable();
        while let Some(to) = others.next() {
            if others.peek().is_none() {
                out.push(send(to, msg));
                return;
            }
            out.push(send(to, msg.clone()));
        }
    }

    /// M2, K2: every vote held (all at or above the compaction point), and that point.
    fn promise(&self, ballot: Ballot) -> MessageOf<SM> {
        let accepted = self.state.accepted.iter();
        let accepted = accepted.map(|(slot, (b, entry))| (slot, *b, entry.clone()));
        Message::Promise {
            ballot,
            accepted: accepted.collect(),
            compacted: self.reported_compaction(),
        }
    }

    /// The compaction point K2 reports (0 under [`Mutant::PromiseHidesCompaction`]).
    fn reported_compaction(&self) -> Slot {
        if mutants::active(Mutant::PromiseHidesCompaction) {
            return 0;
        }
        self.state.compacted
    }

    fn reply_from_table(&self, (client, seq): CommandId) -> ReplicaEffect<SM> {
        let row = self
            .state
            .clients
            .get(&client)
            .filter(|row| row.last_seq == seq);
        Effect::Reply {
            client,
            seq,
            output: row.map(|row| row.output.clone()),
        }
    }

    /// At a leader, the slots below `next_slot` not chosen yet: those it holds voters for.
    /// M4 proposes every unchosen slot from `applied` up, M5b each slot it opens, and `choose`
    /// forgets a slot's voters (`check_invariants` recounts this the long way).
    fn slots_in_flight(&self) -> u64 {
        match &self.state.phase {
            Phase::Leading { votes, .. } => votes.len() as u64,
            _ => 0,
        }
    }

    // ---------------------------------------------------------------- invariants and trace

    /// Checked after every transition (TigerBeetle's `invariants()`), when
    /// [`INVARIANTS_CHECKED`]; a broken invariant panics.
    fn check_invariants(&self) {
        if !INVARIANTS_CHECKED {
            return;
        }
        let state = &self.state;
        let highest_vote = state.accepted.values().map(|(b, _)| *b).max();
        assert!(
            highest_vote.is_none_or(|b| b <= state.promised),
            "vote above the promise"
        );
        assert!(state.persisted_promise.is_none_or(|p| p <= state.promised));
        assert!(state.persisted_round <= state.round, "round went backwards");
        let last_applied = state.applied.checked_sub(1);
        assert!(last_applied
            .filter(|&s| s >= state.compacted)
            .is_none_or(|s| state.chosen.contains_key(&s)));
        assert!(
            !state.chosen.contains_key(&state.applied),
            "M9 stopped early"
        );
        assert!(
            state.compacted <= state.applied,
            "compacted past the applied prefix"
        );
        assert_eq!(
            self.snapshot.as_ref().map_or(0, |s| s.applied),
            state.compacted,
            "the snapshot is at the compaction point"
        );
        let below = |slot: Option<Slot>| slot.is_some_and(|s| s < state.compacted);
        assert!(
            !below(state.accepted.keys().next()) && !below(state.chosen.keys().next()),
            "an entry below the compaction point"
        );
        assert_eq!(self.in_flight, requests_in_flight(state), "in-flight index");
        self.check_timer_invariants();
        match &state.phase {
            Phase::Follower => {
                assert!(
                    state.pending.is_empty(),
                    "a follower holds no pending command"
                );
            }
            Phase::Preparing { promises, .. } => {
                assert_eq!(state.promised, self.ballot(), "preparing at the promise");
                assert!(promises.contains(&self.config.id), "own promise counted");
            }
            Phase::Leading { next_slot, votes } => {
                // Not asserted: that M5b left no room unused. M8 (a Decide from a higher
                // leader) can free room in the window and, as modelled, does not run M5b.
                assert_eq!(state.promised, self.ballot(), "leading at the promise");
                let top = votes.last_slot();
                assert!(
                    top.is_none_or(|s| s < *next_slot),
                    "voted slot below next_slot"
                );
                // What `slots_in_flight` and `requests_in_flight` rely on. Below the floor of
                // its phase 1 (K3) a leader proposes nothing: those slots are chosen by others,
                // unknown to it; from the floor up, every unchosen slot is its own proposal.
                let own = self.ballot();
                let proposed = |s: &Slot| state.accepted.get(s).is_some_and(|(b, _)| *b == own);
                let unchosen: Vec<Slot> = (state.applied..*next_slot)
                    .filter(|s| !state.chosen.contains_key(s))
                    .collect();
                assert!(
                    votes.keys().eq(unchosen.iter().copied().filter(proposed)),
                    "the slots with voters are the unchosen own proposals below next_slot"
                );
                assert!(
                    unchosen.iter().skip_while(|s| !proposed(s)).all(proposed),
                    "every unchosen slot from the first own proposal up holds one"
                );
            }
        }
    }

    /// Which timers are armed follows the phase (T).
    fn check_timer_invariants(&self) {
        let timers = &self.state.timers;
        let leading = self.is_leading();
        assert_eq!(
            timers.election_at_ms.is_some(),
            !leading,
            "the election timer is armed exactly when not leading"
        );
        assert_eq!(timers.heartbeat_at_ms.is_some(), leading, "heartbeat timer");
        assert_eq!(
            timers.retransmit_at_ms.is_some(),
            leading,
            "retransmit timer"
        );
        assert!(
            timers.catch_up_at_ms.is_some(),
            "the catch-up timer is always armed"
        );
    }

    /// The one trace event of a transition (fields documented in [`crate::multi`]).
    fn trace(&self, transition: &Transition, out: &OutboxOf<SM>) {
        let next_slot = match self.state.phase {
            Phase::Leading { next_slot, .. } => Some(next_slot),
            _ => None,
        };
        tracing::debug!(
            target: super::TRACE_TARGET,
            node = self.config.id,
            rule = transition.rule.as_str(),
            input = transition.input,
            from = transition.from,
            ballot = transition.ballot.map(tracing::field::display),
            slot = transition.slot,
            promised = %self.state.promised,
            round = self.state.round,
            phase = self.state.phase.name(),
            next_slot,
            chosen = transition.chosen,
            applied = self.state.applied,
            pending = self.state.pending.len(),
            persisted = out.persisted(),
            sent = out.sent(),
        );
    }
}

/// How many slots in flight at the own ballot (those with voters) hold each request.
fn requests_in_flight<Op, Out>(state: &ReplicaState<Op, Out>) -> InFlight {
    let mut in_flight = InFlight::default();
    if let Phase::Leading { votes, .. } = &state.phase {
        for slot in votes.keys() {
            let entry = state.accepted.get(&slot).map(|(_, entry)| entry);
            if let Some(command) = entry.and_then(Entry::command) {
                *in_flight.entry(command.id()).or_default() += 1;
            }
        }
    }
    in_flight
}

impl<Op, Out> ReplicaState<Op, Out> {
    fn empty(promised: Ballot, timers: Timers) -> Self {
        ReplicaState {
            round: 0,
            promised,
            accepted: SlotMap::new(),
            chosen: SlotMap::new(),
            phase: Phase::Follower,
            pending: BTreeMap::new(),
            applied: 0,
            clients: ClientTable::default(),
            persisted_round: 0,
            persisted_promise: None,
            compacted: 0,
            timers,
            reads: ReadIndex::default(),
            lease: Lease::default(),
        }
    }

    /// The state the records a replica in this state persisted rebuild: every change to
    /// its votes and chosen entries is persisted in the step that makes it, and the round
    /// and promise it persisted are fields of their own.
    pub fn durable(&self) -> Durable<Op>
    where
        Op: Clone,
    {
        Durable {
            round: self.persisted_round,
            promised: self.persisted_promise,
            accepted: self.accepted.clone(),
            chosen: self.chosen.clone(),
        }
    }
}

fn executed<Out>(clients: &ClientTable<Out>, (client, seq): CommandId) -> bool {
    executed_in(clients.get(&client), seq)
}

/// Whether request `seq` of the client whose table row is `row` was executed already.
fn executed_in<Out>(row: Option<&ClientEntry<Out>>, seq: u64) -> bool {
    if mutants::active(Mutant::IgnoreClientTable) {
        return false;
    }
    row.is_some_and(|row| row.last_seq >= seq)
}

/// The length of a run of `len` slots from `slot`, if it is not empty and ends within the slot
/// space (a run from another replica is not trusted to).
fn run_length(slot: Slot, len: usize) -> Option<u64> {
    let len = u64::try_from(len).ok().filter(|&len| len > 0)?;
    slot.checked_add(len - 1).map(|_| len)
}

fn send<Op, Out, Snap>(to: NodeId, msg: Message<Op, Snap>) -> Effect<Op, Out, Snap> {
    Effect::Send { to, msg }
}
