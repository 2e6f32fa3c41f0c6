//! An in-memory cluster of Multi-Paxos replica cores: the one harness shared by the core's
//! cluster tests (`impl/tests/core_cluster.rs`), the WAL's cluster test
//! (`impl/tests/storage_replica_log.rs`), conformance's random lockstep walks
//! (`conformance/src/random.rs`) and the core benchmark (`bench/core-bench/src/ours.rs`), as
//! TigerBeetle's `testing/cluster.zig` serves all of its simulations.
//!
//! The cluster owns the replicas, their storage and the network; the caller owns the schedule
//! (which message to deliver, drop or duplicate, who crashes, whose clock moves) and whatever it
//! checks. Every effect a step produces is shown to the caller's observer before the cluster
//! performs it: records go to the replica's [`Storage`] (synced once per step, as the
//! service's node task persists a step before it speaks), messages into the network, replies
//! and executions nowhere.
//!
//! Deterministic like the core: no IO, no clock, no randomness.

use std::collections::VecDeque;

use crate::ballot::NodeId;
use crate::multi::{
    AppliedState, Config, Durable, Effect, Input, InputOf, Message, Millis, Record, RecordError,
    Replica, ReplicaEffect, SnapshotOf, StateMachine,
};

/// Sees every effect of a step before the cluster performs it.
pub type Observer<'a, S> = dyn FnMut(NodeId, &ReplicaEffect<S>) + 'a;

/// A message in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<Op, Snap> {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message<Op, Snap>,
}

/// A message in flight between replicas running state machine `S`.
pub type EnvelopeOf<S> = Envelope<<S as StateMachine>::Op, SnapshotOf<S>>;

/// A replica's snapshot of its applied prefix.
pub type Snapshot<S> = AppliedState<<S as StateMachine>::Snapshot, <S as StateMachine>::Output>;

/// What a restarted replica finds in its storage.
pub struct Recovered<S: StateMachine> {
    pub durable: Durable<S::Op>,
    pub snapshot: Option<Snapshot<S>>,
}

/// Where a replica's records go, and what it recovers from after a crash.
pub trait Storage<S: StateMachine> {
    /// Takes one record of the step being performed, after those before it.
    fn append(&mut self, record: Record<S::Op>);

    /// Makes the step's records durable (before any message of the step goes out).
    fn sync(&mut self) -> Result<(), String>;

    /// What the replica recovers from: everything persisted, nothing else.
    fn recover(&mut self) -> Result<Recovered<S>, String>;

    /// The replica took or installed `snapshot` (K1, K4) and its log from there on is
    /// `durable`: the snapshot is durable before the log loses anything.
    fn compacted(&mut self, snapshot: Snapshot<S>, durable: Durable<S::Op>) -> Result<(), String>;
}

/// A write-ahead log in memory: the records persisted since the last snapshot, and that
/// snapshot.
pub struct MemoryLog<S: StateMachine> {
    pub records: Vec<Record<S::Op>>,
    pub snapshot: Option<Snapshot<S>>,
}

impl<S: StateMachine> Default for MemoryLog<S> {
    fn default() -> Self {
        MemoryLog {
            records: Vec::new(),
            snapshot: None,
        }
    }
}

impl<S: StateMachine> MemoryLog<S> {
    /// The fold of the log's records: what recovery reads.
    pub fn durable(&self) -> Result<Durable<S::Op>, RecordError> {
        Durable::from_records(self.records.iter().cloned())
    }
}

impl<S: StateMachine> Storage<S> for MemoryLog<S> {
    fn append(&mut self, record: Record<S::Op>) {
        self.records.push(record);
    }

