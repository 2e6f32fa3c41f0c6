//! Our sans-IO core (`paxos_protocol::multi::Replica`) in the [`Cluster`] loop, on the protocol
//! crate's in-memory cluster (`paxos_protocol::sim`): every effect is performed as the runtime
//! would, minus the IO — `Persist` appends the record to an in-memory log (no fsync), `Send`
//! queues the message, timers are never armed by a stable leader.

use paxos_protocol::ballot::NodeId;
use paxos_protocol::multi::{
    ClientId, Command, Config, Input, InputOf, StateMachine, CATCH_UP_ENTRIES_MAX,
};
use paxos_protocol::sim::{ignore, Cluster as Sim, MemoryLog};

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

    fn query(&self, _op: &u64) -> Option<u64> {
        Some(self.applied)
    }

    fn snapshot(&self) -> (u64, u64) {
        (self.applied, self.sum)
    }

    fn restore(&mut self, (applied, sum): (u64, u64)) {
        self.applied = applied;
        self.sum = sum;
    }
}

/// Three replicas in the protocol crate's in-memory cluster; replica 0 leads from bootstrap at
/// ballot `1.0` (the core's M1 without phase 1, which is how the service's initial leader
/// starts too).
pub struct Ours {
    sim: Sim<Checksum>,
    delivered: u64,
    /// Commands submitted since the last round, stepped at the leader together at the start
    /// of the next (as the service's node task steps the requests of one drain of its inbox).
    requests: Vec<Command<u64>>,
}

const LEADER: NodeId = 0;

impl Ours {
    pub fn new(window: u64) -> anyhow::Result<Self> {
        let replicas: Vec<NodeId> = (0..3).collect();
        let configs = replicas
            .iter()
            .map(|&id| Config {
                id,
                replicas: replicas.clone(),
                initial_leader: LEADER,
                window,
                slot_limit: None,
                timing: Default::default(),
                catch_up_entries_max: CATCH_UP_ENTRIES_MAX,
            })
            .collect();
        let sim = Sim::start(
            configs,
            |_| Checksum::default(),
            |_| MemoryLog::default(),
            &mut ignore::<Checksum>,
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        anyhow::ensure!(sim.leader() == Some(LEADER));
        Ok(Ours {
            sim,
            delivered: 0,
            requests: Vec::new(),
        })
    }

    fn step(&mut self, id: NodeId, input: InputOf<Checksum>) {
        // In-memory storage never fails.
        let _ = self.sim.step(id, input, &mut ignore::<Checksum>);
    }

    /// Records in the in-memory logs, over all replicas.
    pub fn records(&self) -> usize {
        self.sim.nodes.iter().map(|n| n.storage.records.len()).sum()
    }

    fn state_machine(&self, id: NodeId) -> Option<&Checksum> {
        self.sim.replica(id).map(|r| r.state_machine())
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
        let in_flight = self.sim.net.len();
        for _ in 0..in_flight {
            let _ = self.sim.deliver(0, &mut ignore::<Checksum>);
        }
        self.delivered += in_flight as u64;
        in_flight > 0
    }

    fn delivered(&self) -> u64 {
        self.delivered
    }

    fn committed(&self) -> u64 {
        self.state_machine(LEADER).map_or(0, |sm| sm.applied)
    }

    fn applied(&self) -> Vec<(u64, u64)> {
        let sm = (0..3).filter_map(|id| self.state_machine(id));
        sm.map(|sm| (sm.applied, sm.sum)).collect()
    }
}
