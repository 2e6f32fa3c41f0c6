//! The Multi-Paxos vocabulary: commands and log entries, messages, durable records, the inputs
//! the core accepts and the effects it asks the runtime to perform (`specs/protocol.md`, M1–M12).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::slot_map::SlotMap;
use super::timers::{Millis, Timing, TimingError};
use crate::ballot::{Ballot, NodeId};

/// A position in the replicated log, from 0. Each slot is one Synod instance.
pub type Slot = u64;

/// An external caller of the service. Client ids are not node ids: clients never vote.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(pub u64);

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client{}", self.0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What identifies a read (Q1–Q5) while it waits at the leader: chosen by the runtime, unique
/// among the reads it has waiting.
pub type ReadId = u64;

/// What identifies a client request: `(client, seq)`. Two commands with the same id are the
/// same request (a retry), whatever their operations.
pub type CommandId = (ClientId, u64);

/// A client request: the client's `seq`-th command, carrying an opaque operation for the state
/// machine. Each client issues its commands in `seq` order, one at a time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command<Op> {
    pub client: ClientId,
    pub seq: u64,
    pub op: Op,
}

impl<Op> Command<Op> {
    pub fn id(&self) -> CommandId {
        (self.client, self.seq)
    }
}

/// Commands waiting for a slot, keyed by their id, serialized as the list of commands: JSON
/// object keys must be strings, and a `(client, seq)` key is not one (a step log holding a waiting
/// command could not be written, and the replica stopped). The key is each command's own id, so
/// the list loses nothing; a list naming one id twice is refused rather than silently merged.
pub mod pending_as_list {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Command, CommandId};

    pub fn serialize<Op: Serialize, S: Serializer>(
        pending: &BTreeMap<CommandId, Command<Op>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(pending.values())
    }

    pub fn deserialize<'de, Op: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<CommandId, Command<Op>>, D::Error> {
        let commands = Vec::<Command<Op>>::deserialize(deserializer)?;
        let mut pending = BTreeMap::new();
        for command in commands {
            let (client, seq) = command.id();
            if pending.insert(command.id(), command).is_some() {
                return Err(D::Error::custom(format!(
                    "{client}'s command {seq} is waiting twice"
                )));
            }
        }
        Ok(pending)
    }
}

/// What a slot holds: a client command, or `noop` (fills a gap when a new leader re-proposes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Entry<Op> {
    Noop,
    Command(Command<Op>),
}

impl<Op> Entry<Op> {
    pub fn command(&self) -> Option<&Command<Op>> {
        match self {
            Entry::Noop => None,
            Entry::Command(command) => Some(command),
        }
    }

    /// The same entry with its command mapped by `f` (for reading one state machine's log as
    /// another's, as trace validation reads the key-value service's as the model's).
    pub fn try_map_command<B, E>(
        &self,
        f: impl FnOnce(&Command<Op>) -> Result<Command<B>, E>,
    ) -> Result<Entry<B>, E> {
        Ok(match self {
            Entry::Noop => Entry::Noop,
            Entry::Command(command) => Entry::Command(f(command)?),
        })
    }
}

/// A vote as carried in a Promise: the acceptor accepted `entry` at `ballot` in `slot`.
pub type Vote<Op> = (Slot, Ballot, Entry<Op>);