    fn sync(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn recover(&mut self) -> Result<Recovered<S>, String> {
        let durable = self
            .durable()
            .map_err(|e| format!("the log's records do not fold: {e}"))?;
        Ok(Recovered {
            durable,
            snapshot: self.snapshot.clone(),
        })
    }

    fn compacted(&mut self, snapshot: Snapshot<S>, durable: Durable<S::Op>) -> Result<(), String> {
        self.snapshot = Some(snapshot);
        self.records = durable.to_records();
        Ok(())
    }
}

/// One replica: its core while it is up, its storage always.
pub struct Node<S: StateMachine, St> {
    pub config: Config,
    pub replica: Option<Replica<S>>,
    pub storage: St,
    /// The host's monotonic clock when the replica last stopped: a crash does not reset it,
    /// and the replica recovers reading it (L6 counts from there).
    pub host_clock_ms: Millis,
}

/// Replicas, their storage and the messages between them.
pub struct Cluster<S: StateMachine, St = MemoryLog<S>> {
    pub nodes: Vec<Node<S, St>>,
    /// In flight, oldest first.
    pub net: VecDeque<EnvelopeOf<S>>,
    /// One step's effects; drained after each, so one allocation serves them all.
    effects: Vec<ReplicaEffect<S>>,
}

impl<S: StateMachine, St: Storage<S>> Cluster<S, St> {
    /// Starts a replica for each of `configs` from empty storage, and performs what each does
    /// at start (the initial leader's bootstrap records and timers).
    pub fn start(
        configs: Vec<Config>,
        mut state_machine: impl FnMut(NodeId) -> S,
        mut storage: impl FnMut(NodeId) -> St,
        observe: &mut (impl FnMut(NodeId, &ReplicaEffect<S>) + ?Sized),
    ) -> Result<Self, String> {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            net: VecDeque::new(),
            effects: Vec::new(),
        };
        for config in configs {
            let id = config.id;
            if usize::try_from(id).ok() != Some(cluster.nodes.len()) {
                return Err(format!("replica {id} is not numbered by its position"));
            }
            let (replica, effects) = Replica::new(config.clone(), state_machine(id))
                .map_err(|e| format!("replica {id} refused its configuration: {e}"))?;
            cluster.nodes.push(Node {
                config,
                replica: Some(replica),
                storage: storage(id),
                host_clock_ms: 0,
            });
            cluster.effects = effects;
            cluster.perform(id, observe)?;
        }
        Ok(cluster)
    }

    /// Replica `id`'s core, if it is up.
    pub fn replica(&self, id: NodeId) -> Option<&Replica<S>> {
        self.nodes.get(id as usize)?.replica.as_ref()
    }

    /// The replica that leads, if one does (the first, if several believe they do).
    pub fn leader(&self) -> Option<NodeId> {
        let leading = |node: &Node<S, St>| node.replica.as_ref().is_some_and(Replica::is_leading);
        self.nodes.iter().position(leading).map(|i| i as NodeId)
    }

    /// Steps replica `id` on `input` and performs the effects; nothing if it is down.
    pub fn step(
        &mut self,
        id: NodeId,
        input: InputOf<S>,
        observe: &mut (impl FnMut(NodeId, &ReplicaEffect<S>) + ?Sized),
    ) -> Result<(), String> {
        let Some(replica) = self
            .nodes
            .get_mut(id as usize)
            .and_then(|n| n.replica.as_mut())
        else {
            return Ok(());
        };
        replica.step_into(input, &mut self.effects);
        self.perform(id, observe)
    }

    fn perform(
        &mut self,
        id: NodeId,
        observe: &mut (impl FnMut(NodeId, &ReplicaEffect<S>) + ?Sized),
    ) -> Result<(), String> {
        let Some(node) = self.nodes.get_mut(id as usize) else {
            return Err(format!("no replica {id}"));
        };
        let mut wrote = false;
        for effect in self.effects.drain(..) {
            observe(id, &effect);
            match effect {
                Effect::Persist(record) => {
                    node.storage.append(record);
                    wrote = true;
                }
                Effect::Snapshot(snapshot) => {
                    // The log from the snapshot on is the replica's durable state after the
                    // step; the step's records, appended after it, are in it already and
                    // fold onto it unchanged.
                    let durable = node.replica.as_ref().map(Replica::durable);
                    let durable = durable.ok_or_else(|| format!("replica {id} is down"))?;
                    node.storage.compacted((*snapshot).clone(), durable)?;
                }
                Effect::Send { to, msg } => self.net.push_back(Envelope { from: id, to, msg }),
                Effect::Executed { .. } | Effect::Reply { .. } | Effect::ReadReply { .. } => {}
            }
        }
        if wrote {
            node.storage.sync()?;
        }
        Ok(())
    }

