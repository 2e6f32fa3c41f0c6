//! OmniPaxos 0.2 in the [`Cluster`] loop, with its in-memory storage
//! (`omnipaxos_storage::memory_storage::MemoryStorage`) and its default server configuration
//! (`batch_size` 1: no storage-level batching). Outgoing messages are taken from every node at
//! the start of each round, so whatever a round's deliveries (or the proposals before it)
//! produced is delivered in the next round, as for ours. OmniPaxos merges everything the
//! leader appends between two takes into one `AcceptDecide` per follower, and a follower's
//! acknowledgements into one `Accepted`: that is its design, and this loop lets it.

use std::collections::VecDeque;

use omnipaxos::messages::Message;
use omnipaxos::storage::{Entry, NoSnapshot};
use omnipaxos::util::{LogEntry, NodeId};
use omnipaxos::{ClusterConfig, OmniPaxos, ServerConfig};
use omnipaxos_storage::memory_storage::MemoryStorage;

use crate::harness::{checksum, Cluster};

/// The command, the same size as ours (`Command<u64>`: client, seq, op).
#[derive(Clone, Debug)]
pub struct Cmd {
    pub client: u64,
    pub seq: u64,
    pub op: u64,
}

impl Entry for Cmd {
    type Snapshot = NoSnapshot;
}

struct Node {
    paxos: OmniPaxos<Cmd, MemoryStorage<Cmd>>,
    /// The state machine: entries applied and their checksum.
    applied: u64,
    sum: u64,
}

pub struct Omni {
    nodes: Vec<Node>,
    leader: usize,
    network: VecDeque<Message<Cmd>>,
    buffer: Vec<Message<Cmd>>,
    delivered: u64,
}

/// Election rounds allowed before giving up.
const ELECTION_ROUNDS_MAX: usize = 10_000;

impl Omni {
    /// Builds the cluster and elects a leader with OmniPaxos's own ballot leader election
    /// (ticks and message rounds, untimed); ticks stop once every node accepts that leader.
    pub fn new() -> anyhow::Result<Self> {
        let ids: Vec<NodeId> = vec![1, 2, 3];
        let cluster_config = ClusterConfig {
            configuration_id: 1,
            nodes: ids.clone(),
            ..Default::default()
        };
        let mut nodes = Vec::new();
        for &pid in &ids {
            let server_config = ServerConfig {
                pid,
                ..Default::default()
            };
            let paxos = cluster_config
                .clone()
                .build_for_server(server_config, MemoryStorage::default())
                .map_err(|e| anyhow::anyhow!("omnipaxos node {pid}: {e:?}"))?;
            nodes.push(Node {
                paxos,
                applied: 0,
                sum: 0,
            });
        }
        let mut cluster = Omni {
            nodes,
            leader: 0,
            network: VecDeque::new(),
            buffer: Vec::new(),
            delivered: 0,
        };
        for _ in 0..ELECTION_ROUNDS_MAX {
            if let Some(leader) = cluster.agreed_leader() {
                cluster.leader = leader;
                return Ok(cluster);
            }
            for node in &mut cluster.nodes {
                node.paxos.tick();
            }
            cluster.deliver_round();
        }
        anyhow::bail!("omnipaxos elected no leader in {ELECTION_ROUNDS_MAX} rounds")
    }

    /// The index of the leader every node follows in the accept phase, if there is one.
    fn agreed_leader(&self) -> Option<usize> {
        let first = self.nodes[0].paxos.get_current_leader()?;
        let agreed = self.nodes.iter().all(|n| {
            let leader = n.paxos.get_current_leader();
            leader.is_some_and(|(pid, accepting)| pid == first.0 && accepting)
        });
        let index = self.nodes.iter().position(|n| n.paxos.get_pid() == first.0);
        index.filter(|_| agreed)
    }

    fn apply_decided(node: &mut Node) {
        let decided = node.paxos.get_decided_idx() as u64;
        if decided <= node.applied {
            return;
        }
        let entries = node
            .paxos
            .read_entries(node.applied as usize..decided as usize);
        for entry in entries.into_iter().flatten() {
            if let LogEntry::Decided(cmd) = entry {
                node.sum = checksum(node.sum, cmd.client, cmd.seq);
                node.applied += 1;
            }
        }
    }
}

impl Cluster for Omni {
    fn name(&self) -> &'static str {
        "omnipaxos"
    }

    fn propose(&mut self, client: u64, seq: u64) {
        let cmd = Cmd {
            client,
            seq,
            op: seq,
        };
        // The leader is in the accept phase and nothing is reconfiguring: append succeeds.
        let appended = self.nodes[self.leader].paxos.append(cmd);
        debug_assert!(appended.is_ok(), "append refused by the leader");
    }

    fn deliver_round(&mut self) -> bool {
        for node in &mut self.nodes {
            node.paxos.take_outgoing_messages(&mut self.buffer);
            self.network.extend(self.buffer.drain(..));
        }
        let in_flight = self.network.len();
        for _ in 0..in_flight {
            let Some(msg) = self.network.pop_front() else {
                break;
            };
            let to = msg.get_receiver();
            if let Some(node) = self.nodes.iter_mut().find(|n| n.paxos.get_pid() == to) {
                node.paxos.handle_incoming(msg);
            }
        }
        for node in &mut self.nodes {
            Self::apply_decided(node);
        }
        self.delivered += in_flight as u64;
        in_flight > 0
    }

    fn delivered(&self) -> u64 {
        self.delivered
    }

    fn committed(&self) -> u64 {
        self.nodes[self.leader].applied
    }

    fn applied(&self) -> Vec<(u64, u64)> {
        self.nodes.iter().map(|n| (n.applied, n.sum)).collect()
    }
}