/// Replica-to-replica messages. Client requests and replies are [`Input::ClientRequest`] and
/// [`Effect::Reply`]: clients are external callers, not replicas. `Snap` is what a
/// [`Message::Snapshot`] carries: the replica's applied state (`SnapshotOf` in
/// [`crate::multi`]), whose type is its state machine's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<Op, Snap> {
    /// Phase 1a, for all slots at once, with the candidate's applied prefix (K2: an acceptor
    /// that compacted past it will hand it the snapshot).
    Prepare {
        ballot: Ballot,
        #[serde(default)]
        applied: Slot,
    },
    /// Phase 1b: every vote the acceptor holds, ascending by slot (sparse), and its
    /// compaction point (K2): every slot below it is chosen, and its votes there forgotten, so
    /// the new leader proposes nothing below it (K3).
    Promise {
        ballot: Ballot,
        accepted: Vec<Vote<Op>>,
        #[serde(default)]
        compacted: Slot,
    },
    /// `ballot` is below the sender's promise.
    Nack { ballot: Ballot, promised: Ballot },
    /// Phase 2a for the run of slots `slot .. slot + entries.len()`, one entry each (never
    /// empty when a replica sends it): one message for every slot a step proposes, instead
    /// of one per slot. The model's `Accept(b, s, v)` is a run of one.
    Accept {
        ballot: Ballot,
        slot: Slot,
        entries: Vec<Entry<Op>>,
    },
    /// Phase 2b for the run `slot .. slot + count`, to the leader only. It carries no
    /// entries: only the leader of `ballot` proposes at `ballot`, so they are its own
    /// `accepted` there.
    Accepted {
        ballot: Ballot,
        slot: Slot,
        count: u64,
    },
    /// The leader tells the others that the run `slot .. slot + entries.len()` is chosen.
    Decide { slot: Slot, entries: Vec<Entry<Op>> },
    /// K5: a catch-up request: the sender has applied every slot below `applied`, and asks
    /// for what it may have missed (K6 answers).
    Status { applied: Slot },
    /// K6: chosen entries the requester may lack (at most [`CATCH_UP_ENTRIES_MAX`]), which
    /// it learns as Decides (M8).
    CatchUp { entries: Vec<(Slot, Entry<Op>)> },
    /// K2, K6, K7: the sender's snapshot at its compaction point, for a replica behind it
    /// (K4 installs it).
    Snapshot { state: Snap },
    /// H1: the leader at `ballot` is alive: a follower that hears it does not campaign.
    Heartbeat { ballot: Ballot },
    /// Q1, Q3: does the leader's `ballot` still stand? Round `round` of its confirmations
    /// (numbered from 1 in each term).
    Confirm { ballot: Ballot, round: u64 },
    /// Q2: it stood when this was sent: the sender had promised nothing above `ballot`.
    Confirmed { ballot: Ballot, round: u64 },
}

impl<Op, Snap: Clone> Message<Op, Snap> {
    /// The same message with every entry's command mapped by `f`, in order, and a snapshot
    /// by `g`; the first error stops it ([`Entry::try_map_command`]).
    pub fn try_map_commands<B, S, E>(
        &self,
        mut f: impl FnMut(&Command<Op>) -> Result<Command<B>, E>,
        g: impl FnOnce(&Snap) -> Result<S, E>,
    ) -> Result<Message<B, S>, E> {
        let mut entry = |e: &Entry<Op>| e.try_map_command(&mut f);
        Ok(match self {
            Message::Prepare { ballot, applied } => Message::Prepare {
                ballot: *ballot,
                applied: *applied,
            },
            Message::Promise {
                ballot,
                accepted,
                compacted,
            } => Message::Promise {
                ballot: *ballot,
                accepted: accepted
                    .iter()
                    .map(|(s, b, e)| Ok((*s, *b, entry(e)?)))
                    .collect::<Result<_, E>>()?,
                compacted: *compacted,
            },
            Message::Nack { ballot, promised } => Message::Nack {
                ballot: *ballot,
                promised: *promised,
            },
            Message::Accept {
                ballot,
                slot,
                entries,
            } => Message::Accept {
                ballot: *ballot,
                slot: *slot,
                entries: entries.iter().map(entry).collect::<Result<_, E>>()?,
            },
            Message::Accepted {
                ballot,
                slot,
                count,
            } => Message::Accepted {
                ballot: *ballot,
                slot: *slot,
                count: *count,
            },
            Message::Decide { slot, entries } => Message::Decide {
                slot: *slot,
                entries: entries.iter().map(entry).collect::<Result<_, E>>()?,
            },
            Message::Status { applied } => Message::Status { applied: *applied },
            Message::CatchUp { entries } => Message::CatchUp {
                entries: entries
                    .iter()
                    .map(|(s, e)| Ok((*s, entry(e)?)))
                    .collect::<Result<_, E>>()?,
            },
            Message::Snapshot { state } => Message::Snapshot { state: g(state)? },
            Message::Heartbeat { ballot } => Message::Heartbeat { ballot: *ballot },
            Message::Confirm { ballot, round } => Message::Confirm {
                ballot: *ballot,
                round: *round,
            },
            Message::Confirmed { ballot, round } => Message::Confirmed {
                ballot: *ballot,
                round: *round,
            },
        })
    }
}