    /// Delivers the message at `index` (taken modulo the network's size); false if none is in
    /// flight. A message to a replica that is down is lost.
    pub fn deliver(
        &mut self,
        index: usize,
        observe: &mut (impl FnMut(NodeId, &ReplicaEffect<S>) + ?Sized),
    ) -> Result<bool, String> {
        let Some(envelope) = self.take(index) else {
            return Ok(false);
        };
        let input = Input::Message {
            from: envelope.from,
            msg: envelope.msg,
        };
        self.step(envelope.to, input, observe)?;
        Ok(true)
    }

    /// Loses the message at `index` (modulo the network's size).
    pub fn drop_message(&mut self, index: usize) {
        self.take(index);
    }

    /// Puts a copy of the message at `index` (modulo the network's size) in flight.
    pub fn duplicate(&mut self, index: usize) {
        if !self.net.is_empty() {
            let copy = self.net[index % self.net.len()].clone();
            self.net.push_back(copy);
        }
    }

    fn take(&mut self, index: usize) -> Option<EnvelopeOf<S>> {
        match self.net.len() {
            0 => None,
            // The oldest, as a FIFO schedule (and the benchmark) takes it, without a division.
            _ if index == 0 => self.net.pop_front(),
            len => self.net.remove(index % len),
        }
    }

    /// Delivers every message, oldest first, until none is in flight; an error if that takes
    /// more than `budget` deliveries (the cluster does not quiesce).
    pub fn deliver_all(
        &mut self,
        budget: usize,
        observe: &mut (impl FnMut(NodeId, &ReplicaEffect<S>) + ?Sized),
    ) -> Result<(), String> {
        for _ in 0..budget {
            if !self.deliver(0, observe)? {
                return Ok(());
            }
        }
        if self.net.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} messages still in flight after {budget} deliveries",
            self.net.len()
        ))
    }

    /// Replica `id`'s clock moves to its next deadline (M1, H1, R1, K5), if it is up and has
    /// one; false if nothing was due.
    pub fn tick_to_deadline(
        &mut self,
        id: NodeId,
        observe: &mut (impl FnMut(NodeId, &ReplicaEffect<S>) + ?Sized),
    ) -> Result<bool, String> {
        let Some(now_ms) = self.replica(id).and_then(Replica::next_deadline) else {
            return Ok(false);
        };
        self.step(id, Input::Tick { now_ms }, observe)?;
        Ok(true)
    }

    /// Replica `id`'s clock moves to its election deadline (M1), if it is up and the timer is
    /// armed; false if not.
    pub fn fire_election(
        &mut self,
        id: NodeId,
        observe: &mut (impl FnMut(NodeId, &ReplicaEffect<S>) + ?Sized),
    ) -> Result<bool, String> {
        let due = self
            .replica(id)
            .and_then(|r| r.state().timers.election_at_ms);
        let Some(now_ms) = due else {
            return Ok(false);
        };
        self.step(id, Input::Tick { now_ms }, observe)?;
        Ok(true)
    }

    /// Replica `id` stops: its core and everything it had not persisted are gone.
    pub fn crash(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(id as usize) {
            if let Some(replica) = node.replica.take() {
                node.host_clock_ms = replica.now_ms();
            }
        }
    }

    /// Restarts replica `id` from its storage (M11) with `state_machine` as the state before
    /// its first command; nothing if it is up.
    pub fn recover(
        &mut self,
        id: NodeId,
        state_machine: S,
        observe: &mut (impl FnMut(NodeId, &ReplicaEffect<S>) + ?Sized),
    ) -> Result<(), String> {
        let Some(node) = self.nodes.get_mut(id as usize) else {
            return Err(format!("no replica {id}"));
        };
        if node.replica.is_some() {
            return Ok(());
        }
        let Recovered { durable, snapshot } = node.storage.recover()?;
        let (replica, effects) = Replica::recover_from(
            node.config.clone(),
            durable,
            snapshot,
            state_machine,
            node.host_clock_ms,
        )
        .map_err(|e| format!("replica {id} refused to recover: {e}"))?;
        node.replica = Some(replica);
        self.effects = effects;
        self.perform(id, observe)
    }

    /// Replica `id` snapshots its applied prefix and forgets the log below it (K1); nothing
    /// if it is down.
    pub fn compact(
        &mut self,
        id: NodeId,
        observe: &mut (impl FnMut(NodeId, &ReplicaEffect<S>) + ?Sized),
    ) -> Result<(), String> {
        self.step(id, Input::Compact, observe)
    }
}

