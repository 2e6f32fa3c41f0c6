//! Our sans-IO core (`paxos_protocol::multi::Replica`) in the [`Cluster`] loop: every effect is
//! performed as the runtime would, minus the IO — `Persist` appends the record to an in-memory
//! log (no fsync), `Send` queues the message, timers are never armed by a stable leader.

use std::collections::VecDeque;

use paxos_protocol::ballot::NodeId;
use paxos_protocol::multi::{
    ClientId, Command, Config, Effect, Input, Message, Record, Replica, StateMachine,
};

use crate::harness::{checksum, Cluster};

/// The trivial state machine: counts and checksums what it applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checksum {
    pub applied: u64,
    pub sum: u64,
}

impl StateMachine for Checksum {
    type Op = u64;
    type Output = u64;
    type Snapshot = (u64, u64);

    fn apply(&mut self, command: &Command<u64>) -> u64 {
        self.applied += 1;
        self.sum = checksum(self.sum, command.client.0, command.seq);
        self.applied
    }

    fn snapshot(&self) -> (u64, u64) {
        (self.applied, self.sum)
    }

    fn restore(&mut self, (applied, sum): (u64, u64)) {
        self.applied = applied;
        self.sum = sum;
    }
}

type Msg = Message<u64>;

struct Node {
    replica: Replica<Checksum>,
    /// The write-ahead log, in memory.
    log: Vec<Record<u64>>,
}

/// Three replicas; replica 0 leads from bootstrap at ballot `1.0` (the core's M1 without phase
/// 1, which is how the service's initial leader starts too).
pub struct Ours {
    nodes: Vec<Node>,
    network: VecDeque<(NodeId, NodeId, Msg)>,
    delivered: u64,
    /// One step's effects, drained after each step (as the service's node task does).
    effects: Vec<Effect<u64, u64>>,
    /// Commands submitted since the last round, stepped at the leader together at the start
    /// of the next (as the service's node task steps the requests of one drain of its inbox).
    requests: Vec<Command<u64>>,
}

const LEADER: NodeId = 0;

impl Ours {
    pub fn new(window: u64) -> anyhow::Result<Self> {
        let replicas: Vec<NodeId> = (0..3).collect();
        let mut cluster = Ours {
            nodes: Vec::new(),
            network: VecDeque::new(),
            delivered: 0,
            effects: Vec::new(),
            requests: Vec::new(),
        };
        for &id in &replicas {
            let config = Config {
                id,
                replicas: replicas.clone(),
                initial_leader: LEADER,
                window,
                slot_limit: None,
                timing: Default::default(),
            };
            let (replica, mut effects) = Replica::new(config, Checksum::default())
                .map_err(|e| anyhow::anyhow!("replica {id}: {e}"))?;
            cluster.nodes.push(Node {
                replica,
                log: Vec::new(),
            });
            cluster.perform(id, &mut effects);
        }
        anyhow::ensure!(cluster.nodes[LEADER as usize].replica.is_leading());
        Ok(cluster)
    }

    fn step(&mut self, id: NodeId, input: Input<u64>) {
        let mut effects = std::mem::take(&mut self.effects);
        self.nodes[id as usize]
            .replica
            .step_into(input, &mut effects);
        self.perform(id, &mut effects);
        self.effects = effects;
    }

    fn perform(&mut self, id: NodeId, effects: &mut Vec<Effect<u64, u64>>) {
        let node = &mut self.nodes[id as usize];
        for effect in effects.drain(..) {
            match effect {
                Effect::Persist(record) => node.log.push(record),
                Effect::Send { to, msg } => self.network.push_back((id, to, msg)),
                Effect::Executed { .. } | Effect::Reply { .. } => {}
            }
        }
    }

    /// Records in the in-memory logs, over all replicas.
    pub fn records(&self) -> usize {
        self.nodes.iter().map(|n| n.log.len()).sum()
    }
}

impl Cluster for Ours {
    fn name(&self) -> &'static str {
        "ours"
    }

    fn propose(&mut self, client: u64, seq: u64) {
        let command = Command {
            client: ClientId(client),
            seq,
            op: seq,
        };
        self.requests.push(command);
    }

    fn deliver_round(&mut self) -> bool {
        match self.requests.len() {
            0 => {}
            1 => {
                if let Some(command) = self.requests.pop() {
                    self.step(LEADER, Input::ClientRequest(command));
                }
            }
            _ => {
                let requests = std::mem::take(&mut self.requests);
                self.step(LEADER, Input::ClientRequests(requests));
            }
        }
        let in_flight = self.network.len();
        for _ in 0..in_flight {
            let Some((from, to, msg)) = self.network.pop_front() else {
                break;
            };
            self.step(to, Input::Message { from, msg });
        }
        self.delivered += in_flight as u64;
        in_flight > 0
    }

    fn delivered(&self) -> u64 {
        self.delivered
    }

    fn committed(&self) -> u64 {
        self.nodes[LEADER as usize].replica.state_machine().applied
    }

    fn applied(&self) -> Vec<(u64, u64)> {
        let sm = self.nodes.iter().map(|n| n.replica.state_machine());
        sm.map(|sm| (sm.applied, sm.sum)).collect()
    }
}