impl<Op, Snap> Message<Op, Snap> {
    /// The message's kind as trace events and reports name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::Promise { .. } => "promise",
            Message::Nack { .. } => "nack",
            Message::Accept { .. } => "accept",
            Message::Accepted { .. } => "accepted",
            Message::Decide { .. } => "decide",
            Message::Status { .. } => "status",
            Message::CatchUp { .. } => "catch_up",
            Message::Snapshot { .. } => "snapshot",
            Message::Heartbeat { .. } => "heartbeat",
            Message::Confirm { .. } => "confirm",
            Message::Confirmed { .. } => "confirmed",
        }
    }
}

impl<Op: Clone, Snap: Clone> Message<Op, Snap> {
    /// The one-slot messages this one stands for, in slot order: `n` for a run of `n` slots
    /// (`Accept`, `Accepted`, `Decide`; specs/protocol.md "Runs of slots"), itself for any
    /// other message. Lazy, and it stops at the last slot, so an absurd run from a stranger
    /// costs what the caller takes of it.
    pub fn per_slot(&self) -> impl Iterator<Item = Message<Op, Snap>> + '_ {
        let len = match self {
            Message::Accept { entries, .. } | Message::Decide { entries, .. } => {
                entries.len() as u64
            }
            Message::Accepted { count, .. } => *count,
            _ => 1,
        };
        (0..len).map_while(move |i| {
            let entry = |entries: &[Entry<Op>]| {
                let entry = entries.get(usize::try_from(i).ok()?)?;
                Some(vec![entry.clone()])
            };
            Some(match self {
                Message::Accept {
                    ballot,
                    slot,
                    entries,
                } => Message::Accept {
                    ballot: *ballot,
                    slot: slot.checked_add(i)?,
                    entries: entry(entries)?,
                },
                Message::Accepted { ballot, slot, .. } => Message::Accepted {
                    ballot: *ballot,
                    slot: slot.checked_add(i)?,
                    count: 1,
                },
                Message::Decide { slot, entries } => Message::Decide {
                    slot: slot.checked_add(i)?,
                    entries: entry(entries)?,
                },
                other => other.clone(),
            })
        })
    }
}

/// The most chosen entries one [`Message::CatchUp`] carries in the service
/// ([`Config::catch_up_entries_max`]); a replica further behind catches up over several
/// requests (K5, once per catch-up interval).
pub const CATCH_UP_ENTRIES_MAX: usize = 1024;

/// One durable change. A write-ahead log is a sequence of these; [`Durable::from_records`]
/// folds it back into the state recovery starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record<Op> {
    /// The highest round this replica has used for its own ballots.
    Round(u64),
    Promise(Ballot),
    Accept {
        slot: Slot,
        ballot: Ballot,
        entry: Entry<Op>,
    },
    Chosen {
        slot: Slot,
        entry: Entry<Op>,
    },
    /// Slots `slot..slot + count` are chosen with the entries this replica holds accepted
    /// there. What a replica writes when what is chosen is its own vote, as it nearly always
    /// is: one record per run of slots and no copy of their entries, where [`Record::Chosen`]
    /// repeats each entry its `Accept` record already holds.
    ChosenVotes {
        slot: Slot,
        count: u64,
    },
}

impl<Op> Record<Op> {
    /// The slots whose vote or chosen entry applying this record may change
    /// ([`Durable::apply`]); empty for a round or a promise. Trace validation moves its view of
    /// a replica's log by these slots rather than walking the whole log at every step.
    pub fn slots(&self) -> std::ops::Range<Slot> {
        match self {
            Record::Round(_) | Record::Promise(_) => 0..0,
            Record::Accept { slot, .. } | Record::Chosen { slot, .. } => {
                *slot..slot.saturating_add(1)
            }
            Record::ChosenVotes { slot, count } => *slot..slot.saturating_add(*count),
        }
    }
}

/// A record that does not fit the records before it: the log it comes from is damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A [`Record::ChosenVotes`] run names a slot with no accepted entry before it.
    NoVote { slot: Slot },
    /// A [`Record::ChosenVotes`] run past the last slot.
    RunOverflow { slot: Slot, count: u64 },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NoVote { slot } => write!(
                f,
                "a chosen-votes record names slot {slot}, for which no earlier record holds a vote"
            ),
            RecordError::RunOverflow { slot, count } => {
                write!(
                    f,
                    "a chosen-votes record of {count} slots from {slot} runs past the last slot"
                )
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// What survives a crash (M11): the fold of every [`Record`] persisted so far.
///
/// `promised: None` means no promise was ever persisted: the replica then holds the bootstrap
/// promise `1.<initial leader>`, which needs no write because empty storage implies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durable<Op> {
    pub round: u64,
    pub promised: Option<Ballot>,
    pub accepted: SlotMap<(Ballot, Entry<Op>)>,
    pub chosen: SlotMap<Entry<Op>>,
}