/// An observer that looks at nothing.
pub fn ignore<S: StateMachine>(_: NodeId, _: &ReplicaEffect<S>) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::multi::{ClientId, Command, Recorder, Timing};

    type Sm = Recorder<u32>;

    fn configs(replicas: u32) -> Vec<Config> {
        (0..replicas)
            .map(|id| Config {
                id,
                replicas: (0..replicas).collect(),
                initial_leader: 0,
                window: 2,
                slot_limit: None,
                timing: Timing::default(),
                catch_up_entries_max: crate::multi::CATCH_UP_ENTRIES_MAX,
            })
            .collect()
    }

    fn start(replicas: u32) -> Cluster<Sm> {
        let ignore = &mut ignore::<Sm>;
        Cluster::start(
            configs(replicas),
            |_| Sm::default(),
            |_| MemoryLog::default(),
            ignore,
        )
        .unwrap()
    }

    fn request(seq: u64) -> InputOf<Sm> {
        Input::ClientRequest(Command {
            client: ClientId(1),
            seq,
            op: seq as u32,
        })
    }

    fn executed(cluster: &Cluster<Sm>, id: NodeId) -> usize {
        cluster
            .replica(id)
            .map_or(0, |r| r.state_machine().executed.len())
    }

    #[test]
    fn a_request_is_executed_everywhere_once_the_network_settles() {
        let mut cluster = start(3);
        let mut replies = 0;
        let mut observe = |_: NodeId, effect: &ReplicaEffect<Sm>| {
            if matches!(effect, Effect::Reply { .. }) {
                replies += 1;
            }
        };
        cluster.step(0, request(1), &mut observe).unwrap();
        cluster.deliver_all(100, &mut observe).unwrap();
        assert_eq!(replies, 1);
        assert_eq!(cluster.leader(), Some(0));
        // The followers learn the slot is chosen from the leader's Decide.
        assert_eq!(
            (0..3).map(|i| executed(&cluster, i)).collect::<Vec<_>>(),
            [1, 1, 1]
        );
    }

    #[test]
    fn a_crashed_replica_recovers_what_it_persisted_and_from_its_snapshot() {
        let mut cluster = start(3);
        let ignore = &mut ignore::<Sm>;
        for seq in 1..=3 {
            cluster.step(0, request(seq), ignore).unwrap();
            cluster.deliver_all(100, ignore).unwrap();
        }
        cluster.compact(0, ignore).unwrap();
        assert_eq!(cluster.replica(0).unwrap().compacted(), 3);
        let before = cluster.replica(0).unwrap().durable();
        assert!(cluster.nodes[0].storage.snapshot.is_some());
        cluster.crash(0);
        assert!(cluster.replica(0).is_none());
        cluster.step(0, request(4), ignore).unwrap();
        cluster.recover(0, Sm::default(), ignore).unwrap();
        let recovered = cluster.replica(0).unwrap();
        assert_eq!(recovered.durable(), before);
        assert_eq!(recovered.state_machine().executed.len(), 3);
        assert!(!recovered.is_leading(), "a recovered replica follows");
    }

    #[test]
    fn lost_and_duplicated_messages_and_elections_are_the_schedules_to_choose() {
        let mut cluster = start(3);
        let ignore = &mut ignore::<Sm>;
        cluster.step(0, request(1), ignore).unwrap();
        assert_eq!(cluster.net.len(), 2, "an Accept to each follower");
        cluster.duplicate(0);
        assert_eq!(cluster.net.len(), 3);
        cluster.drop_message(1);
        assert_eq!(cluster.net.len(), 2);
        assert!(cluster.fire_election(1, ignore).unwrap());
        assert!(
            !cluster.fire_election(0, ignore).unwrap(),
            "a leader has no election timer"
        );
        cluster.deliver_all(1_000, ignore).unwrap();
        assert!(
            cluster.deliver_all(0, ignore).is_ok(),
            "nothing left in flight"
        );
        assert_eq!(cluster.leader(), Some(1));
        cluster.step(1, request(2), ignore).unwrap();
        assert!(
            cluster.deliver_all(0, ignore).is_err(),
            "the budget ran out"
        );
    }
}