impl<Op> Default for Durable<Op> {
    fn default() -> Self {
        Durable {
            round: 0,
            promised: None,
            accepted: SlotMap::new(),
            chosen: SlotMap::new(),
        }
    }
}

impl<Op: Clone> Durable<Op> {
    /// Replays one record, as recovery from a write-ahead log does: the later record wins. A
    /// [`Record::ChosenVotes`] whose slots do not all hold a vote is refused, and changes
    /// nothing.
    pub fn apply(&mut self, record: Record<Op>) -> Result<(), RecordError> {
        match record {
            Record::Round(round) => self.round = round,
            Record::Promise(ballot) => self.promised = Some(ballot),
            Record::Accept {
                slot,
                ballot,
                entry,
            } => {
                self.accepted.insert(slot, (ballot, entry));
            }
            Record::Chosen { slot, entry } => {
                self.chosen.insert(slot, entry);
            }
            Record::ChosenVotes { slot, count } => {
                let end = slot
                    .checked_add(count)
                    .ok_or(RecordError::RunOverflow { slot, count })?;
                // Every slot is checked before any is learned, and only the votes held are
                // walked: a damaged count cannot make the fold loop or allocate.
                let mut expected = slot;
                for (at, _) in self.accepted.range(slot..end) {
                    if at != expected {
                        return Err(RecordError::NoVote { slot: expected });
                    }
                    expected += 1;
                }
                if expected != end {
                    return Err(RecordError::NoVote { slot: expected });
                }
                for (at, (_, entry)) in self.accepted.range(slot..end) {
                    self.chosen.insert(at, entry.clone());
                }
            }
        }
        Ok(())
    }

    /// The state a write-ahead log holding `records`, in order, rebuilds; the first record
    /// that does not fit the ones before it is an error.
    pub fn from_records(
        records: impl IntoIterator<Item = Record<Op>>,
    ) -> Result<Self, RecordError> {
        let mut durable = Durable::default();
        for record in records {
            durable.apply(record)?;
        }
        Ok(durable)
    }

    /// The shortest record sequence that rebuilds this state (for compacting a log).
    pub fn to_records(&self) -> Vec<Record<Op>> {
        let mut records = Vec::new();
        if self.round > 0 {
            records.push(Record::Round(self.round));
        }
        records.extend(self.promised.map(Record::Promise));
        records.extend(
            self.accepted
                .iter()
                .map(|(slot, (ballot, entry))| Record::Accept {
                    slot,
                    ballot: *ballot,
                    entry: entry.clone(),
                }),
        );
        records.extend(self.chosen.iter().map(|(slot, entry)| Record::Chosen {
            slot,
            entry: entry.clone(),
        }));
        records
    }
}

/// Everything that can happen to a replica. Recovery is [`crate::multi::Replica::recover`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input<Op, Snap> {
    /// A message from another replica.
    Message {
        from: NodeId,
        msg: Message<Op, Snap>,
    },
    /// A client submits, or retries, a command (M5).
    ClientRequest(Command<Op>),
    /// Several client requests that arrived together: the same as the requests one by one
    /// in ascending `(client, seq)` order (M5, and M5b after each new one), which is how
    /// conformance checks it, except that the commands proposed go out as one run.
    ClientRequests(Vec<Command<Op>>),
    /// Time passes: it is now `now_ms` on the runtime's monotonic clock (an earlier time than
    /// the latest tick's counts as that one). Fires every timer whose deadline has come: the
    /// election (M1), the heartbeat (H1), retransmission (R1), catch-up (K5).
    Tick { now_ms: Millis },
    /// K1: snapshot the applied prefix and forget the log below it. The runtime decides when
    /// (by log size or interval); the core answers with [`Effect::Snapshot`], which the
    /// runtime makes durable before it drops the log below it.
    Compact,
    /// Q1: a client reads with `op` (which the state machine answers without changing,
    /// [`crate::multi::StateMachine::query`]), through the read index: the leader answers it
    /// with [`Effect::ReadReply`] once a majority confirmed its ballot after the read arrived
    /// and it applied every slot in play at its election. A replica that does not lead does
    /// nothing (Q1'): the service redirects the client to the leader it knows.
    Read { id: ReadId, op: Op },
}

/// What the runtime must do after a step, in order.
///
/// Within one step every `Persist` and `Snapshot` comes first, then the sends, executions and
/// replies in the order the rule produced them. The runtime must make the records and the
/// snapshot durable before it performs any later effect of the same step. Timers are no effect: the runtime asks
/// [`crate::multi::Replica::next_deadline`] after each step when to tick next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect<Op, Out, Snap> {
    /// Append this record to stable storage before performing any later effect.
    Persist(Record<Op>),
    /// K1, K4: make this snapshot of the applied prefix durable (with the replica's
    /// [`crate::multi::Replica::durable`] state from it on) before performing any later
    /// effect; the log below the snapshot's applied prefix may then be dropped. It comes
    /// with the step's records, before everything else.
    Snapshot(Snap),
    Send {
        to: NodeId,
        msg: Message<Op, Snap>,
    },
    /// The state machine executed `command` from `slot` (M9); for observers, nothing to do.
    Executed {
        slot: Slot,
        command: Command<Op>,
        output: Out,
    },
    /// Answer the client. `output` is `None` only when the client retried a request older
    /// than the last one it had executed: the client table keeps the latest output only, and
    /// the client, which issues one request at a time, has already had that answer.
    Reply {
        client: ClientId,
        seq: u64,
        output: Option<Out>,
    },
    /// Q4: answer read `id` with `output`, the state machine's answer to its operation now;
    /// `None` when the state machine answers that operation only through the log (it is
    /// not a query).
    ReadReply {
        id: ReadId,
        output: Option<Out>,
    },
}

/// A replica's static configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// This replica.
    pub id: NodeId,
    /// Every replica, this one included; sends go out in this order.
    pub replicas: Vec<NodeId>,
    /// The replica that starts leading at ballot `1.<initial_leader>` without phase 1.
    pub initial_leader: NodeId,
    /// At most this many slots in flight (proposed, not yet chosen) for new commands.
    pub window: u64,
    /// Propose no new command at or above this slot (bounded exploration); `None` in
    /// production.
    pub slot_limit: Option<Slot>,
    /// The timers' lengths and the election jitter's seed.
    #[serde(default)]
    pub timing: Timing,
    /// The most chosen entries one `CatchUp` carries (K6); [`CATCH_UP_ENTRIES_MAX`] in the
    /// service, smaller under exhaustive conformance so that a bounded log reaches it.
    #[serde(default = "catch_up_entries_max")]
    pub catch_up_entries_max: usize,
}

fn catch_up_entries_max() -> usize {
    CATCH_UP_ENTRIES_MAX
}

impl Config {
    /// `R / 2 + 1`.
    pub fn majority(&self) -> usize {
        if super::mutants::active(super::mutants::Mutant::QuorumOneShort) {
            return self.replicas.len() / 2;
        }
        crate::rules::majority(self.replicas.len())
    }

    /// The ballot every replica starts promised to: `1.<initial_leader>`.
    pub fn bootstrap_ballot(&self) -> Ballot {
        Ballot {
            round: 1,
            node: self.initial_leader,
        }
    }

    /// Every replica but this one, in configuration order.
    pub fn others(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas.iter().copied().filter(move |&r| r != self.id)
    }

    pub fn is_replica(&self, node: NodeId) -> bool {
        self.replicas.contains(&node)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut sorted = self.replicas.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.replicas.len() {
            return Err(ConfigError::DuplicateReplica);
        }
        if sorted.len() < REPLICAS_MIN {
            return Err(ConfigError::TooFewReplicas(sorted.len()));
        }
        if !self.is_replica(self.id) {
            return Err(ConfigError::NotAReplica(self.id));
        }
        if !self.is_replica(self.initial_leader) {
            return Err(ConfigError::NotAReplica(self.initial_leader));
        }
        if self.window == 0 {
            return Err(ConfigError::ZeroWindow);
        }
        if self.catch_up_entries_max == 0 {
            return Err(ConfigError::ZeroCatchUp);
        }
        self.timing.validate().map_err(ConfigError::Timing)
    }
}

/// Why a [`Config`] cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    DuplicateReplica,
    /// This id (the replica's own or the initial leader's) is not in `replicas`.
    NotAReplica(NodeId),
    ZeroWindow,
    /// A `CatchUp` that may carry no entry would never catch a replica up.
    ZeroCatchUp,
    /// Fewer than [`REPLICAS_MIN`] replicas.
    TooFewReplicas(usize),
    Timing(TimingError),
}

/// The smallest replica set the core runs. A leader counts its own vote and Promise when it
/// sends, and decides on the peers' answers (M3, M7); a lone replica gets no answers, so it
/// would never choose anything. One replica is no replication anyway.
pub const REPLICAS_MIN: usize = 2;

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::DuplicateReplica => write!(f, "a replica id appears twice"),
            ConfigError::NotAReplica(id) => write!(f, "node {id} is not in the replica list"),
            ConfigError::ZeroWindow => write!(f, "the window must allow at least one slot"),
            ConfigError::ZeroCatchUp => {
                write!(f, "a catch-up answer must be allowed at least one entry")
            }
            ConfigError::TooFewReplicas(n) => write!(
                f,
                "{n} replica(s): at least {REPLICAS_MIN} are needed, and 3 or 5 tolerate failures"
            ),
            ConfigError::Timing(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use proptest::prelude::*;

    use super::{Ballot, ClientId, Command, CommandId, Durable, Entry, Record};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Waiting {
        #[serde(with = "super::pending_as_list")]
        pending: BTreeMap<CommandId, Command<u64>>,
    }

    fn command(client: u64, seq: u64, op: u64) -> Command<u64> {
        Command {
            client: ClientId(client),
            seq,
            op,
        }
    }

    fn record() -> impl Strategy<Value = Record<u64>> {
        let ballot = (1u64..4, 0u32..3).prop_map(|(round, node)| Ballot { round, node });
        let entry = prop_oneof![
            Just(Entry::Noop),
            (0u64..3).prop_map(|op| Entry::Command(command(1, op + 1, op)))
        ];
        prop_oneof![
            (0u64..4).prop_map(Record::Round),
            ballot.clone().prop_map(Record::Promise),
            (0u64..12, ballot, entry.clone()).prop_map(|(slot, ballot, entry)| Record::Accept {
                slot,
                ballot,
                entry
            }),
            (0u64..12, entry).prop_map(|(slot, entry)| Record::Chosen { slot, entry }),
            (0u64..12, 0u64..4).prop_map(|(slot, count)| Record::ChosenVotes { slot, count }),
        ]
    }

    proptest! {
        /// `Record::slots` names every slot a record can change: trace validation patches
        /// its view of the log at those slots only.
        #[test]
        fn a_record_changes_no_slot_outside_its_slots(
            records in proptest::collection::vec(record(), 0..40),
        ) {
            let mut durable = Durable::default();
            for record in records {
                let before = durable.clone();
                let slots = record.slots();
                if durable.apply(record).is_err() {
                    durable = before;
                    continue;
                }
                for slot in 0..16 {
                    if !slots.contains(&slot) {
                        prop_assert_eq!(durable.accepted.get(&slot), before.accepted.get(&slot));
                        prop_assert_eq!(durable.chosen.get(&slot), before.chosen.get(&slot));
                    }
                }
            }
        }
    }

    #[test]
    fn waiting_commands_round_trip_through_json() {
        let pending: BTreeMap<_, _> = [command(2, 7, 1), command(1, 3, 2), command(2, 8, 3)]
            .into_iter()
            .map(|c| (c.id(), c))
            .collect();
        let waiting = Waiting { pending };
        let json = serde_json::to_string(&waiting).expect("a list of commands is JSON");
        assert_eq!(
            serde_json::from_str::<Waiting>(&json).expect("reads back"),
            waiting
        );
    }

    #[test]
    fn a_command_waiting_twice_is_refused() {
        let twice = r#"{"pending":[{"client":1,"seq":3,"op":1},{"client":1,"seq":3,"op":2}]}"#;
        let refused = serde_json::from_str::<Waiting>(twice).expect_err("one id twice");
        assert!(
            refused
                .to_string()
                .contains("client1's command 3 is waiting twice"),
            "{refused}"
        );
    }
}
